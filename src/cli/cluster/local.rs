//! `mer run`: an experiment on this machine (local mode): a coordinator and N worker processes,
//! progress bars, the results in the run folder.

use super::{name_unreachable, SimArgs};
use anyhow::{bail, Context};
use clap::Args;
use mer::local::{default_run_dir, run_local, LocalOptions};
use mer_shared::client::{connect, ConnectOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Device of the workers (`cpu`, `cuda`, `cuda:N`, `auto`). For a spec with
    /// `train.devices_per_task = N > 1` each worker gets N devices by the replica rule (`cpu`: N CPU
    /// replicas, `cuda:k`: cuda:k .. cuda:k+N-1, `auto`: N times auto), or a comma-separated list of N.
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

/// `mer plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The experiment spec (TOML).
    pub spec: PathBuf,
    /// The run folder whose finished tasks count as reused (default: runs/<experiment name>, where
    /// `mer run` puts it).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Count as reused what this coordinator has finished instead of a run folder (`http://host:port`).
    #[arg(long, conflicts_with = "run_dir")]
    pub coordinator: Option<String>,
    /// The coordinator's token (with --coordinator).
    #[arg(long, env = "MER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) for a coordinator on `https://`.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Print the preview as JSON (for scripts).
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn cmd_plan(a: PlanArgs) -> anyhow::Result<()> {
    let p = match &a.coordinator {
        Some(url) => {
            let mut o = ConnectOptions::new(url.clone(), a.token.clone());
            o.tls_ca = a.tls_ca.clone();
            let clients = connect(&o)?;
            mer_coordinator::rpc::client::preview_on(&clients, &a.spec, url)
                .await
                .map_err(|e| name_unreachable(e.into(), url))?
        }
        None => {
            let run_dir = match &a.run_dir {
                Some(d) => d.clone(),
                None => default_run_dir(&a.spec)?,
            };
            mer_coordinator::plan::preview::preview_spec(&a.spec, &run_dir)?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{p}");
    }
    Ok(())
}

pub(super) async fn cmd_run(a: RunArgs) -> anyhow::Result<()> {
    let run_dir = match &a.run_dir {
        Some(d) => d.clone(),
        None => default_run_dir(&a.spec)?,
    };
    let program = std::env::current_exe().context("locating the mer executable")?;
    // The devices each local worker announces: as many as one task needs (the spec's error, if it has
    // one, comes from run_local with its file and line).
    let need = mer_coordinator::spec::load_spec(&a.spec).map_or(1, |s| s.train.devices_per_task);
    let devices = mer_shared::device::replica_specs(&a.device, need)
        .map_err(|e| anyhow::anyhow!("--device {e}"))?;
    let mut extra = Vec::new();
    for d in devices {
        extra.extend(["--device".to_string(), d.to_string()]);
    }
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
