//! Talking to Slurm through its own commands (`sbatch`, `scontrol`, `scancel`), as a user on the login
//! node would; no accounting database is needed (`sacct` is not used: many clusters, and the test
//! cluster, have none). What `scontrol show job -o` says about an array is parsed into [`Element`]s.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

/// How long one Slurm command may take before it counts as failed (a busy slurmctld can be slow).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One array element (or a pending range of them, `0-3%2`) as `scontrol show job -o` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The array's job id.
    pub array_job: String,
    /// The element's index, or a range of pending elements (`2-5`, `%N` dropped).
    pub index: String,
    /// `JobState` (`PENDING`, `RUNNING`, `COMPLETED`, `TIMEOUT`...).
    pub state: String,
    /// How often it was requeued (preempted or requeued by hand).
    pub restarts: u32,
    /// `Reason` (why it waits or ended).
    pub reason: String,
}

impl Element {
    /// Elements this record stands for (a pending range counts each).
    pub fn count(&self) -> u32 {
        expand_range(&self.index).map_or(1, |v| v.len() as u32)
    }

    /// The name its worker registers with (`slurm-<array job>_<index>`, as the job script sets it).
    pub fn worker_name(&self) -> String {
        format!("slurm-{}_{}", self.array_job, self.index)
    }
}

/// What an element's state means to the launcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateClass {
    /// Queued, starting, running, suspended, or on its way back after a preemption or requeue.
    Active,
    /// Ended normally (its worker drained or ran out of work).
    Completed,
    /// Ended badly (failed, node failure, out of memory, cancelled, time limit): the tasks its worker
    /// held go back to the queue at once instead of at lease expiry.
    Lost,
}

/// Classifies a `JobState`. PREEMPTED and REQUEUED are not terminal (the element comes back); an
/// unknown state counts as active (the lease deadline still guards its tasks).
pub fn classify(state: &str) -> StateClass {
    match state {
        "COMPLETED" => StateClass::Completed,
        "FAILED" | "NODE_FAIL" | "OUT_OF_MEMORY" | "CANCELLED" | "TIMEOUT" | "BOOT_FAIL"
        | "DEADLINE" => StateClass::Lost,
        _ => StateClass::Active,
    }
}

/// Expands an array index field: `3` -> [3], `2-5` -> [2..=5], `1,4-5` -> [1, 4, 5]; a `%N` limit is
/// dropped. `None` when it is not such a field.
pub fn expand_range(s: &str) -> Option<Vec<u32>> {
    let s = s.split('%').next()?;
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// Parses `scontrol show job -o` output: one record per line, `Key=Value` words.
pub fn parse_show_job(text: &str) -> Vec<Element> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let get = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .map(str::to_string)
        };
        let (Some(job), Some(state)) = (get("JobId"), get("JobState")) else {
            continue;
        };
        let array_job = get("ArrayJobId").unwrap_or_else(|| job.clone());
        let index = get("ArrayTaskId").unwrap_or_else(|| "0".into());
        out.push(Element {
            array_job,
            index: index.split('%').next().unwrap_or_default().to_string(),
            state,
            restarts: get("Restarts").and_then(|r| r.parse().ok()).unwrap_or(0),
            reason: get("Reason").unwrap_or_default(),
        });
    }
    out
}

/// The Slurm commands, run with extra environment (the coordinator's token for `sbatch`, so that jobs
/// inherit it without it being written anywhere).
#[derive(Debug, Clone, Default)]
pub struct SlurmCli {
    env: Vec<(String, String)>,
}

impl SlurmCli {
    /// Runs Slurm's commands with `env` added to the coordinator's environment.
    pub fn new(env: Vec<(String, String)>) -> SlurmCli {
        SlurmCli { env }
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut c = Command::new(program);
        c.args(args).kill_on_drop(true);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, c.output()).await {
            Err(_) => {
                return Err(format!(
                    "{program} did not answer within {COMMAND_TIMEOUT:?}"
                ))
            }
            Ok(Err(e)) => return Err(format!("cannot run {program}: {e}")),
            Ok(Ok(o)) => o,
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "{program} {} exited with {}: {}",
                args.join(" "),
                out.status,
                err.trim()
            ))
        }
    }

    /// `sbatch --parsable SCRIPT`: the new job id.
    pub async fn sbatch(&self, script: &Path) -> Result<String, String> {
        let path = script.display().to_string();
        let out = self.run("sbatch", &["--parsable", &path]).await?;
        // `--parsable` prints `jobid` or `jobid;cluster`.
        let id = out.trim().split(';').next().unwrap_or_default().to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("sbatch printed no job id: {:?}", out.trim()));
        }
        Ok(id)
    }

    /// The elements of array `job`: `Ok(None)` when Slurm no longer knows the job (it ended more than
    /// `MinJobAge` ago).
    pub async fn show_job(&self, job: &str) -> Result<Option<Vec<Element>>, String> {
        match self.run("scontrol", &["show", "job", "-o", job]).await {
            Ok(text) => Ok(Some(parse_show_job(&text))),
            Err(e) if e.contains("Invalid job id") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `scancel` of whole jobs (every element of each array).
    pub async fn scancel(&self, jobs: &[String]) -> Result<(), String> {
        if jobs.is_empty() {
            return Ok(());
        }
        let args: Vec<&str> = jobs.iter().map(String::as_str).collect();
        self.run("scancel", &args).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_job_lines_become_elements() {
        let text = "JobId=41 ArrayJobId=40 ArrayTaskId=1 JobName=mer-x UserId=root(0) JobState=RUNNING Reason=None Dependency=(null) Requeue=1 Restarts=2 BatchFlag=1\n\
                    JobId=40 ArrayJobId=40 ArrayTaskId=2-5%2 JobName=mer-x JobState=PENDING Reason=JobArrayTaskLimit Restarts=0\n\
                    JobId=42 ArrayJobId=40 ArrayTaskId=0 JobName=mer-x JobState=NODE_FAIL Reason=NodeDown Restarts=0\n";
        let e = parse_show_job(text);
        assert_eq!(e.len(), 3);
        assert_eq!(
            (
                e[0].array_job.as_str(),
                e[0].index.as_str(),
                e[0].state.as_str(),
                e[0].restarts
            ),
            ("40", "1", "RUNNING", 2)
        );
        assert_eq!((e[1].index.as_str(), e[1].count()), ("2-5", 4));
        assert_eq!(e[2].worker_name(), "slurm-40_0");
        assert_eq!(classify(&e[2].state), StateClass::Lost);
        assert_eq!(classify("PREEMPTED"), StateClass::Active);
        assert_eq!(classify("REQUEUED"), StateClass::Active);
        assert_eq!(classify("COMPLETED"), StateClass::Completed);
        assert_eq!(classify("TIMEOUT"), StateClass::Lost);
        assert_eq!(expand_range("1,4-5%1"), Some(vec![1, 4, 5]));
        assert_eq!(expand_range("5-2"), None);
        assert!(parse_show_job("No jobs in the system\n").is_empty());
    }
}
