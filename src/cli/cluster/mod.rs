//! Experiment orchestration commands, one file per role: `mer run` (local mode: a coordinator and
//! its worker processes on this machine, `local.rs`), the long-running servers `mer coordinator` and
//! `mer worker` (`servers.rs`), and the clients `mer submit`, `mer status`, `mer cancel`, `mer results`
//! (`clients.rs`). This file holds what they share: the command enum, how to reach a coordinator, the
//! simulated-trainer flags, the runtime and signal handling.

mod clients;
mod local;
mod servers;
mod slurm;

pub use clients::{CancelArgs, ResultsArgs, StatusArgs, SubmitArgs};
pub use local::{PlanArgs, RunArgs};
pub use servers::{CoordinatorArgs, WorkerArgs};

use anyhow::Context;
use clap::{Args, Subcommand};
use mer_shared::client::ConnectOptions;
use mer_worker::agent::sim::SimTrainer;
use mer_worker::agent::Drain;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The orchestration subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run an experiment on this machine (local mode): a coordinator and N worker processes, progress
    /// bars, results in the run folder. Re-running the same command resumes: finished tasks are reused.
    Run(RunArgs),
    /// Show what a spec will do, without running it: `mer run`'s checks, its sweep points, folds and
    /// tasks per kind and method, how many the run folder would reuse, and the worker time left.
    Plan(PlanArgs),
    /// Run a coordinator for a cluster: gRPC for workers and clients, durable state in --state-dir.
    Coordinator(CoordinatorArgs),
    /// Run a worker agent: lease tasks from a coordinator and train them (SIGTERM drains: running tasks
    /// finish, or with --term-grace / --drain-grace are released unfinished after the grace;
    /// finish and are reported, then it exits).
    Worker(WorkerArgs),
    /// Submit an experiment spec to a coordinator (uploads its prepared dataset first).
    Submit(SubmitArgs),
    /// Show the experiments of a coordinator (or one of them).
    Status(StatusArgs),
    /// Cancel an experiment.
    Cancel(CancelArgs),
    /// Fetch an experiment's results (pooled scores, summary, MEGC prediction logs).
    Results(ResultsArgs),
}

/// How to reach a coordinator.
#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    /// Coordinator URL (`http://host:port`, or `https://` with TLS).
    #[arg(long, env = "MER_COORDINATOR", default_value = "http://127.0.0.1:7878")]
    pub coordinator: String,
    /// Shared-secret bearer token.
    #[arg(long, env = "MER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to verify the coordinator's TLS certificate.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

impl ConnectArgs {
    fn options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new(self.coordinator.clone(), self.token.clone());
        o.tls_ca = self.tls_ca.clone();
        o
    }
}

/// The simulated trainer (hidden flags, for tests and benchmarks: no libtorch, deterministic output).
#[derive(Debug, Args, Clone)]
pub struct SimArgs {
    /// Use the deterministic simulated trainer instead of libtorch.
    #[arg(long, hide = true)]
    pub sim_trainer: bool,
    /// Simulated time per task, milliseconds (with --sim-trainer).
    #[arg(long, hide = true, default_value_t = 0)]
    pub sim_delay_ms: u64,
    /// Append one line per simulated execution to this file (with --sim-trainer).
    #[arg(long, hide = true)]
    pub sim_log: Option<PathBuf>,
}

impl SimArgs {
    /// The simulated trainer these flags ask for, if any.
    fn trainer(&self) -> Option<SimTrainer> {
        self.sim_trainer.then(|| {
            SimTrainer::new(
                Duration::from_millis(self.sim_delay_ms),
                self.sim_log.clone(),
            )
        })
    }

    /// The same flags for a worker process (the log path made absolute).
    fn worker_args(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        if self.sim_trainer {
            out.push("--sim-trainer".into());
            out.push(format!("--sim-delay-ms={}", self.sim_delay_ms));
            if let Some(l) = &self.sim_log {
                out.push(format!("--sim-log={}", std::path::absolute(l)?.display()));
            }
        }
        Ok(out)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs an orchestration command.
pub fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    let rt = runtime()?;
    let url = cmd.coordinator_url();
    rt.block_on(async move {
        match cmd {
            ClusterCommand::Run(a) => local::cmd_run(a).await,
            ClusterCommand::Plan(a) => local::cmd_plan(a).await,
            ClusterCommand::Coordinator(a) => servers::cmd_coordinator(a).await,
            ClusterCommand::Worker(a) => servers::cmd_worker(a).await,
            ClusterCommand::Submit(a) => clients::cmd_submit(a).await,
            ClusterCommand::Status(a) => clients::cmd_status(a).await,
            ClusterCommand::Cancel(a) => clients::cmd_cancel(a).await,
            ClusterCommand::Results(a) => clients::cmd_results(a).await,
        }
    })
    .map_err(|e| match &url {
        Some(url) => name_unreachable(e, url),
        None => e,
    })
}

impl ClusterCommand {
    /// The coordinator a client or worker command talks to (`None` for those that start their own).
    fn coordinator_url(&self) -> Option<String> {
        let c = match self {
            ClusterCommand::Run(_) | ClusterCommand::Plan(_) | ClusterCommand::Coordinator(_) => {
                return None
            }
            ClusterCommand::Worker(a) => &a.connect,
            ClusterCommand::Submit(a) => &a.connect,
            ClusterCommand::Status(a) => &a.connect,
            ClusterCommand::Cancel(a) => &a.connect,
            ClusterCommand::Results(a) => &a.connect,
        };
        Some(c.coordinator.clone())
    }
}

/// Says which coordinator could not be reached, and what to check, when that is why a client command
/// failed.
fn name_unreachable(e: anyhow::Error, url: &str) -> anyhow::Error {
    let unreachable = e.chain().any(|c| {
        c.downcast_ref::<mer_coordinator::error::CoordError>()
            .is_some_and(|c| c.is_unreachable())
            || c.downcast_ref::<mer_shared::SharedError>()
                .is_some_and(|c| c.is_unreachable())
            || matches!(
                c.downcast_ref::<mer_worker::error::WorkerError>(),
                Some(mer_worker::error::WorkerError::Shared(s)) if s.is_unreachable()
            )
    });
    if unreachable {
        e.context(format!(
            "no coordinator answers at {url} (is `mer coordinator` running there? \
             set the address with --coordinator or MER_COORDINATOR)"
        ))
    } else {
        e
    }
}

/// Cancelled on SIGTERM or Ctrl-C.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: draining"),
        }
        t.cancel();
    });
    token
}

/// A worker's drain, started by SIGUSR2 (grace `usr2`, else like SIGTERM), SIGTERM (grace `term`) or
/// Ctrl-C (no grace: running tasks finish). A later signal can only shorten the grace.
fn drain_on_signals(usr2: Option<Duration>, term: Option<Duration>) -> Drain {
    use tokio::signal::unix::{signal, SignalKind};
    let drain = Drain::default();
    let d = drain.clone();
    tokio::spawn(async move {
        let (mut t, mut u) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::user_defined2()),
        ) {
            (Ok(t), Ok(u)) => (t, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot listen for SIGTERM / SIGUSR2: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = t.recv() => {
                    tracing::info!(grace_s = ?term.map(|g| g.as_secs()), "SIGTERM: draining");
                    d.start(term);
                }
                _ = u.recv() => {
                    let g = usr2.or(term);
                    tracing::info!(grace_s = ?g.map(|g| g.as_secs()), "SIGUSR2: draining");
                    d.start(g);
                }
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() { return; }
                    tracing::info!("interrupted: draining");
                    d.start(None);
                }
            }
        }
    });
    drain
}

/// `mer bench scheduler`: prints the orchestrator's throughput (see `mer::simbench`).
pub fn bench_scheduler(tasks: usize, workers: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mer-bench-scheduler-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rt = runtime()?;
    let r = rt.block_on(mer::simbench::scheduler_bench(&dir, tasks, workers));
    let _ = std::fs::remove_dir_all(&dir);
    let r = r?;
    println!("scheduler benchmark: {} tasks, {} workers over gRPC on loopback (SQLite WAL, synchronous=FULL)", r.tasks, r.workers);
    println!(
        "  submit (upload + expand + store): {:.2} s",
        r.submit_seconds
    );
    println!(
        "  run: {:.2} s  ->  {:.0} tasks/s",
        r.seconds, r.tasks_per_s
    );
    println!(
        "  lease latency: p50 {:.2} ms, p99 {:.2} ms",
        r.lease_p50_ms, r.lease_p99_ms
    );
    println!(
        "  memory: peak RSS {:.1} MiB, RSS after {:.1} MiB",
        r.peak_rss_mib, r.rss_mib
    );
    Ok(())
}
