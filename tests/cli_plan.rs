//! `mer plan`: what a spec will do, before it runs. On a fresh run folder nothing is reused; on a
//! half-finished one the reuse count is exactly what `mer run` then reuses; every kind of invalid spec
//! `mer run` refuses is refused with the same message and a non-zero exit. Also `mer --version` (with
//! the commit) and `mer completions`. Real binary for the CLI; local mode in process (sim trainer) to
//! make the half-finished run folder.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mer::local::{run_local, LocalOptions};
use mer_coordinator::plan::preview::preview_spec;
use mer_worker::agent::sim::SimTrainer;

mod support;

use support::mer;

fn local(spec: &Path, run_dir: &Path) -> LocalOptions {
    let mut o = LocalOptions::in_process(
        spec,
        run_dir,
        2,
        Arc::new(SimTrainer::new(Duration::ZERO, None)),
    );
    o.lease_ttl = Some(Duration::from_secs(30));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_counts_what_run_then_reuses() {
    let dir = tempfile::tempdir().unwrap();
    // Two alphas (support::cluster::sim_spec); a first run of one of them leaves the folder half finished.
    let spec = support::cluster::sim_spec(dir.path(), "half", 2, "");
    let text = std::fs::read_to_string(&spec).unwrap();
    let first = dir.path().join("first.toml");
    std::fs::write(&first, text.replace("alpha = [1, 2]", "alpha = [1]")).unwrap();
    let run_dir = dir.path().join("run");
    let spec_s = spec.display().to_string();
    let run_s = run_dir.display().to_string();

    // Fresh folder: everything to run.
    let (ok, out, err) = mer(&["plan", &spec_s, "--run-dir", &run_s, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["folds"], 6);
    assert_eq!(v["sweep_points"].as_array().unwrap().len(), 2);
    assert_eq!(
        (v["tasks"].as_u64(), v["reused"].as_u64()),
        (Some(18), Some(0))
    );
    let (ok, out, _) = mer(&["plan", &spec_s, "--run-dir", &run_s]);
    assert!(ok);
    assert!(out.contains("18 tasks: 0 finished"), "{out}");
    assert!(out.contains("[1] alpha=2"), "{out}");

    // Half finished: the plan's reuse count is what the run reuses.
    let done = run_local(local(&first, &run_dir)).await.unwrap();
    assert_eq!(done.status.state, "done");
    let p = preview_spec(&spec, &run_dir).unwrap();
    assert_eq!(p.reused, 12, "6 priors and the 6 alpha=1 targets");
    assert_eq!(p.to_run, 6);
    let target = p
        .groups
        .iter()
        .find(|g| g.kind == "target")
        .expect("a target group");
    assert!(
        target.mean_seconds.is_some(),
        "finished targets give an estimate"
    );
    let (ok, out, _) = mer(&["plan", &spec_s, "--run-dir", &run_s, "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["reused"], 12);
    let second = run_local(local(&spec, &run_dir)).await.unwrap();
    assert_eq!(second.status.state, "done");
    assert_eq!(u64::from(second.reused), p.reused as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_refuses_each_invalid_spec_as_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::cluster::sim_spec(dir.path(), "bad", 2, "");
    let good = std::fs::read_to_string(&spec).unwrap();
    let cases = [
        (
            "syntax",
            good.replace("scheme = \"megc3\"", "scheme = megc3"),
        ),
        (
            "unknown field",
            good.replace("scheme = \"megc3\"", "scheme = \"megc3\"\nshceme = 1"),
        ),
        (
            "contradiction",
            good.replace("[sweep]\n", "[train]\ndevices_per_task = 0\n[sweep]\n"),
        ),
        (
            "missing dataset",
            good.replace("data.safetensors", "gone.safetensors"),
        ),
        (
            "dataset mismatch",
            good.replace(
                "scheme = \"megc3\"",
                "scheme = \"megc3\"\nparts = [\"mmew\"]",
            ),
        ),
        (
            "unknown method",
            good.replace(
                "scheme = \"megc3\"",
                "scheme = \"megc3\"\nmethod = \"nonesuch\"",
            ),
        ),
    ];
    for (what, text) in cases {
        let path = dir.path().join(format!("{}.toml", what.replace(' ', "_")));
        std::fs::write(&path, &text).unwrap();
        let run_err = run_local(local(&path, &dir.path().join("r")))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: mer run accepted it"))
            .to_string();
        let (ok, _, err) = mer(&["plan", &path.display().to_string(), "--run-dir", "unused"]);
        assert!(!ok, "{what}: mer plan accepted it");
        assert!(
            err.contains(&run_err),
            "{what}: mer plan said\n{err}\nmer run said\n{run_err}"
        );
    }
}

#[test]
fn version_names_the_commit_and_completions_print() {
    let (ok, out, _) = mer(&["--version"]);
    assert!(ok);
    assert!(out.starts_with("mer ") && out.contains("(commit "), "{out}");
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = mer(&["completions", shell]);
        assert!(ok, "{err}");
        assert!(out.contains("plan"), "{shell}: {out}");
    }
}

/// `mer plan --coordinator`: the reuse count comes from what a running coordinator finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plan_asks_a_coordinator_what_it_finished() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::cluster::sim_spec(dir.path(), "remote", 2, "");
    let mut cl = support::cluster::Cluster::start(
        dir.path(),
        support::cluster::server_config(&dir.path().join("state"), Some("t0k")),
        Some("t0k"),
    )
    .await;
    let sub = cl.submit(&spec).await;
    cl.add_agents(1, 2, Arc::new(SimTrainer::new(Duration::ZERO, None)));
    cl.wait_for(&sub.experiment_id, Duration::from_secs(60), |s| {
        s.state == "done"
    })
    .await;
    let url = cl.url().to_string();
    let spec_s = spec.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_mer"))
            .args(["plan", &spec_s, "--coordinator", &url, "--json"])
            .env("MER_TOKEN", "t0k")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["tasks"].as_u64(), v["reused"].as_u64()),
        (Some(18), Some(18))
    );
    assert!(v["state"].as_str().unwrap().contains("coordinator"));
    cl.shutdown().await;
}
