"""An idempotent, batching producer.

Each partition has a worker thread with a bounded queue (``send`` blocks while it is full: back
pressure reaches the caller) and one batch in flight. A batch is sent again, byte for byte, after
a leader change, BUSY (after the delay the broker asked for) or a lost answer, until it is
acknowledged or the delivery timeout passes: the broker recognises a repeated sequence and
answers with the offsets it first gave, so a retry never duplicates a record.
"""

from __future__ import annotations

import concurrent.futures
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import grpc

from sluice.batch import BATCH_RECORDS_MAX, COMPRESSION_NONE, Record, encode_batch, partition_for_key
from sluice.cluster import Cluster, backoff, sleep_until_or, with_retries
from sluice.errors import DeliveryTimeout, SluiceError, failed
from sluice.v1 import data_pb2

E = data_pb2

#: gRPC statuses after which the same batch is sent again: the answer was lost, not refused.
_RETRIABLE_STATUS = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


@dataclass(frozen=True)
class Delivery:
    """Where an acknowledged record landed."""

    topic: str
    partition: int
    offset: int


@dataclass
class ProducerStats:
    """Answers the producer retried after; for tests and monitoring."""

    busy: int = 0
    not_leader: int = 0
    unavailable: int = 0
    resent: int = 0


class Producer:
    def __init__(
        self,
        cluster: Cluster,
        idempotent: bool = True,
        linger_ms: int = 2,
        batch_bytes: int = 256 * 1024,
        queue_records: int = 10_000,
        delivery_timeout_s: float = 30.0,
        request_timeout_s: float = 10.0,
        compression: int = COMPRESSION_NONE,
    ):
        self.cluster = cluster
        self.idempotent = idempotent
        self.linger_s = linger_ms / 1000.0
        self.batch_bytes = batch_bytes
        self.queue_records = queue_records
        self.delivery_timeout_s = delivery_timeout_s
        self.request_timeout_s = request_timeout_s
        self.compression = compression
        self.stats = ProducerStats()
        self._lock = threading.Lock()
        self._workers: Dict[Tuple[str, int], _PartitionWorker] = {}
        self._sticky: Dict[str, Tuple[int, int]] = {}
        self._closed = False

    def send(
        self,
        topic: str,
        value: bytes,
        key: Optional[bytes] = None,
        headers: Sequence[Tuple[str, bytes]] = (),
        partition: Optional[int] = None,
    ) -> "concurrent.futures.Future[Delivery]":
        """Queues a record and returns a future of its ``Delivery``. A key chooses the partition
        (CRC32C of the key modulo the partition count, as every Sluice client does); records
        without one stay on one partition for ``batch_bytes`` and then move on."""
        if self._closed:
            raise RuntimeError("the producer is closed")
        count = len(self.cluster.partitions(topic))
        if partition is None:
            partition = partition_for_key(key, count) if key is not None else self._sticky_partition(topic, count, len(value))
        elif not 0 <= partition < count:
            raise SluiceError("ERROR_CODE_UNKNOWN_TOPIC_OR_PARTITION", f"{topic!r} has no partition {partition}")
        record = Record(value=bytes(value), key=key, headers=list(headers), timestamp_ms=int(time.time() * 1000))
        future: "concurrent.futures.Future[Delivery]" = concurrent.futures.Future()
        self._worker(topic, partition).queue.put((record, future))
        return future

    def flush(self, timeout_s: Optional[float] = None) -> None:
        """Waits until every record sent so far is acknowledged or has failed; ``TimeoutError``
        if that takes longer than ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            done = w.queue.all_tasks_done  # the queue's own condition, signalled by task_done()
            with done:
                while w.queue.unfinished_tasks:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise TimeoutError("records still in flight")
                    done.wait(remaining)

    def close(self) -> None:
        """Delivers what is queued, then stops the workers."""
        self._closed = True
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.queue.put(None)
        for w in workers:
            w.thread.join()

    def _sticky_partition(self, topic: str, count: int, size: int) -> int:
        with self._lock:
            current, sent = self._sticky.get(topic, (random.randrange(count), 0))
            if sent >= self.batch_bytes and count > 1:
                current = (current + random.randrange(1, count)) % count
                sent = 0
            self._sticky[topic] = (current, sent + size)
            return current

    def _worker(self, topic: str, partition: int) -> "_PartitionWorker":
        with self._lock:
            w = self._workers.get((topic, partition))
            if w is None:
                w = _PartitionWorker(self, topic, partition)
                self._workers[(topic, partition)] = w
            return w

    def init_producer(self, producer_id: Optional[int] = None, timeout_s: Optional[float] = None) -> Tuple[int, int]:
        """A new producer id at epoch 0, or the next epoch of ``producer_id`` (which fences its
        older incarnations). Retried on any broker until ``timeout_s``."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.delivery_timeout_s)
        request = data_pb2.InitProducerRequest()
        if producer_id is not None:
            request.producer_id = producer_id
        answer = with_retries(
            deadline,
            lambda attempt: self.cluster.any_addr(),
            lambda addr: self.cluster.producer_stub(addr).InitProducer(request, timeout=self.request_timeout_s),
            retriable=(E.ERROR_CODE_UNAVAILABLE, E.ERROR_CODE_NOT_LEADER),
        )
        return answer.producer_id, answer.producer_epoch


class _PartitionWorker:
    def __init__(self, producer: Producer, topic: str, partition: int):
        self.p = producer
        self.topic = topic
        self.partition = partition
        self.queue: "queue.Queue" = queue.Queue(maxsize=producer.queue_records)
        self.identity: Optional[Tuple[int, int]] = None
        self.sequence = 0
        self.thread = threading.Thread(target=self._run, name=f"sluice-producer-{topic}-{partition}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                self.queue.task_done()
                return
            pending = [item]
            size = len(item[0].value)
            linger_until = time.monotonic() + self.p.linger_s
            stop = False
            while size < self.p.batch_bytes and len(pending) < BATCH_RECORDS_MAX:
                try:
                    wait = linger_until - time.monotonic()
                    nxt = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                pending.append(nxt)
                size += len(nxt[0].value)
            try:
                self._deliver_batch(pending)
            finally:
                for _ in pending:
                    self.queue.task_done()
            if stop:
                self.queue.task_done()
                return

    def _deliver_batch(self, pending: List[Tuple[Record, "concurrent.futures.Future[Delivery]"]]) -> None:
        records = [r for r, _ in pending]
        try:
            if self.p.idempotent and self.identity is None:
                self.identity = self.p.init_producer()
                self.sequence = 0
            producer_id, epoch = self.identity if self.p.idempotent else (0, 0)
            batch = encode_batch(records, producer_id, epoch, self.sequence, self.p.compression)
            base_offset = self._deliver(batch)
        except Exception as e:  # every failure reaches the records' futures
            # Whether the batch landed is unknown: continuing its sequence could be refused or
            # misread as a duplicate, so the next batch starts a fresh producer id.
            self.identity = None
            for _, f in pending:
                f.set_exception(e)
            return
        self.sequence += len(records)
        for i, (_, f) in enumerate(pending):
            f.set_result(Delivery(self.topic, self.partition, base_offset + i))

    def _deliver(self, batch: bytes) -> int:
        """Sends one encoded batch until it is acknowledged, refused for good, or timed out."""
        deadline = time.monotonic() + self.p.delivery_timeout_s
        request = data_pb2.ProduceRequest(topic=self.topic, partition=self.partition, batch=batch)
        refresh = False
        attempt = 0
        last = "no attempt"
        while time.monotonic() < deadline:
            attempt += 1
            if attempt > 1:
                self.p.stats.resent += 1
            try:
                addr = self.p.cluster.leader(self.topic, self.partition, refresh=refresh)
            except (SluiceError, grpc.RpcError) as e:
                last = str(e)
                sleep_until_or(deadline, backoff(attempt))
                continue
            refresh = False
            try:
                answer = self.p.cluster.producer_stub(addr).Produce(request, timeout=self.p.request_timeout_s)
            except grpc.RpcError as e:
                if e.code() not in _RETRIABLE_STATUS:
                    raise SluiceError(e.code().name, e.details() or "") from e
                self.p.stats.unavailable += 1
                last = f"{addr}: {e.code().name}"
                refresh = True
                sleep_until_or(deadline, backoff(attempt))
                continue
            if not failed(answer.error):
                return answer.base_offset
            error = answer.error
            last = f"{addr}: {E.ErrorCode.Name(error.code)}: {error.message}"
            if error.code == E.ERROR_CODE_NOT_LEADER:
                self.p.stats.not_leader += 1
                if error.leader_addr:
                    self.p.cluster.learn_leader(self.topic, self.partition, error.leader_addr)
                else:
                    refresh = True
                    sleep_until_or(deadline, max(error.retry_after_ms / 1000.0, backoff(attempt)))
            elif error.code == E.ERROR_CODE_BUSY:
                self.p.stats.busy += 1
                sleep_until_or(deadline, max(error.retry_after_ms, 1) / 1000.0)
            elif error.code in (E.ERROR_CODE_UNAVAILABLE, E.ERROR_CODE_UNKNOWN_TOPIC_OR_PARTITION):
                self.p.stats.unavailable += 1
                refresh = True
                sleep_until_or(deadline, backoff(attempt))
            else:
                raise SluiceError.from_pb(error)
        raise DeliveryTimeout(f"not acknowledged within {self.p.delivery_timeout_s} s; last answer: {last}")
