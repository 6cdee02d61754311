//! The metadata registry's state machine (group 0): the pure `sluice_meta::MetaState`, persisted
//! whole after every applied batch of entries (it is small and changes rarely) and snapshotted at
//! the apply point like any ordinary Raft state machine.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use sluice_meta::{MetaResponse, MetaState};
use sluice_storage::{AppliedKey, Durability, GroupStorage};
use tokio::sync::watch;

use crate::log_store::io_error;
use crate::snapshot_store;
use crate::types::MetaRaft;

type C = MetaRaft;

/// The registry as of one applied entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaView {
    pub last_applied: Option<LogIdOf<C>>,
    pub membership: StoredMembershipOf<C>,
    pub state: MetaState,
}

impl MetaView {
    fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("meta views are always serializable"))
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, io::Error> {
        serde_json::from_slice(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

pub struct MetaStateMachine {
    storage: GroupStorage,
    view: MetaView,
    published: watch::Sender<Arc<MetaView>>,
}

impl std::fmt::Debug for MetaStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStateMachine")
            .field("last_applied", &self.view.last_applied)
            .finish_non_exhaustive()
    }
}

impl MetaStateMachine {
    pub fn open(storage: GroupStorage) -> Result<Self, io::Error> {
        let view = match storage.applied(AppliedKey::State).map_err(io_error)? {
            Some(bytes) => MetaView::from_bytes(&bytes)?,
            None => MetaView::default(),
        };
        let (published, _) = watch::channel(Arc::new(view.clone()));
        Ok(MetaStateMachine { storage, view, published })
    }

    /// The applied registry, updated after every apply: what the node's reconciler and the
    /// admin service read.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetaView>> {
        self.published.subscribe()
    }

    async fn persist(&self, durability: Durability) -> Result<(), io::Error> {
        let mut batch = self.storage.batch();
        batch.put_applied(AppliedKey::State, self.view.to_bytes());
        self.storage.write(batch, durability).await.map_err(io_error)
    }
}

pub struct MetaSnapshotBuilder {
    storage: GroupStorage,
    view: MetaView,
}

impl std::fmt::Debug for MetaSnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaSnapshotBuilder")
            .field("last_applied", &self.view.last_applied)
            .finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<C> for MetaSnapshotBuilder {
    type SnapshotData = Bytes;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, Bytes>, io::Error> {
        let meta = SnapshotMetaOf::<C> {
            last_log_id: self.view.last_applied,
            last_membership: self.view.membership.clone(),
        };
        let data = Bytes::from(self.view.state.to_bytes());
        let mut batch = self.storage.batch();
        batch.put_applied(AppliedKey::Snapshot, snapshot_store::encode::<C>(&meta, &data));
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)?;
        Ok(openraft::storage::Snapshot { meta, snapshot: data })
    }
}

impl RaftStateMachine<C> for MetaStateMachine {
    type SnapshotData = Bytes;
    type SnapshotBuilder = MetaSnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((self.view.last_applied, self.view.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let mut replies = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            self.view.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => MetaResponse::Done,
                EntryPayload::Membership(m) => {
                    self.view.membership = StoredMembershipOf::<C>::new(Some(entry.log_id), m);
                    MetaResponse::Done
                }
                EntryPayload::Normal(request) => self.view.state.apply(request.0),
            };
            replies.push((responder, response));
        }
        sluice_storage::crash_point("meta_before_assign");
        // Not fsynced: the log is, and re-applying it rebuilds this after a crash.
        self.persist(Durability::Buffered).await?;
        self.published.send_replace(Arc::new(self.view.clone()));
        for (responder, response) in replies {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        MetaSnapshotBuilder { storage: self.storage.clone(), view: self.view.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: Bytes) -> Result<(), io::Error> {
        let state = MetaState::from_bytes(&snapshot)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("meta snapshot: {e}")))?;
        self.view =
            MetaView { last_applied: meta.last_log_id, membership: meta.last_membership.clone(), state };
        let mut batch = self.storage.batch();
        batch.put_applied(AppliedKey::State, self.view.to_bytes());
        batch.put_applied(AppliedKey::Snapshot, snapshot_store::encode::<C>(meta, &snapshot));
        self.storage.write(batch, Durability::Fsync).await.map_err(io_error)?;
        self.published.send_replace(Arc::new(self.view.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, Bytes>>, io::Error> {
        snapshot_store::load::<C>(&self.storage)
    }
}
