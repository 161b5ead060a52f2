//! End to end: a real coordinator (SQLite, gRPC and its HTTP port on loopback) runs an experiment with
//! sim-trainer agents while headless Chromium (Debian's `chromium`, installed by scripts/bootstrap.sh)
//! opens the dashboard. One fold is held back by a gate so that the experiment is certainly still
//! running when the browser looks: the page must show the fold x sweep-point grid filling in and the
//! pooled scores marked partial; after the gate opens it must show them final. A screenshot is written
//! to `target/test-artifacts/dashboard.png`.

use mer_worker::agent::sim::SimTrainer;
use mer_worker::agent::trainer::{Progress, TaskInputs};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use support::{server_config, sim_spec, Cluster, Gated};

/// What the gated fold's tasks report while held: epoch 2 of 4 at 42 samples/s, 1.5 GiB of GPU memory.
fn held_report(inputs: &TaskInputs) -> Progress {
    Progress {
        stage: "target".into(),
        epoch: 1,
        epochs: 4,
        loss: 0.5,
        samples_per_s: 42.0,
        device: inputs.device.clone(),
        gpu_memory_bytes: Some(3 << 29),
    }
}

fn chromium() -> PathBuf {
    for c in [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ] {
        if Path::new(c).exists() {
            return PathBuf::from(c);
        }
    }
    panic!("headless Chromium not found (/usr/bin/chromium): run scripts/bootstrap.sh, which installs Debian's chromium");
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout. Killed after 60 s.
fn browse(url: &str, profile: &Path, extra: &[String]) -> String {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-sync",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        "--mute-audio",
        "--hide-scrollbars",
        "--window-size=1400,900",
        "--virtual-time-budget=5000",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()));
    cmd.args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("chromium did not finish within 60 s");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn api(addr: SocketAddr, path: &str) -> serde_json::Value {
    serde_json::from_str(&support::loopback_get::http_get(addr, path).await.1)
        .unwrap_or(serde_json::Value::Null)
}

/// The text of the element with `id` in a dumped DOM (crude but enough: up to its closing tag).
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM:\n{dom}"));
    let rest = &dom[start..];
    &rest[..rest.find("</table>").unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_in_headless_chromium_shows_the_grid_and_partial_scores() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sim_spec(dir.path(), "watch-me", 3, "");
    let mut cfg = server_config(&dir.path().join("state"), None);
    cfg.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let mut cl = Cluster::start(dir.path(), cfg, None).await;
    let http = cl.coord().http_addr.expect("HTTP port bound");
    let sub = cl.submit(&spec).await;
    let id = sub.experiment_id.clone();

    let trainer = Arc::new(Gated::new(
        SimTrainer::new(Duration::from_millis(40), None),
        Some("samm/008"),
        held_report,
    ));
    for i in 0..2 {
        let mut a = cl.agent_config(2);
        a.name = format!("sim{i}");
        // Named as GPU slots so that the page shows device and memory columns filled (the sim trainer
        // runs on the CPU whatever the name).
        a.devices = vec!["cuda:0".into(), "cuda:1".into()];
        a.poll_wait = Duration::from_millis(300);
        cl.add_agent(a, trainer.clone());
    }
    // Everything but the gated fold's two target tasks finishes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = api(http, &format!("/api/experiments/{id}")).await;
        let e = &d["experiment"];
        if e["tasks_done"].as_u64() == Some(e["tasks_total"].as_u64().unwrap() - 2)
            && d["running"].as_array().map(|r| r.len()) == Some(2)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "experiment did not reach the gate: {d}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let url = format!("http://{http}/#{id}");
    let profile = tempfile::tempdir().unwrap();
    let dom = tokio::task::spawn_blocking({
        let (url, p) = (url.clone(), profile.path().to_path_buf());
        move || browse(&url, &p, &["--dump-dom".to_string()])
    })
    .await
    .unwrap();
    // The experiment list, the partial scores and the grid rendered by the page's script from the API.
    let experiments = section(&dom, "experiments");
    assert!(
        experiments.contains("watch-me") && experiments.contains("running"),
        "{experiments}"
    );
    let scores = section(&dom, "scores");
    assert!(
        scores.contains("alpha=1") && scores.contains("alpha=2"),
        "{scores}"
    );
    assert_eq!(scores.matches("partial (8/9 folds)").count(), 2, "{scores}");
    let d = api(http, &format!("/api/experiments/{id}")).await;
    let uf1 = d["sweep_points"][0]["all"]["uf1"].as_f64().unwrap();
    assert!(
        scores.contains(&format!("{uf1:.4}")),
        "running pooled UF1 {uf1:.4} shown: {scores}"
    );
    let grid = section(&dom, "grid");
    for fold in ["smic/s01", "casme2/sub02", "samm/008"] {
        assert!(
            grid.contains(&format!("<th>{fold}</th>")),
            "{fold} row: {grid}"
        );
    }
    assert_eq!(grid.matches("class=\"c s-running\"").count(), 2, "{grid}");
    assert_eq!(
        grid.matches("class=\"c s-done\"").count(),
        9 + 16,
        "9 prior + 16 target cells done: {grid}"
    );
    assert!(
        grid.contains("target 2/4"),
        "progress of the running tasks: {grid}"
    );
    let running = section(&dom, "running");
    assert!(
        running.contains("samm/008")
            && running.contains("42.0")
            && running.contains("cuda:")
            && running.contains("1.5 GiB"),
        "{running}"
    );
    let workers = section(&dom, "workers");
    assert!(
        workers.contains("sim0") && workers.contains("sim1"),
        "{workers}"
    );

    // Screenshot artifact.
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    tokio::task::spawn_blocking({
        let (url, p, s) = (url.clone(), profile.path().to_path_buf(), shot.clone());
        move || browse(&url, &p, &[format!("--screenshot={}", s.display())])
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("screenshot written");
    let info = png::Decoder::new(std::io::Cursor::new(&png))
        .read_info()
        .expect("screenshot is a PNG")
        .info()
        .clone();
    assert_eq!((info.width, info.height), (1400, 900));

    // Open the gate: the page then shows final scores.
    trainer.open();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api(http, &format!("/api/experiments/{id}")).await["experiment"]["state"] != "done" {
        assert!(Instant::now() < deadline, "experiment did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dom = tokio::task::spawn_blocking({
        let (url, p) = (url.clone(), profile.path().to_path_buf());
        move || browse(&url, &p, &["--dump-dom".to_string()])
    })
    .await
    .unwrap();
    let scores = section(&dom, "scores");
    assert_eq!(scores.matches(">final<").count(), 2, "{scores}");
    assert!(!scores.contains("partial ("), "{scores}");
    cl.shutdown().await;
}
