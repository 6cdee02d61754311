"""Cluster administration: topics and cluster status. Admin answers failures with gRPC statuses
whose ``sluice-error`` metadata carries a stable code (``TOPIC_EXISTS``, ``NOT_ENOUGH_BROKERS``,
...); any broker takes a call and forwards it to the registry leader."""

from __future__ import annotations

import time
from typing import List, Optional

import grpc

from sluice.cluster import Cluster, backoff, sleep_until_or
from sluice.errors import SluiceError
from sluice.v1 import admin_pb2

#: Codes for which the call is worth sending again (to another broker, or after an election).
_RETRIABLE_CODES = {"NOT_LEADER", "UNAVAILABLE"}


def _code(e: grpc.RpcError) -> str:
    for key, value in e.trailing_metadata() or ():
        if key == "sluice-error":
            return value
    return e.code().name


class Admin:
    def __init__(self, cluster: Cluster, retry_timeout_s: float = 30.0):
        self.cluster = cluster
        self.retry_timeout_s = retry_timeout_s

    def _call(self, method: str, request):
        deadline = time.monotonic() + self.retry_timeout_s
        attempt = 0
        while True:
            attempt += 1
            addr = self.cluster.any_addr()
            try:
                return getattr(self.cluster.admin_stub(addr), method)(request, timeout=self.cluster.rpc_timeout_s)
            except grpc.RpcError as e:
                code = _code(e)
                error = SluiceError(code, e.details() or "")
                retriable = code in _RETRIABLE_CODES or e.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                if not retriable or time.monotonic() >= deadline:
                    raise error from e
            sleep_until_or(deadline, backoff(attempt))

    def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int = 3,
        retention_ms: Optional[int] = None,
        retention_bytes: Optional[int] = None,
    ) -> admin_pb2.TopicInfo:
        config = admin_pb2.TopicConfig()
        if retention_ms is not None:
            config.retention_ms = retention_ms
        if retention_bytes is not None:
            config.retention_bytes = retention_bytes
        request = admin_pb2.CreateTopicRequest(
            name=name, partitions=partitions, replication_factor=replication_factor, config=config
        )
        return self._call("CreateTopic", request).topic

    def delete_topic(self, name: str) -> None:
        self._call("DeleteTopic", admin_pb2.DeleteTopicRequest(name=name))

    def list_topics(self, consistent: bool = False) -> List[admin_pb2.TopicInfo]:
        return list(self._call("ListTopics", admin_pb2.ListTopicsRequest(consistent=consistent)).topics)

    def describe_topic(self, name: str, consistent: bool = False) -> admin_pb2.TopicInfo:
        return self._call("DescribeTopic", admin_pb2.DescribeTopicRequest(name=name, consistent=consistent)).topic

    def cluster_status(self) -> admin_pb2.ClusterStatusResponse:
        return self._call("ClusterStatus", admin_pb2.ClusterStatusRequest())
