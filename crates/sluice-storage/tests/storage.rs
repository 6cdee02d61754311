//! Storage behaviour: reads after writes, the group registry, group commit, crash recovery.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_storage::{
    AppliedKey, Durability, OffsetIndexEntry, RaftStateKey, Storage, StorageError, StorageOptions,
};
use sluice_types::{GroupId, Offset};

fn must_open(dir: &std::path::Path) -> Storage {
    Storage::open(dir, &StorageOptions::default()).expect("open storage")
}

fn entry_bytes(group: u64, index: u64) -> Bytes {
    Bytes::from(format!("group {group} entry {index} {}", "x".repeat((index % 7) as usize)))
}

#[tokio::test]
async fn entries_are_readable_in_order_and_bounded_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let storage = must_open(dir.path());
    let g = storage.create_group(GroupId(7)).await.unwrap();
    let mut batch = g.batch();
    for i in 1..=10 {
        batch.put_entry(i, entry_bytes(7, i));
    }
    g.write(batch, Durability::Fsync).await.unwrap();

    let all = g.entries(1, 11, usize::MAX).unwrap();
    assert_eq!(all.iter().map(|(i, _)| *i).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert!(all.iter().all(|(i, b)| *b == entry_bytes(7, *i)));
    assert_eq!(g.entries(3, 5, usize::MAX).unwrap().len(), 2);
    // A byte budget smaller than one entry still returns one entry.
    assert_eq!(g.entries(1, 11, 1).unwrap().len(), 1);
    let ((first, _), (last, _)) = g.log_bounds().unwrap().unwrap();
    assert_eq!((first, last), (1, 10));

    let mut batch = g.batch();
    batch.delete_entries_from(8);
    batch.delete_entries_through(2);
    g.write(batch, Durability::Fsync).await.unwrap();
    let ((first, _), (last, _)) = g.log_bounds().unwrap().unwrap();
    assert_eq!((first, last), (3, 7));
}

#[tokio::test]
async fn groups_do_not_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let storage = must_open(dir.path());
    let a = storage.create_group(GroupId(1)).await.unwrap();
    let b = storage.create_group(GroupId(2)).await.unwrap();
    let mut batch = a.batch();
    batch.put_entry(5, Bytes::from_static(b"a5"));
    a.write(batch, Durability::Fsync).await.unwrap();
    assert!(b.log_bounds().unwrap().is_none());
    assert!(b.entries(0, u64::MAX, usize::MAX).unwrap().is_empty());
    assert_eq!(a.entries(0, u64::MAX, usize::MAX).unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_group_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = must_open(dir.path());
    assert!(matches!(storage.group(GroupId(9)), Err(StorageError::UnknownGroup(GroupId(9)))));
    let g = storage.create_group(GroupId(9)).await.unwrap();
    assert!(matches!(storage.create_group(GroupId(9)).await, Err(StorageError::GroupExists(GroupId(9)))));

    storage.delete_group(GroupId(9)).await.unwrap();
    let mut batch = g.batch();
    batch.put_entry(1, Bytes::from_static(b"late"));
    assert!(matches!(g.write(batch, Durability::Fsync).await, Err(StorageError::UnknownGroup(GroupId(9)))));
    assert!(g.entry(1).unwrap().is_none());
    assert!(matches!(storage.delete_group(GroupId(9)).await, Err(StorageError::UnknownGroup(_))));
}

#[tokio::test]
async fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = must_open(dir.path());
        let g = storage.create_group(GroupId(3)).await.unwrap();
        let mut batch = g.batch();
        batch.put_entry(1, Bytes::from_static(b"one"));
        batch.put_raft_state(RaftStateKey::Vote, Bytes::from_static(b"vote"));
        batch.put_applied(AppliedKey::State, Bytes::from_static(b"state"));
        batch.put_applied(AppliedKey::Checkpoint(1), Bytes::from_static(b"cp1"));
        batch.put_offset_index(Offset(0), OffsetIndexEntry { index: 1, position: 0, record_count: 3 });
        g.write(batch, Durability::Fsync).await.unwrap();
        storage.shutdown();
    }
    let storage = must_open(dir.path());
    assert_eq!(storage.groups(), vec![GroupId(3)]);
    let g = storage.group(GroupId(3)).unwrap();
    assert_eq!(g.entry(1).unwrap().unwrap(), "one");
    assert_eq!(g.raft_state(RaftStateKey::Vote).unwrap().unwrap(), "vote");
    assert_eq!(g.applied(AppliedKey::State).unwrap().unwrap(), "state");
    assert_eq!(g.checkpoint_indexes().unwrap(), vec![1]);
    assert_eq!(
        g.offset_index_floor(Offset(2)).unwrap(),
        Some((Offset(0), OffsetIndexEntry { index: 1, position: 0, record_count: 3 }))
    );
}

#[tokio::test]
async fn offset_index_floor_finds_the_batch_holding_an_offset() {
    let dir = tempfile::tempdir().unwrap();
    let storage = must_open(dir.path());
    let g = storage.create_group(GroupId(4)).await.unwrap();
    // A neighbouring group's rows must never be found.
    let other = storage.create_group(GroupId(3)).await.unwrap();
    let mut batch = other.batch();
    batch.put_offset_index(Offset(0), OffsetIndexEntry { index: 99, position: 0, record_count: 1 });
    other.write(batch, Durability::Buffered).await.unwrap();

    let mut batch = g.batch();
    for (base, index) in [(10u64, 1u64), (20, 2), (30, 3)] {
        batch.put_offset_index(Offset(base), OffsetIndexEntry { index, position: 0, record_count: 10 });
    }
    g.write(batch, Durability::Buffered).await.unwrap();
    assert_eq!(g.offset_index_floor(Offset(5)).unwrap(), None);
    assert_eq!(g.offset_index_floor(Offset(10)).unwrap().unwrap().1.index, 1);
    assert_eq!(g.offset_index_floor(Offset(29)).unwrap().unwrap().1.index, 2);
    assert_eq!(g.offset_index_floor(Offset(1000)).unwrap().unwrap().1.index, 3);
    assert_eq!(g.offset_index_from(Offset(15), 10).unwrap().len(), 2);

    let mut batch = g.batch();
    batch.delete_offset_index_from(Offset(20));
    batch.delete_offset_index_before(Offset(10));
    g.write(batch, Durability::Buffered).await.unwrap();
    assert_eq!(g.offset_index_floor(Offset(1000)).unwrap().unwrap().1.index, 1);
}

#[tokio::test]
async fn checkpoints_are_listed_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = must_open(dir.path());
    let g = storage.create_group(GroupId(5)).await.unwrap();
    let mut batch = g.batch();
    for i in [10u64, 20, 30, 40] {
        batch.put_applied(AppliedKey::Checkpoint(i), Bytes::from(i.to_string()));
    }
    batch.put_applied(AppliedKey::State, Bytes::from_static(b"s"));
    g.write(batch, Durability::Buffered).await.unwrap();
    assert_eq!(g.checkpoint_indexes().unwrap(), vec![10, 20, 30, 40]);
    let mut batch = g.batch();
    batch.delete_checkpoints_before(20);
    batch.delete_checkpoints_from(40);
    g.write(batch, Durability::Buffered).await.unwrap();
    assert_eq!(g.checkpoint_indexes().unwrap(), vec![20, 30]);
    assert!(g.applied(AppliedKey::State).unwrap().is_some(), "trimming checkpoints keeps the state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_of_many_groups_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let storage = must_open(dir.path());
    let mut groups = Vec::new();
    for g in 0..64 {
        groups.push(storage.create_group(GroupId(100 + g)).await.unwrap());
    }
    let before = storage.stats();
    let mut tasks = Vec::new();
    for g in groups.clone() {
        tasks.push(tokio::spawn(async move {
            for i in 1..=20u64 {
                let mut batch = g.batch();
                batch.put_entry(i, entry_bytes(g.group().0, i));
                g.write(batch, Durability::Fsync).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = storage.stats();
    let requests = after.requests - before.requests;
    let fsyncs = after.fsyncs - before.fsyncs;
    assert_eq!(requests, 64 * 20);
    // 64 writers each waiting for its fsync before the next write: if every request got its own
    // fsync this would be 1280. Group commit shares them.
    assert!(fsyncs * 4 <= requests, "{fsyncs} fsyncs for {requests} requests");
    for g in groups {
        assert_eq!(g.entries(1, 21, usize::MAX).unwrap().len(), 20);
    }
}

#[tokio::test]
async fn write_then_is_readable_on_return_and_reports_durability() {
    let dir = tempfile::tempdir().unwrap();
    let storage = must_open(dir.path());
    let g = storage.create_group(GroupId(8)).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut batch = g.batch();
    batch.put_entry(1, Bytes::from_static(b"e1"));
    g.write_then(batch, move |result| {
        let _ = tx.send(result);
    })
    .await
    .unwrap();
    assert_eq!(g.entry(1).unwrap().unwrap(), "e1");
    rx.await.unwrap().unwrap();
}

#[tokio::test]
async fn writes_after_shutdown_fail() {
    let dir = tempfile::tempdir().unwrap();
    let storage = must_open(dir.path());
    let g = storage.create_group(GroupId(1)).await.unwrap();
    storage.shutdown();
    let mut batch = g.batch();
    batch.put_entry(1, Bytes::from_static(b"x"));
    assert!(matches!(g.write(batch, Durability::Fsync).await, Err(StorageError::Closed)));
}

/// The child side of `kill_minus_nine_loses_nothing_acknowledged`: appends entries to several
/// groups as fast as it can and prints `ack GROUP INDEX` once each is durable. Runs only when the
/// parent starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of kill_minus_nine_loses_nothing_acknowledged"]
async fn crash_child_appends_until_killed() {
    let Ok(dir) = std::env::var("SLUICE_CRASH_DIR") else { return };
    let storage = must_open(std::path::Path::new(&dir));
    let mut tasks = Vec::new();
    for g in 1..=4u64 {
        let group = match storage.group(GroupId(g)) {
            Ok(group) => group,
            Err(_) => storage.create_group(GroupId(g)).await.unwrap(),
        };
        tasks.push(tokio::spawn(async move {
            // Bounded: the parent kills us long before this ends.
            for i in 1..=1_000_000u64 {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let mut batch = group.batch();
                batch.put_entry(i, entry_bytes(g, i));
                group
                    .write_then(batch, move |r| {
                        let _ = tx.send(r);
                    })
                    .await
                    .unwrap();
                rx.await.unwrap().unwrap();
                println!("ack {g} {i}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn kill_minus_nine_loses_nothing_acknowledged() {
    let seed: u64 = std::env::var("SLUICE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos().into()
    });
    println!("seed {seed} (replay with SLUICE_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut acked = std::collections::BTreeMap::<u64, u64>::new();
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_appends_until_killed", "--ignored", "--nocapture"])
            .env("SLUICE_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Kill after a seed-chosen number of acknowledgements, so the kill lands mid-stream.
        let kill_after = 200 + (seed.wrapping_mul(round + 1) % 800);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = 0u64;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ack ") {
                let mut parts = rest.split(' ').map(|p| p.parse::<u64>().unwrap());
                let (g, i) = (parts.next().unwrap(), parts.next().unwrap());
                let last = acked.entry(g).or_default();
                *last = (*last).max(i);
                seen += 1;
                if seen >= kill_after || Instant::now() > deadline {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(seen > 0, "round {round}: the child acknowledged nothing");

        let storage = must_open(dir.path());
        for (&g, &last) in &acked {
            let group = storage.group(GroupId(g)).unwrap();
            let entries = group.entries(1, u64::MAX, usize::MAX).unwrap();
            // Every acknowledged entry is there, intact; nothing after a gap, nothing torn.
            assert!(entries.len() as u64 >= last, "group {g}: acked {last}, found {}", entries.len());
            for (n, (i, bytes)) in entries.iter().enumerate() {
                assert_eq!(*i, n as u64 + 1, "group {g}: hole before {i}");
                assert_eq!(*bytes, entry_bytes(g, *i), "group {g}: entry {i} corrupt");
            }
        }
        storage.shutdown();
        drop(storage);
        // The next round's child appends from index 1 again: start it from an empty store.
        std::fs::remove_dir_all(dir.path()).unwrap();
        acked.clear();
    }
}
