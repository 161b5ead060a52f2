//! `mer submit --slurm`: the spec's `[slurm]` table with the command's flags laid over it, and
//! `--dry-run`, which prints the job script the coordinator would submit and submits nothing.

use anyhow::{bail, Context};
use clap::Args;
use mer_coordinator::slurm::{job_script, ArrayRequest};
use mer_coordinator::spec::SlurmSpec;
use std::path::Path;

/// The flags of `mer submit --slurm`; each overrides the same field of the spec's `[slurm]` table.
#[derive(Debug, Args, Default)]
pub struct SlurmFlags {
    /// Partition (`--partition`).
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Account (`--account`).
    #[arg(long, requires = "slurm")]
    pub account: Option<String>,
    /// Quality of service (`--qos`).
    #[arg(long, requires = "slurm")]
    pub qos: Option<String>,
    /// GPUs per worker (`--gres=gpu:N`; 0 = CPU workers).
    #[arg(long, requires = "slurm")]
    pub gpus_per_worker: Option<u32>,
    /// CPUs per worker (`--cpus-per-task`).
    #[arg(long, requires = "slurm")]
    pub cpus_per_worker: Option<u32>,
    /// Memory per worker (`--mem`, e.g. 32G).
    #[arg(long, requires = "slurm")]
    pub mem: Option<String>,
    /// Time limit of each worker job (`--time`, e.g. 04:00:00).
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// Workers at most (array size cap).
    #[arg(long, requires = "slurm")]
    pub workers: Option<u32>,
    /// Array elements running at once (`%N`).
    #[arg(long, requires = "slurm")]
    pub parallel: Option<u32>,
    /// Seconds of warning before the time limit (`--signal=B:USR2@N`).
    #[arg(long, requires = "slurm")]
    pub grace_seconds: Option<u32>,
    /// An extra sbatch argument, verbatim (repeat the flag; replaces the spec's list).
    #[arg(long = "sbatch-arg", requires = "slurm", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// The coordinator's URL as compute nodes reach it (default: the spec's, else --coordinator).
    #[arg(long, requires = "slurm")]
    pub slurm_coordinator: Option<String>,
    /// Path of `mer` on the compute nodes (default: the spec's, else the coordinator's executable).
    #[arg(long, requires = "slurm")]
    pub mer_path: Option<String>,
}

impl SlurmFlags {
    /// Lays the flags over `table` (the spec's `[slurm]` table).
    fn apply(&self, t: &mut toml::Table) {
        let mut set = |k: &str, v: Option<toml::Value>| {
            if let Some(v) = v {
                t.insert(k.to_string(), v);
            }
        };
        let s = |v: &Option<String>| v.clone().map(toml::Value::String);
        let n = |v: Option<u32>| v.map(|n| toml::Value::Integer(n.into()));
        set("partition", s(&self.partition));
        set("account", s(&self.account));
        set("qos", s(&self.qos));
        set("gpus_per_worker", n(self.gpus_per_worker));
        set("cpus_per_worker", n(self.cpus_per_worker));
        set("mem", s(&self.mem));
        set("time", s(&self.time));
        set("workers", n(self.workers));
        set("parallel", n(self.parallel));
        set("grace_seconds", n(self.grace_seconds));
        set("coordinator", s(&self.slurm_coordinator));
        set("mer", s(&self.mer_path));
        if !self.sbatch_args.is_empty() {
            set(
                "sbatch_args",
                Some(toml::Value::Array(
                    self.sbatch_args
                        .iter()
                        .cloned()
                        .map(toml::Value::String)
                        .collect(),
                )),
            );
        }
    }
}

/// The spec's text with `launcher = "slurm"`, the flags laid over its `[slurm]` table, and the
/// coordinator URL filled in when neither the spec nor a flag gave one.
pub fn slurm_spec_text(
    path: &Path,
    text: &str,
    flags: &SlurmFlags,
    coordinator: &str,
) -> anyhow::Result<String> {
    let mut doc: toml::Table = text
        .parse()
        .with_context(|| format!("{}: not valid TOML", path.display()))?;
    if doc.get("kubernetes").is_some() {
        bail!(
            "{}: --slurm, but the spec has a [kubernetes] table; remove it",
            path.display()
        );
    }
    doc.insert("launcher".into(), toml::Value::String("slurm".into()));
    let table = doc
        .entry("slurm")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(t) = table.as_table_mut() else {
        bail!("{}: `slurm` must be a table", path.display());
    };
    flags.apply(t);
    t.entry("coordinator")
        .or_insert_with(|| toml::Value::String(coordinator.to_string()));
    Ok(toml::to_string(&doc)?)
}

/// What `--dry-run` prints: the script of the first array for the spec, sized to its tasks.
pub fn dry_run_script(path: &Path, text: &str) -> anyhow::Result<String> {
    let spec = mer_coordinator::spec::load_spec_text(path, text)?;
    let plan = mer_coordinator::plan::plan_spec(&spec)?;
    let s: SlurmSpec = spec.slurm.clone().unwrap_or_default();
    let tasks = plan.tasks.len() as u32;
    let req = ArrayRequest {
        experiment_id: format!("{}-<id>", spec.name),
        elements: tasks.div_ceil(s.slots_per_worker()).clamp(1, s.workers),
        coordinator: s.coordinator.clone().unwrap_or_default(),
        mer: s.mer.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "mer".into())
        }),
        log_dir: s
            .log_dir
            .clone()
            .unwrap_or_else(|| format!("<coordinator state dir>/slurm/{}-<id>", spec.name)),
    };
    Ok(format!(
        "# mer submit --slurm --dry-run: {} ({tasks} tasks). The coordinator writes this script to its state\n\
         # folder (slurm/<experiment>/array-1.sbatch) and runs `sbatch --parsable` on it, with MER_TOKEN in\n\
         # sbatch's environment when it has a token; it submits more arrays while work remains.\n{}",
        spec.name,
        job_script(&s, &req)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_table_and_the_launcher_is_set() {
        let text = "name = \"t\"\ndataset = \"d.safetensors\"\nscheme = \"megc3\"\n[slurm]\npartition = \"cpu\"\ntime = \"01:00:00\"\n";
        let flags = SlurmFlags {
            partition: Some("gpu".into()),
            gpus_per_worker: Some(1),
            sbatch_args: vec!["--exclusive".into()],
            ..SlurmFlags::default()
        };
        let out = slurm_spec_text(Path::new("s.toml"), text, &flags, "http://login:7878").unwrap();
        let spec = mer_coordinator::spec::parse_spec("s.toml", &out).unwrap();
        assert_eq!(spec.launcher, mer_coordinator::spec::LauncherKind::Slurm);
        let s = spec.slurm.unwrap();
        assert_eq!(s.partition.as_deref(), Some("gpu"));
        assert_eq!((s.gpus_per_worker, s.time.as_str()), (1, "01:00:00"));
        assert_eq!(s.sbatch_args, vec!["--exclusive".to_string()]);
        assert_eq!(s.coordinator.as_deref(), Some("http://login:7878"));
        // A URL in the spec wins over the one the command used.
        let t2 = format!("{text}coordinator = \"http://10.0.0.5:7878\"\n");
        let out =
            slurm_spec_text(Path::new("s.toml"), &t2, &SlurmFlags::default(), "http://x").unwrap();
        assert!(out.contains("http://10.0.0.5:7878") && !out.contains("http://x"));
    }
}
