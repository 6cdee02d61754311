//! The partition state machine: what applying a committed batch means.
//!
//! Applying assigns offsets (the next offset advances by the batch's record count) and updates the
//! idempotent-producer state that makes retried batches duplicate-free. The records themselves are
//! never copied here: the Raft log is the message log. Pure, sync, no IO, no Raft, no runtime; the
//! Raft glue (`sluice-raft`) persists [`PartitionState`] (in its own binary encoding) and feeds it
//! committed batches. Nothing here reads the environment: even the fault tests' deliberate bugs
//! ([`Sabotage`]) are passed in.
//! Main types: [`PartitionState`], [`BatchOutcome`].

mod encoding;
mod sabotage;
mod state;

pub use encoding::StateDecodeError;
pub use sabotage::{Sabotage, UnknownSabotage};
pub use state::{
    AppendError, BatchOutcome, PRODUCER_DEDUP_WINDOW, PRODUCERS_MAX, PartitionState, ProducerState,
    SequenceRule,
};
