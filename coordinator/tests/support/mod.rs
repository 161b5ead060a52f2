//! Set-up shared by the coordinator's integration tests (`mod support;` in each): a sim dataset and a
//! spec over it, a coordinator on 127.0.0.1:0, in-process worker agents, a trainer that holds tasks at
//! a gate, and (from `src/loopback_get.rs`) a raw HTTP GET on loopback. Each test crate uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mer_coordinator::agent::{
    run_agent, AgentConfig, AgentStats, Progress, TaskInputs, TaskOutput, TaskSpec, Trainer,
    TrainerError,
};
use mer_coordinator::client::{connect, Clients, ConnectOptions};
use mer_coordinator::plan::TaskKind;
use mer_coordinator::server::ServerConfig;
use mer_coordinator::sim::{write_sim_dataset, SimTrainer};
use tokio_util::sync::CancellationToken;

#[path = "../../src/loopback_get.rs"]
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

/// gRPC clients of the coordinator at `url`.
pub fn clients(url: &str, token: Option<&str>) -> Clients {
    connect(&ConnectOptions::new(url, token.map(str::to_string))).unwrap()
}

/// A worker agent of the coordinator at `url` with `slots` slots and its cache in `cache`; it polls
/// for work every 500 ms and heartbeats every 100 ms.
pub fn agent_config(url: &str, token: Option<&str>, cache: &Path, slots: u32) -> AgentConfig {
    let mut a = AgentConfig::new(
        ConnectOptions::new(url, token.map(str::to_string)),
        cache.to_path_buf(),
    );
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
