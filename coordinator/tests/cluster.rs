//! In-process integration tests: a real coordinator (SQLite state, gRPC on 127.0.0.1:0) and several
//! worker agents with the deterministic sim trainer, talking real gRPC. Every fault test compares the
//! final results with a fault-free reference run of the same tasks.

use mer_coordinator::plan::{plan_spec, Plan, TaskKind};
use mer_coordinator::results::aggregate::aggregate;
use mer_coordinator::results::writer::write_results;
use mer_coordinator::rpc::client::{get_results, get_status, submit_spec, watch_until_done};
use mer_coordinator::rpc::server::{CoordinatorHandle, ServerConfig};
use mer_coordinator::scheduler::SchedConfig;
use mer_coordinator::spec::load_spec;
use mer_shared::client::{connect, upload_bytes, Clients, ConnectOptions};
use mer_shared::proto;
use mer_worker::agent::run_agent;
use mer_worker::agent::sim::{reference_run, SimTrainer};
use mer_worker::agent::trainer::{
    Progress, TaskInputs, TaskOutput, TaskSpec, Trainer, TrainerError,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod support;
use support::Cluster;

const TOKEN: &str = "test-token";

/// Writes a sim dataset and a spec over it; returns the spec path.
fn setup(dir: &Path, subjects: usize, extra: &str) -> PathBuf {
    support::sim_spec(dir, "exp", subjects, extra)
}

fn server_config(state: &Path) -> ServerConfig {
    support::server_config(state, Some(TOKEN))
}

/// A coordinator with `cfg` that requires [`TOKEN`], clients connected, no agents yet.
async fn cluster(dir: &Path, cfg: ServerConfig) -> Cluster {
    Cluster::start(dir, cfg, Some(TOKEN)).await
}

/// The fault-free reference: every task run directly, then pooled; returns `results.json` and the
/// prediction files as written by `write_results`.
fn reference_files(plan: &Plan, dir: &Path) -> BTreeMap<String, String> {
    let results = reference_run(
        &plan.task_specs(),
        &plan.datasets,
        &SimTrainer::new(Duration::ZERO, None),
        &dir.join("ref-work"),
    )
    .unwrap();
    let res = aggregate(plan, &results);
    assert!(!res.partial);
    let out = dir.join("ref-results");
    write_results(&out, &res).unwrap();
    read_tree(&out)
}

fn read_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// The coordinator's results of an experiment, as the same file map.
async fn coordinator_files(c: &Clients, id: &str) -> BTreeMap<String, String> {
    let r = get_results(c, id).await.unwrap();
    assert!(r.complete);
    let mut files: BTreeMap<String, String> = r.files.into_iter().collect();
    // Compare the planner's files only; plan.json, spec.toml, folds.jsonl and provenance.json (for `mer
    // report`, see report::bundle) name workers and times that differ from the reference run by nature.
    files.retain(|k, _| k.starts_with("predictions/"));
    files.insert("results.json".into(), r.results_json);
    files.insert("summary.md".into(), r.summary_md);
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_agents_run_an_experiment_and_match_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let spec = setup(dir.path(), 3, "");
    let plan = plan_spec(&load_spec(&spec).unwrap()).unwrap();
    assert_eq!(plan.tasks.len(), 9 + 18);
    let mut cl = cluster(dir.path(), server_config(&dir.path().join("state"))).await;
    let c = cl.clients.clone();
    let sub = cl.submit(&spec).await;
    assert_eq!(sub.tasks, 27);
    assert!(!sub.existing);
    let sim = Arc::new(SimTrainer::new(Duration::from_millis(20), None));
    cl.add_agents(3, 2, sim.clone());
    let mut updates = 0;
    let status = watch_until_done(&c, &sub.experiment_id, |_| updates += 1)
        .await
        .unwrap();
    assert_eq!(status.state, "done");
    assert_eq!(
        (
            status.tasks_done,
            status.tasks_total,
            status.folds_done,
            status.folds_total
        ),
        (27, 27, 9, 9)
    );
    assert_eq!((status.lost, status.duplicates, status.retries), (0, 0, 0));
    assert!(updates >= 2, "watch streamed progress ({updates} updates)");
    assert_eq!(sim.executions(), 27, "each task ran exactly once");
    let stats = cl.stop_agents().await;
    assert_eq!(stats.iter().map(|s| s.accepted).sum::<u64>(), 27);
    assert!(
        stats.iter().filter(|s| s.accepted > 0).count() >= 2,
        "work was shared: {stats:?}"
    );
    assert_eq!(
        coordinator_files(&c, &sub.experiment_id).await,
        reference_files(&plan, dir.path())
    );
    // The finished experiment's results were also written into the state folder.
    let written = dir
        .path()
        .join("state/experiments")
        .join(&sub.experiment_id)
        .join("results.json");
    for _ in 0..50 {
        if written.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written.exists());
    // Re-submitting is idempotent, and nothing runs again.
    let again = submit_spec(&c, &spec).await.unwrap();
    assert!(again.existing);
    assert_eq!(again.experiment_id, sub.experiment_id);
    // A different experiment sharing tasks (one of the two alphas) reuses their results.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "name = \"other\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [2]\n").unwrap();
    let o = submit_spec(&c, &other).await.unwrap();
    assert!(!o.existing);
    assert_eq!((o.tasks, o.reused), (18, 18));
    let st = get_status(&c, &o.experiment_id).await.unwrap();
    assert_eq!(st.state, "done");
    let list = c
        .client
        .clone()
        .list(proto::ListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.experiments.len(), 2);
    cl.shutdown().await;
}

/// Raw worker calls: a worker cut off past its lease that reports later, and a duplicate completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_and_duplicate_completions_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spec = setup(dir.path(), 1, "lease_seconds = 1\n");
    let plan = plan_spec(&load_spec(&spec).unwrap()).unwrap();
    let mut cfg = server_config(&dir.path().join("state"));
    cfg.sched = SchedConfig {
        lease_ttl: Some(Duration::from_millis(300)),
        ..SchedConfig::default()
    };
    let mut cl = cluster(dir.path(), cfg).await;
    let c = cl.clients.clone();
    let sub = cl.submit(&spec).await;
    // Worker A leases a task and goes silent (cut off).
    let mut w = c.worker.clone();
    let reg = w
        .register(proto::RegisterRequest {
            protocol: proto::PROTOCOL_VERSION,
            name: "cut-off".into(),
            devices: vec!["cpu".into()],
            slots: 1,
            version: "t".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let a = w
        .lease(proto::LeaseRequest {
            worker_id: reg.worker_id.clone(),
            slot: 0,
            wait_ms: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(a.kind, "prior", "prior tasks are handed out first");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let hb = w
        .heartbeat(proto::HeartbeatRequest {
            lease_id: a.lease_id.clone(),
            worker_id: reg.worker_id.clone(),
            task_key: a.task_key.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The lease expired; nobody holds the task yet, so the late heartbeat re-adopts it... unless another
    // worker took it. Here nobody else runs: the heartbeat keeps it.
    assert!(hb.keep_going);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Now B (a real agent) runs everything, including A's task whose lease expired again.
    let sim = Arc::new(SimTrainer::new(Duration::ZERO, None));
    cl.add_agents(1, 2, sim.clone());
    let status = watch_until_done(&c, &sub.experiment_id, |_| {})
        .await
        .unwrap();
    assert_eq!(status.state, "done");
    assert!(status.lost >= 2, "A's lease was lost twice: {status:?}");
    assert_eq!(status.duplicates, 0);
    // A reports late, with the same (deterministic) checkpoint B produced: dropped and counted.
    let ck = sha2_of(&format!("sim-prior|{}", a.task_key));
    let ck_hash = upload_bytes(&c, &mer_shared::digest::sha256_hex(&ck), &ck, "checkpoint")
        .await
        .unwrap();
    let late = w
        .complete(proto::CompleteRequest {
            lease_id: a.lease_id.clone(),
            worker_id: reg.worker_id.clone(),
            task_key: a.task_key.clone(),
            checkpoint_hash: ck_hash,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.outcome, "duplicate");
    // A duplicate of a target result (sent again by a worker that retried) is dropped too.
    let target = plan
        .tasks
        .iter()
        .find(|t| t.kind == TaskKind::Target)
        .unwrap();
    let stored = cl
        .coord()
        .scheduler()
        .store()
        .results_of(vec![target.key.clone()])
        .await
        .unwrap();
    let dup = w
        .complete(proto::CompleteRequest {
            lease_id: "resent".into(),
            worker_id: reg.worker_id.clone(),
            task_key: target.key.clone(),
            fold_result_json: stored[0].1.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dup.outcome, "duplicate");
    let st = get_status(&c, &sub.experiment_id).await.unwrap();
    assert_eq!(st.duplicates, 2);
    assert_eq!(st.tasks_done, st.tasks_total);
    cl.stop_agents().await;
    assert_eq!(
        sim.executions() as usize,
        plan.tasks.len(),
        "B ran every task once"
    );
    assert_eq!(
        coordinator_files(&c, &sub.experiment_id).await,
        reference_files(&plan, dir.path())
    );
    let outcomes: BTreeMap<String, i64> = cl
        .coord()
        .scheduler()
        .store()
        .attempt_outcomes()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(outcomes.get("ok"), Some(&(plan.tasks.len() as i64)));
    // A's attempt was lost (twice), and its late report is recorded on the same attempt.
    assert_eq!(outcomes.get("lost,duplicate"), Some(&1), "{outcomes:?}");
    cl.shutdown().await;
}

fn sha2_of(s: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

/// The coordinator stops abruptly mid-experiment and restarts on the same state folder and port:
/// finished tasks are not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_restart_loses_nothing_and_reruns_nothing_finished() {
    let dir = tempfile::tempdir().unwrap();
    let spec = setup(dir.path(), 3, "");
    let plan = plan_spec(&load_spec(&spec).unwrap()).unwrap();
    let state = dir.path().join("state");
    let mut cl = cluster(dir.path(), server_config(&state)).await;
    let c = cl.clients.clone();
    let sub = cl.submit(&spec).await;
    let log = dir.path().join("executions.log");
    let sim = Arc::new(SimTrainer::new(
        Duration::from_millis(80),
        Some(log.clone()),
    ));
    cl.add_agents(2, 2, sim.clone());
    // Let some tasks finish, then crash the coordinator.
    cl.wait_for(&sub.experiment_id, Duration::from_secs(60), |st| {
        st.tasks_done >= 8
    })
    .await;
    let addr = cl.crash_coordinator();
    let finished_before: Vec<String> =
        mer_coordinator::store::finished_task_keys(&state.join("state.db")).unwrap();
    assert!(finished_before.len() >= 8);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cl.start_coordinator_on(addr).await;
    let status = watch_until_done(&c, &sub.experiment_id, |_| {})
        .await
        .unwrap();
    assert_eq!(status.state, "done");
    cl.stop_agents().await;
    let counts = mer_worker::agent::sim::read_execution_log(&log);
    for k in &finished_before {
        assert_eq!(
            counts.get(k),
            Some(&1),
            "task {k} finished before the crash and was run again"
        );
    }
    let total: u64 = counts.values().sum();
    assert!(
        total as usize <= plan.tasks.len() + 4,
        "only tasks in flight at the crash may run twice: {total}"
    );
    assert!(plan.tasks.iter().all(|t| counts.contains_key(&t.key)));
    assert_eq!(
        coordinator_files(&c, &sub.experiment_id).await,
        reference_files(&plan, dir.path())
    );
    cl.shutdown().await;
}

/// A worker machine dies mid-task (its agent is aborted: no drain, no report, no more heartbeats): its
/// lease expires, the task goes back to the queue as lost (not failed), another worker runs it, and the
/// results equal the fault-free reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_worker_costs_one_lost_attempt_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let spec = setup(dir.path(), 1, "");
    let plan = plan_spec(&load_spec(&spec).unwrap()).unwrap();
    let mut cfg = server_config(&dir.path().join("state"));
    cfg.sched = SchedConfig {
        lease_ttl: Some(Duration::from_millis(400)),
        ..SchedConfig::default()
    };
    let mut cl = cluster(dir.path(), cfg).await;
    let c = cl.clients.clone();
    let sub = cl.submit(&spec).await;
    // The victim runs the priors, then holds the first target task it leases at a gate.
    let gate = Arc::new(support::Gated::new(
        SimTrainer::new(Duration::ZERO, None),
        None,
        |_| Progress::default(),
    ));
    // Opens the gate however the test ends, so that a failing assertion cannot leave the runtime
    // waiting for the blocked trainer thread forever.
    struct OpenOnDrop(Arc<support::Gated>);
    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.open();
        }
    }
    let _release = OpenOnDrop(gate.clone());
    let victim_cfg = cl.agent_config(1);
    let victim = cl.add_agent(victim_cfg, gate.clone());
    let priors = plan
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Prior)
        .count() as u32;
    cl.wait_for(&sub.experiment_id, Duration::from_secs(60), |st| {
        st.tasks_done == priors && st.tasks_running == 1
    })
    .await;
    cl.lose_agent(victim);
    let sim = Arc::new(SimTrainer::new(Duration::ZERO, None));
    cl.add_agents(1, 2, sim.clone());
    let status = cl
        .wait_for(&sub.experiment_id, Duration::from_secs(60), |st| {
            st.state != "running"
        })
        .await;
    // Only now let the dead agent's blocked trainer thread go; its result has nowhere to go.
    gate.open();
    assert_eq!(status.state, "done");
    assert_eq!(status.lost, 1, "{status:?}");
    assert_eq!((status.retries, status.duplicates), (0, 0), "{status:?}");
    assert_eq!(status.tasks_done, status.tasks_total);
    assert_eq!(
        sim.executions() as usize,
        plan.tasks.len() - priors as usize,
        "the survivor ran every target task once, the lost one included"
    );
    assert_eq!(
        coordinator_files(&c, &sub.experiment_id).await,
        reference_files(&plan, dir.path())
    );
    cl.shutdown().await;
}

/// A trainer that always fails the target tasks of one fold.
struct FailsOneFold {
    inner: SimTrainer,
    fold: String,
}

impl Trainer for FailsOneFold {
    fn run(
        &self,
        task: &TaskSpec,
        inputs: &TaskInputs,
        progress: &mut dyn FnMut(Progress),
        cancel: &AtomicBool,
    ) -> Result<TaskOutput, TrainerError> {
        if task.kind == TaskKind::Target && task.fold == self.fold {
            return Err(TrainerError::retryable(format!(
                "simulated out-of-memory on {}",
                task.fold
            )));
        }
        self.inner.run(task, inputs, progress, cancel)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_task_gives_up_after_max_attempts_keeping_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spec = setup(dir.path(), 1, "max_attempts = 2\n");
    let mut cl = cluster(dir.path(), server_config(&dir.path().join("state"))).await;
    let c = cl.clients.clone();
    let sub = cl.submit(&spec).await;
    let t = Arc::new(FailsOneFold {
        inner: SimTrainer::new(Duration::ZERO, None),
        fold: "casme2/sub01".into(),
    });
    cl.add_agents(2, 1, t);
    let status = watch_until_done(&c, &sub.experiment_id, |_| {})
        .await
        .unwrap();
    cl.stop_agents().await;
    assert_eq!(status.state, "failed");
    assert_eq!(
        status.tasks_failed, 2,
        "both sweep points' target task of the fold gave up"
    );
    assert_eq!(status.retries, 4, "two attempts each");
    assert_eq!(status.tasks_done, status.tasks_total - 2);
    assert!(
        status
            .errors
            .iter()
            .any(|e| e.contains("simulated out-of-memory on casme2/sub01")
                && e.contains("attempt 2")),
        "{:?}",
        status.errors
    );
    let r = get_results(&c, &sub.experiment_id).await.unwrap();
    assert!(!r.complete);
    assert!(
        r.results_json.contains("casme2/sub01"),
        "the missing fold is named"
    );
    cl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_inputs_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spec = setup(dir.path(), 1, "");
    let cl = cluster(dir.path(), server_config(&dir.path().join("state"))).await;
    // Wrong token.
    let bad = connect(&ConnectOptions::new(cl.url(), Some("nope".into()))).unwrap();
    let e = bad
        .client
        .clone()
        .list(proto::ListRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(e.message().contains("wrong bearer token"));
    let mut wrong = cl.agent_config(1);
    wrong.connect.token = Some("nope".into());
    let e = run_agent(
        wrong,
        Arc::new(SimTrainer::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("wrong bearer token"), "{e}");
    // A worker of another protocol version.
    let mut old = cl.agent_config(1);
    old.connect.protocol = proto::PROTOCOL_VERSION + 1;
    let e = run_agent(
        old,
        Arc::new(SimTrainer::default()),
        CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("protocol version mismatch"), "{e}");
    // Artifact bytes that do not match their hash.
    let c = cl.clients.clone();
    let declared = mer_shared::digest::sha256_hex(b"the real bytes");
    let e = upload_bytes(&c, &declared, b"other bytes", "dataset")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not match"), "{e}");
    assert!(
        !c.artifacts
            .clone()
            .has(proto::HasRequest { sha256: declared })
            .await
            .unwrap()
            .into_inner()
            .present
    );
    // A spec error names file, line and column; a missing dataset is named.
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "name = \"b\"\ndataset = \"data.safetensors\"\nscheme = \"megc9\"\n",
    )
    .unwrap();
    let e = submit_spec(&c, &broken).await.unwrap_err().to_string();
    assert!(e.contains("broken.toml:3:"), "{e}");
    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        "name = \"m\"\ndataset = \"nowhere.safetensors\"\nscheme = \"megc3\"\n",
    )
    .unwrap();
    let e = submit_spec(&c, &missing).await.unwrap_err().to_string();
    assert!(e.contains("nowhere.safetensors"), "{e}");
    // Submitting a spec whose dataset was never uploaded is refused by the coordinator.
    let s = load_spec(&spec).unwrap();
    let ds = mer_coordinator::plan::load_datasets(&s).unwrap();
    let wire = mer_shared::task::WireDataset::from_summaries(&ds);
    let e = c
        .client
        .clone()
        .submit(proto::SubmitRequest {
            protocol: proto::PROTOCOL_VERSION,
            spec_toml: std::fs::read_to_string(&spec).unwrap(),
            spec_path: "exp.toml".into(),
            dataset_hash: String::new(),
            dataset_summary_json: serde_json::to_string(&wire).unwrap(),
            method_files_json: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("has not been uploaded"),
        "{}",
        e.message()
    );
    cl.shutdown().await;
}

#[allow(dead_code)]
fn _handle_is_send(h: CoordinatorHandle) -> impl Send {
    h
}

/// Makes a CA and a server certificate for 127.0.0.1 with the openssl CLI; returns (ca, cert, key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed (bootstrap.sh)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=mer test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_with_a_token_runs_an_experiment_and_refuses_an_untrusted_client() {
    let dir = tempfile::tempdir().unwrap();
    let spec = setup(dir.path(), 1, "");
    let plan = plan_spec(&load_spec(&spec).unwrap()).unwrap();
    let (ca, cert, key) = make_certs(dir.path());
    let mut cfg = server_config(&dir.path().join("state"));
    cfg.tls = Some(mer_coordinator::rpc::server::TlsFiles { cert, key });
    let mut cl = Cluster::start_with(dir.path(), cfg, |url| {
        let mut opts = ConnectOptions::new(url, Some(TOKEN.into()));
        opts.tls_ca = Some(ca.clone());
        opts
    })
    .await;
    assert!(cl.url().starts_with("https://"));
    let c = cl.clients.clone();
    let sub = cl.submit(&spec).await;
    cl.add_agents(1, 2, Arc::new(SimTrainer::default()));
    let status = watch_until_done(&c, &sub.experiment_id, |_| {})
        .await
        .unwrap();
    assert_eq!(status.state, "done");
    cl.stop_agents().await;
    assert_eq!(
        coordinator_files(&c, &sub.experiment_id).await,
        reference_files(&plan, dir.path())
    );
    // Plain text, or TLS without trusting the CA, does not get through.
    let plain = connect(&ConnectOptions::new(
        cl.url().replace("https://", "http://"),
        Some(TOKEN.into()),
    ))
    .unwrap();
    assert!(plain
        .client
        .clone()
        .list(proto::ListRequest {})
        .await
        .is_err());
    let untrusted = connect(&ConnectOptions::new(cl.url(), Some(TOKEN.into()))).unwrap();
    assert!(untrusted
        .client
        .clone()
        .list(proto::ListRequest {})
        .await
        .is_err());
    cl.shutdown().await;
}
