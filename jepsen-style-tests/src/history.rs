//! The history: every client operation as an invocation and a completion (CHAOS.md §1.1).
//!
//! Keys are small integers, each one partition of the test topic; values are unique integers,
//! so a value names the one send that wrote it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub type Key = u32;
pub type Value = u64;
pub type Offset = u64;
pub type Process = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    /// Definitely happened.
    Ok,
    /// Definitely did not happen (refused before anything was written).
    Fail,
    /// Unknown: a timeout, a lost connection. The process is retired afterwards.
    Info,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    Send,
    Poll,
    Assign,
    Crash,
    /// The servers' log start and high watermark per key, asked once every producer has
    /// finished (the final drain reads up to them).
    #[serde(rename = "list-offsets")]
    ListOffsets,
}

/// One `[send k v]` micro-operation; `offset` is filled in by an ok completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub key: Key,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<Offset>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpValue {
    Send(Vec<Sent>),
    /// Per key, the `(offset, value)` pairs in the order the poll returned them.
    Poll(BTreeMap<Key, Vec<(Offset, Value)>>),
    Assign {
        keys: Vec<Key>,
        seek_to_beginning: bool,
    },
    Crash,
    /// Per key, `(log start, high watermark)`: every offset in between holds exactly one record.
    Offsets(BTreeMap<Key, (Offset, Offset)>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub index: u64,
    pub time_ns: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: F,
    pub value: OpValue,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Records operations from many tasks, in the order they happened, with a shared clock.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    /// `start` on `CLOCK_MONOTONIC`, in ns: other processes' logs (the lazy filesystem's fsyncs)
    /// use that clock.
    start_mono_ns: u128,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let mono_now = u128::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000
            + u128::try_from(now.tv_nsec).unwrap_or(0);
        let start_mono_ns = mono_now.saturating_sub(start.elapsed().as_nanos());
        Recorder { start, start_mono_ns, ops: Mutex::new(Vec::new()) }
    }

    pub fn start_mono_ns(&self) -> u128 {
        self.start_mono_ns
    }

    /// Nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn record(&self, process: Process, kind: OpType, f: F, value: OpValue, error: Option<String>) {
        let mut ops = self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The clock is read under the lock so that index order and time order agree.
        let time_ns = self.now_ns();
        let index = ops.len() as u64;
        ops.push(Op { index, time_ns, process, kind, f, value, error });
    }

    pub fn snapshot(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Writes the history as one JSON object per line.
pub fn write_jsonl(path: &Path, ops: &[Op]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Op>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(anyhow::Error::from))
        .collect()
}
