//! The shared test vectors every Sluice client must compute (clients/test-vectors.json): the
//! key-to-partition hash and batch encodings, byte for byte. The Python client checks the same
//! file, so the two SDKs agree on where a key goes and what a batch is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use serde_json::Value;
use sluice_client::partition_for_key;
use sluice_types::{ProducerEpoch, ProducerId, Record, RecordBatch, RecordHeader, Sequence, ValidatedBatch};

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/test-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn crc32c_is_castagnoli() {
    for v in vectors()["crc32c"].as_array().unwrap() {
        assert_eq!(
            u64::from(crc32c::crc32c(&unhex(v["data_hex"].as_str().unwrap()))),
            v["crc32c"].as_u64().unwrap()
        );
    }
}

#[test]
fn keys_go_to_the_partitions_every_client_computes() {
    let cases = vectors()["partition_for_key"].as_array().unwrap().clone();
    assert!(cases.len() >= 40, "the vectors cover many keys and partition counts");
    for v in cases {
        let key = unhex(v["key_hex"].as_str().unwrap());
        let partitions = u32::try_from(v["partitions"].as_u64().unwrap()).unwrap();
        let expected = u32::try_from(v["partition"].as_u64().unwrap()).unwrap();
        assert_eq!(partition_for_key(&key, partitions), expected, "key {key:?} over {partitions} partitions");
    }
}

#[test]
fn batches_encode_byte_for_byte_as_every_client_encodes_them() {
    for v in vectors()["batches"].as_array().unwrap() {
        let records = v["records"].as_array().unwrap();
        let base_ts = records[0]["timestamp_ms"].as_i64().unwrap();
        let batch = RecordBatch {
            producer_id: ProducerId(v["producer_id"].as_u64().unwrap()),
            producer_epoch: ProducerEpoch(u32::try_from(v["producer_epoch"].as_u64().unwrap()).unwrap()),
            base_sequence: Sequence(v["base_sequence"].as_u64().unwrap()),
            base_timestamp_ms: base_ts,
            records: records
                .iter()
                .map(|r| Record {
                    timestamp_delta_ms: r["timestamp_ms"].as_i64().unwrap() - base_ts,
                    key: r["key_hex"].as_str().map(|k| Bytes::from(unhex(k))),
                    value: Bytes::from(unhex(r["value_hex"].as_str().unwrap())),
                    headers: r["headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|h| RecordHeader {
                            key: h[0].as_str().unwrap().to_string(),
                            value: Bytes::from(unhex(h[1].as_str().unwrap())),
                        })
                        .collect(),
                })
                .collect(),
            ..RecordBatch::default()
        };
        let expected = unhex(v["encoded_hex"].as_str().unwrap());
        let encoded = batch.encode().unwrap();
        assert_eq!(encoded.as_ref(), expected.as_slice(), "{}", v["name"]);
        let validated = ValidatedBatch::validate(Bytes::from(expected)).unwrap();
        assert_eq!(validated.header().record_count as usize, records.len(), "{}", v["name"]);
    }
}
