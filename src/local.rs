//! Local mode (`mer run SPEC`), composed from the two halves the way a cluster is: a coordinator
//! (`mer_coordinator::rpc::server`) inside this process (on 127.0.0.1, with a random token) and N workers
//! (`mer_worker::agent`) on this machine, either as worker processes (`mer worker --coordinator URL`, the default)
//! or as agents inside this process (tests, the end-to-end test with the real engine). Progress bars on
//! stderr; results in the run folder; re-running the same command resumes from the run folder's state
//! (finished tasks are never re-run).
//!
//! Run folder layout: `state/` (SQLite state, artifacts, per-experiment results), `results.json`,
//! `summary.md`, `predictions/`, `logs/worker-<i>.log`, `cache/` (the workers' artifact cache).

use mer_coordinator::results::aggregate::ExperimentResults;
use mer_coordinator::rpc::client::{get_results, get_status, submit_spec};
use mer_coordinator::rpc::server::{start, ServerConfig};
use mer_coordinator::scheduler::SchedConfig;
use mer_coordinator::CoordError;
use mer_shared::client::{connect, Clients, ConnectOptions};
use mer_shared::proto;
use mer_worker::agent::trainer::Trainer;
use mer_worker::agent::{run_agent, AgentConfig};
use mer_worker::error::WorkerError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How local mode starts its workers.
#[derive(Clone)]
pub enum WorkerLauncher {
    /// Worker processes: `program worker --coordinator URL --slots S --cache-dir DIR --name local-i
    /// <extra_args>`, with the token in the `MER_TOKEN` environment variable.
    Processes {
        /// The `mer` executable (normally `std::env::current_exe()`).
        program: PathBuf,
        /// Extra arguments after `worker ...` (e.g. `--device cpu`, `--sim-trainer`).
        extra_args: Vec<String>,
    },
    /// Worker agents inside this process, all sharing one trainer.
    InProcess(Arc<dyn Trainer>),
}

/// Local-mode settings.
#[derive(Clone)]
pub struct LocalOptions {
    /// The experiment spec.
    pub spec: PathBuf,
    /// The run folder.
    pub run_dir: PathBuf,
    /// Number of workers.
    pub workers: u32,
    /// Slots per worker.
    pub slots: u32,
    /// How workers are started.
    pub launcher: WorkerLauncher,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Override of the spec's lease length (tests).
    pub lease_ttl: Option<Duration>,
    /// Serve the coordinator's HTTP port here while the run lasts: `/metrics` and the live dashboard
    /// (`/`, `/api/...`, docs/dashboard.md). `None`: no HTTP port.
    pub http_listen: Option<std::net::SocketAddr>,
}

impl LocalOptions {
    /// `workers` workers started by `launcher`, one slot each, run folder `run_dir`, no progress bars,
    /// the default lease length and no dashboard.
    pub fn new(spec: &Path, run_dir: &Path, workers: u32, launcher: WorkerLauncher) -> Self {
        LocalOptions {
            spec: spec.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            workers,
            slots: 1,
            launcher,
            progress: false,
            lease_ttl: None,
            http_listen: None,
        }
    }

    /// `workers` worker processes of `program`, run folder `run_dir`.
    pub fn processes(
        spec: &Path,
        run_dir: &Path,
        workers: u32,
        program: PathBuf,
        extra_args: Vec<String>,
    ) -> Self {
        let launcher = WorkerLauncher::Processes {
            program,
            extra_args,
        };
        Self::new(spec, run_dir, workers, launcher)
    }

    /// `workers` in-process agents running `trainer`.
    pub fn in_process(
        spec: &Path,
        run_dir: &Path,
        workers: u32,
        trainer: Arc<dyn Trainer>,
    ) -> Self {
        Self::new(spec, run_dir, workers, WorkerLauncher::InProcess(trainer))
    }
}

/// What a local run produced.
#[derive(Debug, Clone)]
pub struct LocalOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Experiment id.
    pub experiment_id: String,
    /// Final status (state `done`, or `failed` when some task gave up).
    pub status: proto::ExperimentStatus,
    /// The results (also in `run_dir/results.json`).
    pub results: ExperimentResults,
    /// The Markdown summary (also in `run_dir/summary.md`).
    pub summary_md: String,
    /// Tasks already finished when this run started (resumed).
    pub reused: u32,
}

/// The default run folder of a spec: `runs/<experiment name>` under the current folder.
pub fn default_run_dir(spec: &Path) -> Result<PathBuf, CoordError> {
    let s = mer_coordinator::spec::load_spec(spec)?;
    Ok(PathBuf::from("runs").join(s.name))
}

fn random_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut seed = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut seed);
    }
    mer_shared::digest::sha256_hex(
        format!("{nanos}|{}|{}", std::process::id(), hex::encode(seed)).as_bytes(),
    )
}

struct Workers {
    children: Vec<tokio::process::Child>,
    agents: Vec<tokio::task::JoinHandle<Result<mer_worker::agent::AgentStats, WorkerError>>>,
    stop: CancellationToken,
}

impl Workers {
    /// Number of workers still running.
    fn alive(&mut self) -> usize {
        let procs = self
            .children
            .iter_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .filter(|alive| *alive)
            .count();
        procs + self.agents.iter().filter(|a| !a.is_finished()).count()
    }

    /// Graceful drain: SIGTERM (processes) / cancel (agents), then wait; kill what is left after 15 s.
    async fn drain(mut self) {
        self.stop.cancel();
        for c in &self.children {
            if let Some(pid) = c.id() {
                // SAFETY: plain kill(2) on a child process id we spawned.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        for c in &mut self.children {
            match tokio::time::timeout_at(deadline, c.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    let _ = c.kill().await;
                }
            }
        }
        for a in self.agents {
            let _ = tokio::time::timeout_at(deadline, a).await;
        }
    }
}

/// Makes a worker process die with this one. `kill_on_drop` covers every exit that unwinds, but a `mer
/// run` killed by a signal drops nothing, and its workers went on training and writing into the run
/// folder. On Linux the kernel sends the child SIGKILL when the thread that spawned it exits
/// (`PR_SET_PDEATHSIG`); the spawning thread is a runtime worker thread, which lives as long as the
/// runtime, so in practice: when `mer run` dies. A child whose parent is already gone refuses to start.
fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec the closure only calls the async-signal-safe prctl(2) and
        // getppid(2) and builds an io::Error from an errno value; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

fn spawn_workers(opts: &LocalOptions, url: &str, token: &str) -> Result<Workers, CoordError> {
    let cache = opts.run_dir.join("cache");
    let logs = opts.run_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| CoordError::io(&logs, e))?;
    let stop = CancellationToken::new();
    let mut w = Workers {
        children: vec![],
        agents: vec![],
        stop: stop.clone(),
    };
    for i in 0..opts.workers.max(1) {
        match &opts.launcher {
            WorkerLauncher::Processes {
                program,
                extra_args,
            } => {
                let log_path = logs.join(format!("worker-{i}.log"));
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)
                    .map_err(|e| CoordError::io(&log_path, e))?;
                let log2 = log.try_clone().map_err(|e| CoordError::io(&log_path, e))?;
                let mut cmd = tokio::process::Command::new(program);
                die_with_parent(&mut cmd);
                let child = cmd
                    .arg("worker")
                    .arg("--coordinator")
                    .arg(url)
                    .arg("--slots")
                    .arg(opts.slots.to_string())
                    .arg("--cache-dir")
                    .arg(&cache)
                    .arg("--name")
                    .arg(format!("local-{i}"))
                    .args(extra_args)
                    .env("MER_TOKEN", token)
                    .stdin(std::process::Stdio::null())
                    .stdout(log)
                    .stderr(log2)
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| CoordError::io(program, e))?;
                w.children.push(child);
            }
            WorkerLauncher::InProcess(trainer) => {
                let mut cfg = AgentConfig::new(
                    ConnectOptions::new(url, Some(token.to_string())),
                    cache.clone(),
                );
                cfg.name = format!("local-{i}");
                cfg.slots = opts.slots.max(1);
                cfg.poll_wait = Duration::from_secs(2);
                let (t, s) = (trainer.clone(), stop.clone());
                w.agents
                    .push(tokio::spawn(async move { run_agent(cfg, t, s).await }));
            }
        }
    }
    Ok(w)
}

/// Runs (or resumes) an experiment in local mode and returns its results.
pub async fn run_local(opts: LocalOptions) -> Result<LocalOutcome, CoordError> {
    // A spec that cannot run fails here, before a run folder is made or a coordinator started.
    mer_coordinator::plan::preflight(&mer_coordinator::spec::load_spec(&opts.spec)?)?;
    std::fs::create_dir_all(&opts.run_dir).map_err(|e| CoordError::io(&opts.run_dir, e))?;
    let token = random_token();
    let mut cfg = ServerConfig::new(([127, 0, 0, 1], 0).into(), opts.run_dir.join("state"));
    cfg.token = Some(token.clone());
    cfg.http_listen = opts.http_listen;
    cfg.heartbeat = Duration::from_secs(2);
    cfg.max_wait = Duration::from_secs(5);
    if let Some(ttl) = opts.lease_ttl {
        cfg.sched = SchedConfig {
            lease_ttl: Some(ttl),
            ..SchedConfig::default()
        };
    }
    let coord = start(cfg).await?;
    if let Some(a) = coord.http_addr {
        tracing::info!("live dashboard on http://{a}/ (metrics on /metrics)");
    }
    let result = drive(&opts, &coord.url, &token).await;
    let shut = coord.shutdown().await;
    let out = result?;
    shut?;
    Ok(out)
}

async fn drive(opts: &LocalOptions, url: &str, token: &str) -> Result<LocalOutcome, CoordError> {
    let clients = connect(&ConnectOptions::new(url, Some(token.to_string())))?;
    let sub = submit_spec(&clients, &opts.spec).await?;
    supersede_others(&clients, &sub.experiment_id).await?;
    if sub.retried > 0 {
        tracing::info!(
            "{} had failed: retrying its {} given-up task(s)",
            sub.experiment_id,
            sub.retried
        );
    }
    if sub.reused > 0 {
        tracing::info!(
            "resuming {}: {} of {} tasks already finished",
            sub.experiment_id,
            sub.reused,
            sub.tasks
        );
    }
    let mut status = get_status(&clients, &sub.experiment_id).await?;
    if status.state == mer_coordinator::store::ExpState::Running.key() {
        let mut workers = spawn_workers(opts, url, token)?;
        let r = follow(opts, &clients, &sub.experiment_id, &mut workers).await;
        workers.drain().await;
        status = r?;
    }
    let r = get_results(&clients, &sub.experiment_id).await?;
    // The run folder gets the same files as the coordinator's experiment folder.
    mer_shared::fs::write_atomic(
        &opts.run_dir.join("results.json"),
        r.results_json.as_bytes(),
    )?;
    mer_shared::fs::write_atomic(&opts.run_dir.join("summary.md"), r.summary_md.as_bytes())?;
    for (name, text) in &r.files {
        if name.split('/').any(|p| p == ".." || p.is_empty()) {
            continue;
        }
        mer_shared::fs::write_atomic(&opts.run_dir.join(name), text.as_bytes())?;
    }
    let results: ExperimentResults =
        serde_json::from_str(&r.results_json).map_err(|e| CoordError::json("results.json", e))?;
    Ok(LocalOutcome {
        run_dir: opts.run_dir.clone(),
        experiment_id: sub.experiment_id,
        status,
        results,
        summary_md: r.summary_md,
        reused: sub.reused,
    })
}

/// An unfinished experiment beside this one in the run folder, left by a run that was stopped: most often an
/// earlier version of the same spec (the folder is named after it), but with `--run-dir` it may be another
/// spec's. The coordinator would give its tasks to the workers beside this one's and leave it half-done when
/// this run ends; it is cancelled instead. Its finished tasks stay reusable by key, and running its spec
/// again starts it anew.
async fn supersede_others(clients: &Clients, id: &str) -> Result<(), CoordError> {
    let mut c = clients.client.clone();
    let list = c
        .list(proto::ListRequest {})
        .await
        .map_err(|s| CoordError::rpc("list", s))?
        .into_inner();
    let running = mer_coordinator::store::ExpState::Running.key();
    for e in list.experiments {
        if e.experiment_id == id || e.state != running {
            continue;
        }
        c.cancel(proto::CancelRequest {
            experiment_id: e.experiment_id.clone(),
        })
        .await
        .map_err(|s| CoordError::rpc("cancel", s))?;
        tracing::warn!(
            "cancelled {} (spec '{}'): an unfinished experiment in the run folder, which would share the \
             workers ({} of {} tasks done; finished tasks stay reusable; run its spec again to finish it)",
            e.experiment_id,
            e.name,
            e.tasks_done,
            e.tasks_total
        );
    }
    Ok(())
}

async fn follow(
    opts: &LocalOptions,
    clients: &Clients,
    id: &str,
    workers: &mut Workers,
) -> Result<proto::ExperimentStatus, CoordError> {
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tasks (eta {eta})  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    } else {
        None
    };
    let mut dead_since: Option<tokio::time::Instant> = None;
    let out = loop {
        let s = get_status(clients, id).await?;
        if let Some(b) = &bar {
            b.set_length(s.tasks_total as u64);
            b.set_position((s.tasks_done + s.tasks_failed) as u64);
            let running: Vec<String> = s
                .running
                .iter()
                .take(4)
                .map(|r| {
                    if r.epochs > 0 {
                        format!("{} {} {}/{}", r.kind, r.fold, r.epoch + 1, r.epochs)
                    } else {
                        format!("{} {}", r.kind, r.fold)
                    }
                })
                .collect();
            let mut msg = format!("folds {}/{}", s.folds_done, s.folds_total);
            if s.tasks_failed > 0 || s.lost > 0 {
                msg += &format!("  failed {}  lost {}", s.tasks_failed, s.lost);
            }
            if !running.is_empty() {
                msg += &format!("  | {}", running.join(", "));
            }
            b.set_message(msg);
        }
        if s.state != mer_coordinator::store::ExpState::Running.key() {
            break s;
        }
        if workers.alive() == 0 {
            // Give the coordinator a moment to notice results in flight, then give up.
            let since = *dead_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() > Duration::from_secs(3) {
                if let Some(b) = &bar {
                    b.abandon();
                }
                return Err(CoordError::Runtime(format!(
                    "every worker exited before the experiment finished ({} of {} tasks done); see {}",
                    s.tasks_done,
                    s.tasks_total,
                    opts.run_dir.join("logs").display()
                )));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if let Some(b) = &bar {
        b.finish_with_message(format!(
            "{}: {} tasks done, {} gave up",
            out.state, out.tasks_done, out.tasks_failed
        ));
    }
    Ok(out)
}
