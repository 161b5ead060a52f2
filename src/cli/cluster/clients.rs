//! The client commands of a running coordinator: `mer submit`, `mer status`, `mer cancel`,
//! `mer results`.

use super::ConnectArgs;
use anyhow::Context;
use clap::Args;
use mer_coordinator::rpc::client::{get_results, get_status, submit_spec_text, watch_until_done};
use mer_shared::client::connect;
use mer_shared::proto;
use std::path::PathBuf;

/// `mer submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The experiment spec (TOML).
    pub spec: PathBuf,
    /// Follow progress until the experiment ends.
    #[arg(long)]
    pub wait: bool,
    /// Also create the experiment's worker Job (batch/v1, Indexed) with your kubeconfig; the spec needs
    /// launcher = "kubernetes" and a [kubernetes] table. Not needed when the coordinator runs from the
    /// Helm chart (it creates the Job itself).
    #[arg(long)]
    pub k8s: bool,
    /// Coordinator URL as worker pods reach it (default: --coordinator).
    #[arg(long, requires = "k8s")]
    pub k8s_coordinator: Option<String>,
    /// Secret holding the token in the Job's namespace, NAME[:KEY].
    #[arg(long, requires = "k8s", default_value = "mer-token:token")]
    pub k8s_token_secret: String,
    /// Run the workers as Slurm job arrays that the coordinator submits (it must run where `sbatch`
    /// works, a login node): sets launcher = "slurm"; the flags below override the spec's [slurm] table
    /// (docs/slurm.md).
    #[arg(long, conflicts_with = "k8s")]
    pub slurm: bool,
    /// With --slurm: print the job script the coordinator would submit, and submit nothing.
    #[arg(long, requires = "slurm")]
    pub dry_run: bool,
    #[command(flatten)]
    pub slurm_flags: super::slurm::SlurmFlags,
}

/// `mer status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// One experiment (default: all).
    pub id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `mer cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Experiment id.
    pub id: String,
}

/// `mer results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Experiment id.
    pub id: String,
    /// Write results.json, summary.md and the prediction files into this folder (default: print the
    /// summary).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The experiments as a readable table, then each one's running tasks and errors.
fn status_table(list: &[proto::ExperimentStatus]) -> String {
    let mut out = format!(
        "{:<28} {:<20} {:<10} {:>11} {:>7} {:>7} {:>11} {:>5} {:>5} {:>7}\n",
        "EXPERIMENT",
        "NAME",
        "STATE",
        "TASKS",
        "RUNNING",
        "GAVE UP",
        "FOLDS",
        "LOST",
        "DUPS",
        "RETRIES"
    );
    for s in list {
        out += &format!(
            "{:<28} {:<20} {:<10} {:>11} {:>7} {:>7} {:>11} {:>5} {:>5} {:>7}\n",
            s.experiment_id,
            s.name,
            s.state,
            format!("{}/{}", s.tasks_done, s.tasks_total),
            s.tasks_running,
            s.tasks_failed,
            format!("{}/{}", s.folds_done, s.folds_total),
            s.lost,
            s.duplicates,
            s.retries
        );
    }
    for s in list.iter().filter(|s| {
        !s.running.is_empty()
            || !s.errors.is_empty()
            || !s.waiting.is_empty()
            || !s.launcher.is_empty()
    }) {
        out += &format!("\n{}:\n", s.experiment_id);
        if !s.running.is_empty() {
            out += &format!(
                "  {:<7} {:<16} {:<14} {:<8} {:>9} {:>9} {:>10} {:>8} {:>9}\n",
                "KIND",
                "FOLD",
                "WORKER",
                "STAGE",
                "EPOCH",
                "LOSS",
                "SAMPLES/S",
                "DEVICE",
                "GPU MEM"
            );
        }
        for r in &s.running {
            out += &format!(
                "  {:<7} {:<16} {:<14} {:<8} {:>9} {:>9.4} {:>10.1} {:>8} {:>9}\n",
                r.kind,
                r.fold,
                r.worker_id,
                r.stage,
                format!("{}/{}", r.epoch + 1, r.epochs),
                r.loss,
                r.samples_per_s,
                if r.devices.len() > 1 {
                    r.devices.join(",")
                } else if r.device.is_empty() {
                    "-".to_string()
                } else {
                    r.device.clone()
                },
                r.gpu_memory_bytes
                    .map(|b| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64))
                    .unwrap_or_else(|| "-".into())
            );
        }
        for w in &s.waiting {
            out += &format!("  waiting: {w}\n");
        }
        for l in &s.launcher {
            out += &format!("  {l}\n");
        }
        for e in &s.errors {
            out += &format!("  error: {e}\n");
        }
        if s.state == "failed" {
            out += &format!(
                "  {} task(s) gave up; submit the same spec again (or re-run `mer run`) to retry them, \
                 finished folds are kept\n",
                s.tasks_failed
            );
        }
    }
    out
}

pub(super) async fn cmd_submit(a: SubmitArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&a.spec)
        .with_context(|| format!("reading {}", a.spec.display()))?;
    let text = if a.slurm {
        // The spec as written must be valid first (its errors then point at its own lines).
        mer_coordinator::spec::load_spec_text(&a.spec, &text)?;
        super::slurm::slurm_spec_text(&a.spec, &text, &a.slurm_flags, &a.connect.coordinator)?
    } else {
        text
    };
    if a.dry_run {
        print!("{}", super::slurm::dry_run_script(&a.spec, &text)?);
        return Ok(());
    }
    let c = connect(&a.connect.options())?;
    let r = submit_spec_text(&c, &a.spec, text).await?;
    println!(
        "{} {} ({} tasks, {} already finished)",
        if r.existing {
            "existing experiment"
        } else {
            "submitted"
        },
        r.experiment_id,
        r.tasks,
        r.reused
    );
    if r.retried > 0 {
        println!(
            "it had failed: {} given-up task(s) are queued again",
            r.retried
        );
    }
    if a.k8s {
        let spec = mer_coordinator::spec::load_spec(&a.spec)?;
        let secret = mer_coordinator::k8s::parse_secret_key(&a.k8s_token_secret)?;
        let pods_url = a
            .k8s_coordinator
            .clone()
            .unwrap_or_else(|| a.connect.coordinator.clone());
        let job = mer_coordinator::k8s::submit_job(
            &spec,
            &r.experiment_id,
            r.tasks.saturating_sub(r.reused),
            &pods_url,
            secret,
        )
        .await?;
        println!(
            "kubernetes: {} Job {}/{} with {} worker pods",
            if job.created { "created" } else { "found" },
            job.namespace,
            job.name,
            job.parallelism
        );
    }
    if a.slurm {
        println!(
            "slurm: the coordinator submits the worker job arrays; `mer status {}` shows their jobs",
            r.experiment_id
        );
    }
    if a.wait {
        let s = watch_until_done(&c, &r.experiment_id, |s| {
            eprintln!(
                "{}: {}/{} tasks, {} running",
                s.state, s.tasks_done, s.tasks_total, s.tasks_running
            );
        })
        .await?;
        print!("{}", status_table(std::slice::from_ref(&s)));
    }
    Ok(())
}

pub(super) async fn cmd_status(a: StatusArgs) -> anyhow::Result<()> {
    let c = connect(&a.connect.options())?;
    let list = match &a.id {
        Some(id) => vec![get_status(&c, id).await?],
        None => {
            c.client
                .clone()
                .list(proto::ListRequest {})
                .await
                .map_err(|s| mer_coordinator::CoordError::rpc("list", s))?
                .into_inner()
                .experiments
        }
    };
    if a.json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.experiment_id, "name": s.name, "state": s.state, "tasks_total": s.tasks_total,
                    "tasks_done": s.tasks_done, "tasks_running": s.tasks_running, "tasks_failed": s.tasks_failed,
                    "folds_total": s.folds_total, "folds_done": s.folds_done, "lost": s.lost,
                    "duplicates": s.duplicates, "retries": s.retries, "errors": s.errors, "waiting": s.waiting, "launcher": s.launcher,
                    "running": s.running.iter().map(|r| serde_json::json!({
                        "task": r.task_key, "kind": r.kind, "fold": r.fold, "worker": r.worker_id,
                        "stage": r.stage, "epoch": r.epoch, "epochs": r.epochs, "loss": r.loss,
                        "samples_per_s": r.samples_per_s, "device": r.device, "devices": r.devices,
                        "gpu_memory_bytes": r.gpu_memory_bytes,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if list.is_empty() {
        println!("no experiments");
    } else {
        print!("{}", status_table(&list));
    }
    Ok(())
}

pub(super) async fn cmd_cancel(a: CancelArgs) -> anyhow::Result<()> {
    let c = connect(&a.connect.options())?;
    let r = c
        .client
        .clone()
        .cancel(proto::CancelRequest {
            experiment_id: a.id.clone(),
        })
        .await
        .map_err(|s| mer_coordinator::CoordError::rpc("cancel", s))?;
    if r.into_inner().cancelled {
        println!("cancelled {}", a.id);
    } else {
        println!("{} had already ended", a.id);
    }
    Ok(())
}

pub(super) async fn cmd_results(a: ResultsArgs) -> anyhow::Result<()> {
    let c = connect(&a.connect.options())?;
    let r = get_results(&c, &a.id).await?;
    match &a.out {
        Some(dir) => {
            mer_shared::fs::write_atomic(&dir.join("results.json"), r.results_json.as_bytes())?;
            mer_shared::fs::write_atomic(&dir.join("summary.md"), r.summary_md.as_bytes())?;
            for (name, text) in &r.files {
                if name.split('/').any(|p| p == ".." || p.is_empty()) {
                    continue;
                }
                mer_shared::fs::write_atomic(&dir.join(name), text.as_bytes())?;
            }
            println!(
                "wrote {} ({})",
                dir.display(),
                if r.complete { "complete" } else { "partial" }
            );
        }
        None => println!("{}", r.summary_md),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_a_table_with_one_row_per_experiment() {
        let a = proto::ExperimentStatus {
            experiment_id: "mini-5a6eb9cc".into(),
            name: "mini".into(),
            state: "running".into(),
            tasks_total: 30,
            tasks_done: 12,
            tasks_running: 2,
            folds_total: 10,
            folds_done: 4,
            errors: vec!["target casme2/sub03: diverged".into()],
            running: vec![proto::RunningTask {
                task_key: "t1".into(),
                fold: "samm/006".into(),
                kind: "target".into(),
                worker_id: "w-1".into(),
                stage: "target".into(),
                epoch: 4,
                epochs: 100,
                loss: 0.25,
                samples_per_s: 310.0,
                device: "cuda:1".into(),
                gpu_memory_bytes: Some(3 << 29),
                devices: vec!["cuda:1".into()],
            }],
            ..Default::default()
        };
        let b = proto::ExperimentStatus {
            experiment_id: "tiny-1".into(),
            name: "tiny".into(),
            state: "done".into(),
            ..Default::default()
        };
        let c = proto::ExperimentStatus {
            experiment_id: "samm-2".into(),
            name: "samm".into(),
            state: "failed".into(),
            tasks_failed: 2,
            errors: vec!["prior samm/006: CUDA out of memory".into()],
            waiting: vec!["3 ready task(s) need 2 devices each".into()],
            ..Default::default()
        };
        let t = status_table(&[a, b, c]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("EXPERIMENT") && lines[0].contains("FOLDS"));
        assert!(
            lines[1].contains("mini-5a6eb9cc")
                && lines[1].contains("12/30")
                && lines[1].contains("4/10")
        );
        assert!(lines[2].contains("tiny-1") && lines[2].contains("done"));
        // Columns line up: every row is as wide as the header up to the last column.
        assert_eq!(lines[1].find("running"), lines[0].find("STATE"));
        assert!(t.contains("error: target casme2/sub03: diverged"));
        assert!(
            t.contains("  waiting: 3 ready task(s) need 2 devices each"),
            "{t}"
        );
        let failed = &t[t.find("samm-2:").unwrap()..];
        assert!(
            failed.contains("2 task(s) gave up; submit the same spec again"),
            "{failed}"
        );
        assert!(!t[..t.find("samm-2:").unwrap()].contains("gave up;"));
        let head = lines.iter().find(|l| l.contains("SAMPLES/S")).unwrap();
        let row = lines.iter().find(|l| l.contains("samm/006")).unwrap();
        assert!(row.contains("5/100") && row.contains("310.0"), "{row}");
        assert!(row.ends_with("cuda:1   1.5 GiB"), "{row}");
        assert_eq!(row.len(), head.len(), "{head}\n{row}");
    }
}
