//! The coordinator's Slurm loop: for each running experiment with `launcher = "slurm"` it keeps a job
//! array of pilot workers queued while work remains, follows the elements' states, hands a lost
//! element's tasks back at once, cancels the arrays when the experiment ends or is cancelled, and
//! says what it sees in `mer status`.
//!
//! Resubmission: when no element of the experiment is active (its workers reached their time limit,
//! were cancelled, or all ended) and tasks remain, a new array is submitted, sized to the unfinished
//! tasks and capped by `slurm.workers`. It is bounded (`slurm.max_submissions` arrays) and backs off:
//! a failed `sbatch`, or an array that ended without finishing one task, doubles the wait before the
//! next try, and three such in a row pause the experiment's launcher with the reason.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::jobs::{classify, Element, SlurmCli, StateClass};
use super::script::{job_script, ArrayRequest};
use crate::scheduler::{ExpState, Scheduler};
use crate::spec::slurm::SlurmSpec;
use crate::spec::{parse_spec, LauncherKind};

/// Failed submissions (or fruitless arrays) in a row after which an experiment's launcher pauses.
pub const PAUSE_AFTER: u32 = 3;

/// Settings of the Slurm loop that are the coordinator's, not the spec's.
#[derive(Debug, Clone)]
pub struct SlurmSettings {
    /// How often the loop looks at Slurm.
    pub poll: Duration,
    /// The first wait before a new array after one was submitted or failed; doubles per failure.
    pub backoff: Duration,
    /// The coordinator's state folder: scripts (and, by default, the jobs' output) go to `slurm/<id>/`.
    pub state_dir: PathBuf,
    /// The coordinator's own URL (used when neither the spec nor `mer submit` named one).
    pub self_url: String,
    /// The token workers need (given to `sbatch`'s environment, never written to a file).
    pub token: Option<String>,
    /// `mer` on the compute nodes when the spec does not say (the coordinator's own executable).
    pub mer: String,
}

impl SlurmSettings {
    /// Defaults for a coordinator with `state_dir` reachable at `self_url`.
    pub fn new(state_dir: PathBuf, self_url: String, token: Option<String>) -> SlurmSettings {
        SlurmSettings {
            poll: Duration::from_secs(10),
            backoff: Duration::from_secs(30),
            state_dir,
            self_url,
            token,
            mer: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "mer".into()),
        }
    }
}

/// One array as the loop follows it.
#[derive(Debug, Clone)]
struct ArrayJob {
    id: String,
    elements: u32,
    /// The experiment's finished tasks when it was submitted (an array that ends with no more is
    /// fruitless).
    done_at_submit: Option<u32>,
    /// Slurm no longer knows it.
    gone: bool,
    /// Its last known elements.
    seen: BTreeMap<String, Element>,
}

/// What the loop knows of one Slurm experiment.
#[derive(Debug)]
struct Tracked {
    spec: SlurmSpec,
    arrays: Vec<ArrayJob>,
    failures_in_row: u32,
    next_try: Option<Instant>,
    paused: Option<String>,
    last_error: Option<String>,
    /// Arrays cancelled because the experiment ended.
    closed: bool,
}

/// The Slurm launcher's loop.
pub struct SlurmController {
    sched: Arc<Scheduler>,
    cli: SlurmCli,
    cfg: SlurmSettings,
    exps: HashMap<String, Option<Tracked>>,
}

impl SlurmController {
    /// A loop for the experiments of `sched`.
    pub fn new(sched: Arc<Scheduler>, cfg: SlurmSettings) -> SlurmController {
        let env = cfg
            .token
            .iter()
            .map(|t| ("MER_TOKEN".to_string(), t.clone()))
            .collect();
        SlurmController {
            sched,
            cli: SlurmCli::new(env),
            cfg,
            exps: HashMap::new(),
        }
    }

    /// The experiment's Slurm settings if it uses the Slurm launcher (read once, with the arrays
    /// already submitted for it, so that a restarted coordinator keeps following them).
    async fn tracked(&mut self, id: &str) -> Option<&mut Tracked> {
        if !self.exps.contains_key(id) {
            let t = match self.sched.store().experiment_spec(id).await {
                Ok(Some(text)) => match parse_spec(&format!("<experiment {id}>"), &text) {
                    Ok(s) if s.launcher == LauncherKind::Slurm => Some(Tracked {
                        spec: s.slurm.unwrap_or_default(),
                        arrays: Vec::new(),
                        failures_in_row: 0,
                        next_try: None,
                        paused: None,
                        last_error: None,
                        closed: false,
                    }),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(experiment = %id, "slurm launcher: cannot read the spec: {e}");
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(experiment = %id, "slurm launcher: {e}");
                    return None;
                }
            };
            let mut t = t;
            if let Some(t) = t.as_mut() {
                match self.sched.store().slurm_arrays(id).await {
                    Ok(rows) => {
                        t.arrays = rows
                            .into_iter()
                            .map(|(id, elements)| ArrayJob {
                                id,
                                elements,
                                done_at_submit: None,
                                gone: false,
                                seen: BTreeMap::new(),
                            })
                            .collect()
                    }
                    Err(e) => {
                        tracing::warn!(experiment = %id, "slurm launcher: {e}");
                        return None;
                    }
                }
            }
            self.exps.insert(id.to_string(), t);
        }
        self.exps.get_mut(id).and_then(Option::as_mut)
    }

    /// One pass over every experiment. Returns the job ids submitted in it.
    pub async fn reconcile_once(&mut self) -> Vec<String> {
        let mut submitted = Vec::new();
        for id in self.sched.experiment_ids() {
            if self.tracked(&id).await.is_none() {
                continue;
            }
            let Some(mut t) = self.exps.remove(&id).flatten() else {
                continue;
            };
            self.refresh(&id, &mut t).await;
            if let Some(job) = self.act(&id, &mut t).await {
                submitted.push(job);
            }
            self.sched.set_launcher_notes(&id, notes(&t));
            self.exps.insert(id, Some(t));
        }
        submitted
    }

    /// Reads each array's elements; a newly lost element's leases end now, new requeues are counted.
    async fn refresh(&self, id: &str, t: &mut Tracked) {
        for a in t.arrays.iter_mut().filter(|a| !a.gone) {
            let now = match self.cli.show_job(&a.id).await {
                Ok(Some(v)) => v,
                Ok(None) => {
                    a.gone = true;
                    continue;
                }
                Err(e) => {
                    t.last_error = Some(e);
                    continue;
                }
            };
            for e in now {
                let before = a.seen.get(&e.index);
                let was_lost = before.is_some_and(|b| classify(&b.state) == StateClass::Lost);
                if classify(&e.state) == StateClass::Lost && !was_lost {
                    let reason = format!(
                        "slurm job {}_{} ended {} ({})",
                        e.array_job, e.index, e.state, e.reason
                    );
                    let n = self.sched.worker_lost(&e.worker_name(), &reason);
                    self.sched.metrics().on_worker_lost("slurm");
                    tracing::warn!(experiment = %id, "{reason}: {n} lease(s) back in the queue");
                }
                let restarts_before = before.map_or(0, |b| b.restarts);
                if e.restarts > restarts_before {
                    self.sched
                        .metrics()
                        .on_slurm_preemptions(u64::from(e.restarts - restarts_before));
                }
                a.seen.insert(e.index.clone(), e);
            }
        }
    }

    /// Cancels an ended experiment's arrays, or submits one when work remains and no worker is coming.
    async fn act(&self, id: &str, t: &mut Tracked) -> Option<String> {
        let state = self.sched.experiment_state(id)?;
        if state != ExpState::Running {
            if !t.closed {
                let live: Vec<String> = t
                    .arrays
                    .iter()
                    .filter(|a| !a.gone && active(a) > 0)
                    .map(|a| a.id.clone())
                    .collect();
                match self.cli.scancel(&live).await {
                    Ok(()) => {
                        t.closed = true;
                        if !live.is_empty() {
                            tracing::info!(experiment = %id, jobs = ?live, "experiment {}: its Slurm jobs cancelled", state.key());
                        }
                    }
                    Err(e) => t.last_error = Some(e),
                }
            }
            return None;
        }
        // A failed experiment that was submitted again runs again.
        t.closed = false;
        if t.arrays
            .iter()
            .any(|a| !a.gone && (a.seen.is_empty() || active(a) > 0))
        {
            return None;
        }
        let st = self.sched.status(id)?;
        let unfinished = st
            .tasks_total
            .saturating_sub(st.tasks_done + st.tasks_failed);
        if unfinished == 0 || t.paused.is_some() {
            return None;
        }
        // The last array ended: did it finish anything?
        if let Some(last) = t.arrays.last_mut() {
            if let Some(d) = last.done_at_submit.take() {
                if st.tasks_done > d {
                    t.failures_in_row = 0;
                } else {
                    t.failures_in_row += 1;
                    let why = format!(
                        "job array {} ended without finishing a task (see its output in {})",
                        last.id,
                        self.log_dir(id, &t.spec)
                    );
                    self.back_off(t, why);
                    if t.paused.is_some() {
                        return None;
                    }
                }
            }
        }
        if t.next_try.is_some_and(|n| Instant::now() < n) {
            return None;
        }
        if t.arrays.len() as u32 >= t.spec.max_submissions {
            t.paused = Some(format!(
                "{} job arrays submitted, the most slurm.max_submissions allows; {unfinished} task(s) left (raise it and submit again)",
                t.arrays.len()
            ));
            return None;
        }
        let elements = unfinished
            .div_ceil(t.spec.slots_per_worker())
            .clamp(1, t.spec.workers);
        match self.submit(id, t, elements).await {
            Ok(job) => {
                self.sched.metrics().on_slurm_submission(true);
                t.arrays.push(ArrayJob {
                    id: job.clone(),
                    elements,
                    done_at_submit: Some(st.tasks_done),
                    gone: false,
                    seen: BTreeMap::new(),
                });
                t.next_try = Some(Instant::now() + self.cfg.backoff);
                tracing::info!(experiment = %id, job = %job, elements, "slurm: submitted a worker array");
                Some(job)
            }
            Err(e) => {
                self.sched.metrics().on_slurm_submission(false);
                t.failures_in_row += 1;
                self.back_off(t, e);
                None
            }
        }
    }

    /// Waits longer after each failure in a row, and pauses at [`PAUSE_AFTER`].
    fn back_off(&self, t: &mut Tracked, why: String) {
        tracing::warn!("slurm launcher: {why}");
        if t.failures_in_row >= PAUSE_AFTER {
            t.paused = Some(format!(
                "paused after {} failures in a row; last: {why}",
                t.failures_in_row
            ));
        } else {
            let wait = self.cfg.backoff * 2u32.pow(t.failures_in_row.min(8));
            t.next_try = Some(Instant::now() + wait);
        }
        t.last_error = Some(why);
    }

    fn log_dir(&self, id: &str, spec: &SlurmSpec) -> String {
        spec.log_dir.clone().unwrap_or_else(|| {
            self.cfg
                .state_dir
                .join("slurm")
                .join(id)
                .display()
                .to_string()
        })
    }

    /// Writes the script into the state folder and runs `sbatch`.
    async fn submit(&self, id: &str, t: &Tracked, elements: u32) -> Result<String, String> {
        let dir = self.cfg.state_dir.join("slurm").join(id);
        let log_dir = self.log_dir(id, &t.spec);
        for d in [dir.clone(), PathBuf::from(&log_dir)] {
            std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let req = ArrayRequest {
            experiment_id: id.to_string(),
            elements,
            coordinator: t
                .spec
                .coordinator
                .clone()
                .unwrap_or_else(|| self.cfg.self_url.clone()),
            mer: t.spec.mer.clone().unwrap_or_else(|| self.cfg.mer.clone()),
            log_dir,
        };
        let script = job_script(&t.spec, &req);
        let path = dir.join(format!("array-{}.sbatch", t.arrays.len() + 1));
        mer_shared::fs::write_atomic(&path, script.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let job = self.cli.sbatch(&path).await?;
        let (j, e, p) = (job.clone(), id.to_string(), path.display().to_string());
        self.sched
            .store()
            .write(move |tx| tx.record_slurm_array(&j, &e, elements, &p))
            .await
            .map_err(|e| e.to_string())?;
        Ok(job)
    }

    /// Runs a pass every `poll` until `shutdown`.
    pub fn spawn(mut self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.cfg.poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => { self.reconcile_once().await; }
                }
            }
        })
    }
}

/// Elements of an array not yet ended.
fn active(a: &ArrayJob) -> u32 {
    a.seen
        .values()
        .filter(|e| classify(&e.state) == StateClass::Active)
        .map(Element::count)
        .sum()
}

/// The lines `mer status` and the dashboard show for the experiment.
fn notes(t: &Tracked) -> Vec<String> {
    let mut out = Vec::new();
    for a in &t.arrays {
        let mut by_state: BTreeMap<&str, u32> = BTreeMap::new();
        for e in a.seen.values() {
            *by_state.entry(e.state.as_str()).or_default() += e.count();
        }
        let states = if a.gone {
            "ended".to_string()
        } else if by_state.is_empty() {
            "submitted".to_string()
        } else {
            by_state
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!(
            "slurm job {} ({} workers): {states}",
            a.id, a.elements
        ));
    }
    if let Some(p) = &t.paused {
        out.push(format!("slurm launcher paused: {p}"));
    } else if let Some(e) = &t.last_error {
        out.push(format!("slurm: last error: {e}"));
    }
    out
}
