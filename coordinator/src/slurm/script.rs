//! The batch script of one worker job array: pure text made from the `[slurm]` table and the array's
//! size, so that `mer submit --slurm --dry-run` prints exactly what the launcher submits.
//!
//! Every element runs one pilot worker (`mer worker`) that leases tasks from the coordinator until the
//! work runs out or its job ends. The worker replaces the batch shell (`exec`), so `--signal=B:USR2@N`
//! (sent to the batch shell only) reaches it, and Slurm's SIGTERM at the time limit or on preemption
//! does too.

use crate::spec::slurm::SlurmSpec;

/// One array to write a script for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArrayRequest {
    /// The experiment the workers serve (named in the job name and the comments).
    pub experiment_id: String,
    /// Elements of the array (workers).
    pub elements: u32,
    /// The coordinator's URL as compute nodes reach it.
    pub coordinator: String,
    /// `mer` on the compute nodes.
    pub mer: String,
    /// Folder of the output files.
    pub log_dir: String,
}

/// The job name of an experiment's arrays: `mer-` and the experiment id (what `squeue -n` finds).
pub fn job_name(experiment_id: &str) -> String {
    format!("mer-{experiment_id}")
}

/// Shell-quotes one word (single quotes where needed).
fn q(s: &str) -> String {
    shlex::try_quote(s)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| format!("'{}'", s.replace('\0', "").replace('\'', r"'\''")))
}

/// Double-quotes a word so that shell variables in it expand (`$TMPDIR`, `$SLURM_JOB_ID`) and
/// nothing else does.
fn dq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The worker's drain grace on SIGUSR2: the spec's warning less a margin for releasing the tasks.
pub fn drain_grace(spec: &SlurmSpec) -> u32 {
    spec.grace_seconds.saturating_sub(15).max(5)
}

/// Seconds a worker gets after SIGTERM (preemption, `scancel`, the time limit) before it releases its
/// tasks: well inside Slurm's default `KillWait` of 30 s, after which SIGKILL follows.
pub const TERM_GRACE_SECONDS: u32 = 5;

/// The batch script (`sbatch --parsable SCRIPT` submits it). `MER_TOKEN` is not written into it: the
/// launcher runs `sbatch` with the token in its environment, which the job inherits.
pub fn job_script(spec: &SlurmSpec, req: &ArrayRequest) -> String {
    let mut s = String::from("#!/bin/bash\n");
    s += &format!(
        "# mer worker job array for experiment {}: one pilot worker per element, leasing tasks from\n\
         # {} until the work runs out or the job ends. Written by mer's Slurm launcher.\n",
        req.experiment_id, req.coordinator
    );
    let mut sb = |line: String| s += &format!("#SBATCH {line}\n");
    sb(format!("--job-name={}", job_name(&req.experiment_id)));
    let n = req.elements.max(1);
    let par = spec.parallel.unwrap_or(n).min(n);
    sb(format!("--array=0-{}%{par}", n - 1));
    for (flag, v) in [
        ("partition", &spec.partition),
        ("account", &spec.account),
        ("qos", &spec.qos),
    ] {
        if let Some(v) = v {
            sb(format!("--{flag}={v}"));
        }
    }
    sb("--nodes=1".into());
    sb("--ntasks=1".into());
    sb(format!("--cpus-per-task={}", spec.cpus_per_worker));
    if spec.gpus_per_worker > 0 {
        sb(format!("--gres=gpu:{}", spec.gpus_per_worker));
    }
    if let Some(m) = &spec.mem {
        sb(format!("--mem={m}"));
    }
    sb(format!("--time={}", spec.time));
    sb(format!("--signal=B:USR2@{}", spec.grace_seconds));
    sb("--requeue".into());
    sb("--open-mode=append".into());
    sb(format!("--output={}/%A_%a.out", req.log_dir));
    for a in &spec.sbatch_args {
        sb(a.clone());
    }
    s += "set -eu\n";
    for line in &spec.setup {
        s += line;
        s += "\n";
    }
    let limit = spec.time_seconds().unwrap_or(0);
    s += &format!(
        "# The job ends {limit} s after it starts (slurm.time = {}): the worker leases nothing it would not finish.\n",
        spec.time
    );
    s += &format!("job_end=$(( $(date +%s) + {limit} ))\n");
    let cache = spec
        .cache_dir
        .clone()
        .map(|c| dq(&c))
        .unwrap_or_else(|| "\"${TMPDIR:-/tmp}/mer-cache-${SLURM_JOB_ID}\"".into());
    let mut args: Vec<String> = vec![
        "worker".into(),
        "--coordinator".into(),
        q(&req.coordinator),
        "--name".into(),
        "\"slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"".into(),
        "--cache-dir".into(),
        cache,
        "--slots".into(),
        spec.slots_per_worker().to_string(),
    ];
    if spec.gpus_per_worker > 0 {
        // Slurm sets CUDA_VISIBLE_DEVICES to the job's GPUs: they are cuda:0..N-1 inside it.
        for g in 0..spec.gpus_per_worker {
            args.push("--device".into());
            args.push(format!("cuda:{g}"));
        }
    } else {
        args.push("--device".into());
        args.push("cpu".into());
    }
    args.extend([
        "--drain-grace".into(),
        drain_grace(spec).to_string(),
        "--term-grace".into(),
        TERM_GRACE_SECONDS.to_string(),
        "--job-end".into(),
        "\"$job_end\"".into(),
    ]);
    args.extend(spec.worker_args.iter().map(|a| q(a)));
    s += &format!("exec {} {}\n", q(&req.mer), args.join(" "));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ArrayRequest {
        ArrayRequest {
            experiment_id: "tiny-1a2b".into(),
            elements: 3,
            coordinator: "http://login1:7878".into(),
            mer: "/opt/mer/bin/mer".into(),
            log_dir: "/scratch/mer/logs".into(),
        }
    }

    #[test]
    fn every_setting_has_its_flag() {
        let spec = SlurmSpec {
            partition: Some("gpu".into()),
            account: Some("lab42".into()),
            qos: Some("normal".into()),
            gpus_per_worker: 2,
            cpus_per_worker: 8,
            mem: Some("32G".into()),
            time: "1-00:00:00".into(),
            parallel: Some(2),
            slots_per_device: 2,
            grace_seconds: 300,
            sbatch_args: vec!["--constraint=a100".into()],
            setup: vec!["module load cuda/12.4".into()],
            worker_args: vec!["--name-suffix".into(), "x y".into()],
            ..SlurmSpec::default()
        };
        let s = job_script(&spec, &req());
        for line in [
            "#SBATCH --job-name=mer-tiny-1a2b",
            "#SBATCH --array=0-2%2",
            "#SBATCH --partition=gpu",
            "#SBATCH --account=lab42",
            "#SBATCH --qos=normal",
            "#SBATCH --cpus-per-task=8",
            "#SBATCH --gres=gpu:2",
            "#SBATCH --mem=32G",
            "#SBATCH --time=1-00:00:00",
            "#SBATCH --signal=B:USR2@300",
            "#SBATCH --requeue",
            "#SBATCH --output=/scratch/mer/logs/%A_%a.out",
            "#SBATCH --constraint=a100",
            "module load cuda/12.4",
            "job_end=$(( $(date +%s) + 86400 ))",
        ] {
            assert!(s.lines().any(|l| l == line), "{line} missing in\n{s}");
        }
        let exec = s.lines().find(|l| l.starts_with("exec ")).unwrap();
        for part in [
            "/opt/mer/bin/mer worker --coordinator http://login1:7878",
            "--slots 4 --device cuda:0 --device cuda:1",
            "--drain-grace 285 --term-grace 5 --job-end \"$job_end\"",
            "--name-suffix 'x y'",
        ] {
            assert!(exec.contains(part), "{part} missing in {exec}");
        }
        // The #SBATCH block comes before the first command (sbatch stops reading at it).
        let first_cmd = s.lines().position(|l| l == "set -eu").unwrap();
        assert!(s.lines().skip(first_cmd).all(|l| !l.starts_with("#SBATCH")));
        assert!(
            !s.contains("MER_TOKEN="),
            "the token never goes into the script"
        );
    }

    #[test]
    fn cpu_workers_ask_for_no_gpu_and_default_parallelism_is_the_array() {
        let s = job_script(&SlurmSpec::default(), &req());
        assert!(s.contains("#SBATCH --array=0-2%3\n"));
        assert!(!s.contains("--gres"));
        assert!(s.contains("--device cpu"));
        assert!(!s.contains("--partition"));
    }
}
