//! `sluice-lazyfs --backing DIR --mount DIR`: mounts the lazy filesystem and serves it until
//! killed. Killing it (and unmounting) is the power cut: see the crate's documentation.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use fuser::{Config, MountOption};
use sluice_lazyfs::fs::{LazyFs, SyncLog};

#[derive(Parser)]
#[command(name = "sluice-lazyfs", about = "A filesystem that loses unsynced writes when killed")]
struct Cli {
    /// Where durable (fsynced) data lives.
    #[arg(long)]
    backing: PathBuf,
    /// Where to mount.
    #[arg(long)]
    mount: PathBuf,
    /// The most unsynced data held in memory; past it the largest file is written back.
    #[arg(long, default_value_t = 256)]
    unsynced_max_mib: u64,
    /// Log every fsync here (`<CLOCK_MONOTONIC ns> <path>` per line), for the fsync audit.
    #[arg(long)]
    sync_log: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.backing).with_context(|| format!("creating {}", cli.backing.display()))?;
    std::fs::create_dir_all(&cli.mount).with_context(|| format!("creating {}", cli.mount.display()))?;
    let sync_log = match &cli.sync_log {
        Some(path) => Some(SyncLog::open(path).with_context(|| format!("opening {}", path.display()))?),
        None => None,
    };
    let fs = LazyFs::new(cli.backing.canonicalize()?, cli.unsynced_max_mib << 20, sync_log);
    let mut config = Config::default();
    config.mount_options = vec![MountOption::FSName("sluice-lazyfs".into()), MountOption::RW];
    fuser::mount(fs, &cli.mount, &config).with_context(|| format!("mounting {}", cli.mount.display()))?;
    Ok(())
}
