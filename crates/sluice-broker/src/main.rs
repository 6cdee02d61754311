//! `sluiced`: runs one Sluice node.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use sluice_broker::{NodeConfig, sabotage_from_env, start_node};

#[derive(Parser, Debug)]
#[command(
    name = "sluiced",
    version,
    about = "A Sluice node. Without --config it serves alone with data in ./data."
)]
struct Args {
    /// The node's TOML configuration (see cluster-configs/ and --print-config).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print every configuration key with its default, then exit.
    #[arg(long)]
    print_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_config {
        print!("{}", NodeConfig::template());
        return Ok(());
    }
    let _crash_points = sluice_storage::CrashPoints::from_env();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    // Read once, here: nothing below reads the environment.
    let sabotage = sabotage_from_env()?;
    let handle = start_node(config, sabotage).await.context("start node")?;
    println!(
        "sluiced node {} serving gRPC on {} and HTTP on {}",
        handle.node_id(),
        handle.grpc_addr,
        handle.http_addr
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = term.recv() => tracing::info!("terminated"),
        () = handle.stopped() => tracing::warn!("node stopped itself"),
        reason = handle.storage_failed() => {
            // Fail-stop: a node that cannot write must not keep its leaderships (they would
            // answer nothing but errors) nor attempt a draining shutdown that writes. Everything
            // it acknowledged is already fsynced; its peers take over its partitions.
            tracing::error!(
                %reason,
                "storage failed: stopping now; restart the node once the disk is fixed (docs/OPERATIONS.md)"
            );
            std::process::exit(EXIT_STORAGE_FAILED);
        }
    }
    handle.shutdown().await;
    Ok(())
}

/// The exit status of a node stopped by a failed write or fsync (`EX_IOERR`).
const EXIT_STORAGE_FAILED: i32 = 74;
