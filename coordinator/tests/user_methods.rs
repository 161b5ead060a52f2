//! Methods of the spec's own (`[methods.<name>] command = ...`, docs/own-model.md) through a real
//! coordinator and in-process worker agents with separate caches: the files travel hash-checked, the task
//! keys follow the files' bytes (not their times), bad outputs are refused without losing other results,
//! a cancelled command leaves no process behind, nested selection and LODO take a user method, and the
//! shipped example (scikit-learn on the Python helper) runs on the fold contract. The test commands are
//! Python with the standard library only, except the example's, which runs in the project's venv.

use mer_coordinator::plan::{plan_spec, TaskKind};
use mer_coordinator::results::aggregate::aggregate;
use mer_coordinator::results::writer::write_results;
use mer_coordinator::rpc::client::{get_results, get_status};
use mer_coordinator::spec::load_spec;
use mer_shared::proto;
use mer_worker::agent::sim::{reference_run, sim_prepared, write_sim_dataset, SimTrainer};
use mer_worker::user_method::WithUserMethods;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod support;
use support::Cluster;

const TOKEN: &str = "test-token";

/// A fold command (standard library only): reads the training labels and the test ids from the
/// safetensors headers and predicts the training set's most frequent class (`rule = "majority"`) or
/// class 0 (`rule = "zero"`), with probabilities. On the fold `bad_fold` it misbehaves as `mode` says.
const PREDICT_PY: &str = r#"
import json, os, struct, sys, time
task = json.load(open("task.json"))
p = task["params"]
def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]
head, data = read("train.safetensors")
a, b = head["label"]["data_offsets"]
labels = struct.unpack("<%dq" % ((b - a) // 8), data[a:b])
ids = json.loads(read("test.safetensors")[0]["__metadata__"]["sample_ids"])
k = len(task["classes"])
pred = max(range(k), key=lambda c: (labels.count(c), -c)) if p.get("rule", "majority") == "majority" else 0
mode = p.get("mode", "") if task["fold"] == p.get("bad_fold") else ""
if mode == "exit":
    print("boom: the model diverged", file=sys.stderr)
    sys.exit(3)
if mode == "sleep":
    open(os.path.join(p["pid_dir"], "%d.pid" % os.getpid()), "w").write(str(os.getpid()))
    time.sleep(300)
print('MER-PROGRESS {"epoch": 0, "epochs": 1, "loss": 0.5}', flush=True)
rows = [(i, pred) for i in ids]
if mode == "duplicate": rows.append(rows[0])
if mode == "missing": rows.pop()
if mode == "unknown": rows[0] = ("t9999", pred)
if mode == "range": rows[0] = (rows[0][0], k + 4)
probs = [[1.0 if c == pred else 0.0 for c in range(k)] for _ in rows]
if mode == "nan": probs[0][0] = float("nan")
if mode == "sum": probs[0] = [0.5, 0.4, 0.05]
with open("predictions.csv", "w") as f:
    f.write("sample_id,pred," + ",".join("p%d" % c for c in range(k)) + "\n")
    for (i, c), pr in zip(rows, probs):
        f.write("%s,%d,%s\n" % (i, c, ",".join(repr(x) for x in pr)))
"#;

/// Writes the sim dataset (`subjects` per part, 2 clips each), the command and a spec `name.toml` running
/// method `mine` with the TOML lines `extra` at the top and `params` as its params; returns the spec.
fn user_spec(dir: &Path, name: &str, subjects: usize, extra: &str, params: &str) -> PathBuf {
    if !dir.join("data.safetensors").exists() {
        write_sim_dataset(&dir.join("data.safetensors"), subjects, 2).unwrap();
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("predict.py"), PREDICT_PY).unwrap();
        std::fs::write(dir.join("lib/notes.txt"), "shipped beside the script\n").unwrap();
    }
    let spec = dir.join(format!("{name}.toml"));
    std::fs::write(
        &spec,
        format!(
            "name = \"{name}\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\nmethod = \"mine\"\n{extra}\n\
             [methods.mine]\ncommand = [\"python3\", \"predict.py\"]\nfiles = [\"predict.py\", \"lib/notes.txt\"]\n\
             params = {{ {params} }}\ntimeout_minutes = 2\n"
        ),
    )
    .unwrap();
    spec
}

async fn cluster(dir: &Path) -> Cluster {
    Cluster::start(
        dir,
        support::server_config(&dir.join("state"), Some(TOKEN)),
        Some(TOKEN),
    )
    .await
}

fn trainer() -> Arc<WithUserMethods<SimTrainer>> {
    Arc::new(WithUserMethods::new(SimTrainer::default()))
}

async fn wait_end(cl: &Cluster, id: &str) -> proto::ExperimentStatus {
    cl.wait_for(id, Duration::from_secs(120), |s| s.state != "running")
        .await
}

fn target_keys(spec: &Path) -> Vec<String> {
    plan_spec(&load_spec(spec).unwrap())
        .unwrap()
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Target)
        .map(|t| t.key.clone())
        .collect()
}

/// Two workers with caches of their own run a user method: each fetched the shipped files by hash, the
/// results equal a direct run of the same tasks, a rerun reuses every task, touching a file keeps the
/// keys and editing it changes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_run_a_user_method_with_its_files_hash_checked() {
    let dir = tempfile::tempdir().unwrap();
    let spec = user_spec(dir.path(), "mine", 3, "", "rule = \"majority\"");
    let mut cl = cluster(dir.path()).await;
    let sub = cl.submit(&spec).await;
    assert_eq!(sub.tasks, 9);
    cl.add_agents(2, 1, trainer());
    let st = wait_end(&cl, &sub.experiment_id).await;
    assert_eq!(st.state, "done", "{st:?}");
    assert_eq!((st.tasks_done, st.retries), (9, 0));
    let script_hash = mer_shared::digest::sha256_file(&dir.path().join("predict.py")).unwrap();
    let stats = cl.stop_agents().await;
    for (i, s) in stats.iter().enumerate() {
        if s.accepted > 0 {
            let store = mer_shared::artifact_store::ArtifactStore::open(
                &dir.path().join(format!("cache{i}/artifacts")),
            )
            .unwrap();
            let cached = store.path_of(&script_hash);
            assert_eq!(
                mer_shared::digest::sha256_file(&cached).unwrap(),
                script_hash,
                "worker {i} ran tasks with a file of other bytes"
            );
        }
    }
    assert!(
        stats.iter().all(|s| s.accepted > 0),
        "both workers ran tasks: {stats:?}"
    );
    // The same tasks run directly give the same results, file for file.
    let loaded = {
        let mut s = load_spec(&spec).unwrap();
        s.resolve_method_files(&spec).unwrap()
    };
    let plan = plan_spec(&load_spec(&spec).unwrap()).unwrap();
    let mut artifacts = plan.datasets.clone();
    artifacts.extend(loaded.into_iter().map(|(p, h)| (h, p)));
    let direct = reference_run(
        &plan.task_specs(),
        &artifacts,
        &WithUserMethods::new(SimTrainer::default()),
        &dir.path().join("direct"),
    )
    .unwrap();
    let res = aggregate(&plan, &direct);
    assert!(!res.partial);
    write_results(&dir.path().join("direct-results"), &res).unwrap();
    let remote = get_results(&cl.clients, &sub.experiment_id).await.unwrap();
    assert!(remote.complete);
    let direct_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("direct-results/results.json")).unwrap(),
    )
    .unwrap();
    let remote_json: serde_json::Value = serde_json::from_str(&remote.results_json).unwrap();
    assert_eq!(
        direct_json["sweep_points"][0]["scores"],
        remote_json["sweep_points"][0]["scores"]
    );
    // Results name the method with its command, params and file hashes.
    assert!(
        remote.results_json.contains(&script_hash),
        "results name the file hash"
    );
    assert!(remote.results_json.contains("predict.py"));
    // Unchanged: every task is reused. Touched: the same keys. Edited: new keys.
    let again = cl.submit(&spec).await;
    assert_eq!(again.reused, 9, "{again:?}");
    let keys = target_keys(&spec);
    let f = std::fs::File::options()
        .append(true)
        .open(dir.path().join("predict.py"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
        .unwrap();
    drop(f);
    assert_eq!(target_keys(&spec), keys, "a touched file keeps the keys");
    let mut text = std::fs::read_to_string(dir.path().join("predict.py")).unwrap();
    text.push_str("# edited\n");
    std::fs::write(dir.path().join("predict.py"), text).unwrap();
    let edited = target_keys(&spec);
    assert!(
        edited.iter().all(|k| !keys.contains(k)),
        "an edited file changes every key"
    );
    cl.shutdown().await;
}

/// Each bad output is refused at once (no retry) with the file and line, a failing command is retried
/// with its stderr in the error, and every other fold's result is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_outputs_are_refused_with_file_and_line_and_lose_no_other_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut cl = cluster(dir.path()).await;
    cl.add_agents(2, 1, trainer());
    let cases = [
        (
            "duplicate",
            "predictions.csv line 4: sample t0000 is predicted twice",
        ),
        (
            "missing",
            "predictions.csv: 1 of 2 test samples have no prediction",
        ),
        (
            "unknown",
            "predictions.csv line 2: 't9999' is not a test sample",
        ),
        ("range", "predictions.csv line 2: class '7' is out of range"),
        (
            "nan",
            "predictions.csv line 2: p0 = nan is not a probability",
        ),
        ("sum", "predictions.csv line 2: the probabilities sum to"),
        ("exit", "boom: the model diverged"),
    ];
    for (mode, needle) in cases {
        let spec = user_spec(
            dir.path(),
            &format!("bad-{mode}"),
            1,
            "max_attempts = 2",
            &format!("mode = \"{mode}\", bad_fold = \"casme2/sub01\""),
        );
        let sub = cl.submit(&spec).await;
        let st = wait_end(&cl, &sub.experiment_id).await;
        assert_eq!(st.state, "failed", "{mode}: {st:?}");
        assert_eq!((st.tasks_done, st.tasks_failed), (2, 1), "{mode}: {st:?}");
        assert_eq!(
            st.folds_done, 2,
            "{mode}: the other folds' results are kept"
        );
        let errors = st.errors.join("\n");
        assert!(errors.contains(needle), "{mode}: {errors}");
        assert!(
            errors.contains("casme2/sub01") || errors.contains("mine"),
            "{errors}"
        );
        // A refused output is final (one failed attempt); a failed command is tried again, up to
        // max_attempts (`retries` counts failed attempts).
        let attempts = if mode == "exit" { 2 } else { 1 };
        assert_eq!(st.retries, attempts, "{mode}: {st:?}");
        assert!(
            errors.contains(&format!("attempt {attempts}")),
            "{mode}: {errors}"
        );
        let r = get_results(&cl.clients, &sub.experiment_id).await.unwrap();
        assert!(!r.complete);
        let v: serde_json::Value = serde_json::from_str(&r.results_json).unwrap();
        assert_eq!(v["sweep_points"][0]["folds_done"], 2, "{mode}");
    }
    cl.shutdown().await;
}

/// A command still running when its experiment is cancelled is killed with its process group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_command_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    std::fs::create_dir_all(&pids).unwrap();
    let spec = user_spec(
        dir.path(),
        "sleepy",
        1,
        "",
        &format!(
            "mode = \"sleep\", bad_fold = \"casme2/sub01\", pid_dir = \"{}\"",
            pids.display()
        ),
    );
    let mut cl = cluster(dir.path()).await;
    let sub = cl.submit(&spec).await;
    cl.add_agents(1, 1, trainer());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let pid: u32 = loop {
        if let Some(e) = std::fs::read_dir(&pids).unwrap().next() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
            if let Ok(p) = text.trim().parse() {
                break p;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut c = cl.clients.client.clone();
    c.cancel(proto::CancelRequest {
        experiment_id: sub.experiment_id.clone(),
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while mer_worker::user_method::process::is_running(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the command {pid} still runs after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = get_status(&cl.clients, &sub.experiment_id).await.unwrap();
    assert_eq!(st.state, "cancelled");
    cl.shutdown().await;
}

/// Nested selection chooses between two points of a user method's own sweep on inner splits, and a
/// leave-one-dataset-out run takes a user method.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nested_selection_and_lodo_take_a_user_method() {
    let dir = tempfile::tempdir().unwrap();
    let nested = user_spec(
        dir.path(),
        "nested",
        2,
        "[selection]\nmode = \"nested\"\ninner_folds = 2\n",
        "",
    );
    let mut text = std::fs::read_to_string(&nested).unwrap();
    text.push_str("[methods.mine.sweep]\nrule = [\"majority\", \"zero\"]\n");
    std::fs::write(&nested, text).unwrap();
    let lodo = user_spec(dir.path(), "lodo", 2, "protocol = \"lodo\"", "");
    let plan = plan_spec(&load_spec(&nested).unwrap()).unwrap();
    let labels: Vec<&str> = plan.sweep_points.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        ["method=mine,rule=majority", "method=mine,rule=zero"]
    );
    let mut cl = cluster(dir.path()).await;
    cl.add_agents(2, 1, trainer());
    let sub = cl.submit(&nested).await;
    let st = wait_end(&cl, &sub.experiment_id).await;
    assert_eq!(st.state, "done", "{st:?}");
    let r = get_results(&cl.clients, &sub.experiment_id).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.results_json).unwrap();
    let sel = &v["selection"]["methods"][0];
    assert_eq!(sel["method"], "mine", "{}", v["selection"]);
    assert_eq!(sel["points"].as_array().unwrap().len(), 2);
    assert!(sel["scores"]["uf1"].as_f64().is_some(), "{sel}");
    let sub = cl.submit(&lodo).await;
    assert_eq!(sub.tasks, 3, "one fold per part");
    let st = wait_end(&cl, &sub.experiment_id).await;
    assert_eq!(st.state, "done", "{st:?}");
    cl.shutdown().await;
}

/// The shipped example, scikit-learn's logistic regression through the Python helper
/// (`examples/own_model/logreg_fold.py`, `python/mer_fold.py`), on data whose `apex_flow` carries the
/// label: it learns it on every fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_logistic_regression_learns_on_the_fold_contract() {
    let dir = tempfile::tempdir().unwrap();
    sim_prepared(3, 3, true)
        .write(&dir.path().join("data.safetensors"))
        .unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(
        root.join("examples/own_model/logreg_fold.py"),
        dir.path().join("logreg_fold.py"),
    )
    .unwrap();
    let python = mer_shared::fixtures::project_python();
    let spec = dir.path().join("logreg.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"logreg\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\nmethod = \"logreg\"\n\
             [methods.logreg]\ncommand = [\"{}\", \"logreg_fold.py\"]\nfiles = [\"logreg_fold.py\"]\n\
             inputs = [\"apex_flow\"]\nparams = {{ C = 1.0 }}\n",
            python.display()
        ),
    )
    .unwrap();
    let mut cl = cluster(dir.path()).await;
    cl.add_agents(2, 1, trainer());
    let sub = cl.submit(&spec).await;
    let st = cl
        .wait_for(&sub.experiment_id, Duration::from_secs(300), |s| {
            s.state != "running"
        })
        .await;
    assert_eq!(st.state, "done", "{st:?}");
    let r = get_results(&cl.clients, &sub.experiment_id).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.results_json).unwrap();
    let uf1 = v["sweep_points"][0]["scores"]["uf1"].as_f64().unwrap();
    assert!(uf1 > 0.9, "UF1 {uf1}");
    cl.shutdown().await;
}

/// What a spec with methods of its own is refused for, before any task runs: each error names the spec
/// file and the place in it, or the flag that adds a missing input; and a coordinator without a token
/// accepts no such spec at all (it would run commands for anyone who can reach it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_user_method_specs_are_refused_at_submit() {
    let dir = tempfile::tempdir().unwrap();
    let spec = user_spec(dir.path(), "ok", 1, "", "");
    let base = std::fs::read_to_string(&spec).unwrap();
    let err = |text: &str| {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        match load_spec(&p) {
            Err(e) => e.to_string(),
            Ok(s) => plan_spec(&s).unwrap_err().to_string(),
        }
    };
    let e = err(&base.replace("files = [\"predict.py\", ", "files = [\"gone.py\", "));
    assert!(e.contains("bad.toml:8:") && e.contains("gone.py"), "{e}");
    let e = err(&base.replace("method = \"mine\"", "method = \"theirs\""));
    assert!(
        e.contains("bad.toml:4:") && e.contains("no [methods.theirs] table"),
        "{e}"
    );
    let e = err(&format!("{base}[methods.ststnet]\ncommand = [\"x\"]\n"));
    assert!(e.contains("is a built-in method"), "{e}");
    let e = err(&base.replace("command = [\"python3\", \"predict.py\"]", "command = []"));
    assert!(
        e.contains("bad.toml:7:") && e.contains("methods.mine.command"),
        "{e}"
    );
    let e = err(&base.replace(
        "timeout_minutes = 2",
        "timeout_minutes = 2\ninputs = [\"apex_flow\"]",
    ));
    assert!(
        e.contains("--apex-flow"),
        "the flag that adds the group: {e}"
    );
    // Without a token, the coordinator takes the spec's dataset but not its commands.
    let cl = Cluster::start(
        dir.path(),
        support::server_config(&dir.path().join("open-state"), None),
        None,
    )
    .await;
    let e = mer_coordinator::rpc::client::submit_spec(&cl.clients, &spec)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("without a token"), "{e}");
    cl.shutdown().await;
}
