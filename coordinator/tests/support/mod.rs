//! Set-up shared by the coordinator's integration tests (`mod support;` in each): a sim dataset and a
//! spec over it, the [`Cluster`] harness (a coordinator on 127.0.0.1:0 with N in-process worker
//! agents: submit, wait for a condition with a timeout, lose a worker, restart the coordinator, shut
//! down), a trainer that holds tasks at a gate, and (from `src/test_support/loopback_get.rs`) a raw HTTP GET on
//! loopback. Each test crate uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mer_coordinator::plan::TaskKind;
use mer_coordinator::rpc::client::{get_status, submit_spec};
use mer_coordinator::rpc::server::{start, CoordinatorHandle, ServerConfig};
use mer_shared::client::{connect, Clients, ConnectOptions};
use mer_shared::proto;
use mer_worker::agent::sim::{write_sim_dataset, SimTrainer};
use mer_worker::agent::trainer::{
    Progress, TaskInputs, TaskOutput, TaskSpec, Trainer, TrainerError,
};
use mer_worker::agent::{run_agent, AgentConfig, AgentStats};
use tokio_util::sync::CancellationToken;

#[path = "../../src/test_support/loopback_get.rs"]
pub mod loopback_get;

/// Writes a sim dataset (`subjects` per part, 2 clips each) as `data.safetensors` and the spec
/// `exp.toml` over it: experiment `name`, MEGC 3-class, the top-level TOML lines `extra`, and a sweep
/// of alpha over 1 and 2. Returns the spec's path.
pub fn sim_spec(dir: &Path, name: &str, subjects: usize, extra: &str) -> PathBuf {
    write_sim_dataset(&dir.join("data.safetensors"), subjects, 2).unwrap();
    let spec = dir.join("exp.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"{name}\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\n{extra}\
             [sweep]\nalpha = [1, 2]\n"
        ),
    )
    .unwrap();
    spec
}

/// A coordinator on 127.0.0.1:0 with its state in `state`, requiring `token` if given, with a short
/// heartbeat (100 ms) and lease reaping (50 ms) so that tests run fast.
pub fn server_config(state: &Path, token: Option<&str>) -> ServerConfig {
    let mut cfg = ServerConfig::new("127.0.0.1:0".parse().unwrap(), state.to_path_buf());
    cfg.token = token.map(str::to_string);
    cfg.heartbeat = Duration::from_millis(100);
    cfg.reap_every = Duration::from_millis(50);
    cfg
}

/// A worker agent connecting with `connect`, with `slots` slots and its cache in `cache`; it polls
/// for work every 500 ms and heartbeats every 100 ms.
pub fn agent_config(connect: ConnectOptions, cache: &Path, slots: u32) -> AgentConfig {
    let mut a = AgentConfig::new(connect, cache.to_path_buf());
    a.slots = slots;
    a.poll_wait = Duration::from_millis(500);
    a.heartbeat = Some(Duration::from_millis(100));
    a.unreachable_timeout = Duration::from_secs(30);
    a
}

/// Runs the agent `cfg` with `trainer` on the runtime until `stop`; the handle yields its statistics
/// (and panics the test if the agent failed).
pub fn spawn_agent(
    cfg: AgentConfig,
    trainer: Arc<dyn Trainer>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<AgentStats> {
    let stop = stop.clone();
    tokio::spawn(async move { run_agent(cfg, trainer, stop).await.unwrap() })
}

/// What a [`Gated`] trainer reports while a task waits at the gate.
pub type GateReport = fn(&TaskInputs) -> Progress;

/// The sim trainer, with the target tasks of one fold (or of every fold) held until [`Gated::open`]:
/// a held task reports `report` once, then waits, so that the cluster's state stands still while a
/// test looks at it.
pub struct Gated {
    inner: SimTrainer,
    fold: Option<String>,
    report: GateReport,
    open: AtomicBool,
}

impl Gated {
    /// Holds the target tasks of `fold` (`dataset/subject`; `None`: every fold), run by `inner`.
    pub fn new(inner: SimTrainer, fold: Option<&str>, report: GateReport) -> Self {
        Gated {
            inner,
            fold: fold.map(str::to_string),
            report,
            open: AtomicBool::new(false),
        }
    }

    /// Lets the held tasks (and all later ones) run.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Trainer for Gated {
    fn run(
        &self,
        task: &TaskSpec,
        inputs: &TaskInputs,
        progress: &mut dyn FnMut(Progress),
        cancel: &AtomicBool,
    ) -> Result<TaskOutput, TrainerError> {
        let held =
            task.kind == TaskKind::Target && self.fold.as_deref().is_none_or(|f| f == task.fold);
        if held {
            progress((self.report)(inputs));
            while !self.open.load(Ordering::SeqCst) {
                if cancel.load(Ordering::SeqCst) {
                    return Err(TrainerError::retryable("cancelled"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.inner.run(task, inputs, progress, cancel)
    }
}

/// A coordinator with in-process worker agents, as the cluster tests drive it. Each agent has its own
/// stop token, so one can be drained (`stop_agents`) or lost (`lose_agent`: its task is aborted with no
/// goodbye, as when a machine dies) without touching the others.
pub struct Cluster {
    /// The running coordinator (`None` only inside a restart).
    coord: Option<CoordinatorHandle>,
    /// Clients of it (with the token it requires).
    pub clients: Clients,
    /// How agents and clients connect (URL, token, TLS CA).
    pub connect: ConnectOptions,
    /// Where agent caches go (`cache<i>`).
    dir: PathBuf,
    /// The configuration it was started with (a restart reuses it, on the same address).
    cfg: ServerConfig,
    /// Live agents: their stop token and task; `None` once lost or stopped.
    agents: Vec<Option<(CancellationToken, tokio::task::JoinHandle<AgentStats>)>>,
}

impl Cluster {
    /// Starts a coordinator with `cfg`; clients and agents connect with `token` (plain gRPC).
    pub async fn start(dir: &Path, cfg: ServerConfig, token: Option<&str>) -> Cluster {
        Self::start_with(dir, cfg, |url| {
            ConnectOptions::new(url, token.map(str::to_string))
        })
        .await
    }

    /// Starts a coordinator with `cfg`; `connect` says how to reach it given its URL (TLS CA...).
    pub async fn start_with(
        dir: &Path,
        cfg: ServerConfig,
        connect_to: impl FnOnce(&str) -> ConnectOptions,
    ) -> Cluster {
        let coord = start(cfg.clone()).await.unwrap();
        let opts = connect_to(&coord.url);
        let clients = connect(&opts).unwrap();
        Cluster {
            coord: Some(coord),
            clients,
            connect: opts,
            dir: dir.to_path_buf(),
            cfg,
            agents: Vec::new(),
        }
    }

    /// The running coordinator.
    pub fn coord(&self) -> &CoordinatorHandle {
        self.coord.as_ref().expect("a coordinator runs")
    }

    /// The coordinator's URL.
    pub fn url(&self) -> &str {
        &self.coord().url
    }

    /// An agent configuration for this cluster (cache `cache<i>` for the next agent index), for tests
    /// that adjust it before [`Cluster::add_agent`].
    pub fn agent_config(&self, slots: u32) -> AgentConfig {
        agent_config(
            self.connect.clone(),
            &self.dir.join(format!("cache{}", self.agents.len())),
            slots,
        )
    }

    /// Starts one agent with `cfg` and `trainer`; returns its index.
    pub fn add_agent(&mut self, cfg: AgentConfig, trainer: Arc<dyn Trainer>) -> usize {
        let stop = CancellationToken::new();
        let h = spawn_agent(cfg, trainer, &stop);
        self.agents.push(Some((stop, h)));
        self.agents.len() - 1
    }

    /// Starts `n` agents with `slots` slots each, all running `trainer`.
    pub fn add_agents(&mut self, n: usize, slots: u32, trainer: Arc<dyn Trainer>) {
        for _ in 0..n {
            let cfg = self.agent_config(slots);
            self.add_agent(cfg, trainer.clone());
        }
    }

    /// Submits the spec at `spec` (uploading its dataset).
    pub async fn submit(&self, spec: &Path) -> proto::SubmitReply {
        submit_spec(&self.clients, spec).await.unwrap()
    }

    /// Polls experiment `id` every 20 ms until `cond` holds and returns that status; fails the test
    /// with the last status seen if `timeout` passes first.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        cond: impl Fn(&proto::ExperimentStatus) -> bool,
    ) -> proto::ExperimentStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let st = get_status(&self.clients, id).await.unwrap();
            if cond(&st) {
                return st;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached within {timeout:?}; last status: {st:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Loses agent `i`: its task is aborted where it stands (no drain, no goodbye; its leases expire).
    pub fn lose_agent(&mut self, i: usize) {
        if let Some((_, h)) = self.agents[i].take() {
            h.abort();
        }
    }

    /// Stops the coordinator abruptly, as if its process died (no graceful shutdown), leaving the agents
    /// running: they keep their tasks and wait for it. Returns the address it listened on.
    pub fn crash_coordinator(&mut self) -> std::net::SocketAddr {
        let old = self.coord.take().expect("a coordinator runs");
        let addr = old.addr;
        old.abort();
        addr
    }

    /// Starts the coordinator again after [`Cluster::crash_coordinator`], on `addr`.
    pub async fn start_coordinator_on(&mut self, addr: std::net::SocketAddr) {
        let mut cfg = self.cfg.clone();
        cfg.listen = addr;
        self.coord = Some(start(cfg).await.unwrap());
    }

    /// Drains every live agent (running tasks finish and are reported) and returns their statistics,
    /// in agent order (lost agents are left out).
    pub async fn stop_agents(&mut self) -> Vec<AgentStats> {
        for (stop, _) in self.agents.iter().flatten() {
            stop.cancel();
        }
        let mut out = Vec::new();
        for a in self.agents.iter_mut() {
            if let Some((_, h)) = a.take() {
                out.push(h.await.unwrap());
            }
        }
        out
    }

    /// Drains the agents and shuts the coordinator down gracefully.
    pub async fn shutdown(mut self) -> Vec<AgentStats> {
        let stats = self.stop_agents().await;
        if let Some(c) = self.coord.take() {
            c.shutdown().await.unwrap();
        }
        stats
    }
}
