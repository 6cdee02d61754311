"""The Python client against real three-node clusters: keyed produce and consume (pull and push),
a partition leader killed with kill -9 mid-run with nothing lost or duplicated, BUSY honoured."""

from __future__ import annotations

import collections
import threading
import time

from conftest import LocalCluster, eventually

from sluice import Consumer, Producer, SluiceError, offset_for_time, partition_for_key, subscribe


def read_partition(cluster, topic, partition, until_offset, timeout_s=60.0):
    """Every record of a partition up to ``until_offset`` (exclusive), by long polling."""
    consumer = Consumer(cluster, topic, partition, offset=0)
    records = []
    deadline = time.monotonic() + timeout_s
    while consumer.position < until_offset:
        assert time.monotonic() < deadline, f"{topic}/{partition}: read {len(records)} of {until_offset}"
        records.extend(consumer.poll(max_wait_ms=500))
    return records


def check_offsets_dense(records, start=0):
    offsets = [r.offset for r in records]
    assert offsets == list(range(start, start + len(records))), "offsets are contiguous, each once"


def test_keyed_records_land_on_their_partitions_and_read_back_in_order(cluster3):
    cluster3.create_topic("py-keys", 6, 3)
    producer = Producer(cluster3.client, linger_ms=5)
    keys = [f"customer-{i}".encode() for i in range(30)]
    sent = collections.defaultdict(list)
    futures = []
    for i in range(3000):
        key = keys[i % len(keys)]
        value = f"{key.decode()}/{len(sent[key])}".encode()
        sent[key].append(value)
        futures.append((key, value, producer.send("py-keys", value, key=key, headers=[("n", str(i).encode())])))
    producer.flush(timeout_s=60)
    landed = {}
    for key, value, f in futures:
        d = f.result(timeout=0)
        assert d.partition == partition_for_key(key, 6), "the same hash as every Sluice client"
        landed[(d.partition, d.offset)] = value
    producer.close()

    per_key = collections.defaultdict(list)
    for partition in range(6):
        hw = max([o for (p, o) in landed if p == partition], default=-1) + 1
        records = read_partition(cluster3.client, "py-keys", partition, hw)
        check_offsets_dense(records)
        for r in records:
            assert landed[(partition, r.offset)] == r.value, "each record at the offset it was acknowledged at"
            assert partition_for_key(r.key, 6) == partition
            per_key[r.key].append(r.value)
    assert per_key == sent, "every record once, in produce order per key"

    # Push: the same partition over a Subscribe stream, within a small credit.
    partition = partition_for_key(keys[0], 6)
    hw = max(o for (p, o) in landed if p == partition) + 1
    pushed = []
    for record in subscribe(cluster3.client, "py-keys", partition, offset=0, credit_records=7, idle_timeout_s=10):
        pushed.append(record)
        if len(pushed) == hw:
            break
    check_offsets_dense(pushed)
    assert [r.value for r in pushed] == [landed[(partition, o)] for o in range(hw)]


def test_a_leader_killed_mid_run_loses_and_duplicates_nothing(cluster3):
    cluster3.create_topic("py-kill", 3, 3)
    producer = Producer(cluster3.client, linger_ms=2, delivery_timeout_s=60)
    total, chunk = 20_000, 250
    futures = []
    a_third_acked = threading.Event()
    killed = threading.Event()
    acked_after_kill = []

    def produce():
        # In chunks, each acknowledged before the next is sent, so the run spans the kill.
        for start in range(0, total, chunk):
            sent = [
                (i, producer.send("py-kill", f"v{i}".encode(), key=f"k{i % 97}".encode()))
                for i in range(start, start + chunk)
            ]
            futures.extend(sent)
            was_killed = killed.is_set()
            for _, f in sent:
                f.exception(timeout=120)
            if was_killed:
                acked_after_kill.extend(f.result().partition for _, f in sent)
            if start + chunk >= total // 3:
                a_third_acked.set()

    sender = threading.Thread(target=produce)
    sender.start()
    assert a_third_acked.wait(120), "a third of the records were acknowledged"
    victim_addr = eventually("partition 0's leader", 10, lambda: cluster3.client.refresh("py-kill")[0].leader_addr)
    victim = cluster3.node_of(victim_addr)
    cluster3.kill(victim)
    killed.set()
    sender.join(300)
    assert not sender.is_alive(), "every record was sent"
    producer.close()
    def failed_over():
        leader = cluster3.client.refresh("py-kill")[0].leader_addr
        return leader if leader not in (None, victim_addr) else None

    eventually("Metadata to name partition 0's new leader", 30, failed_over)
    assert 0 in acked_after_kill, "partition 0 took records after its leader was killed"
    stats = producer.stats
    print(f"after the kill of node {victim}: {stats}")
    assert stats.not_leader + stats.unavailable > 0, "the producer met the kill and retried through it"
    cluster3.start(victim)

    acked = {}
    for i, f in futures:
        d = f.result(timeout=0)  # every record acknowledged despite the kill
        acked[(d.partition, d.offset)] = f"v{i}".encode()
    assert len(acked) == total, "no two records share an offset"
    seen = set()
    for partition in range(3):
        hw = max([o for (p, o) in acked if p == partition], default=-1) + 1
        records = read_partition(cluster3.client, "py-kill", partition, hw)
        check_offsets_dense(records)
        for r in records:
            assert acked[(partition, r.offset)] == r.value, f"{partition}/{r.offset}"
            assert r.value not in seen, f"{r.value!r} duplicated"
            seen.add(r.value)
    assert len(seen) == total, "every acknowledged record is readable, exactly once"


def test_busy_answers_are_honoured_and_nothing_is_lost():
    """Sixteen producers of 512 KiB records against a node that admits 4 MiB per partition."""
    cluster = LocalCluster(
        1,
        "[limits]\npartition_inflight_bytes = 4194304\nnode_inflight_bytes = 8388608\nbusy_retry_after_ms = 5\n"
        "memory_budget_bytes = 268435456\n[storage]\nwrite_buffer_bytes = 8388608\nblock_cache_bytes = 8388608\n",
        hibernate_after_ms=0,
    )
    try:
        cluster.wait_ready(1)
        cluster.create_topic("py-busy", 1, 1)
        producers = [Producer(cluster.client, batch_bytes=1, linger_ms=0) for _ in range(16)]
        futures = []
        for round_ in range(6):
            for n, p in enumerate(producers):
                value = bytes([n]) * 8 + bytes([round_]) + b"x" * (512 * 1024 - 9)
                futures.append((value[:9], p.send("py-busy", value)))
        for p in producers:
            p.flush(timeout_s=120)
            p.close()
        busy = sum(p.stats.busy for p in producers)
        assert busy > 0, "the flood got BUSY answers"
        offsets = {}
        for tag, f in futures:
            offsets[f.result(timeout=0).offset] = tag
        assert sorted(offsets) == list(range(len(futures))), "every record acknowledged once"
        records = read_partition(cluster.client, "py-busy", 0, len(futures))
        check_offsets_dense(records)
        assert {r.offset: r.value[:9] for r in records} == offsets
        print(f"BUSY answers honoured: {busy}")
    finally:
        cluster.stop()


def test_bad_requests_get_typed_errors(cluster3):
    cluster3.create_topic("py-bad", 1, 3)
    producer = Producer(cluster3.client)
    try:
        producer.send("py-bad", b"x", partition=5)
        raise AssertionError("a partition that does not exist is refused")
    except SluiceError as e:
        assert e.code == "ERROR_CODE_UNKNOWN_TOPIC_OR_PARTITION"
    try:
        cluster3.admin.create_topic("py-bad", 1, 3)
        raise AssertionError("a second topic of the same name is refused")
    except SluiceError as e:
        assert e.code == "TOPIC_EXISTS"
    # A producer id never issued, through the client's own InitProducer: refused with its code.
    try:
        producer.init_producer(producer_id=10**12, timeout_s=5)
        raise AssertionError("bumping an id never issued is refused")
    except SluiceError as e:
        assert e.code == "ERROR_CODE_UNKNOWN_PRODUCER_ID"
    pid, epoch = producer.init_producer()
    assert (pid, producer.init_producer(producer_id=pid)[1]) == (pid, epoch + 1)
    producer.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def test_a_consumer_starts_from_a_time(cluster3):
    cluster3.create_topic("py-time", 1, 3)
    producer = Producer(cluster3.client)
    for i in range(3):
        producer.send("py-time", f"before-{i}".encode(), partition=0)
    producer.flush(timeout_s=30)
    stamped = max(r.timestamp_ms for r in read_partition(cluster3.client, "py-time", 0, 3))
    # Records are stamped in milliseconds: wait for the clock to pass the last one.
    middle = eventually("the clock to pass the first records' stamp", 1.0, lambda: now_ms() if now_ms() > stamped else None)
    for i in range(2):
        producer.send("py-time", f"after-{i}".encode(), partition=0)
    producer.flush(timeout_s=30)
    producer.close()

    start = offset_for_time(cluster3.client, "py-time", 0, middle)
    assert start == 3, "the first record stamped at or after the time"
    assert [r.value for r in Consumer(cluster3.client, "py-time", 0, offset=start).poll()] == [b"after-0", b"after-1"]
    assert offset_for_time(cluster3.client, "py-time", 0, 0) == 0, "a time before everything: the start"
    assert offset_for_time(cluster3.client, "py-time", 0, now_ms()) == 5, "after everything: the next offset"
    try:
        offset_for_time(cluster3.client, "py-time", 0, now_ms() + 3_600_000, timeout_s=5)
        raise AssertionError("a time an hour ahead is refused")
    except SluiceError as e:
        assert e.code == "ERROR_CODE_INVALID_REQUEST"
