//! The long-running servers: `mer coordinator` (gRPC for workers and clients, durable state) and
//! `mer worker` (an agent that leases tasks and trains them with libtorch, or the simulated trainer).

use super::{drain_on_signals, shutdown_on_signals, ConnectArgs, SimArgs};
use anyhow::bail;
use clap::Args;
use mer_coordinator::rpc::server::{start, ServerConfig, TlsFiles};
use mer_coordinator::scheduler::SchedConfig;
use mer_worker::agent::trainer::Trainer;
use mer_worker::agent::{run_agent_with_drain, AgentConfig};
use mer_worker::user_method::WithUserMethods;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    /// How often the Slurm launcher looks at its jobs (seconds), for experiments with
    /// launcher = "slurm" (docs/slurm.md). 0 turns the launcher off.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub slurm_poll: f64,
    /// The Slurm launcher's first wait before another job array (seconds; doubles per failure).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub slurm_backoff: f64,
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
    /// On SIGUSR2 (a batch system's warning before the time limit), running tasks get this many seconds,
    /// then they are released unfinished as interrupted (queued again, not counted as failures). Without
    /// it, SIGUSR2 drains like SIGTERM.
    #[arg(long, value_name = "SECS")]
    pub drain_grace: Option<u64>,
    /// On SIGTERM (preemption, `scancel`, the end of a batch job), running tasks get this many seconds,
    /// then they are released unfinished as interrupted. Without it, running tasks finish first.
    #[arg(long, value_name = "SECS")]
    pub term_grace: Option<u64>,
    /// When this worker's batch job ends (seconds since the Unix epoch): it leases only tasks whose kind
    /// usually finishes before then, and none after. The Slurm launcher's job script sets it.
    #[arg(long, value_name = "UNIX_SECS")]
    pub job_end: Option<u64>,
}

pub(super) async fn cmd_coordinator(a: CoordinatorArgs) -> anyhow::Result<()> {
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
    if a.slurm_poll > 0.0 {
        let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.05, 86400.0));
        cfg.slurm = Some((secs(a.slurm_poll), secs(a.slurm_backoff)));
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

pub(super) async fn cmd_worker(a: WorkerArgs) -> anyhow::Result<()> {
    // Every worker runs the spec's own methods (a command each, no libtorch needed) beside its trainer.
    let trainer: Arc<dyn Trainer> = match a.sim.trainer() {
        Some(sim) => Arc::new(WithUserMethods::new(sim)),
        None => real_trainer()?,
    };
    let mut cfg = AgentConfig::new(a.connect.options(), a.cache_dir.clone());
    if let Some(n) = a.name {
        cfg.name = n;
    }
    cfg.slots = a.slots.max(1);
    cfg.devices = a.devices.clone();
    cfg.heartbeat = a.heartbeat_ms.map(Duration::from_millis);
    cfg.job_end = a
        .job_end
        .map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s));
    let drain = drain_on_signals(
        a.drain_grace.map(Duration::from_secs),
        a.term_grace.map(Duration::from_secs),
    );
    let stats = run_agent_with_drain(cfg, trainer, drain).await?;
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
    // One dataset cache for both: a worker alternating built-in and user tasks holds the data once.
    let cache = Arc::new(mer_worker::agent::dataset_cache::DatasetCache::default());
    Ok(Arc::new(WithUserMethods::with_cache(
        mer_worker::engine_trainer::EngineTrainer::with_cache(cache.clone()),
        cache,
    )))
}

#[cfg(not(feature = "worker"))]
fn real_trainer() -> anyhow::Result<Arc<dyn Trainer>> {
    // Without libtorch a worker still runs the spec's own methods; built-in tasks fail with the reason.
    Ok(Arc::new(WithUserMethods::new(NoEngine)))
}

/// The trainer of a build without libtorch: refuses every built-in task (user methods run beside it).
#[cfg(not(feature = "worker"))]
struct NoEngine;

#[cfg(not(feature = "worker"))]
impl Trainer for NoEngine {
    fn run(
        &self,
        task: &mer_worker::agent::trainer::TaskSpec,
        _: &mer_worker::agent::trainer::TaskInputs,
        _: &mut dyn FnMut(mer_worker::agent::trainer::Progress),
        _: &std::sync::atomic::AtomicBool,
    ) -> Result<mer_worker::agent::trainer::TaskOutput, mer_worker::agent::trainer::TrainerError>
    {
        // Another worker, built with libtorch, may run it.
        Err(mer_worker::agent::trainer::TrainerError::retryable(format!(
            "task {}: this mer was built without the `worker` feature (no libtorch): it runs only methods of the spec's own (use a full build)",
            task.key
        )))
    }
}
