//! Local mode, run twice: the first `run_local` ends `failed` because one fold's tasks fail for good (a
//! non-retryable error, as a bad sample or a GPU that ran out of memory would give); the second run of the
//! same spec in the same run folder retries exactly those tasks, reuses every stored result, and ends `done`
//! with complete results equal to a clean run's. Real coordinator (SQLite, gRPC on loopback), in-process
//! agents running the deterministic sim trainer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mer::local::{run_local, LocalOptions};
use mer_worker::agent::sim::SimTrainer;
use mer_worker::agent::trainer::Trainer;

mod support;

fn opts(spec: &Path, run_dir: &Path, trainer: Arc<dyn Trainer>) -> LocalOptions {
    let mut o = LocalOptions::in_process(spec, run_dir, 2, trainer);
    o.lease_ttl = Some(Duration::from_secs(30));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rerunning_a_failed_local_run_retries_only_the_failed_fold() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::cluster::sim_spec(dir.path(), "rerun", 3, "");

    // A clean run, for reference.
    let clean = Arc::new(SimTrainer::new(Duration::ZERO, None));
    let reference = run_local(opts(&spec, &dir.path().join("clean"), clean.clone()))
        .await
        .unwrap();
    assert_eq!(reference.status.state, "done");
    let all_tasks = clean.executions();
    // A fold of the sim dataset (subjects 006, 007, 008 in SAMM).
    let fold = "samm/007".to_string();

    // First run: one fold fails for good; its prior and both target tasks give up.
    let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
    trainer.fail_fold(Some(&fold));
    let run_dir = dir.path().join("run");
    let first = run_local(opts(&spec, &run_dir, trainer.clone()))
        .await
        .unwrap();
    assert_eq!(first.status.state, "failed", "{:?}", first.status);
    assert_eq!(first.status.tasks_failed, 3, "{:?}", first.status);
    assert!(first.results.partial);
    for p in &first.results.sweep_points {
        assert_eq!(p.missing_folds, vec![fold.clone()], "{}", p.label);
    }
    assert!(
        first
            .status
            .errors
            .iter()
            .any(|e| e.contains("CUDA out of memory")),
        "{:?}",
        first.status.errors
    );
    let first_runs = trainer.executions();
    assert_eq!(first_runs, all_tasks - 3, "every other task ran once");

    // Second run of the same command, the fold fixed: only its three tasks run.
    trainer.fail_fold(None);
    let second = run_local(opts(&spec, &run_dir, trainer.clone()))
        .await
        .unwrap();
    assert_eq!(second.experiment_id, first.experiment_id);
    assert_eq!(second.status.state, "done", "{:?}", second.status);
    assert_eq!(second.status.tasks_failed, 0);
    assert_eq!(u64::from(second.reused), all_tasks - 3);
    assert_eq!(trainer.executions() - first_runs, 3);
    assert!(!second.results.partial);
    // Same numbers as the clean run (the sim trainer is a function of the task).
    for (a, b) in second
        .results
        .sweep_points
        .iter()
        .zip(&reference.results.sweep_points)
    {
        assert_eq!(a.label, b.label);
        assert_eq!(a.scores, b.scores, "{}", a.label);
        assert_eq!((a.folds_done, a.partial), (a.folds_total, false));
    }
    // results.json on disk is the complete one.
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(on_disk["partial"], false);

    // A third run finds nothing to do.
    let third = run_local(opts(&spec, &run_dir, trainer.clone()))
        .await
        .unwrap();
    assert_eq!(third.status.state, "done");
    assert_eq!(trainer.executions() - first_runs, 3);
}

/// A spec that cannot run (its prepared file missing or not one, or a contradiction between spec and
/// dataset) fails with an error naming the problem before a run folder is made or a coordinator started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_that_cannot_run_fails_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = support::cluster::sim_spec(dir.path(), "bad", 1, "");
    let text = std::fs::read_to_string(&spec).unwrap();
    let run_dir = dir.path().join("run");
    let fails = |what: &'static str| {
        let (spec, run_dir) = (spec.clone(), run_dir.clone());
        async move {
            let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
            let e = run_local(opts(&spec, &run_dir, trainer.clone()))
                .await
                .map(|o| o.status.state)
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{e}");
            assert!(!run_dir.exists(), "{e}: the run folder was made");
            assert_eq!(trainer.executions(), 0);
        }
    };
    // Missing.
    std::fs::write(
        &spec,
        text.replace("data.safetensors", "missing.safetensors"),
    )
    .unwrap();
    fails("missing.safetensors: no such file").await;
    // Not a prepared file.
    std::fs::write(dir.path().join("junk.safetensors"), b"junk junk junk").unwrap();
    std::fs::write(&spec, text.replace("data.safetensors", "junk.safetensors")).unwrap();
    fails("not a safetensors file").await;
    // A scheme the dataset has no labels for.
    std::fs::write(&spec, text.replace("megc3", "objective5")).unwrap();
    fails("objective5").await;
    // The spec as written runs.
    std::fs::write(&spec, &text).unwrap();
    let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
    let out = run_local(opts(&spec, &run_dir, trainer)).await.unwrap();
    assert_eq!(out.status.state, "done");
}

/// An unfinished experiment of an earlier version of the spec in the run folder (the spec edited since, its
/// run stopped) is cancelled when the edited spec runs there, so the workers train only the edited spec's
/// tasks; running the earlier version again starts it anew and reuses what both share.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_spec_supersedes_the_unfinished_experiment_of_its_earlier_version() {
    use mer_coordinator::plan::plan_spec;
    use mer_coordinator::rpc::client::submit_spec;
    use mer_coordinator::rpc::server::start;
    use mer_coordinator::spec::load_spec;
    use mer_shared::client::{connect, ConnectOptions};

    let dir = tempfile::tempdir().unwrap();
    let spec = support::cluster::sim_spec(dir.path(), "edited", 3, "");
    let earlier = dir.path().join("earlier.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&earlier, text.replace("alpha = [1, 2]", "alpha = [3, 4]")).unwrap();
    let run_dir = dir.path().join("run");
    let state = run_dir.join("state");
    let list = || async {
        let coord = start(support::cluster::server_config(&state, Some("t")))
            .await
            .unwrap();
        let clients = connect(&ConnectOptions::new(&coord.url, Some("t".into()))).unwrap();
        let mut c = clients.client.clone();
        let l = c.list(mer_shared::proto::ListRequest {}).await.unwrap();
        coord.shutdown().await.unwrap();
        l.into_inner().experiments
    };

    // The earlier version was submitted and its run stopped before any task ran.
    let coord = start(support::cluster::server_config(&state, Some("t")))
        .await
        .unwrap();
    let clients = connect(&ConnectOptions::new(&coord.url, Some("t".into()))).unwrap();
    let first = submit_spec(&clients, &earlier).await.unwrap();
    coord.shutdown().await.unwrap();

    // The edited spec runs: only its own tasks are trained, and the earlier experiment is cancelled.
    let trainer = Arc::new(SimTrainer::new(Duration::ZERO, None));
    let out = run_local(opts(&spec, &run_dir, trainer.clone()))
        .await
        .unwrap();
    assert_eq!(out.status.state, "done");
    let tasks = |s: &Path| plan_spec(&load_spec(s).unwrap()).unwrap().tasks;
    let edited_tasks = tasks(&spec).len() as u64;
    assert_eq!(trainer.executions(), edited_tasks);
    let states: Vec<(String, String)> = list()
        .await
        .into_iter()
        .map(|e| (e.experiment_id, e.state))
        .collect();
    assert!(
        states.contains(&(first.experiment_id.clone(), "cancelled".into())),
        "{states:?}"
    );

    // Running the earlier version again trains its own target tasks; the prior tasks both share are reused.
    let again = run_local(opts(&earlier, &run_dir, trainer.clone()))
        .await
        .unwrap();
    assert_eq!(again.status.state, "done");
    assert_ne!(again.experiment_id, first.experiment_id);
    let earlier_targets = tasks(&earlier)
        .iter()
        .filter(|t| t.kind == mer_coordinator::plan::TaskKind::Target)
        .count() as u64;
    assert_eq!(trainer.executions(), edited_tasks + earlier_targets);
    assert!(!again.results.partial);
}
