//! `mer bench scheduler`: the orchestrator's throughput over real gRPC on loopback. A coordinator (real
//! SQLite state, `synchronous = FULL`) and W in-process worker agents, each with its own connection and
//! the zero-delay sim trainer, run one experiment of about N tasks (F folds x P sweep points + F prior
//! tasks). Reports tasks/s, lease latency percentiles (lease calls that returned a task) and peak RSS.

use mer_coordinator::rpc::client::{submit_spec, watch_until_done};
use mer_coordinator::rpc::server::{start, ServerConfig};
use mer_coordinator::CoordError;
use mer_shared::client::{connect, ConnectOptions};
use mer_worker::agent::sim::{write_sim_dataset, SimTrainer};
use mer_worker::agent::{run_agent, AgentConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct SchedBench {
    /// Tasks in the experiment.
    pub tasks: usize,
    /// Worker agents.
    pub workers: usize,
    /// Seconds to submit (upload, expand, store the plan).
    pub submit_seconds: f64,
    /// Seconds from the submission's acknowledgement to the experiment's end.
    pub seconds: f64,
    /// Tasks per second.
    pub tasks_per_s: f64,
    /// Median lease latency (ms).
    pub lease_p50_ms: f64,
    /// 99th-percentile lease latency (ms).
    pub lease_p99_ms: f64,
    /// Peak resident memory of this process (MiB), from /proc/self/status VmHWM.
    pub peak_rss_mib: f64,
    /// Resident memory after the run (MiB).
    pub rss_mib: f64,
}

/// Reads a `Vm...: N kB` line of /proc/self/status, in MiB.
pub fn proc_status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Runs the benchmark in `dir` with about `tasks` tasks and `workers` agents.
pub async fn scheduler_bench(
    dir: &Path,
    tasks: usize,
    workers: usize,
) -> Result<SchedBench, CoordError> {
    // 3 parts x S subjects = F folds; P sweep points: F * (P + 1) ~ tasks.
    let subjects = 34usize;
    let folds = 3 * subjects;
    let points = (tasks / folds).saturating_sub(1).max(1);
    let ds = dir.join("bench.safetensors");
    write_sim_dataset(&ds, subjects, 1).map_err(|e| CoordError::Runtime(e.to_string()))?;
    let alphas: Vec<String> = (0..points)
        .map(|i| format!("{:.2}", 1.0 + i as f64 * 0.01))
        .collect();
    let spec = dir.join("bench.toml");
    std::fs::write(
        &spec,
        format!("name = \"bench\"\ndataset = \"bench.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [{}]\n", alphas.join(", ")),
    )
    .map_err(|e| CoordError::io(&spec, e))?;
    let token = "bench".to_string();
    let mut cfg = ServerConfig::new(([127, 0, 0, 1], 0).into(), dir.join("state"));
    cfg.token = Some(token.clone());
    cfg.heartbeat = Duration::from_secs(2);
    let coord = start(cfg).await?;
    let clients = connect(&ConnectOptions::new(&coord.url, Some(token.clone())))?;
    let t_submit = Instant::now();
    let sub = submit_spec(&clients, &spec).await?;
    let submit_seconds = t_submit.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let latencies = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(
        sub.tasks as usize,
    )));
    let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
    let stop = CancellationToken::new();
    let mut agents = Vec::new();
    for i in 0..workers {
        let mut a = AgentConfig::new(
            ConnectOptions::new(&coord.url, Some(token.clone())),
            dir.join("cache"),
        );
        a.name = format!("bench-{i}");
        a.poll_wait = Duration::from_secs(2);
        a.lease_latencies = Some(latencies.clone());
        let (t, s) = (trainer.clone(), stop.clone());
        agents.push(tokio::spawn(async move { run_agent(a, t, s).await }));
    }
    let status = watch_until_done(&clients, &sub.experiment_id, |_| {}).await?;
    let seconds = t0.elapsed().as_secs_f64();
    stop.cancel();
    for a in agents {
        a.await
            .map_err(|e| CoordError::Runtime(format!("agent: {e}")))?
            .map_err(|e| CoordError::Runtime(format!("agent: {e}")))?;
    }
    coord.shutdown().await?;
    if status.state != "done" {
        return Err(CoordError::Runtime(format!(
            "benchmark experiment ended {}: {:?}",
            status.state, status.errors
        )));
    }
    let mut l = latencies.lock().clone();
    l.sort_unstable();
    let pct = |p: f64| {
        if l.is_empty() {
            0.0
        } else {
            l[((l.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
        }
    };
    Ok(SchedBench {
        tasks: sub.tasks as usize,
        workers,
        submit_seconds,
        seconds,
        tasks_per_s: sub.tasks as f64 / seconds,
        lease_p50_ms: pct(0.5),
        lease_p99_ms: pct(0.99),
        peak_rss_mib: proc_status_mib("VmHWM:"),
        rss_mib: proc_status_mib("VmRSS:"),
    })
}
