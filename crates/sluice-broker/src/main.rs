//! `sluiced`: runs one Sluice node.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use sluice_broker::{NodeConfig, start_node};

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
        .init();
    let config = match &args.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    let handle = start_node(config).await.context("start node")?;
    println!(
        "sluiced node {} serving gRPC on {} and HTTP on {}",
        handle.node.id, handle.grpc_addr, handle.http_addr
    );
    wait_for_signal(&handle.node.shutdown).await?;
    handle.shutdown().await;
    Ok(())
}

/// Waits for SIGTERM or Ctrl-C (or an internal fatal error that cancelled the node).
async fn wait_for_signal(cancelled: &tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = term.recv() => tracing::info!("terminated"),
        () = cancelled.cancelled() => tracing::warn!("node stopped itself"),
    }
    Ok(())
}
