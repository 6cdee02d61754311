//! `sluice-lazyfs`: the fault tests' power-loss nemesis (docs/CHAOS.md, scenario 12).
//!
//! A FUSE filesystem over a backing directory. Names, sizes set by truncation and directories
//! go to the backing directory at once; written data stays in this process's memory until the
//! file is fsynced (or until the unsynced total passes a bound, as a kernel's writeback would
//! write it). Killing the process and unmounting is therefore a power cut: whatever a node
//! wrote and did not fsync is gone, and what it fsynced is on the backing directory. A page
//! cache kept by `kill -9` cannot hide a missing fsync here.
//!
//! The idea is Jepsen's lazyfs; this is a small Rust version of it, written for this project.

pub mod fs;
pub mod mount;
pub mod overlay;
