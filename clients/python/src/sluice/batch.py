"""The record batch: what a producer sends, the broker stores byte for byte, a consumer reads.

A batch is a protobuf ``RecordBatch`` (proto/sluice/v1/record.proto) with one rule beyond
protobuf: its first five bytes are the tag of field 1 (``0x0D``, fixed32) and the CRC32C of every
byte after them, little-endian. ``records`` holds each ``Record`` length-delimited (a varint
length, then the message), one after another, then compressed as a whole.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple

import crc32c as _crc32c
from google.protobuf.internal import decoder as _decoder
from google.protobuf.internal import encoder as _encoder

from sluice.v1 import record_pb2

CRC_TAG = 0x0D
CRC_PREFIX_BYTES = 5
BATCH_VERSION = 1

# The broker's limits (crates/sluice-types/src/limits.rs; docs/PROTOCOL.md lists them all).
BATCH_BYTES_MAX = 4 * 1024 * 1024
BATCH_UNCOMPRESSED_BYTES_MAX = 16 * 1024 * 1024
BATCH_RECORDS_MAX = 1 << 20
RECORD_BYTES_MAX = 1024 * 1024

COMPRESSION_NONE = record_pb2.COMPRESSION_NONE
COMPRESSION_LZ4 = record_pb2.COMPRESSION_LZ4
COMPRESSION_ZSTD = record_pb2.COMPRESSION_ZSTD


class BatchError(ValueError):
    """A batch that cannot be built or read; nothing of it is used."""


@dataclass
class Record:
    """One record. ``offset`` and ``partition`` are set on records read back from the log."""

    value: bytes
    key: Optional[bytes] = None
    headers: List[Tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int = 0
    offset: Optional[int] = None
    partition: Optional[int] = None


def crc32c(data: bytes) -> int:
    return _crc32c.crc32c(data)


def _compress(codec: int, data: bytes) -> bytes:
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_LZ4:
        import lz4.block  # optional: pip install sluice-client[compression]

        return lz4.block.compress(data, store_size=False)
    if codec == COMPRESSION_ZSTD:
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    raise BatchError(f"unknown compression codec {codec}")


def _decompress(codec: int, data: bytes, size: int) -> bytes:
    if size > BATCH_UNCOMPRESSED_BYTES_MAX:
        raise BatchError(f"uncompressed size {size} exceeds the limit of {BATCH_UNCOMPRESSED_BYTES_MAX}")
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_LZ4:
        import lz4.block

        return lz4.block.decompress(data, uncompressed_size=size)
    if codec == COMPRESSION_ZSTD:
        import zstandard

        return zstandard.ZstdDecompressor().decompress(data, max_output_size=size)
    raise BatchError(f"unknown compression codec {codec}")


def encode_batch(
    records: Sequence[Record],
    producer_id: int = 0,
    producer_epoch: int = 0,
    base_sequence: int = 0,
    compression: int = COMPRESSION_NONE,
) -> bytes:
    """Encodes records as one batch; timestamps are kept relative to the first record's."""
    if not records:
        raise BatchError("a batch holds at least one record")
    if len(records) > BATCH_RECORDS_MAX:
        raise BatchError(f"a batch holds at most {BATCH_RECORDS_MAX} records")
    base_ts = records[0].timestamp_ms
    plain = bytearray()
    for r in records:
        message = record_pb2.Record(
            timestamp_delta_ms=r.timestamp_ms - base_ts,
            value=r.value,
            headers=[record_pb2.RecordHeader(key=k, value=v) for k, v in r.headers],
        )
        if r.key is not None:
            message.key = r.key
        body = message.SerializeToString()
        framed = _encoder._VarintBytes(len(body)) + body
        if len(framed) > RECORD_BYTES_MAX:
            raise BatchError(f"a record of {len(framed)} bytes exceeds the limit of {RECORD_BYTES_MAX}")
        plain += framed
    if len(plain) > BATCH_UNCOMPRESSED_BYTES_MAX:
        raise BatchError(f"batch of {len(plain)} bytes exceeds the limit of {BATCH_UNCOMPRESSED_BYTES_MAX}")
    wire = record_pb2.RecordBatch(
        version=BATCH_VERSION,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        record_count=len(records),
        base_timestamp_ms=base_ts,
        compression=compression,
        uncompressed_bytes=len(plain),
        records=_compress(compression, bytes(plain)),
    )
    # crc32c is left at 0, so protobuf writes no field 1; the checksum goes in front by hand.
    body = wire.SerializeToString(deterministic=True)
    out = struct.pack("<BI", CRC_TAG, crc32c(body)) + body
    if len(out) > BATCH_BYTES_MAX:
        raise BatchError(f"batch is {len(out)} bytes, more than the limit of {BATCH_BYTES_MAX}")
    return out


def batch_header(data: bytes) -> record_pb2.RecordBatch:
    """Checks the checksum and parses the batch (records still encoded)."""
    if len(data) < CRC_PREFIX_BYTES or data[0] != CRC_TAG:
        raise BatchError("batch does not start with the crc32c field")
    (stored,) = struct.unpack_from("<I", data, 1)
    computed = crc32c(bytes(data[CRC_PREFIX_BYTES:]))
    if stored != computed:
        raise BatchError(f"batch checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")
    wire = record_pb2.RecordBatch()
    try:
        wire.ParseFromString(bytes(data))
    except Exception as e:  # protobuf raises its own DecodeError
        raise BatchError(f"batch is not a valid RecordBatch: {e}") from e
    if wire.version != BATCH_VERSION:
        raise BatchError(f"unsupported batch version {wire.version}")
    return wire


def decode_batch(data: bytes, base_offset: int = 0, partition: Optional[int] = None) -> List[Record]:
    """The records of a stored batch, with their offsets (base_offset + position)."""
    wire = batch_header(data)
    plain = _decompress(wire.compression, wire.records, wire.uncompressed_bytes)
    if len(plain) != wire.uncompressed_bytes:
        raise BatchError(f"uncompressed size {wire.uncompressed_bytes} disagrees with the payload ({len(plain)})")
    records: List[Record] = []
    pos = 0
    while pos < len(plain):
        length, pos = _decoder._DecodeVarint(plain, pos)
        if pos + length > len(plain):
            raise BatchError("record runs past the end of the batch")
        message = record_pb2.Record()
        message.ParseFromString(plain[pos : pos + length])
        pos += length
        records.append(
            Record(
                value=message.value,
                key=message.key if message.HasField("key") else None,
                headers=[(h.key, h.value) for h in message.headers],
                timestamp_ms=wire.base_timestamp_ms + message.timestamp_delta_ms,
                offset=base_offset + len(records),
                partition=partition,
            )
        )
    if len(records) != wire.record_count:
        raise BatchError(f"batch header says {wire.record_count} records, payload holds {len(records)}")
    return records


def decode_batches(batches: Iterable, start: int = 0, partition: Optional[int] = None) -> List[Record]:
    """Records of stored batches (``StoredBatch`` messages) from offset ``start`` on: a fetch's
    first batch may begin before the offset asked for."""
    out: List[Record] = []
    for stored in batches:
        out.extend(r for r in decode_batch(stored.batch, stored.base_offset, partition) if r.offset >= start)
    return out


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition of a keyed record, as every Sluice client computes it: CRC32C (Castagnoli)
    of the key bytes, modulo the partition count."""
    return crc32c(key) % max(partitions, 1)
