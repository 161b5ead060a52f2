//! Leave one dataset out through local mode: `protocol = "lodo"` plans one fold per dataset part, each
//! testing on every subject of its part and training on the other parts (real coordinator, SQLite, gRPC on
//! loopback, in-process agents with the deterministic sim trainer); `results.json`, the summary and `mer
//! report` name the protocol and score each part on its own held-out fold.

use std::sync::Arc;
use std::time::Duration;

use mer::local::{run_local, LocalOptions};
use mer_coordinator::plan::plan_spec;
use mer_coordinator::report::render_report;
use mer_coordinator::spec::{load_spec, Protocol};
use mer_shared::loso::Role;
use mer_worker::agent::sim::SimTrainer;

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lodo_spec_runs_in_local_mode_one_fold_per_part() {
    let dir = tempfile::tempdir().unwrap();
    // 3 subjects per part, 2 clips each; sweep alpha = [1, 2].
    let spec = support::cluster::sim_spec(dir.path(), "lodo", 3, "protocol = \"lodo\"\n");
    let plan = plan_spec(&load_spec(&spec).unwrap()).unwrap();
    let folds: Vec<String> = plan.folds.iter().map(ToString::to_string).collect();
    assert_eq!(folds, vec!["smic", "casme2", "samm"]);
    assert!(
        plan.describe().contains("3 LODO folds"),
        "{}",
        plan.describe()
    );
    for t in &plan.tasks {
        let held = t.payload.held_out();
        let part = t.fold.as_str();
        let subjects = t.payload.test_subjects.as_ref().expect("a LODO payload");
        assert_eq!(subjects.len(), 3, "{part}: {subjects:?}");
        for s in subjects {
            assert!(s.starts_with(&format!("{part}/")), "{part}: {s}");
            assert_eq!(held.role(s), Role::Test);
        }
        for other in plan.folds.iter().filter(|f| **f != *part) {
            assert_eq!(held.role(&format!("{other}/x")), Role::Train);
        }
    }

    let run_dir = dir.path().join("run");
    let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
    let mut o = LocalOptions::in_process(&spec, &run_dir, 2, trainer.clone());
    o.lease_ttl = Some(Duration::from_secs(30));
    let out = run_local(o).await.unwrap();
    assert_eq!(out.status.state, "done", "{:?}", out.status);
    // 3 prior tasks (one per held-out part) + 2 sweep points x 3 folds.
    assert_eq!(trainer.executions(), 3 + 6);
    assert_eq!(out.results.protocol, Protocol::Lodo);
    for p in &out.results.sweep_points {
        assert_eq!((p.folds_done, p.folds_total), (3, 3));
        let s = p.scores.as_ref().unwrap();
        // Every labelled clip is predicted exactly once, by the fold that holds its part out.
        assert_eq!(s.n, 18);
        assert_eq!(s.parts.len(), 3, "{:?}", s.parts);
    }
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(on_disk["protocol"], "lodo");
    assert!(
        out.summary_md.contains("leave one dataset out"),
        "{}",
        out.summary_md
    );
    let report = render_report(&run_dir, &run_dir.join("report")).unwrap();
    let md = std::fs::read_to_string(&report.markdown).unwrap();
    assert!(md.contains("leave one dataset out"), "{md}");
}

#[test]
fn lodo_needs_two_parts_and_no_nested_selection() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::cluster::sim_spec(
        dir.path(),
        "one-part",
        3,
        "protocol = \"lodo\"\nparts = [\"casme2\"]\n",
    );
    let e = plan_spec(&load_spec(&spec).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 dataset part(s)") && e.contains("at least 2"),
        "{e}"
    );
    let spec = support::cluster::sim_spec(
        dir.path(),
        "nested",
        3,
        "protocol = \"lodo\"\n[selection]\nmode = \"nested\"\n",
    );
    let e = load_spec(&spec).unwrap_err().to_string();
    assert!(e.contains("protocol = \"lodo\""), "{e}");
}
