//! Conversions between openraft's messages and the peer-RPC protobuf (`sluice.raft.v1`).
//! Entries travel in the storage encoding, so converting them is a lookup, not a re-encode.

use openraft::LogId;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, TransferLeaderResponse, VoteRequest,
    VoteResponse,
};
use sluice_proto::raft as pb;

use crate::codec::{self, CodecError};
use crate::types::GroupConfig;

type Vote = openraft::impls::Vote<LeaderId<u64, u64>>;

fn missing(what: &'static str) -> CodecError {
    CodecError::Invalid { what, detail: "missing".into() }
}

pub(crate) fn leader_id_to_pb(id: &LeaderId<u64, u64>) -> pb::LeaderId {
    pb::LeaderId { term: id.term, node_id: id.node_id }
}

pub(crate) fn leader_id_from_pb(id: Option<pb::LeaderId>) -> Result<LeaderId<u64, u64>, CodecError> {
    let id = id.ok_or_else(|| missing("leader id"))?;
    Ok(LeaderId { term: id.term, node_id: id.node_id })
}

pub(crate) fn log_id_to_pb(id: &LogId<LeaderId<u64, u64>>) -> pb::LogId {
    pb::LogId { leader_id: Some(leader_id_to_pb(&id.leader_id)), index: id.index }
}

pub(crate) fn log_id_from_pb(id: Option<pb::LogId>) -> Result<Option<LogId<LeaderId<u64, u64>>>, CodecError> {
    id.map(|id| Ok(LogId { leader_id: leader_id_from_pb(id.leader_id)?, index: id.index })).transpose()
}

pub(crate) fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote { leader_id: Some(leader_id_to_pb(&vote.leader_id)), committed: vote.committed }
}

pub(crate) fn vote_from_pb(vote: Option<pb::Vote>) -> Result<Vote, CodecError> {
    let vote = vote.ok_or_else(|| missing("vote"))?;
    Ok(Vote { leader_id: leader_id_from_pb(vote.leader_id)?, committed: vote.committed })
}

pub(crate) fn vote_request_to_pb<C: GroupConfig>(
    group_id: u64,
    req: &VoteRequest<C>,
    pre_vote: bool,
) -> pb::VoteRequest {
    pb::VoteRequest {
        group_id,
        vote: Some(vote_to_pb(&req.vote)),
        last_log_id: req.last_log_id.as_ref().map(log_id_to_pb),
        pre_vote,
        leadership_transfer: req.leadership_transfer,
    }
}

pub(crate) fn vote_request_from_pb<C: GroupConfig>(
    req: pb::VoteRequest,
) -> Result<VoteRequest<C>, CodecError> {
    Ok(VoteRequest {
        vote: vote_from_pb(req.vote)?,
        last_log_id: log_id_from_pb(req.last_log_id)?,
        leadership_transfer: req.leadership_transfer,
    })
}

pub(crate) fn vote_response_to_pb<C: GroupConfig>(resp: &VoteResponse<C>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: resp.last_log_id.as_ref().map(log_id_to_pb),
    }
}

pub(crate) fn vote_response_from_pb<C: GroupConfig>(
    resp: pb::VoteResponse,
) -> Result<VoteResponse<C>, CodecError> {
    Ok(VoteResponse {
        vote: vote_from_pb(resp.vote)?,
        vote_granted: resp.vote_granted,
        last_log_id: log_id_from_pb(resp.last_log_id)?,
    })
}

pub(crate) fn transfer_request_to_pb<C: GroupConfig>(
    group_id: u64,
    req: &TransferLeaderRequest<C>,
) -> pb::TransferLeaderRequest {
    pb::TransferLeaderRequest {
        group_id,
        from_leader: Some(vote_to_pb(req.from_leader())),
        to: *req.to_node_id(),
        last_log_id: req.last_log_id().map(log_id_to_pb),
    }
}

pub(crate) fn transfer_request_from_pb<C: GroupConfig>(
    req: pb::TransferLeaderRequest,
) -> Result<TransferLeaderRequest<C>, CodecError> {
    Ok(TransferLeaderRequest::new(vote_from_pb(req.from_leader)?, req.to, log_id_from_pb(req.last_log_id)?))
}

pub(crate) fn transfer_response_to_pb<C: GroupConfig>(
    resp: &TransferLeaderResponse<C>,
) -> pb::TransferLeaderResponse {
    let rejected = match resp {
        Ok(()) => Vec::new(),
        Err(e) => serde_json::to_vec(e).expect("a transfer rejection is always serializable"),
    };
    pb::TransferLeaderResponse { rejected: rejected.into() }
}

pub(crate) fn transfer_response_from_pb<C: GroupConfig>(
    resp: &pb::TransferLeaderResponse,
) -> Result<TransferLeaderResponse<C>, CodecError> {
    if resp.rejected.is_empty() {
        return Ok(Ok(()));
    }
    serde_json::from_slice(&resp.rejected)
        .map(Err)
        .map_err(|e| CodecError::Invalid { what: "transfer rejection", detail: e.to_string() })
}

pub(crate) fn append_request_to_pb<C: GroupConfig>(
    group_id: u64,
    req: &AppendEntriesRequest<C>,
) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        group_id,
        vote: Some(vote_to_pb(&req.vote)),
        prev_log_id: req.prev_log_id.as_ref().map(log_id_to_pb),
        entries: req.entries.iter().map(codec::encode_entry::<C>).collect(),
        leader_commit: req.leader_commit.as_ref().map(log_id_to_pb),
    }
}

pub(crate) fn append_request_from_pb<C: GroupConfig>(
    req: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<C>, CodecError> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(req.vote)?,
        prev_log_id: log_id_from_pb(req.prev_log_id)?,
        entries: req.entries.into_iter().map(codec::decode_entry::<C>).collect::<Result<_, _>>()?,
        leader_commit: log_id_from_pb(req.leader_commit)?,
    })
}

pub(crate) fn append_response_to_pb<C: GroupConfig>(
    resp: &AppendEntriesResponse<C>,
) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::{Conflict, PartialSuccess, Result as R, Success};
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(Success {}),
        AppendEntriesResponse::PartialSuccess(matching) => {
            R::PartialSuccess(PartialSuccess { matching: matching.as_ref().map(log_id_to_pb) })
        }
        AppendEntriesResponse::Conflict => R::Conflict(Conflict {}),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_pb(vote)),
    };
    pb::AppendEntriesResponse { result: Some(result) }
}

pub(crate) fn append_response_from_pb<C: GroupConfig>(
    resp: pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<C>, CodecError> {
    use pb::append_entries_response::Result as R;
    Ok(match resp.result.ok_or_else(|| missing("append entries result"))? {
        R::Success(_) => AppendEntriesResponse::Success,
        R::PartialSuccess(p) => AppendEntriesResponse::PartialSuccess(log_id_from_pb(p.matching)?),
        R::Conflict(_) => AppendEntriesResponse::Conflict,
        R::HigherVote(vote) => AppendEntriesResponse::HigherVote(vote_from_pb(Some(vote))?),
    })
}
