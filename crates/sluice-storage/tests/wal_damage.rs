//! A damaged write-ahead log (decision 0014). A torn tail, a write cut short after the last
//! fsync, is dropped and the node starts with everything before it. Damage before the tail, a
//! bad disk, makes the open fail: RocksDB's default recovery would stop replaying at the damage
//! and silently drop every later entry, a Raft vote among them, after which the node could vote
//! twice in one term.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use sluice_storage::{Durability, RaftStateKey, Storage, StorageOptions};
use sluice_types::GroupId;

const ENTRIES: u64 = 200;

fn entry(index: u64) -> Bytes {
    Bytes::from(format!("entry {index} {}", "x".repeat(200)))
}

/// Writes `ENTRIES` fsynced entries and a vote after each tenth, then closes the storage: the
/// memtables are not flushed, so everything lives in the write-ahead log alone.
async fn write_log(dir: &Path) {
    let storage = Storage::open(dir, &StorageOptions::default()).unwrap();
    let group = storage.create_group(GroupId(1)).await.unwrap();
    for i in 1..=ENTRIES {
        let mut batch = group.batch();
        batch.put_entry(i, entry(i));
        if i % 10 == 0 {
            batch.put_raft_state(RaftStateKey::Vote, Bytes::from(format!("vote {i}")));
        }
        group.write(batch, Durability::Fsync).await.unwrap();
    }
    storage.shutdown();
}

/// The newest write-ahead log file, which holds the entries.
fn wal(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let newest = logs.pop().expect("a write-ahead log file");
    let len = std::fs::metadata(&newest).unwrap().len();
    assert!(len > ENTRIES * 200, "the entries are in the log ({len} bytes), not flushed away");
    newest
}

#[tokio::test]
async fn a_torn_tail_is_dropped_and_everything_before_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path()).await;
    let wal = wal(dir.path());
    let len = std::fs::metadata(&wal).unwrap().len();
    // Cut the last record short, as a crash in the middle of the last write would.
    std::fs::OpenOptions::new().write(true).open(&wal).unwrap().set_len(len - 40).unwrap();

    let storage = Storage::open(dir.path(), &StorageOptions::default()).expect("a torn tail is not damage");
    let group = storage.group(GroupId(1)).unwrap();
    let entries = group.entries(1, u64::MAX, usize::MAX).unwrap();
    assert!(entries.len() as u64 >= ENTRIES - 1, "only the torn write may be missing: {}", entries.len());
    for (n, (i, bytes)) in entries.iter().enumerate() {
        assert_eq!(*i, n as u64 + 1, "no hole");
        assert_eq!(*bytes, entry(*i), "entry {i} intact");
    }
    assert_eq!(group.raft_state(RaftStateKey::Vote).unwrap().unwrap(), "vote 190");
}

#[tokio::test]
async fn damage_before_the_tail_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path()).await;
    let wal = wal(dir.path());
    let mut bytes = std::fs::read(&wal).unwrap();
    // A flipped bit a third of the way in: entries and votes after it are intact on disk, and a
    // recovery that stopped here would drop them all.
    let at = bytes.len() / 3;
    bytes[at] ^= 0x10;
    std::fs::write(&wal, bytes).unwrap();

    match Storage::open(dir.path(), &StorageOptions::default()) {
        Err(e) => assert!(e.to_string().to_lowercase().contains("corruption"), "{e}"),
        Ok(storage) => {
            let group = storage.group(GroupId(1)).unwrap();
            let kept = group.entries(1, u64::MAX, usize::MAX).unwrap().len();
            panic!("opened a damaged log, keeping {kept} of {ENTRIES} entries");
        }
    }
}
