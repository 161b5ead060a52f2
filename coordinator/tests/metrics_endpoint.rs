//! A real coordinator (SQLite, gRPC on loopback) with its metrics/health port, two sim worker agents,
//! and `/metrics` scraped over loopback: `promtool check metrics` accepts the text, and the task and
//! worker numbers on it equal the coordinator's own state (gRPC `Get`) at a moment where that state
//! is held still (target tasks gated), and again at the end, with the final UF1/UAR per sweep point.
//! Needs promtool (Debian package `prometheus`, installed by scripts/bootstrap.sh).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mer_coordinator::metrics::{parse_text, series_value};
use mer_coordinator::rpc::client::{get_results, get_status, watch_until_done};
use mer_worker::agent::sim::SimTrainer;
use mer_worker::agent::trainer::{Progress, TaskInputs};

const TOKEN: &str = "metrics-token";

mod support;

use support::loopback_get::http_get;
use support::{server_config, sim_spec, Cluster, Gated};

/// What a held target task reports: a throughput, and the GPU memory of its slot's device.
fn held_report(inputs: &TaskInputs) -> Progress {
    Progress {
        stage: "target".into(),
        epoch: 0,
        epochs: 4,
        loss: 1.0,
        samples_per_s: 25.0,
        device: inputs.device.clone(),
        gpu_memory_bytes: gpu_memory(&inputs.device),
    }
}

/// What the gated trainer reports as device memory in use: 1 GiB x (device index + 1) on `cuda:N`.
fn gpu_memory(device: &str) -> Option<u64> {
    let n: u64 = device.strip_prefix("cuda:")?.parse().ok()?;
    Some((n + 1) << 30)
}

/// `promtool check metrics` on `text`: must exit 0 with no lint finding.
fn promtool_check(text: &str, dir: &Path) {
    let f = dir.join("scrape.prom");
    std::fs::write(&f, text).unwrap();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::from(std::fs::File::open(&f).unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus): run scripts/bootstrap.sh");
    let status = child.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut out).unwrap();
    assert!(
        status.success() && out.trim().is_empty(),
        "promtool check metrics:\n{out}\n--- text ---\n{text}"
    );
}

fn v(p: &[(String, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    series_value(p, name, labels).unwrap_or_else(|| panic!("no series {name}{labels:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_match_the_coordinator_state_and_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sim_spec(dir.path(), "metrics-exp", 3, "");
    let mut cfg = server_config(&dir.path().join("state"), Some(TOKEN));
    cfg.heartbeat = Duration::from_millis(50);
    cfg.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let mut cl = Cluster::start(dir.path(), cfg, Some(TOKEN)).await;
    let http = cl.coord().http_addr.expect("metrics port bound");
    assert_eq!(http_get(http, "/healthz").await, (200, "ok\n".into()));
    let (code, body) = http_get(http, "/readyz").await;
    assert_eq!(code, 200, "{body}");

    let c = cl.clients.clone();
    let sub = cl.submit(&spec).await;
    assert_eq!(sub.tasks, 27);
    let get = || async { get_status(&c, &sub.experiment_id).await.unwrap() };

    // Before any worker: 9 prior tasks ready, 18 target tasks blocked, nobody connected.
    let (_, text) = http_get(http, "/metrics").await;
    promtool_check(&text, dir.path());
    let p = parse_text(&text).unwrap();
    assert_eq!(
        v(&p, "mer_tasks", &[("state", "ready"), ("kind", "prior")]),
        9.0
    );
    assert_eq!(
        v(&p, "mer_tasks", &[("state", "blocked"), ("kind", "target")]),
        18.0
    );
    assert_eq!(v(&p, "mer_workers_connected", &[]), 0.0);
    let st0 = get().await;
    assert_eq!(
        v(
            &p,
            "mer_experiment_folds_planned",
            &[("experiment", &sub.experiment_id)]
        ),
        f64::from(st0.folds_total)
    );

    // Two agents x 2 slots; priors finish, then 4 target tasks hang at the gate.
    let trainer = Arc::new(Gated::new(
        SimTrainer::new(Duration::ZERO, None),
        None,
        held_report,
    ));
    for i in 0..2 {
        let mut a = cl.agent_config(2);
        a.name = format!("sim-{i}");
        a.devices = vec!["cuda:0".into(), "cuda:1".into()];
        a.poll_wait = Duration::from_millis(300);
        a.heartbeat = Some(Duration::from_millis(50));
        cl.add_agent(a, trainer.clone());
    }
    let mut st = get().await;
    for _ in 0..400 {
        if st.tasks_running == 4
            && st.tasks_done == 9
            && !st.running.iter().any(|r| r.samples_per_s == 0.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        st = get().await;
    }
    assert_eq!((st.tasks_running, st.tasks_done), (4, 9), "{st:?}");
    let (_, text) = http_get(http, "/metrics").await;
    promtool_check(&text, dir.path());
    let p = parse_text(&text).unwrap();
    let st2 = get().await;
    assert_eq!(st2, st, "the state stood still around the scrape");
    // Task counts by state equal the coordinator's.
    assert_eq!(
        v(&p, "mer_tasks", &[("state", "running")]),
        f64::from(st.tasks_running)
    );
    assert_eq!(
        v(&p, "mer_tasks", &[("state", "done")]),
        f64::from(st.tasks_done)
    );
    assert_eq!(
        v(&p, "mer_tasks", &[("state", "failed")]),
        f64::from(st.tasks_failed)
    );
    let all: f64 = ["blocked", "ready", "running", "done", "failed"]
        .iter()
        .map(|s| v(&p, "mer_tasks", &[("state", s)]))
        .sum();
    assert_eq!(all, f64::from(st.tasks_total));
    assert_eq!(
        v(&p, "mer_tasks", &[("state", "ready"), ("kind", "target")]),
        f64::from(st.tasks_total - st.tasks_done - st.tasks_running)
    );
    // Workers: both connected, 4 slots, all busy, each reporting 2 x 25 samples/s.
    assert_eq!(v(&p, "mer_workers_connected", &[]), 2.0);
    assert_eq!(v(&p, "mer_worker_slots", &[]), 4.0);
    assert_eq!(v(&p, "mer_worker_slots_free", &[]), 0.0);
    let running_workers: std::collections::BTreeSet<&str> =
        st.running.iter().map(|r| r.worker_id.as_str()).collect();
    assert_eq!(running_workers.len(), 2);
    for w in running_workers {
        assert_eq!(
            v(&p, "mer_worker_samples_per_second", &[("worker", w)]),
            50.0,
            "{w}"
        );
    }
    // GPU memory: each worker runs one gated task per device and reports it per device.
    for r in &st.running {
        assert_eq!(r.gpu_memory_bytes, gpu_memory(&r.device), "{r:?}");
    }
    for w in st.running.iter().map(|r| r.worker_id.as_str()) {
        for (dev, gib) in [("cuda:0", 1.0), ("cuda:1", 2.0)] {
            assert_eq!(
                v(
                    &p,
                    "mer_worker_gpu_memory_bytes",
                    &[("worker", w), ("device", dev)]
                ),
                gib * f64::from(1u32 << 30),
                "{w} {dev}"
            );
        }
    }
    assert_eq!(v(&p, "mer_leases_granted_total", &[("kind", "prior")]), 9.0);
    assert_eq!(
        v(&p, "mer_leases_granted_total", &[("kind", "target")]),
        4.0
    );
    assert_eq!(
        v(
            &p,
            "mer_task_duration_seconds_count",
            &[("kind", "prior"), ("outcome", "done")]
        ),
        9.0
    );
    assert_eq!(
        v(
            &p,
            "mer_experiment_folds_done",
            &[("experiment", &sub.experiment_id)]
        ),
        f64::from(st.folds_done)
    );

    // Release the gate and finish.
    trainer.open();
    let fin = watch_until_done(&c, &sub.experiment_id, |_| {})
        .await
        .unwrap();
    assert_eq!(fin.state, "done");
    let res = get_results(&c, &sub.experiment_id).await.unwrap();
    let results: serde_json::Value = serde_json::from_str(&res.results_json).unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        text = http_get(http, "/metrics").await.1;
        if text.contains("mer_sweep_point_uf1{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    promtool_check(&text, dir.path());
    let p = parse_text(&text).unwrap();
    assert_eq!(v(&p, "mer_tasks", &[("state", "done")]), 27.0);
    assert_eq!(v(&p, "mer_tasks", &[("state", "running")]), 0.0);
    assert_eq!(
        v(
            &p,
            "mer_experiment_folds_done",
            &[("experiment", &sub.experiment_id)]
        ),
        f64::from(fin.folds_done)
    );
    assert_eq!(v(&p, "mer_leases_granted_total", &[]), 27.0);
    assert_eq!(v(&p, "mer_task_attempts_total", &[]), 27.0);
    assert_eq!(
        v(
            &p,
            "mer_task_duration_seconds_count",
            &[("outcome", "done")]
        ),
        27.0
    );
    assert_eq!(v(&p, "mer_worker_slots_free", &[]), 4.0);
    for point in results["sweep_points"].as_array().unwrap() {
        let idx = point["index"].to_string();
        let s = &point["scores"];
        assert_eq!(
            v(
                &p,
                "mer_sweep_point_uf1",
                &[("point", &idx), ("part", "all")]
            ),
            s["uf1"].as_f64().unwrap()
        );
        assert_eq!(
            v(
                &p,
                "mer_sweep_point_uar",
                &[("point", &idx), ("part", "all")]
            ),
            s["uar"].as_f64().unwrap()
        );
    }

    cl.shutdown().await;
}
