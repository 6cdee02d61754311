//! Generated protobuf and tonic code: the client API (`sluice.v1`) and the peer RPC between nodes
//! (`sluice.raft.v1`). No logic lives here; conversions live with the types they convert.

#![allow(clippy::pedantic, missing_debug_implementations, unreachable_pub)]

/// The generated modules, nested as their protobuf packages are, so cross-package references
/// resolve.
pub mod sluice {
    pub mod v1 {
        tonic::include_proto!("sluice.v1");
    }
    pub mod node {
        pub mod v1 {
            tonic::include_proto!("sluice.node.v1");
        }
    }
    pub mod raft {
        pub mod v1 {
            tonic::include_proto!("sluice.raft.v1");
        }
    }
}

/// Node-to-node control: registration, heartbeats, group status.
pub use sluice::node::v1 as node;
/// Peer RPC between nodes: Raft messages of every group, multiplexed.
pub use sluice::raft::v1 as raft;
/// The client API.
pub use sluice::v1;

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message;
    use sluice_types::{Compression, Record, RecordBatch};

    /// The hand-written codec in sluice-types and the generated code read the same layout.
    #[test]
    fn generated_record_batch_decodes_the_codec_bytes() {
        let batch = RecordBatch {
            producer_id: sluice_types::ProducerId(5),
            base_sequence: sluice_types::Sequence(9),
            compression: Compression::None,
            records: vec![Record {
                key: Some(Bytes::from_static(b"k")),
                value: Bytes::from_static(b"v"),
                ..Record::default()
            }],
            ..RecordBatch::default()
        };
        let bytes = batch.encode().unwrap();
        let generated = super::v1::RecordBatch::decode(bytes.clone()).unwrap();
        assert_eq!(generated.producer_id, 5);
        assert_eq!(generated.base_sequence, 9);
        assert_eq!(generated.record_count, 1);
        assert_eq!(generated.crc32c, crc32c::crc32c(&bytes[5..]));
        let record = super::v1::Record::decode_length_delimited(generated.records).unwrap();
        assert_eq!(record.value, Bytes::from_static(b"v"));
    }
}
