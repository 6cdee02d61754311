"""The shared vectors (clients/test-vectors.json) the Rust SDK checks too, and the batch codec's
refusals of bad input."""

import json
import struct
from pathlib import Path

import pytest

from sluice import BatchError, Record, decode_batch, encode_batch, partition_for_key
from sluice.batch import BATCH_BYTES_MAX, COMPRESSION_LZ4, COMPRESSION_ZSTD, crc32c

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "test-vectors.json").read_text())


def records_of(vector):
    return [
        Record(
            value=bytes.fromhex(r["value_hex"]),
            key=None if r["key_hex"] is None else bytes.fromhex(r["key_hex"]),
            headers=[(k, bytes.fromhex(v)) for k, v in r["headers"]],
            timestamp_ms=r["timestamp_ms"],
        )
        for r in vector["records"]
    ]


def test_crc32c_is_castagnoli():
    for v in VECTORS["crc32c"]:
        assert crc32c(bytes.fromhex(v["data_hex"])) == v["crc32c"]


@pytest.mark.parametrize("v", VECTORS["partition_for_key"], ids=lambda v: f"{v['key_hex'][:8]}/{v['partitions']}")
def test_keys_go_to_the_same_partitions_as_in_every_client(v):
    assert partition_for_key(bytes.fromhex(v["key_hex"]), v["partitions"]) == v["partition"]


@pytest.mark.parametrize("v", VECTORS["batches"], ids=lambda v: v["name"])
def test_batches_encode_byte_for_byte_and_decode_back(v):
    records = records_of(v)
    encoded = encode_batch(records, v["producer_id"], v["producer_epoch"], v["base_sequence"])
    assert encoded.hex() == v["encoded_hex"]
    decoded = decode_batch(bytes.fromhex(v["encoded_hex"]), base_offset=100)
    assert [(r.key, r.value, r.headers, r.timestamp_ms) for r in decoded] == [
        (r.key, r.value, r.headers, r.timestamp_ms) for r in records
    ]
    assert [r.offset for r in decoded] == list(range(100, 100 + len(records)))


@pytest.mark.parametrize("codec", [COMPRESSION_LZ4, COMPRESSION_ZSTD], ids=["lz4", "zstd"])
def test_compressed_batches_round_trip(codec):
    records = [Record(value=b"x" * 1000 + bytes([i]), key=b"k") for i in range(50)]
    encoded = encode_batch(records, compression=codec)
    assert len(encoded) < 2000, "fifty near-identical records compress"
    assert [r.value for r in decode_batch(encoded)] == [r.value for r in records]


def test_bad_batches_are_refused():
    good = encode_batch([Record(value=b"ok")])
    flipped = bytearray(good)
    flipped[-1] ^= 0x40
    with pytest.raises(BatchError, match="checksum"):
        decode_batch(bytes(flipped))
    with pytest.raises(BatchError, match="crc32c field"):
        decode_batch(b"definitely not a batch")
    with pytest.raises(BatchError, match="at least one record"):
        encode_batch([])
    with pytest.raises(BatchError, match="limit"):
        encode_batch([Record(value=b"x" * (2 * 1024 * 1024))])
    with pytest.raises(BatchError, match="limit"):
        encode_batch([Record(value=b"x" * (900 * 1024)) for _ in range(5)])
    assert BATCH_BYTES_MAX == 4 * 1024 * 1024


def test_a_wrong_record_count_is_refused():
    from sluice.v1 import record_pb2

    wire = record_pb2.RecordBatch()
    wire.ParseFromString(encode_batch([Record(value=b"a"), Record(value=b"b")]))
    wire.crc32c = 0
    wire.record_count = 1
    body = wire.SerializeToString()
    with pytest.raises(BatchError, match="says 1 records, payload holds 2"):
        decode_batch(struct.pack("<BI", 0x0D, crc32c(body)) + body)
