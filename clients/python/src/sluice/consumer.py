"""Reading a partition: pull with long polling (``Consumer.poll``) or push (``subscribe``)."""

from __future__ import annotations

import queue
import threading
import time
from typing import Iterator, List, Optional, Union

from sluice.batch import Record, decode_batches
from sluice.cluster import Cluster, with_retries
from sluice.errors import SluiceError, failed
from sluice.v1 import data_pb2

E = data_pb2

EARLIEST = "earliest"
LATEST = "latest"


def list_offsets(cluster: Cluster, topic: str, partition: int, timeout_s: float = 30.0) -> tuple:
    """``(earliest, latest)``: the first retained offset and the high watermark."""
    answer = with_retries(
        time.monotonic() + timeout_s,
        lambda attempt: cluster.leader(topic, partition, refresh=attempt > 1),
        lambda addr: cluster.consumer_stub(addr).ListOffsets(
            data_pb2.ListOffsetsRequest(topic=topic, partition=partition), timeout=cluster.rpc_timeout_s
        ),
    )
    return answer.earliest, answer.latest


def offset_for_time(cluster: Cluster, topic: str, partition: int, timestamp_ms: int, timeout_s: float = 30.0) -> int:
    """The offset of the first record stamped at or after ``timestamp_ms`` (Unix ms), or the high
    watermark when none is; start a ``Consumer`` there to read from a time. A time more than a
    minute ahead of the broker's clock raises ``ERROR_CODE_INVALID_REQUEST``."""
    answer = with_retries(
        time.monotonic() + timeout_s,
        lambda attempt: cluster.leader(topic, partition, refresh=attempt > 1),
        lambda addr: cluster.consumer_stub(addr).ListOffsets(
            data_pb2.ListOffsetsRequest(topic=topic, partition=partition, timestamp_ms=timestamp_ms),
            timeout=cluster.rpc_timeout_s,
        ),
    )
    return answer.timestamp_offset if answer.HasField("timestamp_offset") else answer.latest


class Consumer:
    """Pulls one partition from ``offset`` (a number, ``EARLIEST`` or ``LATEST``) on. Each
    ``poll`` is one long-polling Fetch: it returns as soon as records are there, or empty after
    ``max_wait_ms``. Leader changes are followed; OFFSET_OUT_OF_RANGE is raised."""

    def __init__(
        self,
        cluster: Cluster,
        topic: str,
        partition: int,
        offset: Union[int, str] = EARLIEST,
        max_bytes: int = 1024 * 1024,
        read_from_follower: bool = False,
        retry_timeout_s: float = 30.0,
    ):
        self.cluster = cluster
        self.topic = topic
        self.partition = partition
        self.max_bytes = max_bytes
        self.read_from_follower = read_from_follower
        self.retry_timeout_s = retry_timeout_s
        if offset in (EARLIEST, LATEST):
            earliest, latest = list_offsets(cluster, topic, partition, retry_timeout_s)
            offset = earliest if offset == EARLIEST else latest
        self.position = int(offset)
        self.high_watermark = 0

    def poll(self, max_wait_ms: int = 500) -> List[Record]:
        deadline = time.monotonic() + max_wait_ms / 1000.0 + self.retry_timeout_s
        request = data_pb2.FetchRequest(
            topic=self.topic,
            partition=self.partition,
            offset=self.position,
            max_bytes=self.max_bytes,
            min_bytes=1,
            max_wait_ms=max_wait_ms,
            read_from_follower=self.read_from_follower,
        )

        def learn(error) -> None:
            if error.leader_addr:
                self.cluster.learn_leader(self.topic, self.partition, error.leader_addr)

        answer = with_retries(
            deadline,
            lambda attempt: self.cluster.leader(self.topic, self.partition, refresh=attempt > 1),
            lambda addr: self.cluster.consumer_stub(addr).Fetch(
                request, timeout=max_wait_ms / 1000.0 + self.cluster.rpc_timeout_s
            ),
            on_refusal=learn,
        )
        records = decode_batches(answer.batches, self.position, self.partition)
        if records:
            self.position = records[-1].offset + 1
        self.high_watermark = answer.high_watermark
        return records


def subscribe(
    cluster: Cluster,
    topic: str,
    partition: int,
    offset: Union[int, str] = EARLIEST,
    credit_records: int = 1000,
    credit_bytes: int = 4 * 1024 * 1024,
    idle_timeout_s: Optional[float] = None,
) -> Iterator[Record]:
    """Pushed records from ``offset`` on, over one Subscribe stream. The server never sends more
    than the credit granted; credit for a batch's records is granted again once they have been
    yielded, so a slow reader slows only its own stream. Stops after ``idle_timeout_s`` without
    records (None: never)."""
    if offset in (EARLIEST, LATEST):
        earliest, latest = list_offsets(cluster, topic, partition)
        offset = earliest if offset == EARLIEST else latest
    position = int(offset)
    addr = cluster.leader(topic, partition)
    requests: "queue.Queue" = queue.Queue()
    requests.put(
        data_pb2.SubscribeRequest(
            topic=topic, partition=partition, offset=position, credit_records=credit_records, credit_bytes=credit_bytes
        )
    )
    stop = threading.Event()

    def outgoing():
        while not stop.is_set():
            try:
                item = requests.get(timeout=0.2)
            except queue.Empty:
                continue
            yield item

    stream = cluster.consumer_stub(addr).Subscribe(outgoing())
    last_record = time.monotonic()
    try:
        for answer in stream:
            if failed(answer.error):
                raise SluiceError.from_pb(answer.error)
            if answer.heartbeat:
                if idle_timeout_s is not None and time.monotonic() - last_record > idle_timeout_s:
                    return
                continue
            granted_records = 0
            granted_bytes = 0
            for record in decode_batches(answer.batches, 0, partition):
                granted_records += 1
                if record.offset < position:
                    continue
                position = record.offset + 1
                last_record = time.monotonic()
                yield record
            granted_bytes = sum(len(b.batch) for b in answer.batches)
            requests.put(data_pb2.SubscribeRequest(credit_records=granted_records, credit_bytes=granted_bytes))
    finally:
        stop.set()
        stream.cancel()
