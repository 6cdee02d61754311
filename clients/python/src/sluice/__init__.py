"""Sluice's Python client: ``Producer``, ``Consumer`` (pull) and ``subscribe`` (push), ``Admin``.

    from sluice import Cluster, Producer, Consumer
    cluster = Cluster(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"])
    producer = Producer(cluster)
    producer.send("orders", b"hello", key=b"customer-7").result()
    for record in Consumer(cluster, "orders", 0).poll():
        print(record.offset, record.key, record.value)
"""

from sluice.admin import Admin
from sluice.batch import (
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_ZSTD,
    BatchError,
    Record,
    decode_batch,
    encode_batch,
    partition_for_key,
)
from sluice.cluster import Cluster
from sluice.consumer import EARLIEST, LATEST, Consumer, list_offsets, offset_for_time, subscribe
from sluice.errors import DeliveryTimeout, SluiceError
from sluice.producer import Delivery, Producer

__all__ = [
    "Admin",
    "BatchError",
    "COMPRESSION_LZ4",
    "COMPRESSION_NONE",
    "COMPRESSION_ZSTD",
    "Cluster",
    "Consumer",
    "Delivery",
    "DeliveryTimeout",
    "EARLIEST",
    "LATEST",
    "Producer",
    "Record",
    "SluiceError",
    "decode_batch",
    "encode_batch",
    "list_offsets",
    "offset_for_time",
    "partition_for_key",
    "subscribe",
]
