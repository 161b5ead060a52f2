//! The Slurm launcher against a real one-node Slurm (`tests/slurm_cluster`: munged, slurmctld and
//! slurmd in a temporary folder), with the built `mer` as coordinator and as the job arrays' workers
//! (the deterministic simulated trainer: the engine adds nothing to what is tested here).
//!
//! Scenarios, run side by side on one cluster, each with its own coordinator and experiment:
//! - the tiny experiment through Slurm gives results byte-identical to local mode (`mer run`);
//! - `scancel` of one array element in mid-task: its task runs again elsewhere, results identical;
//! - `scontrol requeue` of a running element (a preemption): its task is recorded as interrupted;
//! - USR2 (the time-limit warning) to a worker in mid-task: an interrupted attempt, the task finishes
//!   elsewhere, no attempt counted as failed (read from the coordinator's store);
//! - a time limit shorter than the experiment: more workers are submitted and it completes;
//! - `mer cancel`: nothing of the experiment is left in `squeue`;
//! - `sbatch` failing (an unknown partition): backoff, then a pause with the reason in `mer status`.
//!
//! A machine without root or without the packages skips with the reason printed; with
//! `MER_REQUIRE_SLURM=1` (scripts/test.sh sets it when it runs as root) it fails instead.

mod slurm_cluster;
mod support;

use slurm_cluster::{wait_until, SlurmCluster};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::read_tree;

const MER: &str = env!("CARGO_BIN_EXE_mer");
const TOKEN: &str = "slurm-test-token";
/// The folders of a coordinator's state dir and a run folder that hold no result files.
const RUN_FILES_ONLY: &[&str] = &["state", "cache", "logs"];

struct Coordinator {
    child: Child,
    url: String,
    state: PathBuf,
    /// The /metrics address.
    http: String,
}

impl Coordinator {
    /// The value of one sample of `/metrics` (`name{labels}` as Prometheus prints it), 0 when absent.
    fn metric(&self, sample: &str) -> f64 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.http).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_coordinator(cluster: &SlurmCluster, dir: &Path) -> Coordinator {
    let state = dir.join("state");
    let log = std::fs::File::create(dir.join("coordinator.log")).unwrap();
    let http = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let (k, v) = cluster.env();
    let mut child = Command::new(MER)
        .args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--print-addr",
            "--lease-ms",
            "6000",
            "--slurm-poll",
            "0.3",
            "--slurm-backoff",
            "1",
            "--http-listen",
            &http,
            "--state-dir",
        ])
        .arg(&state)
        .env(k, v)
        .env("MER_TOKEN", TOKEN)
        .env("MER_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    Coordinator {
        child,
        url: format!("http://{addr}"),
        state,
        http,
    }
}

fn mer(args: &[&str]) -> std::process::Output {
    Command::new(MER)
        .args(args)
        .env("MER_TOKEN", TOKEN)
        .env("MER_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A spec of the simulated dataset (one subject in each of the three parts, 2 alphas: 9 tasks) whose workers take `delay_ms` per
/// task, with a `[slurm]` table (`slurm` holds extra lines of it).
fn write_spec(dir: &Path, name: &str, delay_ms: u64, slurm: &str) -> PathBuf {
    mer_worker::agent::sim::write_sim_dataset(&dir.join("data.safetensors"), 1, 2).unwrap();
    let spec = dir.join("exp.toml");
    std::fs::write(
        &spec,
        format!(
            "name = \"{name}\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\nmax_attempts = 2\n\
             [sweep]\nalpha = [1, 2]\n\
             [slurm]\nmer = \"{MER}\"\ncache_dir = \"{d}/cache-$SLURM_ARRAY_TASK_ID\"\nlog_dir = \"{d}/logs\"\n\
             worker_args = [\"--sim-trainer\", \"--sim-delay-ms={delay_ms}\", \"--sim-log={d}/exec.log\", \"--heartbeat-ms=300\"]\n{slurm}",
            d = dir.display()
        ),
    )
    .unwrap();
    spec
}

fn submit(c: &Coordinator, spec: &Path) -> String {
    let out = ok(mer(&[
        "submit",
        "--coordinator",
        &c.url,
        "--slurm",
        spec.to_str().unwrap(),
    ]));
    out.split_whitespace().nth(1).unwrap().to_string()
}

fn status(c: &Coordinator, id: &str) -> serde_json::Value {
    let out = ok(mer(&["status", "--coordinator", &c.url, id, "--json"]));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

fn wait_done(c: &Coordinator, id: &str, cluster: &SlurmCluster, timeout: Duration) {
    let r = wait_until("the experiment to finish", timeout, || {
        status(c, id)["state"] == "done"
    });
    if let Err(e) = r {
        panic!(
            "{id}: {e}\nstatus: {}\ncoordinator log tail:\n{}\n{}",
            status(c, id),
            tail(&c.state.parent().unwrap().join("coordinator.log")),
            cluster.logs()
        );
    }
}

fn tail(p: &Path) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let v: Vec<&str> = t.lines().rev().take(30).collect();
    v.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// `mer results` of experiment `id` into `out`: the result files written there.
fn results(c: &Coordinator, id: &str, out: &Path) -> BTreeMap<String, String> {
    ok(mer(&[
        "results",
        "--coordinator",
        &c.url,
        id,
        "--out",
        out.to_str().unwrap(),
    ]));
    read_tree(out, RUN_FILES_ONLY)
}

/// The same spec run in local mode (`mer run`, two local worker processes).
fn local_reference(spec: &Path, dir: &Path) -> BTreeMap<String, String> {
    let run = dir.join("local-run");
    ok(mer(&[
        "run",
        spec.to_str().unwrap(),
        "--workers",
        "2",
        "--quiet",
        "--sim-trainer",
        "--run-dir",
        run.to_str().unwrap(),
    ]));
    read_tree(&run, RUN_FILES_ONLY)
}

/// `(task key, worker id, outcome)` of every attempt in the coordinator's store.
fn attempts(c: &Coordinator) -> Vec<(String, String, String)> {
    let db = rusqlite::Connection::open_with_flags(
        c.state.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = db
        .prepare("SELECT task_key, worker_id, COALESCE(outcome, 'running') FROM attempts ORDER BY started_ms")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// The array element (`<job>_<index>`) of a worker id `slurm-<job>_<index>-<n>`.
fn element_of(worker_id: &str) -> Option<String> {
    let rest = worker_id.strip_prefix("slurm-")?;
    Some(rest.rsplit_once('-')?.0.to_string())
}

/// Waits until some task runs on a Slurm worker and returns `(element, task key)`.
fn running_element(c: &Coordinator, id: &str) -> (String, String) {
    let mut found = None;
    wait_until(
        "a task running on a Slurm worker",
        Duration::from_secs(90),
        || {
            let s = status(c, id);
            found = s["running"].as_array().and_then(|rs| {
                rs.iter().find_map(|r| {
                    let e = element_of(r["worker"].as_str()?)?;
                    let task = r["task"].as_str()?.to_string();
                    // Early in the task (its first half), so that it outlasts the drain grace.
                    (r["epoch"].as_u64()? == 0).then_some((e, task))
                })
            });
            found.is_some()
        },
    )
    .unwrap();
    found.unwrap()
}

fn assert_no_failed(c: &Coordinator) -> Vec<(String, String, String)> {
    let a = attempts(c);
    assert!(
        a.iter().all(|(_, _, o)| !o.contains("failed")),
        "no attempt may count as failed: {a:?}"
    );
    a
}

/// Through Slurm the results are byte-identical to local mode, and the idle workers are cancelled
/// when the experiment ends.
fn identical_to_local(cluster: &SlurmCluster, dir: &Path) {
    let spec = write_spec(dir, "slurm-same", 150, "workers = 2\ntime = \"10:00\"\n");
    let c = start_coordinator(cluster, dir);
    let id = submit(&c, &spec);
    wait_done(&c, &id, cluster, Duration::from_secs(240));
    let got = results(&c, &id, &dir.join("out"));
    assert!(got.contains_key("results.json"), "{:?}", got.keys());
    assert_eq!(got, local_reference(&spec, dir));
    let s = status(&c, &id);
    assert!(
        s["launcher"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .starts_with("slurm job "),
        "{s}"
    );
    assert!(c.state.join(format!("slurm/{id}/array-1.sbatch")).is_file());
    wait_until(
        "the idle workers' jobs to end",
        Duration::from_secs(60),
        || cluster.queued(&format!("mer-{id}")).is_empty(),
    )
    .unwrap();
}

/// `scancel` of one element in mid-task: its task runs again elsewhere; nothing counts as failed.
fn scancel_one_element(cluster: &SlurmCluster, dir: &Path) {
    let spec = write_spec(
        dir,
        "slurm-scancel",
        16_000,
        "workers = 2\ntime = \"10:00\"\n",
    );
    let c = start_coordinator(cluster, dir);
    let id = submit(&c, &spec);
    let (element, task) = running_element(&c, &id);
    cluster.run("scancel", &[&element]).unwrap();
    wait_done(&c, &id, cluster, Duration::from_secs(300));
    let a = assert_no_failed(&c);
    let on_victim = |w: &str| element_of(w).as_deref() == Some(element.as_str());
    assert!(
        a.iter()
            .any(|(k, w, o)| k == &task && !on_victim(w) && o == "ok"),
        "the cancelled element's task finished on another worker: {a:?}"
    );
    assert_eq!(
        results(&c, &id, &dir.join("out")),
        local_reference(&spec, dir)
    );
}

/// `scontrol requeue` of a running element (what a preemption does): its task is interrupted, not
/// failed, and the experiment completes.
fn requeue_is_interrupted(cluster: &SlurmCluster, dir: &Path) {
    let spec = write_spec(
        dir,
        "slurm-requeue",
        16_000,
        "workers = 2\ntime = \"10:00\"\n",
    );
    let c = start_coordinator(cluster, dir);
    let id = submit(&c, &spec);
    let (element, task) = running_element(&c, &id);
    cluster.run("scontrol", &["requeue", &element]).unwrap();
    wait_done(&c, &id, cluster, Duration::from_secs(300));
    let a = assert_no_failed(&c);
    assert!(
        a.iter().any(|(k, w, o)| k == &task
            && element_of(w).as_deref() == Some(element.as_str())
            && o == "interrupted"),
        "the requeued element's attempt is interrupted: {a:?}"
    );
    assert!(c.metric("mer_slurm_preemptions_total") >= 1.0);
    assert!(c.metric("mer_slurm_submissions_total{outcome=\"ok\"}") >= 1.0);
    let interrupted = |kind: &str| {
        c.metric(&format!(
            "mer_task_retries_total{{kind=\"{kind}\",reason=\"interrupted\"}}"
        ))
    };
    assert!(interrupted("prior") + interrupted("target") >= 1.0);
    assert_eq!(
        results(&c, &id, &dir.join("out")),
        local_reference(&spec, dir)
    );
}

/// USR2 to one worker in mid-task (the warning before its time limit): it releases the task as
/// interrupted after its drain grace and exits; the task finishes elsewhere.
fn usr2_drains(cluster: &SlurmCluster, dir: &Path) {
    let spec = write_spec(
        dir,
        "slurm-usr2",
        20_000,
        "workers = 3\ntime = \"10:00\"\ngrace_seconds = 20\n",
    );
    let c = start_coordinator(cluster, dir);
    let id = submit(&c, &spec);
    let (element, task) = running_element(&c, &id);
    cluster
        .run("scancel", &["--signal=USR2", "--batch", &element])
        .unwrap();
    wait_done(&c, &id, cluster, Duration::from_secs(400));
    let a = assert_no_failed(&c);
    assert!(
        a.iter().any(|(k, w, o)| k == &task
            && element_of(w).as_deref() == Some(element.as_str())
            && o == "interrupted"),
        "the drained worker's attempt is interrupted: {a:?}"
    );
    assert!(
        a.iter().any(|(k, w, o)| k == &task
            && element_of(w).as_deref() != Some(element.as_str())
            && o == "ok"),
        "and the task finished on another worker: {a:?}"
    );
    assert_eq!(
        results(&c, &id, &dir.join("out")),
        local_reference(&spec, dir)
    );
}

/// One worker whose time limit (75 s) is shorter than the experiment (9 tasks of 10 s): the launcher
/// submits another array when the first ends, and the experiment completes.
fn time_limit_resubmits(cluster: &SlurmCluster, dir: &Path) {
    let spec = write_spec(
        dir,
        "slurm-timelimit",
        10_000,
        "workers = 1\ntime = \"1:15\"\ngrace_seconds = 10\n",
    );
    let c = start_coordinator(cluster, dir);
    let id = submit(&c, &spec);
    wait_done(&c, &id, cluster, Duration::from_secs(400));
    assert_no_failed(&c);
    let arrays = status(&c, &id)["launcher"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l.as_str().unwrap().starts_with("slurm job "))
        .count();
    assert!(
        arrays >= 2,
        "a second array was submitted: {}",
        status(&c, &id)
    );
    assert_eq!(
        results(&c, &id, &dir.join("out")),
        local_reference(&spec, dir)
    );
}

/// `mer cancel`: the experiment's jobs leave the queue.
fn cancel_leaves_nothing(cluster: &SlurmCluster, dir: &Path) {
    let spec = write_spec(
        dir,
        "slurm-cancel",
        5_000,
        "workers = 2\ntime = \"10:00\"\n",
    );
    let c = start_coordinator(cluster, dir);
    let id = submit(&c, &spec);
    running_element(&c, &id);
    ok(mer(&["cancel", "--coordinator", &c.url, &id]));
    wait_until(
        "the experiment's jobs to leave squeue",
        Duration::from_secs(60),
        || cluster.queued(&format!("mer-{id}")).is_empty(),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", cluster.queued(&format!("mer-{id}"))));
}

/// `sbatch` refusing every array (an unknown partition): the launcher backs off and, after three
/// failures in a row, pauses the experiment with the reason in `mer status`.
fn failing_submissions_pause(cluster: &SlurmCluster, dir: &Path) {
    let spec = write_spec(
        dir,
        "slurm-pause",
        100,
        "workers = 1\npartition = \"nosuchpart\"\n",
    );
    let c = start_coordinator(cluster, dir);
    let id = submit(&c, &spec);
    let mut last = serde_json::Value::Null;
    let paused = wait_until("the launcher to pause", Duration::from_secs(90), || {
        last = status(&c, &id)["launcher"].clone();
        last.as_array().is_some_and(|l| {
            l.iter().any(|x| {
                x.as_str().is_some_and(|s| {
                    s.contains("paused after 3 failures") && s.contains("partition")
                })
            })
        })
    });
    paused.unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(
        c.metric("mer_slurm_submissions_total{outcome=\"failed\"}"),
        3.0
    );
    assert_eq!(status(&c, &id)["state"], "running");
}

/// `--dry-run` prints the script with every flag checkable against the spec and the command line,
/// and submits nothing (no coordinator, no Slurm needed).
#[test]
fn dry_run_prints_the_script_flag_by_flag() {
    let dir = tempfile::tempdir().unwrap();
    let spec = write_spec(
        dir.path(),
        "dry",
        100,
        "time = \"02:00:00\"\nqos = \"normal\"\n",
    );
    let out = ok(mer(&[
        "submit",
        "--coordinator",
        "http://127.0.0.1:9",
        "--slurm",
        "--dry-run",
        spec.to_str().unwrap(),
        "--partition",
        "gpu",
        "--gpus-per-worker",
        "2",
        "--mem",
        "32G",
        "--workers",
        "4",
        "--sbatch-arg=--constraint=a100",
        "--slurm-coordinator",
        "http://login1:7878",
    ]));
    for line in [
        "#SBATCH --partition=gpu",
        "#SBATCH --qos=normal",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --mem=32G",
        "#SBATCH --time=02:00:00",
        "#SBATCH --signal=B:USR2@120",
        "#SBATCH --requeue",
        "#SBATCH --constraint=a100",
        // 9 tasks, 2 slots per worker (one per GPU): 5 workers, capped at 4.
        "#SBATCH --array=0-3%4",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} missing:\n{out}");
    }
    let exec = out.lines().find(|l| l.starts_with("exec ")).unwrap();
    assert!(
        exec.contains("--coordinator http://login1:7878")
            && exec.contains("--device cuda:0 --device cuda:1")
            && exec.contains("--job-end \"$job_end\""),
        "{exec}"
    );
    assert!(out.contains("job_end=$(( $(date +%s) + 7200 ))"), "{out}");
}

#[test]
fn slurm_launcher_scenarios_on_a_real_cluster() {
    if let Some(why) = SlurmCluster::unavailable() {
        if std::env::var("MER_REQUIRE_SLURM").is_ok_and(|v| v == "1") {
            panic!("MER_REQUIRE_SLURM=1 but Slurm cannot run here: {why}");
        }
        eprintln!("skipping the Slurm scenarios: {why}");
        return;
    }
    // More CPUs than the machine has (SlurmdParameters=config_overrides): the simulated workers sleep.
    let cluster = SlurmCluster::start(16).unwrap_or_else(|e| panic!("starting Slurm: {e}"));
    type Scenario = fn(&SlurmCluster, &Path);
    let scenarios: [(&str, Scenario); 7] = [
        ("identical_to_local", identical_to_local),
        ("scancel_one_element", scancel_one_element),
        ("requeue_is_interrupted", requeue_is_interrupted),
        ("usr2_drains", usr2_drains),
        ("time_limit_resubmits", time_limit_resubmits),
        ("cancel_leaves_nothing", cancel_leaves_nothing),
        ("failing_submissions_pause", failing_submissions_pause),
    ];
    let root = tempfile::tempdir().unwrap();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .map(|(name, f)| {
                let dir = root.path().join(name);
                std::fs::create_dir_all(&dir).unwrap();
                let cluster = &cluster;
                (*name, s.spawn(move || f(cluster, &dir)))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|(name, h)| {
                h.join().err().map(|e| {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("{name}: {msg}")
                })
            })
            .collect()
    });
    if !failures.is_empty() {
        let kept = root.keep();
        panic!(
            "{}\n(the scenarios' folders are kept in {})",
            failures.join("\n\n"),
            kept.display()
        );
    }
}
