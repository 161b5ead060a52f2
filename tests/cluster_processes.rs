//! Process-level tests of the orchestrator with the built `mer` binary and its deterministic simulated
//! trainer (`--sim-trainer`): local mode and resuming, a worker SIGKILLed mid-task, the coordinator
//! SIGKILLed and restarted mid-experiment. Each compares the final results with a fault-free reference
//! run of the same tasks and counts executions (the sim trainer logs one line per execution).

use mer_coordinator::plan::{plan_spec, Plan};
use mer_coordinator::results::aggregate::aggregate;
use mer_coordinator::results::writer::write_results;
use mer_coordinator::spec::load_spec;
use mer_worker::agent::sim::{read_execution_log, reference_run, write_sim_dataset, SimTrainer};
use mer_worker::user_method::process::is_running;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::read_tree;

const MER: &str = env!("CARGO_BIN_EXE_mer");
const TOKEN: &str = "process-test-token";

fn setup(dir: &Path, subjects: usize) -> (PathBuf, Plan) {
    write_sim_dataset(&dir.join("data.safetensors"), subjects, 2).unwrap();
    let spec = dir.join("exp.toml");
    std::fs::write(&spec, "name = \"proc\"\ndataset = \"data.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [1, 2]\n").unwrap();
    let plan = plan_spec(&load_spec(&spec).unwrap()).unwrap();
    (spec, plan)
}

fn reference(plan: &Plan, dir: &Path) -> BTreeMap<String, String> {
    let r = reference_run(
        &plan.task_specs(),
        &plan.datasets,
        &SimTrainer::new(Duration::ZERO, None),
        &dir.join("ref-work"),
    )
    .unwrap();
    let out = dir.join("ref");
    write_results(&out, &aggregate(plan, &r)).unwrap();
    read_tree(&out, &[])
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mer(args: &[&str]) -> std::process::Output {
    Command::new(MER)
        .args(args)
        .env("MER_TOKEN", TOKEN)
        .env("MER_LOG", "warn")
        .output()
        .unwrap()
}

struct Coordinator {
    child: Child,
    url: String,
}

fn start_coordinator(state: &Path, listen: &str) -> Coordinator {
    let mut child = Command::new(MER)
        .args([
            "coordinator",
            "--listen",
            listen,
            "--print-addr",
            "--lease-ms",
            "1500",
            "--state-dir",
        ])
        .arg(state)
        .env("MER_TOKEN", TOKEN)
        .env("MER_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Coordinator {
        child,
        url: format!("http://{addr}"),
    }
}

fn start_worker(url: &str, name: &str, dir: &Path, log: &Path, delay_ms: u64) -> Child {
    Command::new(MER)
        .args([
            "worker",
            "--coordinator",
            url,
            "--sim-trainer",
            "--heartbeat-ms",
            "200",
            "--name",
            name,
        ])
        .arg(format!("--sim-delay-ms={delay_ms}"))
        .arg(format!("--sim-log={}", log.display()))
        .arg("--cache-dir")
        .arg(dir.join(format!("cache-{name}")))
        .env("MER_TOKEN", TOKEN)
        .env("MER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn status(url: &str, id: &str) -> serde_json::Value {
    let out = mer(&["status", "--coordinator", url, id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn submit(url: &str, spec: &Path) -> String {
    let out = mer(&["submit", "--coordinator", url, spec.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.split_whitespace().nth(1).unwrap().to_string()
}

fn fetch_results(url: &str, id: &str, out: &Path) -> BTreeMap<String, String> {
    let o = mer(&[
        "results",
        "--coordinator",
        url,
        id,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_tree(out, &[])
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn local_mode_runs_and_a_rerun_resumes_without_running_anything_again() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, plan) = setup(dir.path(), 2);
    let run_dir = dir.path().join("run");
    let log = dir.path().join("exec.log");
    let args = [
        "run",
        spec.to_str().unwrap(),
        "--workers",
        "2",
        "--quiet",
        "--sim-trainer",
        "--sim-delay-ms=20",
        "--run-dir",
        run_dir.to_str().unwrap(),
        &format!("--sim-log={}", log.display()),
    ];
    let out = mer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("UF1") && stdout.contains("alpha=1"),
        "prints the summary table: {stdout}"
    );
    let expected = reference(&plan, dir.path());
    let mut got = read_tree(&run_dir, &[]);
    got.retain(|k, _| !k.starts_with("state"));
    assert_eq!(got, expected);
    let runs = read_execution_log(&log);
    assert_eq!(
        runs.values().sum::<u64>() as usize,
        plan.tasks.len(),
        "every task ran exactly once"
    );
    assert!(run_dir.join("logs/worker-0.log").exists());
    // Re-running the same command resumes: nothing runs again and the results are the same.
    let out = mer(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read_execution_log(&log), runs);
    let mut again = read_tree(&run_dir, &[]);
    again.retain(|k, _| !k.starts_with("state"));
    assert_eq!(again, expected);
}

#[test]
fn a_worker_killed_mid_task_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, plan) = setup(dir.path(), 2);
    let coord = start_coordinator(&dir.path().join("state"), "127.0.0.1:0");
    let url = coord.url.clone();
    // A wrong token is refused with a clear error.
    let bad = Command::new(MER)
        .args(["status", "--coordinator", &url, "--token", "wrong"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("wrong bearer token"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let id = submit(&url, &spec);
    let log = dir.path().join("exec.log");
    // The victim's tasks take 40 s (a progress report every 10 s), so it is sure to hold the lease
    // of its first task when it is killed, however slow the machine; the survivor does the rest.
    let mut victim = start_worker(&url, "victim", dir.path(), &log, 40_000);
    let mut survivor = start_worker(&url, "survivor", dir.path(), &log, 400);
    // Kill the victim while it holds a lease.
    wait_for("the victim to run a task", Duration::from_secs(60), || {
        let s = mer(&["status", "--coordinator", &url, &id]);
        String::from_utf8_lossy(&s.stdout).lines().any(|l| {
            // A running-task row of `mer status`'s table: KIND FOLD WORKER ...
            let row = l.trim_start();
            (row.starts_with("prior") || row.starts_with("target")) && row.contains(" victim-")
        })
    });
    // `--json` lists the running tasks too, with the device of the slot and no GPU memory on a CPU slot.
    wait_for(
        "the victim's task in status --json",
        Duration::from_secs(60),
        || {
            let s = status(&url, &id);
            s["running"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| {
                    r["worker"]
                        .as_str()
                        .is_some_and(|w| w.starts_with("victim-"))
                        && r["device"].as_str().is_some_and(|d| !d.is_empty())
                        && r["gpu_memory_bytes"].is_null()
                        && r["epochs"] == 4
                })
            })
        },
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    wait_for("the experiment to finish", Duration::from_secs(120), || {
        status(&url, &id)["state"] == "done"
    });
    let s = status(&url, &id);
    assert!(
        s["lost"].as_u64().unwrap() >= 1,
        "the victim's lease was lost: {s}"
    );
    assert_eq!(s["duplicates"], 0);
    assert_eq!(s["tasks_done"].as_u64().unwrap() as usize, plan.tasks.len());
    let runs = read_execution_log(&log);
    assert!(plan.tasks.iter().all(|t| runs.contains_key(&t.key)));
    assert!(
        runs.values().sum::<u64>() as usize <= plan.tasks.len() + 1,
        "only the killed task ran twice: {runs:?}"
    );
    assert_eq!(
        fetch_results(&url, &id, &dir.path().join("out")),
        reference(&plan, dir.path())
    );
    // SIGTERM drains the survivor: it exits cleanly.
    sigterm(&survivor);
    let st = survivor.wait().unwrap();
    assert!(st.success(), "{st:?}");
    let mut coord = coord;
    sigterm(&coord.child);
    assert!(coord.child.wait().unwrap().success());
}

#[test]
fn the_coordinator_killed_and_restarted_mid_experiment_reruns_nothing_finished() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, plan) = setup(dir.path(), 3);
    let state = dir.path().join("state");
    // A fixed free port, so that the restarted coordinator is found at the same address.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut coord = start_coordinator(&state, &listen);
    let url = coord.url.clone();
    let id = submit(&url, &spec);
    let log = dir.path().join("exec.log");
    let mut workers: Vec<Child> = (0..2)
        .map(|i| start_worker(&url, &format!("w{i}"), dir.path(), &log, 150))
        .collect();
    wait_for("some tasks to finish", Duration::from_secs(60), || {
        status(&url, &id)["tasks_done"].as_u64().unwrap() >= 8
    });
    coord.child.kill().unwrap();
    coord.child.wait().unwrap();
    let finished: Vec<String> =
        mer_coordinator::store::finished_task_keys(&state.join("state.db")).unwrap();
    assert!(finished.len() >= 8);
    std::thread::sleep(Duration::from_millis(500));
    let mut coord = start_coordinator(&state, &listen);
    wait_for(
        "the experiment to finish after the restart",
        Duration::from_secs(120),
        || status(&url, &id)["state"] == "done",
    );
    let runs = read_execution_log(&log);
    for k in &finished {
        assert_eq!(
            runs.get(k),
            Some(&1),
            "task {k} was finished before the crash and ran again"
        );
    }
    assert!(plan.tasks.iter().all(|t| runs.contains_key(&t.key)));
    assert!(
        runs.values().sum::<u64>() as usize <= plan.tasks.len() + 2,
        "only tasks in flight may run twice"
    );
    let s = status(&url, &id);
    assert_eq!(s["tasks_done"].as_u64().unwrap() as usize, plan.tasks.len());
    assert_eq!(
        fetch_results(&url, &id, &dir.path().join("out")),
        reference(&plan, dir.path())
    );
    for w in &mut workers {
        sigterm(w);
        w.wait().unwrap();
    }
    sigterm(&coord.child);
    coord.child.wait().unwrap();
}

/// A client command aimed at a port where no coordinator listens, or at something that is not a URL,
/// fails at once with an error that names the address and what to check.
#[test]
fn client_commands_name_an_unreachable_or_malformed_coordinator() {
    // Port 1 (tcpmux) is privileged and unused: connecting is refused. (A port found free by binding
    // could be taken meanwhile by the coordinator of a test running in parallel.)
    let url = "http://127.0.0.1:1".to_string();
    for args in [
        vec!["status", "--coordinator", &url],
        vec!["results", "--coordinator", &url, "some-id"],
        vec!["cancel", "--coordinator", &url, "some-id"],
    ] {
        let out = mer(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("no coordinator answers at {url}"))
                && err.contains("MER_COORDINATOR"),
            "{args:?}: {err}"
        );
    }
    let out = mer(&["status", "--coordinator", "127.0.0.1:7878"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:7878") && err.contains("must start with http:// or https://"),
        "{err}"
    );
}

/// Process ids whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after ')'.
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

#[test]
fn killing_mer_run_takes_its_local_workers_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, _plan) = setup(dir.path(), 2);
    let run_dir = dir.path().join("run");
    let mut run = Command::new(MER)
        .args([
            "run",
            spec.to_str().unwrap(),
            "--workers",
            "2",
            "--quiet",
            "--sim-trainer",
        ])
        .arg("--sim-delay-ms=60000")
        .arg("--run-dir")
        .arg(&run_dir)
        .env("MER_TOKEN", TOKEN)
        .env("MER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut workers = Vec::new();
    wait_for(
        "two local worker processes",
        Duration::from_secs(60),
        || {
            workers = children_of(run.id());
            workers.len() >= 2
        },
    );
    // SIGKILL: nothing in `mer run` unwinds, so only the kernel can take the workers down.
    run.kill().unwrap();
    run.wait().unwrap();
    wait_for("the workers to exit", Duration::from_secs(20), || {
        workers.iter().all(|&w| !is_running(w))
    });
}
