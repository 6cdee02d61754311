//! How a group's current snapshot (its metadata and data) is kept in the applied column family:
//! `meta length u32 | meta (JSON) | data`. Shared by every state machine.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::RaftTypeConfig;
use openraft::type_config::alias::SnapshotMetaOf;

pub(crate) fn encode<C: RaftTypeConfig>(meta: &SnapshotMetaOf<C>, data: &Bytes) -> Bytes {
    let meta = serde_json::to_vec(meta).expect("snapshot meta is always serializable");
    let mut out = BytesMut::with_capacity(4 + meta.len() + data.len());
    out.put_u32(u32::try_from(meta.len()).expect("snapshot meta is small"));
    out.put_slice(&meta);
    out.put_slice(data);
    out.freeze()
}

pub(crate) fn decode<C: RaftTypeConfig>(mut bytes: Bytes) -> Result<(SnapshotMetaOf<C>, Bytes), io::Error> {
    let invalid =
        |detail: &str| io::Error::new(io::ErrorKind::InvalidData, format!("stored snapshot: {detail}"));
    if bytes.remaining() < 4 {
        return Err(invalid("truncated"));
    }
    let len = bytes.get_u32() as usize;
    if bytes.remaining() < len {
        return Err(invalid("truncated meta"));
    }
    let meta = serde_json::from_slice(&bytes.split_to(len)).map_err(|e| invalid(&e.to_string()))?;
    Ok((meta, bytes))
}

/// The group's current snapshot, if one was built or installed.
pub(crate) fn load<C: RaftTypeConfig>(
    storage: &sluice_storage::GroupStorage,
) -> Result<Option<openraft::type_config::alias::SnapshotOf<C, Bytes>>, io::Error> {
    match storage.applied(sluice_storage::AppliedKey::Snapshot).map_err(crate::log_store::io_error)? {
        Some(bytes) => {
            let (meta, snapshot) = decode::<C>(bytes)?;
            Ok(Some(openraft::storage::Snapshot { meta, snapshot }))
        }
        None => Ok(None),
    }
}
