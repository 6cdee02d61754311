//! Mounts the real filesystem (root and /dev/fuse needed, as in CI) and cuts its power: only
//! what was fsynced survives, and what survives reads back through a new mount.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use sluice_lazyfs::mount::{LazyMount, available};

const BINARY: &str = env!("CARGO_BIN_EXE_sluice-lazyfs");

fn write(path: &Path, data: &[u8], sync: bool) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).expect("open");
    f.write_all(data).expect("write");
    if sync {
        f.sync_data().expect("fdatasync");
    }
}

#[test]
fn a_power_cut_keeps_exactly_what_was_fsynced() {
    if let Err(why) = available() {
        // CI runs as root with /dev/fuse; a developer without them cannot mount.
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = (dir.path().join("backing"), dir.path().join("mnt"));
    let syncs = dir.path().join("syncs.log");
    let lazy = LazyMount::start(Path::new(BINARY), &backing, &mnt, Some(&syncs), Stdio::inherit()).unwrap();
    let m = lazy.mount_point().to_path_buf();
    fs::create_dir(m.join("db")).unwrap();
    write(&m.join("db/wal"), b"synced;", true);
    write(&m.join("db/wal"), b"lost;", false);
    write(&m.join("db/never"), b"never synced", false);
    write(&m.join("db/tmp"), &vec![9u8; 10_000], true);
    fs::rename(m.join("db/tmp"), m.join("db/current")).unwrap();
    write(&m.join("db/current"), b"tail", false);
    assert_eq!(fs::read(m.join("db/wal")).unwrap(), b"synced;lost;", "unsynced writes are readable");
    assert_eq!(fs::metadata(m.join("db/current")).unwrap().len(), 10_004);

    lazy.power_cut().unwrap();
    assert_eq!(fs::read(backing.join("db/wal")).unwrap(), b"synced;");
    assert_eq!(fs::read(backing.join("db/never")).unwrap(), b"", "the name survives, its data does not");
    assert_eq!(fs::read(backing.join("db/current")).unwrap(), vec![9u8; 10_000]);
    assert!(!backing.join("db/tmp").exists(), "the rename is durable");

    let lazy = LazyMount::start(Path::new(BINARY), &backing, &mnt, Some(&syncs), Stdio::inherit()).unwrap();
    let m = lazy.mount_point().to_path_buf();
    assert_eq!(fs::read(m.join("db/wal")).unwrap(), b"synced;");
    write(&m.join("db/wal"), b"again;", true);
    fs::remove_file(m.join("db/never")).unwrap();
    drop(lazy);
    assert_eq!(fs::read(backing.join("db/wal")).unwrap(), b"synced;again;");
    assert!(!backing.join("db/never").exists());
    // Three fsyncs, each logged with its time and path.
    let logged = fs::read_to_string(&syncs).unwrap();
    let paths: Vec<&str> = logged.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(paths, ["db/wal", "db/tmp", "db/wal"], "{logged}");
}
