//! The `[slurm]` table of an experiment spec: what the launcher asks of Slurm for each worker job, and
//! the checks that keep a bad setting from reaching `sbatch`.

use serde::{Deserialize, Serialize};

/// Settings of the Slurm launcher (`launcher = "slurm"`). Every one can be overridden by a flag of
/// `mer submit --slurm` (docs/slurm.md lists them side by side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    /// Partition (`--partition`); absent = the cluster's default partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Account charged (`--account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Quality of service (`--qos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// GPUs per worker (`--gres=gpu:N`); 0 = CPU workers. At least `train.devices_per_task`.
    #[serde(default)]
    pub gpus_per_worker: u32,
    /// CPUs per worker (`--cpus-per-task`).
    #[serde(default = "one")]
    pub cpus_per_worker: u32,
    /// Memory per worker (`--mem`, Slurm's units: `16G`, `64000M`); absent = the partition's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// Time limit of each worker job (`--time`: `MM`, `HH:MM:SS`, `D-HH`, `D-HH:MM:SS`...).
    #[serde(default = "default_time")]
    pub time: String,
    /// Workers at most: the size cap of each job array (it is sized to the runnable work below that).
    #[serde(default = "default_workers")]
    pub workers: u32,
    /// Array elements running at once (`--array=...%N`); absent = all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<u32>,
    /// Training slots per device in each worker (several small trainings can share a GPU).
    #[serde(default = "one")]
    pub slots_per_device: u32,
    /// Warning before the time limit (`--signal=B:USR2@N`, seconds): the worker stops leasing and
    /// releases a task it cannot finish as interrupted.
    #[serde(default = "default_grace")]
    pub grace_seconds: u32,
    /// Extra `sbatch` arguments, each written verbatim as its own `#SBATCH` line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
    /// Shell lines run before the worker starts (`module load cuda/12.4`, `source venv/bin/activate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// The coordinator's URL as compute nodes reach it (default: the URL `mer submit` used, else the
    /// coordinator's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator: Option<String>,
    /// Path of `mer` on the compute nodes (default: the coordinator's own executable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mer: Option<String>,
    /// Worker cache folder on the compute node; shell variables expand in it (default:
    /// `${TMPDIR:-/tmp}/mer-cache-$SLURM_JOB_ID`, node-local scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// Folder of the jobs' output files (`%A_%a.out`), which compute nodes must be able to write
    /// (default: the coordinator's state folder, `slurm/<experiment>/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
    /// Extra `mer worker` arguments (the simulated trainer in tests, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub worker_args: Vec<String>,
    /// Job arrays submitted at most for one experiment (the first and every resubmission) before the
    /// launcher pauses it with the reason in `mer status`.
    #[serde(default = "default_max_submissions")]
    pub max_submissions: u32,
}

fn one() -> u32 {
    1
}
fn default_time() -> String {
    "04:00:00".into()
}
fn default_workers() -> u32 {
    16
}
fn default_grace() -> u32 {
    120
}
fn default_max_submissions() -> u32 {
    20
}

impl Default for SlurmSpec {
    fn default() -> Self {
        SlurmSpec {
            partition: None,
            account: None,
            qos: None,
            gpus_per_worker: 0,
            cpus_per_worker: 1,
            mem: None,
            time: default_time(),
            workers: default_workers(),
            parallel: None,
            slots_per_device: 1,
            grace_seconds: default_grace(),
            sbatch_args: Vec::new(),
            setup: Vec::new(),
            coordinator: None,
            mer: None,
            cache_dir: None,
            log_dir: None,
            worker_args: Vec::new(),
            max_submissions: default_max_submissions(),
        }
    }
}

impl SlurmSpec {
    /// The time limit in seconds (checked by [`SlurmSpec::check`]).
    pub fn time_seconds(&self) -> Option<u64> {
        parse_time_limit(&self.time)
    }

    /// Task slots of one worker: `slots_per_device` per GPU, or per worker without GPUs.
    pub fn slots_per_worker(&self) -> u32 {
        self.gpus_per_worker.max(1) * self.slots_per_device.max(1)
    }

    /// Checks the settings; an error names the field and says why. `devices_per_task` is the spec's
    /// `train.devices_per_task` (a worker must hold that many GPUs).
    pub fn check(&self, devices_per_task: usize) -> Result<(), (&'static str, String)> {
        for (field, v) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("mem", &self.mem),
        ] {
            if let Some(v) = v {
                if v.is_empty()
                    || v.chars()
                        .any(|c| c.is_whitespace() || c == '\'' || c == '"')
                {
                    return Err((
                        field,
                        format!("slurm.{field} = {v:?} must be one word without quotes"),
                    ));
                }
            }
        }
        let Some(limit) = self.time_seconds() else {
            return Err(("time", format!(
                "slurm.time = {:?} is not a Slurm time limit (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)",
                self.time
            )));
        };
        if limit <= self.grace_seconds as u64 + 60 {
            return Err(("grace_seconds", format!(
                "slurm.grace_seconds = {} leaves a {} s job less than a minute to work; lower it or raise slurm.time",
                self.grace_seconds, limit
            )));
        }
        if self.grace_seconds < 10 {
            return Err(("grace_seconds", "slurm.grace_seconds must be at least 10 (the worker needs time to release its tasks)".into()));
        }
        for (field, v) in [
            ("workers", self.workers),
            ("cpus_per_worker", self.cpus_per_worker),
            ("slots_per_device", self.slots_per_device),
            ("max_submissions", self.max_submissions),
        ] {
            if v == 0 {
                return Err((field, format!("slurm.{field} must be at least 1")));
            }
        }
        if self.parallel == Some(0) {
            return Err(("parallel", "slurm.parallel must be at least 1".into()));
        }
        let has = self.gpus_per_worker.max(1) as usize;
        if devices_per_task > has {
            return Err(("gpus_per_worker", format!(
                "train.devices_per_task = {devices_per_task} needs workers with at least {devices_per_task} GPUs, but slurm.gpus_per_worker = {} gives each worker {has} device(s): no worker could ever run a task",
                self.gpus_per_worker
            )));
        }
        for (field, list) in [
            ("sbatch_args", &self.sbatch_args),
            ("setup", &self.setup),
            ("worker_args", &self.worker_args),
        ] {
            if list.iter().any(|a| a.contains('\n') || a.contains('\r')) {
                return Err((
                    field,
                    format!("slurm.{field}: an entry holds a line break (one entry per line)"),
                ));
            }
        }
        if let Some(a) = self.sbatch_args.iter().find(|a| !a.starts_with('-')) {
            return Err((
                "sbatch_args",
                format!("slurm.sbatch_args: {a:?} is not an sbatch option (--name=value)"),
            ));
        }
        Ok(())
    }
}

/// Seconds of a Slurm time limit: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS` (the forms
/// `sbatch --time` accepts). `None` for anything else, and for `UNLIMITED` / `INFINITE` (a worker must
/// know when its job ends).
pub fn parse_time_limit(s: &str) -> Option<u64> {
    let num = |x: &str| -> Option<u64> {
        (!x.is_empty() && x.chars().all(|c| c.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, s),
    };
    let parts: Vec<u64> = rest.split(':').map(num).collect::<Option<_>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return None,
    };
    (secs > 0).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_parse_like_sbatch() {
        assert_eq!(parse_time_limit("30"), Some(1800));
        assert_eq!(parse_time_limit("5:30"), Some(330));
        assert_eq!(parse_time_limit("04:00:00"), Some(14400));
        assert_eq!(parse_time_limit("2-12"), Some(2 * 86400 + 12 * 3600));
        assert_eq!(parse_time_limit("1-00:30"), Some(86400 + 1800));
        assert_eq!(parse_time_limit("1-01:00:05"), Some(90005));
        for bad in ["", "UNLIMITED", "1:2:3:4", "a", "-1", "1-", "0", "1h"] {
            assert_eq!(parse_time_limit(bad), None, "{bad}");
        }
    }

    #[test]
    fn checks_name_the_field() {
        let ok = SlurmSpec::default();
        assert!(ok.check(1).is_ok());
        let f = |s: SlurmSpec, n| s.check(n).unwrap_err().0;
        assert_eq!(
            f(
                SlurmSpec {
                    time: "soon".into(),
                    ..ok.clone()
                },
                1
            ),
            "time"
        );
        assert_eq!(
            f(
                SlurmSpec {
                    time: "2".into(),
                    ..ok.clone()
                },
                1
            ),
            "grace_seconds"
        );
        assert_eq!(
            f(
                SlurmSpec {
                    partition: Some("gpu a100".into()),
                    ..ok.clone()
                },
                1
            ),
            "partition"
        );
        assert_eq!(
            f(
                SlurmSpec {
                    workers: 0,
                    ..ok.clone()
                },
                1
            ),
            "workers"
        );
        assert_eq!(f(ok.clone(), 2), "gpus_per_worker");
        assert!(SlurmSpec {
            gpus_per_worker: 2,
            ..ok.clone()
        }
        .check(2)
        .is_ok());
        assert_eq!(
            f(
                SlurmSpec {
                    sbatch_args: vec!["exclusive".into()],
                    ..ok.clone()
                },
                1
            ),
            "sbatch_args"
        );
        assert_eq!(
            f(
                SlurmSpec {
                    setup: vec!["a\nb".into()],
                    ..ok.clone()
                },
                1
            ),
            "setup"
        );
        assert_eq!(
            SlurmSpec {
                gpus_per_worker: 4,
                slots_per_device: 2,
                ..ok
            }
            .slots_per_worker(),
            8
        );
    }
}
