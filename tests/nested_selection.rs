//! Nested selection through local mode: a `[selection] mode = "nested"` spec runs its inner tasks like any
//! other (real coordinator, SQLite, gRPC on loopback, in-process agents with the deterministic sim
//! trainer), every outer fold gets a chosen point, `results.json` and the summary carry the selected
//! score, and `mer report` shows clean, selected, oracle epoch and oracle point with the premiums. A second
//! spec sharing the folds and inner splits reuses every finished inner task.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mer::local::{run_local, LocalOptions};
use mer_coordinator::report::render_report;
use mer_worker::agent::sim::SimTrainer;
use mer_worker::agent::trainer::Trainer;

mod support;

fn opts(spec: &Path, run_dir: &Path, trainer: Arc<dyn Trainer>) -> LocalOptions {
    let mut o = LocalOptions::in_process(spec, run_dir, 2, trainer);
    o.lease_ttl = Some(Duration::from_secs(30));
    o
}

const NESTED: &str = "[selection]\nmode = \"nested\"\ninner_folds = 2\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nested_spec_runs_in_local_mode_and_its_report_shows_all_four_numbers() {
    let dir = tempfile::tempdir().unwrap();
    // 9 subjects (3 per part), sweep alpha = [1, 2]: 9 outer folds, 2 inner splits of 8 subjects each.
    let spec = support::cluster::sim_spec(dir.path(), "nested", 3, NESTED);
    let run_dir = dir.path().join("run");
    let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
    let out = run_local(opts(&spec, &run_dir, trainer.clone()))
        .await
        .unwrap();
    assert_eq!(out.status.state, "done", "{:?}", out.status);
    // 9 outer priors + 18 outer targets, 18 inner priors + 36 inner targets.
    assert_eq!(trainer.executions(), 9 + 18 + 18 + 36);
    let sel = out
        .results
        .selection
        .as_ref()
        .expect("selection in the results");
    assert_eq!(sel.inner_folds, 2);
    let m = &sel.methods[0];
    assert_eq!(m.points, vec![0, 1]);
    assert_eq!((m.folds_done, m.folds_total, m.partial), (9, 9, false));
    assert!(m.folds.iter().all(|f| f.selected.is_some()));
    assert_eq!(m.times_chosen.iter().sum::<usize>(), 9);
    let selected = m.scores.as_ref().unwrap();
    // Clean scores pool only the outer folds.
    assert!(out.results.sweep_points.iter().all(|p| p.folds_total == 9));
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(on_disk["selection"]["methods"][0]["folds_done"], 9);
    assert!(out.summary_md.contains("## Nested selection (a result)"));
    let inner_lines = std::fs::read_to_string(run_dir.join("inner_folds.jsonl")).unwrap();
    assert_eq!(inner_lines.lines().count(), 36);
    let outer_lines = std::fs::read_to_string(run_dir.join("folds.jsonl")).unwrap();
    assert_eq!(outer_lines.lines().count(), 18);

    let report = render_report(&run_dir, &run_dir.join("report")).unwrap();
    let md = std::fs::read_to_string(&report.markdown).unwrap();
    assert!(md.contains("## Model selection: nested (a result)"), "{md}");
    assert!(
        md.contains(&format!("{:.4} / {:.4}", selected.uf1, selected.uar)),
        "the selected score: {md}"
    );
    for p in &out.results.sweep_points {
        let c = p.scores.as_ref().unwrap();
        assert!(
            md.contains(&format!("clean `{}`", p.label))
                || md.contains(&format!("clean {}", p.label)),
            "{md}"
        );
        assert!(md.contains(&format!("{:.4} / {:.4}", c.uf1, c.uar)), "{md}");
    }
    let d = out.results.diagnostics.as_ref().unwrap();
    let o = &d.oracle_point[0];
    assert_eq!(o.selected_uf1, Some(selected.uf1));
    assert!(md.contains("oracle epoch"), "{md}");
    assert!(md.contains("Oracle point (diagnostic)"), "{md}");
    assert!(
        md.contains(&format!("{:+.4} UF1", o.premium_over_selected_uf1.unwrap())),
        "{md}"
    );
    for f in &m.folds {
        assert!(md.contains(&format!("| {} |", f.fold)), "{md}");
    }

    // A wider sweep in the same run folder: the two old points' inner and outer tasks are reused, only
    // alpha = 4's run.
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("alpha = [1, 2]", "alpha = [1, 2, 4]")
        .replace("name = \"nested\"", "name = \"nested-wide\"");
    let wide = dir.path().join("wide.toml");
    std::fs::write(&wide, text).unwrap();
    let before = trainer.executions();
    let out = run_local(opts(&wide, &run_dir, trainer.clone()))
        .await
        .unwrap();
    assert_eq!(out.status.state, "done", "{:?}", out.status);
    assert_eq!(trainer.executions() - before, 9 + 9 * 2);
    assert_eq!(
        out.results.selection.unwrap().methods[0].points,
        vec![0, 1, 2]
    );
}
