//! Gang leases (`train.devices_per_task`) through a real coordinator and worker agents over gRPC, with
//! the sim trainer behind a ledger that records which devices of which worker every running task holds
//! and flags any overlap a gang lease forbids (a device of a gang task used by another task at the same
//! moment). The sim trainer's results do not depend on devices, so these tests look only at placement.

use mer_coordinator::rpc::client::get_status;
use mer_shared::proto;
use mer_worker::agent::sim::SimTrainer;
use mer_worker::agent::trainer::{
    Progress, TaskInputs, TaskOutput, TaskSpec, Trainer, TrainerError,
};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::Cluster;

/// A task as the ledger saw it start: worker, devices, and whether it is a gang task.
#[derive(Debug, Clone)]
struct Held {
    worker: String,
    devices: Vec<String>,
    needs: usize,
}

/// The sim trainer, recording every task's devices while it runs.
struct Ledger {
    inner: SimTrainer,
    /// The worker this trainer instance belongs to (one instance per agent).
    worker: String,
    state: Arc<parking_lot::Mutex<LedgerState>>,
}

#[derive(Debug, Default)]
struct LedgerState {
    running: BTreeMap<u64, Held>,
    next: u64,
    /// Every start, in order.
    started: Vec<Held>,
    /// Overlaps a gang lease forbids.
    violations: Vec<String>,
}

impl Trainer for Ledger {
    fn run(
        &self,
        task: &TaskSpec,
        inputs: &TaskInputs,
        progress: &mut dyn FnMut(Progress),
        cancel: &AtomicBool,
    ) -> Result<TaskOutput, TrainerError> {
        let me = Held {
            worker: self.worker.clone(),
            devices: inputs.device.split(',').map(str::to_string).collect(),
            needs: task.payload.train.devices_per_task,
        };
        let id = {
            let mut s = self.state.lock();
            if me.devices.len() != me.needs.max(1) {
                s.violations.push(format!(
                    "task {} needs {} devices and got '{}'",
                    task.key, me.needs, inputs.device
                ));
            }
            let overlaps: Vec<String> = s
                .running
                .values()
                .filter(|other| {
                    other.worker == me.worker
                        && other.devices.iter().any(|d| me.devices.contains(d))
                        && (other.needs > 1 || me.needs > 1)
                })
                .map(|other| format!("{me:?} overlaps {other:?}"))
                .collect();
            s.violations.extend(overlaps);
            s.next += 1;
            let id = s.next;
            s.running.insert(id, me.clone());
            s.started.push(me);
            id
        };
        let out = self.inner.run(task, inputs, progress, cancel);
        self.state.lock().running.remove(&id);
        out
    }
}

fn ledger(worker: &str, state: &Arc<parking_lot::Mutex<LedgerState>>) -> Arc<dyn Trainer> {
    Arc::new(Ledger {
        inner: SimTrainer::new(Duration::from_millis(40), None),
        worker: worker.into(),
        state: state.clone(),
    })
}

/// Two-device tasks on a worker with three devices and three slots, beside a one-device worker: every
/// gang task gets two devices of the three-device worker and holds them alone; the one-device worker
/// never gets one; nothing over-commits a device; the experiment finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gang_leases_take_all_their_devices_and_never_over_commit() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::sim_spec(dir.path(), "gang", 4, "[train]\ndevices_per_task = 2\n");
    let cfg = support::server_config(&dir.path().join("state"), None);
    let mut c = Cluster::start(dir.path(), cfg, None).await;
    let state = Arc::new(parking_lot::Mutex::new(LedgerState::default()));
    let mut big = c.agent_config(3);
    big.name = "big".into();
    big.devices = vec!["cuda:0".into(), "cuda:1".into(), "cuda:2".into()];
    c.add_agent(big, ledger("big", &state));
    let mut small = c.agent_config(2);
    small.name = "small".into();
    small.devices = vec!["cuda:0".into()];
    c.add_agent(small, ledger("small", &state));
    let id = c.submit(&spec).await.experiment_id;
    let st = c
        .wait_for(&id, Duration::from_secs(60), |s| s.state != "running")
        .await;
    assert_eq!(st.state, "done", "{st:?}");
    assert_eq!(st.tasks_done, st.tasks_total);
    let s = std::mem::take(&mut *state.lock());
    assert!(s.violations.is_empty(), "{:#?}", s.violations);
    assert_eq!(s.started.len() as u32, st.tasks_total, "each task ran once");
    for h in &s.started {
        if h.needs == 2 {
            assert_eq!(h.worker, "big", "{h:?}");
            assert_eq!(h.devices.len(), 2, "{h:?}");
        }
    }
    assert!(
        s.started.iter().any(|h| h.needs == 2),
        "the spec's tasks are gang tasks"
    );
    c.shutdown().await;
}

/// Two-device tasks with workers of one device each are never started, and status and /metrics say
/// why; a worker with two devices registering later runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_needing_more_devices_than_any_worker_waits_and_status_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::sim_spec(dir.path(), "too-big", 3, "[train]\ndevices_per_task = 2\n");
    let mut cfg = support::server_config(&dir.path().join("state"), None);
    cfg.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let mut c = Cluster::start(dir.path(), cfg, None).await;
    let state = Arc::new(parking_lot::Mutex::new(LedgerState::default()));
    for name in ["one-a", "one-b"] {
        let mut a = c.agent_config(2);
        a.name = name.into();
        a.devices = vec!["cuda:0".into()];
        c.add_agent(a, ledger(name, &state));
    }
    let id = c.submit(&spec).await.experiment_id;
    let st = c
        .wait_for(&id, Duration::from_secs(20), |s| !s.waiting.is_empty())
        .await;
    let why = st.waiting.join("\n");
    assert!(why.contains("need 2 devices each"), "{why}");
    assert!(
        why.contains("no registered worker has more than 1"),
        "{why}"
    );
    // Nothing starts while it waits.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let st: proto::ExperimentStatus = get_status(&c.clients, &id).await.unwrap();
    assert_eq!((st.tasks_running, st.tasks_done), (0, 0), "{st:?}");
    assert!(state.lock().started.is_empty());
    let addr = c.coord().http_addr.expect("metrics are served");
    let (_, text) = support::loopback_get::http_get(addr, "/metrics").await;
    let parsed = mer_coordinator::metrics::parse_text(&text).unwrap();
    let unplaceable =
        mer_coordinator::metrics::series_value(&parsed, "mer_tasks_unplaceable", &[]).unwrap();
    assert!(unplaceable > 0.0, "{text}");

    let mut two = c.agent_config(1);
    two.name = "two".into();
    two.devices = vec!["cpu".into(), "cpu".into()];
    c.add_agent(two, ledger("two", &state));
    let st = c
        .wait_for(&id, Duration::from_secs(60), |s| s.state != "running")
        .await;
    assert_eq!(st.state, "done", "{st:?}");
    assert!(st.waiting.is_empty(), "{st:?}");
    let s = std::mem::take(&mut *state.lock());
    assert!(s.violations.is_empty(), "{:#?}", s.violations);
    for h in s.started.iter().filter(|h| h.needs == 2) {
        assert_eq!((h.worker.as_str(), h.devices.len()), ("two", 2), "{h:?}");
    }
    c.shutdown().await;
}
