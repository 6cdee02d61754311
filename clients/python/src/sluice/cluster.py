"""Connections to the brokers and the cached partition map."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, Dict, List, Optional, Sequence

import grpc

from sluice.errors import RETRIABLE, SluiceError, failed
from sluice.v1 import admin_pb2_grpc, data_pb2, data_pb2_grpc

#: The largest message a node sends (16 MiB fetches plus framing) and a produce may carry.
MESSAGE_BYTES_MAX = 64 * 1024 * 1024


@dataclass
class PartitionInfo:
    partition: int
    leader_addr: Optional[str]
    replicas: List[int]


class Cluster:
    """Bootstrap addresses (``"127.0.0.1:7001"``), one gRPC channel per broker, and each topic's
    partitions with the leader Metadata last named. Thread-safe."""

    def __init__(self, bootstrap: Sequence[str], rpc_timeout_s: float = 5.0):
        if not bootstrap:
            raise ValueError("at least one bootstrap address is needed")
        self.bootstrap = list(bootstrap)
        self.rpc_timeout_s = rpc_timeout_s
        self._lock = threading.Lock()
        self._channels: Dict[str, grpc.Channel] = {}
        self._topics: Dict[str, List[PartitionInfo]] = {}
        self._next = 0

    def channel(self, addr: str) -> grpc.Channel:
        with self._lock:
            ch = self._channels.get(addr)
            if ch is None:
                options = [
                    ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                    ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
                ]
                ch = grpc.insecure_channel(addr, options=options)
                self._channels[addr] = ch
            return ch

    def producer_stub(self, addr: str) -> data_pb2_grpc.ProducerStub:
        return data_pb2_grpc.ProducerStub(self.channel(addr))

    def consumer_stub(self, addr: str) -> data_pb2_grpc.ConsumerStub:
        return data_pb2_grpc.ConsumerStub(self.channel(addr))

    def admin_stub(self, addr: str) -> admin_pb2_grpc.AdminStub:
        return admin_pb2_grpc.AdminStub(self.channel(addr))

    def any_addr(self) -> str:
        """The bootstrap addresses in turn, so that a dead one is not asked every time."""
        with self._lock:
            addr = self.bootstrap[self._next % len(self.bootstrap)]
            self._next += 1
            return addr

    def refresh(self, topic: str) -> List[PartitionInfo]:
        """Asks the brokers in turn for the topic's partitions; raises the last failure if none
        answers."""
        last: Optional[Exception] = None
        for _ in range(len(self.bootstrap)):
            addr = self.any_addr()
            try:
                answer = data_pb2_grpc.MetadataStub(self.channel(addr)).Metadata(
                    data_pb2.MetadataRequest(topics=[topic]), timeout=self.rpc_timeout_s
                )
            except grpc.RpcError as e:
                last = e
                continue
            found = [t for t in answer.topics if t.name == topic]
            if not found:
                last = SluiceError("ERROR_CODE_UNKNOWN_TOPIC_OR_PARTITION", f"unknown topic {topic!r}")
                continue
            if failed(found[0].error):
                last = SluiceError.from_pb(found[0].error)
                continue
            partitions = [
                PartitionInfo(p.partition, p.leader_addr or None, list(p.replicas))
                for p in sorted(found[0].partitions, key=lambda p: p.partition)
            ]
            with self._lock:
                self._topics[topic] = partitions
            return partitions
        raise last if last is not None else SluiceError("ERROR_CODE_UNAVAILABLE", "no broker answered")

    def partitions(self, topic: str) -> List[PartitionInfo]:
        with self._lock:
            known = self._topics.get(topic)
        return known if known is not None else self.refresh(topic)

    def leader(self, topic: str, partition: int, refresh: bool = False) -> str:
        """The leader's address for a partition, or any broker when none is known (a broker that
        does not lead answers NOT_LEADER, naming the leader when it knows it)."""
        partitions = self.refresh(topic) if refresh else self.partitions(topic)
        if partition >= len(partitions):
            raise SluiceError("ERROR_CODE_UNKNOWN_TOPIC_OR_PARTITION", f"{topic!r} has no partition {partition}")
        return partitions[partition].leader_addr or self.any_addr()

    def learn_leader(self, topic: str, partition: int, addr: str) -> None:
        with self._lock:
            known = self._topics.get(topic)
            if known is not None and partition < len(known):
                known[partition].leader_addr = addr

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()


def backoff(attempt: int, base_ms: int = 20, cap_ms: int = 1000) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling, capped."""
    return min(cap_ms, base_ms * (2 ** min(attempt - 1, 10))) / 1000.0


def sleep_until_or(deadline: float, seconds: float) -> None:
    time.sleep(max(0.0, min(seconds, deadline - time.monotonic())))


def with_retries(
    deadline: float,
    pick_addr: Callable[[int], str],
    call: Callable[[str], object],
    retriable: Collection[int] = RETRIABLE,
    on_refusal: Optional[Callable[[object], None]] = None,
):
    """Calls ``call(addr)`` for a data-path answer until it carries no error, an error not in
    ``retriable`` (raised as ``SluiceError``), or ``deadline`` passes (the last failure raised).
    ``pick_addr(attempt)`` chooses the broker for attempt 1, 2, ...; a lost answer (a gRPC
    failure) is retried like a retriable error, after ``retry_after_ms`` or a back-off."""
    attempt = 0
    while True:
        attempt += 1
        addr = pick_addr(attempt)
        try:
            answer = call(addr)
            if not failed(answer.error):
                return answer
            error = SluiceError.from_pb(answer.error)
            if answer.error.code not in retriable:
                raise error
            if on_refusal is not None:
                on_refusal(answer.error)
        except grpc.RpcError as e:
            error = SluiceError("ERROR_CODE_UNAVAILABLE", f"{addr}: {e.code().name}")
        if time.monotonic() >= deadline:
            raise error
        sleep_until_or(deadline, max(error.retry_after_ms / 1000.0, backoff(attempt)))
