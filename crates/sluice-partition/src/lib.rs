//! The partition state machine: what applying a committed batch means.
//!
//! Applying assigns offsets (the next offset advances by the batch's record count) and updates the
//! idempotent-producer state that makes retried batches duplicate-free. The records themselves are
//! never copied here: the Raft log is the message log. Pure, sync, no IO, no Raft, no runtime; the
//! Raft glue (`sluice-raft`) persists [`PartitionState`] and feeds it committed batches.
//! Main types: [`PartitionState`], [`BatchOutcome`].

mod sabotage;
mod state;

pub use state::{
    AppendError, BatchOutcome, PRODUCER_DEDUP_WINDOW, PRODUCERS_MAX, PartitionState, ProducerState,
};
