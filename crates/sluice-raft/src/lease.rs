//! openraft's leader lease, renewed on demand.
//!
//! openraft 0.10 refuses a leader's writes (`ForwardToLeader` with no leader and reason
//! `LeaseExpired`) once it has heard from no quorum within `election_timeout_max`. A partition
//! leader that slept through an idle period (hibernation stops its heartbeats) is in that state
//! although nothing is wrong. A write that finds it so renews the lease with one heartbeat round
//! first, instead of sending its client away with no leader to name. (The registry never
//! hibernates and keeps its lease with its own `Noop`s over slow links, decision 0009.)

use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;

use crate::types::GroupConfig;

/// If `node` believes it leads a group of several voters and has heard from no quorum within
/// `lease`, sends a heartbeat round now and waits, at most one `lease`, until a quorum has
/// acknowledged a round sent after this call (or another node leads). Whatever the outcome the
/// write that follows is judged by openraft as before: a leader that is cut off or deposed is
/// still refused.
pub(crate) async fn renew_if_expired<C, SM>(raft: &openraft::Raft<C, SM>, node: u64, lease: Duration)
where
    C: GroupConfig,
    SM: RaftStateMachine<C>,
{
    let expired = |m: &openraft::RaftMetrics<C>, within: Duration| {
        m.current_leader == Some(node)
            && m.membership_config.membership().voter_ids().count() > 1
            && m.last_quorum_acked.as_ref().is_none_or(|acked| openraft::Instant::elapsed(&**acked) > within)
    };
    {
        use openraft::type_config::async_runtime::WatchReceiver as _;
        if !expired(&raft.metrics().borrow_watched(), lease) {
            return;
        }
    }
    let asked = Instant::now();
    if raft.trigger().heartbeat().await.is_err() {
        return;
    }
    let renewed = move |m: &openraft::RaftMetrics<C>| !expired(m, asked.elapsed());
    // A timeout here is not an error of its own: the write reports what openraft then says.
    let _ = raft.wait(Some(lease)).metrics(renewed, "a renewed leader lease").await;
}
