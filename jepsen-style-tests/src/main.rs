//! `sluice-chaos`: runs fault scenarios against real `sluiced` processes and checks the history.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice_chaos::scenario::{self, Kind, Profile, RunOptions, ScenarioResult};

#[derive(Parser)]
#[command(name = "sluice-chaos", about = "Jepsen-style fault tests for Sluice")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs scenarios, each on a fresh three-node cluster.
    Run {
        /// quick (CI) or full.
        #[arg(long, default_value = "quick")]
        profile: String,
        /// Only these scenarios (default: the profile's).
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// The first seed; a random one when absent. Scenario i of seed round r uses seed + r*100 + i.
        #[arg(long)]
        seed: Option<u64>,
        /// How many seed rounds to run of every scenario.
        #[arg(long, default_value_t = 1)]
        rounds: u64,
        /// Where histories, reports and node logs go.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The sluiced binary (default: beside this one).
        #[arg(long)]
        sluiced: Option<PathBuf>,
        /// Run on loopback behind userspace proxies even as root (the mode used without root).
        #[arg(long)]
        loopback: bool,
        /// Break the nodes on purpose (`SLUICE_SABOTAGE`, e.g. skip-dedup; debug builds only).
        #[arg(long)]
        sabotage: Option<String>,
        /// With --sabotage: succeed only if every scenario reports this anomaly (the suite
        /// catches the broken build). `a,b` is either of them; `a+b` both.
        #[arg(long)]
        expect: Option<String>,
    },
    /// Checks a recorded history.jsonl and prints the report.
    Check { history: PathBuf },
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (u64::from(t.subsec_nanos()) ^ t.as_secs() ^ u64::from(std::process::id())) % 1_000_000
}

fn print_table(results: &[ScenarioResult]) {
    println!(
        "\n| scenario | seed | verdict | ops | acked | lost | unseen | duplicates | anomalies | max write gap ms | recovery ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let recovery: Vec<String> =
            r.faults.iter().filter_map(|f| f.recovery_ms).map(|m| m.to_string()).collect();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.seed,
            r.verdict(),
            r.ops,
            r.acked,
            r.report.count(sluice_chaos::checker::LOST_WRITE),
            r.report.count(sluice_chaos::checker::UNSEEN),
            r.report.count(sluice_chaos::checker::DUPLICATE),
            r.anomalies,
            r.max_write_gap_ms,
            if recovery.is_empty() { "-".to_string() } else { recovery.join(", ") },
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Check { history } => {
            let report = sluice_chaos::checker::check(&sluice_chaos::history::read_jsonl(&history)?);
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.errors() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Run { profile, scenarios, seed, rounds, out, sluiced, loopback, sabotage, expect } => {
            let profile = match profile.as_str() {
                "quick" => Profile::quick(),
                "full" => Profile::full(),
                other => anyhow::bail!("unknown profile {other} (quick or full)"),
            };
            let kinds: Vec<Kind> = if scenarios.is_empty() {
                let all = if profile.name == "quick" { Kind::QUICK.to_vec() } else { Kind::ALL.to_vec() };
                all.into_iter()
                    .filter(|k| match k.unavailable() {
                        Some(why) => {
                            println!("sluice-chaos: leaving out {}: it {why}", k.name());
                            false
                        }
                        None => true,
                    })
                    .collect()
            } else {
                scenarios
                    .iter()
                    .map(|s| Kind::parse(s).ok_or_else(|| anyhow::anyhow!("unknown scenario {s}")))
                    .collect::<anyhow::Result<_>>()?
            };
            let sluiced = match sluiced {
                Some(p) => p,
                None => std::env::current_exe()?.with_file_name("sluiced"),
            };
            anyhow::ensure!(
                sluiced.exists(),
                "no sluiced at {} (build it, or pass --sluiced)",
                sluiced.display()
            );
            let seed = seed.unwrap_or_else(random_seed);
            println!("sluice-chaos: profile {} seed {seed} (replay with --seed {seed})", profile.name);
            let options = RunOptions {
                sluiced,
                out: out.unwrap_or_else(scenario::out_dir_default),
                netns: !loopback,
                sabotage,
                lazyfs: std::env::current_exe()?.with_file_name("sluice-lazyfs"),
            };
            let mut results = Vec::new();
            for round in 0..rounds {
                for (i, kind) in kinds.iter().enumerate() {
                    let seed = seed + round * 100 + i as u64;
                    println!("--- {} (seed {seed})", kind.name());
                    let started = std::time::Instant::now();
                    let result = scenario::run(*kind, &profile, seed, &options).await?;
                    println!(
                        "{}: {} in {:.0} s: {} acked, {} anomalies; invalid: {:?}; failures: {:?}; kept in {}",
                        kind.name(),
                        result.verdict(),
                        started.elapsed().as_secs_f64(),
                        result.acked,
                        result.anomalies,
                        result.invalid,
                        result.failures,
                        result.dir.display()
                    );
                    results.push(result);
                }
            }
            print_table(&results);
            if let Some(expect) = expect {
                let caught = results.iter().all(|r| {
                    expect.split(',').any(|all| all.split('+').all(|a| r.report.count(a.trim()) > 0))
                });
                println!(
                    "{}: the deliberately broken build was {} (expected anomaly {expect})",
                    if caught { "OK" } else { "FAIL" },
                    if caught { "caught" } else { "NOT caught" }
                );
                return Ok(if caught { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            let passed = results.iter().all(|r| r.verdict() == "PASS");
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
