//! The registry as this node uses it: its copy of the registry state, proposing changes and
//! consistent reads on the registry leader wherever it is (forwarding written once, here), and
//! which node leads the registry.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_meta::{MetaCommand, MetaResponse, MetaState};
use sluice_proto::node::node_client::NodeClient;
use sluice_proto::node::{ProposeRequest, ReadRegistryRequest};
use sluice_raft::{AppendFailure, MetaGroup};
use sluice_types::NodeId;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::api_error::{ApiError, PeerFailure, leader_hint};
use crate::clients::Clients;
use crate::config::ControllerConfig;

/// How long a registry write or consistent read may take, forwarding included.
const REGISTRY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Leader hints followed per call at most (a stale hint can point at a non-leader).
const FORWARD_HOPS_MAX: usize = 4;
/// How long the registry leader waits before proposing again after openraft refused a proposal
/// because its quorum lease lapsed (an empty `ForwardToLeader`; see `tasks::registry_lease`).
const LEASE_RETRY: Duration = Duration::from_millis(100);
/// The pause between rounds over every controller.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

/// The registry as this node knows it, and the registry index it reflects.
#[derive(Clone, Debug, Default)]
pub struct RegistrySnapshot {
    pub state: Arc<MetaState>,
    pub index: u64,
}

pub struct Registry {
    me: u64,
    my_addr: String,
    controllers: Vec<ControllerConfig>,
    clients: Arc<Clients>,
    /// This node's registry replica, on controllers only.
    meta: Option<MetaGroup>,
    snapshot: watch::Sender<RegistrySnapshot>,
    /// The registry leader named by the last heartbeat answer (0: none); for non-controllers.
    learned_leader: AtomicU64,
    election_timeout_max: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("controller", &self.meta.is_some()).finish_non_exhaustive()
    }
}

fn refused_as_error(response: MetaResponse) -> Result<MetaResponse, ApiError> {
    match response {
        MetaResponse::Refused(e) => Err(ApiError::Meta(e)),
        other => Ok(other),
    }
}

impl Registry {
    pub fn new(
        me: u64,
        my_addr: String,
        controllers: Vec<ControllerConfig>,
        clients: Arc<Clients>,
        meta: Option<MetaGroup>,
        election_timeout_max: Duration,
    ) -> Registry {
        let initial = meta.as_ref().map_or_else(RegistrySnapshot::default, |m| {
            let view = m.view();
            RegistrySnapshot {
                state: Arc::new(view.state.clone()),
                index: view.last_applied.map_or(0, |id| id.index),
            }
        });
        let (snapshot, _) = watch::channel(initial);
        Registry {
            me,
            my_addr,
            controllers,
            clients,
            meta,
            snapshot,
            learned_leader: AtomicU64::new(0),
            election_timeout_max,
        }
    }

    /// This node's registry replica, on controllers.
    pub fn meta(&self) -> Option<&MetaGroup> {
        self.meta.as_ref()
    }

    pub fn controllers(&self) -> &[ControllerConfig] {
        &self.controllers
    }

    pub fn snapshot(&self) -> RegistrySnapshot {
        self.snapshot.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<RegistrySnapshot> {
        self.snapshot.subscribe()
    }

    /// Replaces the registry copy if `index` is newer (non-controllers learn it from heartbeats).
    pub fn offer(&self, state: MetaState, index: u64) {
        self.snapshot.send_if_modified(|current| {
            if index > current.index {
                *current = RegistrySnapshot { state: Arc::new(state), index };
                true
            } else {
                false
            }
        });
    }

    /// Remembers the registry leader a heartbeat answer named.
    pub fn learn_leader(&self, leader: u64) {
        self.learned_leader.store(leader, Ordering::Relaxed);
    }

    /// The registry leader as far as this node knows.
    pub fn leader(&self) -> Option<u64> {
        match &self.meta {
            Some(meta) => meta.metrics().current_leader,
            None => Some(self.learned_leader.load(Ordering::Relaxed)).filter(|l| *l != 0),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.meta.as_ref().is_some_and(|m| m.metrics().current_leader == Some(self.me))
    }

    /// The address of a node, from the controllers list or the registry.
    pub fn addr_of(&self, node: u64) -> Option<String> {
        if node == self.me {
            return Some(self.my_addr.clone());
        }
        if let Some(c) = self.controllers.iter().find(|c| c.id == node) {
            return Some(c.addr.clone());
        }
        self.snapshot.borrow().state.broker(NodeId(node)).map(|b| b.addr.clone())
    }

    /// Where to send a registry call: `hint` first, then the known leader, then every controller.
    pub fn targets(&self, hint: Option<String>) -> Vec<String> {
        let mut targets = Vec::new();
        targets.extend(hint);
        targets.extend(self.leader().and_then(|l| self.addr_of(l)));
        targets.extend(self.controllers.iter().map(|c| c.addr.clone()));
        targets.dedup();
        targets
    }

    fn not_leader(&self, leader: Option<u64>) -> ApiError {
        ApiError::NotLeader { leader_addr: leader.and_then(|l| self.addr_of(l)) }
    }

    /// Proposes a registry change here if this node leads the registry; never forwards.
    pub async fn propose_local(&self, command: MetaCommand) -> Result<MetaResponse, ApiError> {
        let Some(meta) = &self.meta else { return Err(self.not_leader(self.leader())) };
        // A leader cut off from its peers would hold the command forever.
        let deadline = 3 * self.election_timeout_max;
        match tokio::time::timeout(deadline, meta.write(command)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(AppendFailure::NotLeader { leader })) => Err(self.not_leader(leader)),
            Ok(Err(e)) => Err(ApiError::Indeterminate(e)),
            Err(_) => Err(ApiError::CommitTimeout {
                waited_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Proposes a registry change on the registry leader, wherever it is, and returns what
    /// applying it did. A refused command comes back as `ApiError::Meta`.
    pub async fn propose(&self, command: MetaCommand) -> Result<MetaResponse, ApiError> {
        let body: bytes::Bytes = serde_json::to_vec(&command).map_err(ApiError::InvalidCommand)?.into();
        self.on_leader(
            || self.propose_local(command.clone()),
            |mut client, timeout| {
                let mut request = tonic::Request::new(ProposeRequest { command: body.clone() });
                request.set_timeout(timeout);
                async move {
                    let response = client.propose(request).await?.into_inner();
                    Ok(serde_json::from_slice(&response.response).map_err(ApiError::UnreadableAnswer))
                }
            },
        )
        .await
        .and_then(refused_as_error)
    }

    /// The registry as of a linearizable barrier on its leader.
    pub async fn read_consistent(&self) -> Result<RegistrySnapshot, ApiError> {
        self.on_leader(
            || async {
                let Some(meta) = &self.meta else { return Err(self.not_leader(self.leader())) };
                match meta.linearizable_barrier().await {
                    Ok(()) => {
                        let view = meta.view();
                        Ok(RegistrySnapshot {
                            state: Arc::new(view.state.clone()),
                            index: view.last_applied.map_or(0, |id| id.index),
                        })
                    }
                    Err(AppendFailure::NotLeader { leader }) => Err(self.not_leader(leader)),
                    Err(e) => Err(ApiError::Indeterminate(e)),
                }
            },
            |mut client, timeout| {
                let mut request = tonic::Request::new(ReadRegistryRequest {});
                request.set_timeout(timeout);
                async move {
                    let response = client.read_registry(request).await?.into_inner();
                    Ok(MetaState::from_bytes(&response.state)
                        .map(|state| RegistrySnapshot {
                            state: Arc::new(state),
                            index: response.applied_index,
                        })
                        .map_err(ApiError::UnreadableState))
                }
            },
        )
        .await
    }

    /// Runs a registry call on the registry leader: `local` when this node leads, otherwise
    /// `remote` on each target in turn, following leader hints, until one answers or the call's
    /// deadline passes. `remote` fails with a status when the target did not take the call
    /// (unreachable, not the leader), and answers `Ok(result)` once it did, whatever the result.
    async fn on_leader<T, L, LF, R, RF>(&self, mut local: L, mut remote: R) -> Result<T, ApiError>
    where
        L: FnMut() -> LF,
        LF: Future<Output = Result<T, ApiError>>,
        R: FnMut(NodeClient<Channel>, Duration) -> RF,
        RF: Future<Output = Result<Result<T, ApiError>, tonic::Status>>,
    {
        let deadline = Instant::now() + REGISTRY_CALL_TIMEOUT;
        let mut last = None;
        let mut hint = None;
        for _ in 0..FORWARD_HOPS_MAX {
            if Instant::now() > deadline {
                break;
            }
            if self.is_leader() {
                match local().await {
                    Err(ApiError::NotLeader { leader_addr }) => {
                        if leader_addr.is_none() && self.is_leader() {
                            // Still the leader, but its lease lapsed: a renewal may be on its way.
                            tokio::time::sleep(LEASE_RETRY).await;
                        }
                        hint = leader_addr;
                        continue;
                    }
                    other => return other,
                }
            }
            for addr in self.targets(hint.take()) {
                if addr == self.my_addr {
                    continue;
                }
                let Ok(client) = self.clients.node(&addr) else { continue };
                // One target may be a leader that lost its quorum: give it two election timeouts
                // (time for the others to elect), not the whole deadline.
                let timeout =
                    deadline.saturating_duration_since(Instant::now()).min(2 * self.election_timeout_max);
                match remote(client, timeout).await {
                    Ok(answer) => return answer,
                    Err(status) => {
                        if let Some(leader) = leader_hint(&status) {
                            hint = Some(leader);
                            break;
                        }
                        last = Some(PeerFailure {
                            addr,
                            code: status.code(),
                            message: status.message().to_string(),
                        });
                    }
                }
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
        Err(ApiError::NoRegistryLeader { last })
    }
}
