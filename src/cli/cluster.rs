//! Experiment orchestration commands: `mer run` (local mode), `mer coordinator`, `mer worker`,
//! `mer submit`, `mer status`, `mer cancel`, `mer results`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mer_coordinator::agent::{run_agent, AgentConfig, Trainer};
use mer_coordinator::client::{
    connect, get_results, get_status, submit_spec, watch_until_done, ConnectOptions,
};
use mer_coordinator::local::{default_run_dir, run_local, LocalOptions};
use mer_coordinator::scheduler::SchedConfig;
use mer_coordinator::server::{start, ServerConfig, TlsFiles};
use mer_coordinator::sim::SimTrainer;
use mer_shared::proto;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The orchestration subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run an experiment on this machine (local mode): a coordinator and N worker processes, progress
    /// bars, results in the run folder. Re-running the same command resumes: finished tasks are reused.
    Run(RunArgs),
    /// Run a coordinator for a cluster: gRPC for workers and clients, durable state in --state-dir.
    Coordinator(CoordinatorArgs),
    /// Run a worker agent: lease tasks from a coordinator and train them (SIGTERM drains: running tasks
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

/// `mer run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The experiment spec (TOML).
    pub spec: PathBuf,
    /// Number of local worker processes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: u32,
    /// Concurrent tasks per worker.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: u32,
    /// Run folder (default: runs/<experiment name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Device of the workers (`cpu`, `cuda`, `cuda:N`, `auto`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Lease length override in milliseconds (tests).
    #[arg(long, hide = true)]
    pub lease_ms: Option<u64>,
    /// Serve the live dashboard (and /metrics) on this address while the run lasts, e.g.
    /// 127.0.0.1:9464 (docs/dashboard.md).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
}

/// `mer coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7878")]
    pub listen: SocketAddr,
    /// Folder of the durable state (SQLite), artifacts and results.
    #[arg(long, default_value = "mer-state")]
    pub state_dir: PathBuf,
    /// Shared-secret bearer token that workers and clients must present.
    #[arg(long, env = "MER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// TLS certificate chain (PEM); with --tls-key, serve https.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve /metrics, /healthz, /readyz and the live dashboard (/, /api/...; docs/dashboard.md) over
    /// HTTP on this address.
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Worker pod template of the Kubernetes launcher (JSON, written by the Helm chart): experiments
    /// with `launcher = "kubernetes"` then get a worker Job in this cluster (in-cluster credentials).
    #[arg(long, env = "MER_K8S_WORKER_TEMPLATE")]
    pub k8s_worker_template: Option<PathBuf>,
    /// Print the bound address to stdout as `listening <addr>` (for scripts using port 0).
    #[arg(long, hide = true)]
    pub print_addr: bool,
    /// Lease length override in milliseconds (tests).
    #[arg(long, hide = true)]
    pub lease_ms: Option<u64>,
    /// Allow running without a token on a non-loopback address.
    #[arg(long)]
    pub insecure: bool,
}

/// `mer worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Concurrent tasks (several small trainings can share a GPU).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: u32,
    /// Devices; slot i uses device i mod count (repeat the flag: --device cuda:0 --device cuda:1).
    #[arg(long = "device", default_value = "auto")]
    pub devices: Vec<String>,
    /// Artifact cache and scratch folder.
    #[arg(long, default_value = "mer-cache")]
    pub cache_dir: PathBuf,
    /// Name shown by the coordinator (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub sim: SimArgs,
    /// Heartbeat interval override in milliseconds.
    #[arg(long, hide = true)]
    pub heartbeat_ms: Option<u64>,
}

/// `mer submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The experiment spec (TOML).
    pub spec: PathBuf,
    /// Follow progress until the experiment ends.
    #[arg(long)]
    pub wait: bool,
    /// Also create the experiment's worker Job (batch/v1, Indexed) with your kubeconfig; the spec needs
    /// launcher = "kubernetes" and a [kubernetes] table. Not needed when the coordinator runs from the
    /// Helm chart (it creates the Job itself).
    #[arg(long)]
    pub k8s: bool,
    /// Coordinator URL as worker pods reach it (default: --coordinator).
    #[arg(long, requires = "k8s")]
    pub k8s_coordinator: Option<String>,
    /// Secret holding the token in the Job's namespace, NAME[:KEY].
    #[arg(long, requires = "k8s", default_value = "mer-token:token")]
    pub k8s_token_secret: String,
}

/// `mer status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// One experiment (default: all).
    pub id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mer cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Experiment id.
    pub id: String,
}

/// `mer results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Experiment id.
    pub id: String,
    /// Write results.json, summary.md and the prediction files into this folder (default: print the
    /// summary).
    #[arg(long)]
    pub out: Option<PathBuf>,
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
            ClusterCommand::Run(a) => cmd_run(a).await,
            ClusterCommand::Coordinator(a) => cmd_coordinator(a).await,
            ClusterCommand::Worker(a) => cmd_worker(a).await,
            ClusterCommand::Submit(a) => cmd_submit(a).await,
            ClusterCommand::Status(a) => cmd_status(a).await,
            ClusterCommand::Cancel(a) => cmd_cancel(a).await,
            ClusterCommand::Results(a) => cmd_results(a).await,
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
            ClusterCommand::Run(_) | ClusterCommand::Coordinator(_) => return None,
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

async fn cmd_run(a: RunArgs) -> anyhow::Result<()> {
    let run_dir = match &a.run_dir {
        Some(d) => d.clone(),
        None => default_run_dir(&a.spec)?,
    };
    let program = std::env::current_exe().context("locating the mer executable")?;
    let mut extra = vec!["--device".to_string(), a.device.clone()];
    extra.extend(a.sim.worker_args()?);
    if !a.sim.sim_trainer && cfg!(not(feature = "worker")) {
        bail!("this mer was built without the `worker` feature (no libtorch): it cannot train; run workers built with it");
    }
    let mut opts = LocalOptions::processes(&a.spec, &run_dir, a.workers, program, extra);
    opts.slots = a.slots;
    opts.progress = !a.quiet;
    opts.lease_ttl = a.lease_ms.map(Duration::from_millis);
    opts.http_listen = a.http_listen;
    let out = run_local(opts).await?;
    println!("{}", out.summary_md);
    println!("results: {}", out.run_dir.join("results.json").display());
    if out.status.state != "done" {
        bail!(
            "experiment {} {}: {} task(s) gave up:\n{}\n\
             The finished folds are stored; run the same command again to retry only the failed ones.",
            out.experiment_id,
            out.status.state,
            out.status.tasks_failed,
            out.status.errors.join("\n")
        );
    }
    Ok(())
}

async fn cmd_coordinator(a: CoordinatorArgs) -> anyhow::Result<()> {
    let token = a.token.filter(|t| !t.is_empty());
    if token.is_none() && !a.listen.ip().is_loopback() && !a.insecure {
        bail!("refusing to listen on {} without a token: set --token / MER_TOKEN (or pass --insecure)", a.listen);
    }
    let mut cfg = ServerConfig::new(a.listen, a.state_dir.clone());
    cfg.token = token;
    cfg.tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    cfg.http_listen = a.http_listen;
    if let Some(p) = &a.k8s_worker_template {
        cfg.k8s_workers = Some(mer_coordinator::k8s::WorkerTemplate::from_file(p)?);
    }
    if let Some(ms) = a.lease_ms {
        cfg.sched = SchedConfig {
            lease_ttl: Some(Duration::from_millis(ms)),
            ..SchedConfig::default()
        };
        cfg.heartbeat = Duration::from_millis((ms / 4).max(50));
        cfg.reap_every = Duration::from_millis((ms / 5).clamp(20, 250));
    }
    let stop = shutdown_on_signals();
    let coord = start(cfg).await?;
    if a.print_addr {
        println!("listening {}", coord.addr);
    }
    eprintln!(
        "coordinator listening on {} (state in {})",
        coord.url,
        a.state_dir.display()
    );
    stop.cancelled().await;
    coord.shutdown().await?;
    Ok(())
}

async fn cmd_worker(a: WorkerArgs) -> anyhow::Result<()> {
    let trainer: Arc<dyn Trainer> = match a.sim.trainer() {
        Some(sim) => Arc::new(sim),
        None => real_trainer()?,
    };
    let mut cfg = AgentConfig::new(a.connect.options(), a.cache_dir.clone());
    if let Some(n) = a.name {
        cfg.name = n;
    }
    cfg.slots = a.slots.max(1);
    cfg.devices = a.devices.clone();
    cfg.heartbeat = a.heartbeat_ms.map(Duration::from_millis);
    let stop = shutdown_on_signals();
    let stats = run_agent(cfg, trainer, stop).await?;
    tracing::info!(
        accepted = stats.accepted,
        duplicates = stats.duplicates,
        failed = stats.failed,
        stopped = stats.stopped,
        "worker drained"
    );
    Ok(())
}

#[cfg(feature = "worker")]
fn real_trainer() -> anyhow::Result<Arc<dyn Trainer>> {
    Ok(Arc::new(super::engine_trainer::EngineTrainer::new()))
}

#[cfg(not(feature = "worker"))]
fn real_trainer() -> anyhow::Result<Arc<dyn Trainer>> {
    bail!("this mer was built without the `worker` feature (no libtorch): it cannot train (use a full build)")
}

/// The experiments as a readable table, then each one's running tasks and errors.
fn status_table(list: &[proto::ExperimentStatus]) -> String {
    let mut out = format!(
        "{:<28} {:<20} {:<10} {:>11} {:>7} {:>7} {:>11} {:>5} {:>5} {:>7}\n",
        "EXPERIMENT",
        "NAME",
        "STATE",
        "TASKS",
        "RUNNING",
        "GAVE UP",
        "FOLDS",
        "LOST",
        "DUPS",
        "RETRIES"
    );
    for s in list {
        out += &format!(
            "{:<28} {:<20} {:<10} {:>11} {:>7} {:>7} {:>11} {:>5} {:>5} {:>7}\n",
            s.experiment_id,
            s.name,
            s.state,
            format!("{}/{}", s.tasks_done, s.tasks_total),
            s.tasks_running,
            s.tasks_failed,
            format!("{}/{}", s.folds_done, s.folds_total),
            s.lost,
            s.duplicates,
            s.retries
        );
    }
    for s in list
        .iter()
        .filter(|s| !s.running.is_empty() || !s.errors.is_empty())
    {
        out += &format!("\n{}:\n", s.experiment_id);
        if !s.running.is_empty() {
            out += &format!(
                "  {:<7} {:<16} {:<14} {:<8} {:>9} {:>9} {:>10} {:>8} {:>9}\n",
                "KIND",
                "FOLD",
                "WORKER",
                "STAGE",
                "EPOCH",
                "LOSS",
                "SAMPLES/S",
                "DEVICE",
                "GPU MEM"
            );
        }
        for r in &s.running {
            out += &format!(
                "  {:<7} {:<16} {:<14} {:<8} {:>9} {:>9.4} {:>10.1} {:>8} {:>9}\n",
                r.kind,
                r.fold,
                r.worker_id,
                r.stage,
                format!("{}/{}", r.epoch + 1, r.epochs),
                r.loss,
                r.samples_per_s,
                if r.device.is_empty() {
                    "-"
                } else {
                    r.device.as_str()
                },
                r.gpu_memory_bytes
                    .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
                    .unwrap_or_else(|| "-".into())
            );
        }
        for e in &s.errors {
            out += &format!("  error: {e}\n");
        }
        if s.state == "failed" {
            out += &format!(
                "  {} task(s) gave up; submit the same spec again (or re-run `mer run`) to retry them, \
                 finished folds are kept\n",
                s.tasks_failed
            );
        }
    }
    out
}

async fn cmd_submit(a: SubmitArgs) -> anyhow::Result<()> {
    let c = connect(&a.connect.options())?;
    let r = submit_spec(&c, &a.spec).await?;
    println!(
        "{} {} ({} tasks, {} already finished)",
        if r.existing {
            "existing experiment"
        } else {
            "submitted"
        },
        r.experiment_id,
        r.tasks,
        r.reused
    );
    if r.retried > 0 {
        println!(
            "it had failed: {} given-up task(s) are queued again",
            r.retried
        );
    }
    if a.k8s {
        let spec = mer_coordinator::spec::load_spec(&a.spec)?;
        let secret = mer_coordinator::k8s::parse_secret_key(&a.k8s_token_secret)?;
        let pods_url = a
            .k8s_coordinator
            .clone()
            .unwrap_or_else(|| a.connect.coordinator.clone());
        let job = mer_coordinator::k8s::submit_job(
            &spec,
            &r.experiment_id,
            r.tasks.saturating_sub(r.reused),
            &pods_url,
            secret,
        )
        .await?;
        println!(
            "kubernetes: {} Job {}/{} with {} worker pods",
            if job.created { "created" } else { "found" },
            job.namespace,
            job.name,
            job.parallelism
        );
    }
    if a.wait {
        let s = watch_until_done(&c, &r.experiment_id, |s| {
            eprintln!(
                "{}: {}/{} tasks, {} running",
                s.state, s.tasks_done, s.tasks_total, s.tasks_running
            );
        })
        .await?;
        print!("{}", status_table(std::slice::from_ref(&s)));
    }
    Ok(())
}

async fn cmd_status(a: StatusArgs) -> anyhow::Result<()> {
    let c = connect(&a.connect.options())?;
    let list = match &a.id {
        Some(id) => vec![get_status(&c, id).await?],
        None => {
            c.client
                .clone()
                .list(proto::ListRequest {})
                .await
                .map_err(|s| mer_coordinator::CoordError::rpc("list", s))?
                .into_inner()
                .experiments
        }
    };
    if a.json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.experiment_id, "name": s.name, "state": s.state, "tasks_total": s.tasks_total,
                    "tasks_done": s.tasks_done, "tasks_running": s.tasks_running, "tasks_failed": s.tasks_failed,
                    "folds_total": s.folds_total, "folds_done": s.folds_done, "lost": s.lost,
                    "duplicates": s.duplicates, "retries": s.retries, "errors": s.errors,
                    "running": s.running.iter().map(|r| serde_json::json!({
                        "task": r.task_key, "kind": r.kind, "fold": r.fold, "worker": r.worker_id,
                        "stage": r.stage, "epoch": r.epoch, "epochs": r.epochs, "loss": r.loss,
                        "samples_per_s": r.samples_per_s, "device": r.device,
                        "gpu_memory_bytes": r.gpu_memory_bytes,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if list.is_empty() {
        println!("no experiments");
    } else {
        print!("{}", status_table(&list));
    }
    Ok(())
}

async fn cmd_cancel(a: CancelArgs) -> anyhow::Result<()> {
    let c = connect(&a.connect.options())?;
    let r = c
        .client
        .clone()
        .cancel(proto::CancelRequest {
            experiment_id: a.id.clone(),
        })
        .await
        .map_err(|s| mer_coordinator::CoordError::rpc("cancel", s))?;
    if r.into_inner().cancelled {
        println!("cancelled {}", a.id);
    } else {
        println!("{} had already ended", a.id);
    }
    Ok(())
}

async fn cmd_results(a: ResultsArgs) -> anyhow::Result<()> {
    let c = connect(&a.connect.options())?;
    let r = get_results(&c, &a.id).await?;
    match &a.out {
        Some(dir) => {
            mer_shared::prepared::write_atomic(
                &dir.join("results.json"),
                r.results_json.as_bytes(),
            )?;
            mer_shared::prepared::write_atomic(&dir.join("summary.md"), r.summary_md.as_bytes())?;
            for (name, text) in &r.files {
                if name.split('/').any(|p| p == ".." || p.is_empty()) {
                    continue;
                }
                mer_shared::prepared::write_atomic(&dir.join(name), text.as_bytes())?;
            }
            println!(
                "wrote {} ({})",
                dir.display(),
                if r.complete { "complete" } else { "partial" }
            );
        }
        None => println!("{}", r.summary_md),
    }
    Ok(())
}

/// `mer bench scheduler`: prints the orchestrator's throughput (see `mer_coordinator::simbench`).
pub fn bench_scheduler(tasks: usize, workers: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("mer-bench-scheduler-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let rt = runtime()?;
    let r = rt.block_on(mer_coordinator::simbench::scheduler_bench(
        &dir, tasks, workers,
    ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_a_table_with_one_row_per_experiment() {
        let a = proto::ExperimentStatus {
            experiment_id: "mini-5a6eb9cc".into(),
            name: "mini".into(),
            state: "running".into(),
            tasks_total: 30,
            tasks_done: 12,
            tasks_running: 2,
            folds_total: 10,
            folds_done: 4,
            errors: vec!["target casme2/sub03: diverged".into()],
            running: vec![proto::RunningTask {
                task_key: "t1".into(),
                fold: "samm/006".into(),
                kind: "target".into(),
                worker_id: "w-1".into(),
                stage: "target".into(),
                epoch: 4,
                epochs: 100,
                loss: 0.25,
                samples_per_s: 310.0,
                device: "cuda:1".into(),
                gpu_memory_bytes: Some(3 << 29),
            }],
            ..Default::default()
        };
        let b = proto::ExperimentStatus {
            experiment_id: "tiny-1".into(),
            name: "tiny".into(),
            state: "done".into(),
            ..Default::default()
        };
        let c = proto::ExperimentStatus {
            experiment_id: "samm-2".into(),
            name: "samm".into(),
            state: "failed".into(),
            tasks_failed: 2,
            errors: vec!["prior samm/006: CUDA out of memory".into()],
            ..Default::default()
        };
        let t = status_table(&[a, b, c]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("EXPERIMENT") && lines[0].contains("FOLDS"));
        assert!(
            lines[1].contains("mini-5a6eb9cc")
                && lines[1].contains("12/30")
                && lines[1].contains("4/10")
        );
        assert!(lines[2].contains("tiny-1") && lines[2].contains("done"));
        // Columns line up: every row is as wide as the header up to the last column.
        assert_eq!(lines[1].find("running"), lines[0].find("STATE"));
        assert!(t.contains("error: target casme2/sub03: diverged"));
        let failed = &t[t.find("samm-2:").unwrap()..];
        assert!(
            failed.contains("2 task(s) gave up; submit the same spec again"),
            "{failed}"
        );
        assert!(!t[..t.find("samm-2:").unwrap()].contains("gave up;"));
        let head = lines.iter().find(|l| l.contains("SAMPLES/S")).unwrap();
        let row = lines.iter().find(|l| l.contains("samm/006")).unwrap();
        assert!(row.contains("5/100") && row.contains("310.0"), "{row}");
        assert!(row.ends_with("cuda:1   1.5 GiB"), "{row}");
        assert_eq!(row.len(), head.len(), "{head}\n{row}");
    }
}
