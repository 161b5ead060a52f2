//! User methods: a researcher's own training command, run on a fold through the fold contract
//! (`docs/own-model.md`). [`WithUserMethods`] wraps any [`Trainer`]: tasks of a user method run here, every
//! other task goes to the wrapped trainer. Needs no libtorch: the command brings its own framework.
//!
//! One task: split the fold by the one rule every trainer uses ([`crate::train::fold`]), write the task
//! folder without a test label in it ([`folder`]), run the command there in its own process group
//! ([`process`]), check what it wrote ([`outputs`]) and score it against the labels the worker kept.

pub mod folder;
pub mod outputs;
pub mod process;

use crate::agent::dataset_cache::DatasetCache;
use crate::agent::trainer::{Progress, TaskInputs, TaskOutput, TaskSpec, Trainer, TrainerError};
use crate::train::fold::split_fold;
use folder::{write_folder, TaskContext};
use mer_shared::fold::{EpochLog, FoldResult, SamplePrediction, Timings};
use mer_shared::method::BaselineSettings;
use mer_shared::metrics::Confusion;
use mer_shared::prepared::Prepared;
use mer_shared::task::TaskKind;
use mer_shared::user_method::{UserMethodTask, EPOCH_PREDICTIONS_FILE, PREDICTIONS_FILE};
use process::{command_env, run_command, CommandSpec, Ended, ProgressLine, RunOutcome};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A trainer that runs user-method tasks itself and hands every other task to `inner`.
pub struct WithUserMethods<T> {
    inner: T,
    cache: Arc<DatasetCache>,
}

impl<T: Trainer> WithUserMethods<T> {
    /// Wraps `inner`, with a dataset cache of its own.
    pub fn new(inner: T) -> Self {
        Self::with_cache(inner, Arc::default())
    }

    /// Wraps `inner`, keeping datasets in `cache` (give it the one `inner` uses).
    pub fn with_cache(inner: T, cache: Arc<DatasetCache>) -> Self {
        WithUserMethods { inner, cache }
    }
}

impl<T: Trainer> Trainer for WithUserMethods<T> {
    fn run(
        &self,
        task: &TaskSpec,
        inputs: &TaskInputs,
        progress: &mut dyn FnMut(Progress),
        cancel: &AtomicBool,
    ) -> Result<TaskOutput, TrainerError> {
        match (&task.kind, &task.payload.baseline) {
            (TaskKind::Target, Some(BaselineSettings::User(u))) => {
                let data = self.cache.get(&inputs.dataset, &task.payload.parts)?;
                run_user_task(&data, task, u, inputs, progress, cancel).map(TaskOutput::Target)
            }
            _ => self.inner.run(task, inputs, progress, cancel),
        }
    }
}

/// The slot's device as a command gets it: `auto` (the engine's "a GPU if there is one") becomes `cuda`
/// on a machine with an NVIDIA device node and `cpu` elsewhere, since the command has no engine to ask.
fn resolve_auto(device: &str) -> String {
    if device.split(',').all(|d| d.trim() == "auto") {
        if Path::new("/dev/nvidiactl").exists() {
            "cuda".into()
        } else {
            "cpu".into()
        }
    } else {
        device.to_string()
    }
}

/// One fold of a user method: writes the folder, runs the command, checks and scores its predictions.
pub fn run_user_task(
    data: &Prepared,
    task: &TaskSpec,
    method: &UserMethodTask,
    inputs: &TaskInputs,
    progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<FoldResult, TrainerError> {
    let t0 = Instant::now();
    method
        .validate()
        .map_err(|(f, m)| TrainerError::fatal(format!("methods.{}.{f}: {m}", method.name)))?;
    let p = &task.payload;
    let scheme = p.scheme;
    let held = p.held_out();
    let fold = split_fold(data, scheme, &held).map_err(|e| TrainerError::fatal(e.to_string()))?;
    // Absolute, since the command runs inside it and finds the helper through PYTHONPATH.
    let dir = std::path::absolute(inputs.work_dir.join("task"))
        .map_err(|e| TrainerError::retryable(format!("{}: {e}", inputs.work_dir.display())))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| TrainerError::retryable(format!("creating {}: {e}", dir.display())))?;
    let device = resolve_auto(&inputs.device);
    let ctx = TaskContext {
        seed: p.train.seed,
        device: &device,
        threads: p.train.threads,
        scheme,
        fold: &held.fold,
        inner: p.inner.as_ref(),
        files: &inputs.files,
    };
    let test = write_folder(&dir, data, &fold, method, &ctx)?;
    let device_name = device.clone();
    let mut logs: BTreeMap<(String, usize), ProgressLine> = BTreeMap::new();
    let mut last_loss = 0.0;
    let mut on_line = |l: &ProgressLine| {
        let stage = l.stage.clone().unwrap_or_else(|| "target".into());
        if let Some(x) = l.loss.filter(|x| x.is_finite()) {
            last_loss = x;
        }
        progress(Progress {
            stage: stage.clone(),
            epoch: l.epoch.unwrap_or(0),
            epochs: l.epochs.unwrap_or(0),
            loss: last_loss,
            samples_per_s: l.samples_per_s.unwrap_or(0.0),
            device: device_name.clone(),
            gpu_memory_bytes: None,
        });
        if let Some(e) = l.epoch {
            logs.insert((stage, e as usize), l.clone());
        }
    };
    let spec = CommandSpec {
        argv: &method.command,
        dir: &dir,
        env: command_env(&dir, &device, p.train.threads),
        timeout: Duration::from_secs(method.timeout_minutes.saturating_mul(60)),
        log_dir: &inputs.work_dir,
    };
    let run = run_command(&spec, cancel, &mut on_line)
        .map_err(|e| TrainerError::retryable(format!("method {}: {e}", method.name)))?;
    check_ended(method, &run)?;
    let classes = scheme.num_classes();
    let refused = |e: outputs::OutputError| {
        TrainerError::fatal(format!("method {}: refused {e}", method.name))
    };
    let preds =
        outputs::read_predictions(&dir.join(PREDICTIONS_FILE), &test, classes).map_err(refused)?;
    let per_epoch =
        outputs::read_epoch_predictions(&dir.join(EPOCH_PREDICTIONS_FILE), &test, classes)
            .map_err(refused)?;
    // Results list the test samples in data order, as every other method's do.
    let mut order: Vec<usize> = (0..test.len()).collect();
    order.sort_by_key(|&i| test[i].index);
    let (confusion, predictions) = score(data, &test, &preds, &order, classes)?;
    let epochs = epoch_logs(logs, per_epoch, &order);
    Ok(FoldResult {
        test_subject: held.fold.clone(),
        scheme: scheme.key().into(),
        seed: p.train.seed,
        device,
        predictions,
        confusion,
        epochs,
        timings: Timings {
            prior_s: 0.0,
            target_s: run.seconds,
            test_s: 0.0,
            total_s: t0.elapsed().as_secs_f64(),
        },
    })
}

/// Fails the fold unless the method's command exited successfully (the error quotes the end of its
/// stderr).
fn check_ended(method: &UserMethodTask, run: &RunOutcome) -> Result<(), TrainerError> {
    let tail = |s: &str| {
        if s.is_empty() {
            String::from(" (no stderr)")
        } else {
            format!("; last lines of stderr:\n{s}")
        }
    };
    match run.ended {
        Ended::Cancelled => {
            return Err(TrainerError::retryable(format!(
                "method {}: cancelled; its process group was killed",
                method.name
            )))
        }
        Ended::TimedOut => {
            return Err(TrainerError::retryable(format!(
                "method {}: timed out after {} minute(s); its process group was killed{}",
                method.name,
                method.timeout_minutes,
                tail(&run.stderr_tail)
            )))
        }
        Ended::Exited(status) if !status.success() => {
            return Err(TrainerError::retryable(format!(
                "method {}: `{}` failed ({status}){}",
                method.name,
                method.command.join(" "),
                tail(&run.stderr_tail)
            )))
        }
        Ended::Exited(_) => {}
    }
    Ok(())
}

/// The confusion matrix and the predictions of the `test` samples, in `order` (data order).
fn score(
    data: &Prepared,
    test: &[folder::TestSample],
    preds: &[outputs::Prediction],
    order: &[usize],
    classes: usize,
) -> Result<(Confusion, Vec<SamplePrediction>), TrainerError> {
    let mut confusion = Confusion::new(classes);
    let mut predictions = Vec::with_capacity(test.len());
    for &i in order {
        let t = &test[i];
        confusion
            .add(t.label, preds[i].pred)
            .map_err(|e| TrainerError::fatal(e.to_string()))?;
        predictions.push(SamplePrediction::new(
            &data.samples[t.index],
            t.label,
            preds[i].pred,
            preds[i].probs.clone(),
        ));
    }
    Ok((confusion, predictions))
}

/// The fold's training log: one line per (stage, epoch) the command reported, with the per-epoch test
/// predictions (reordered to the results' order) on the `target` stage's epochs; an epoch known only
/// from its predictions gets a line without a loss.
fn epoch_logs(
    mut logs: BTreeMap<(String, usize), ProgressLine>,
    per_epoch: Option<Vec<Vec<usize>>>,
    order: &[usize],
) -> Vec<EpochLog> {
    let per_epoch = per_epoch.unwrap_or_default();
    for e in 0..per_epoch.len() {
        logs.entry(("target".into(), e)).or_default();
    }
    let mut out: Vec<EpochLog> = logs
        .into_iter()
        .map(|((stage, epoch), l)| {
            let test_predictions = if stage == "target" {
                per_epoch
                    .get(epoch)
                    .map(|row| order.iter().map(|&i| row[i]).collect())
                    .unwrap_or_default()
            } else {
                vec![]
            };
            EpochLog {
                stage,
                epoch,
                loss: l.loss.filter(|x| x.is_finite()).unwrap_or(f64::NAN),
                monitor: None,
                unseen: None,
                samples_per_s: l.samples_per_s.unwrap_or(0.0),
                test_predictions,
                layers: vec![],
            }
        })
        .collect();
    // Stages in the order they first appear is unknown; keep each stage's epochs together, target last.
    out.sort_by_key(|e| (e.stage == "target", e.stage.clone(), e.epoch));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_shared::labels::LabelScheme;
    use mer_shared::task::TaskPayload;
    use mer_shared::train_config::TrainConfig;
    use mer_shared::user_method::{ShippedFile, UserInput};
    use std::path::PathBuf;

    /// A command (Python, standard library only) that copies every byte of every file under its folder
    /// into the file `params.dump`, then predicts class 0 for every test sample.
    const DUMP_PY: &str = r#"
import json, os, struct
params = json.load(open("task.json"))["params"]
with open(params["dump"], "wb") as out:
    for root, dirs, files in os.walk("."):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            out.write(path.encode() + b"\0")
            with open(path, "rb") as f:
                out.write(f.read())
raw = open("test.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
ids = json.loads(json.loads(raw[8:8 + n])["__metadata__"]["sample_ids"])
with open("predictions.csv", "w") as f:
    f.write("sample_id,pred\n")
    for i in ids:
        f.write(f"{i},0\n")
"#;

    const TEST_SUBJECT: &str = "smic/s01";

    /// The SMIC clips of the sim data renamed as SMIC-HS names them, with the label in the name
    /// (`s01_po_00`); with `shift`, the test subject's labels are rotated by one class first (and its
    /// names and emotions follow).
    fn labelled_names(shift: bool) -> Prepared {
        let mut d = crate::agent::sim::sim_prepared(2, 3, true);
        for s in d.samples.iter_mut().filter(|s| s.id.starts_with("smic/")) {
            let mut label = s.labels["megc3"];
            if shift && s.fold_key() == TEST_SUBJECT {
                label = (label + 1) % 3;
                s.labels.insert("megc3".into(), label);
            }
            let tag = ["ne", "po", "sur"][label];
            s.emotion = ["negative", "positive", "surprise"][label].into();
            s.filename = format!("{}_{tag}_{}", s.subject, &s.filename[4..]);
            s.id = format!("smic/{}/{}", s.subject, s.filename);
        }
        d
    }

    /// Runs the dump command on the fold of [`TEST_SUBJECT`] of `data`; returns the dump and the result.
    fn dump_fold(data: &Prepared, dir: &Path) -> (Vec<u8>, FoldResult) {
        let script = dir.join("dump.py");
        std::fs::write(&script, DUMP_PY).unwrap();
        let dump = dir.join("dump.bin");
        let method = UserMethodTask {
            name: "dumper".into(),
            command: vec!["python3".into(), "dump.py".into()],
            files: vec![ShippedFile {
                path: "dump.py".into(),
                sha256: mer_shared::digest::sha256_file(&script).unwrap(),
            }],
            inputs: vec![UserInput::Flow, UserInput::ApexFlow, UserInput::Tim10],
            params: [(
                "dump".to_string(),
                serde_json::json!(dump.display().to_string()),
            )]
            .into(),
            timeout_minutes: 1,
        };
        let task = TaskSpec {
            key: "k".into(),
            kind: TaskKind::Target,
            fold: TEST_SUBJECT.into(),
            sweep_point: Some(0),
            attempt: 1,
            payload: TaskPayload {
                dataset_hash: String::new(),
                scheme: LabelScheme::Megc3,
                parts: vec![],
                test_subject: TEST_SUBJECT.into(),
                train: TrainConfig::default(),
                prior_key: None,
                baseline: Some(BaselineSettings::User(method.clone())),
                inner: None,
                test_subjects: None,
            },
        };
        let work = dir.join("work");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let inputs = TaskInputs {
            dataset: PathBuf::new(),
            prior_checkpoint: None,
            work_dir: work,
            device: "cpu".into(),
            files: vec![("dump.py".into(), script)],
        };
        let r = run_user_task(
            data,
            &task,
            &method,
            &inputs,
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        (std::fs::read(&dump).unwrap(), r)
    }

    fn contains(hay: &[u8], needle: &str) -> bool {
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    /// Everything the command can read in its folder, dumped byte for byte, is the same whatever the test
    /// subject's labels are (so no function of it recovers them), and holds none of the test clips'
    /// names, which carry their labels; the worker still scores against the true labels.
    #[test]
    fn no_test_label_can_be_recovered_from_the_task_folder() {
        let dir = tempfile::tempdir().unwrap();
        let a = labelled_names(false);
        let b = labelled_names(true);
        let test_labels = |d: &Prepared| -> Vec<usize> {
            d.samples
                .iter()
                .filter(|s| s.fold_key() == TEST_SUBJECT)
                .map(|s| s.labels["megc3"])
                .collect()
        };
        assert_ne!(test_labels(&a), test_labels(&b));
        let (dump_a, res_a) = dump_fold(&a, dir.path());
        let (dump_b, res_b) = dump_fold(&b, dir.path());
        assert!(dump_a.len() > 1000, "the dump holds the folder");
        if let Some(at) = dump_a.iter().zip(&dump_b).position(|(x, y)| x != y) {
            panic!("the task folder changes with the test labels at byte {at}");
        }
        assert_eq!(dump_a.len(), dump_b.len());
        for s in a.samples.iter().chain(&b.samples) {
            let test = s.fold_key() == TEST_SUBJECT;
            assert_eq!(contains(&dump_a, &s.filename), !test, "{}", s.id);
        }
        // The training side is there, labels and all.
        assert!(contains(&dump_a, "smic/s02/s02_"));
        assert!(contains(&dump_a, "\"label\""));
        // The worker kept the truth: each result scores against its own labels.
        let truth = |r: &FoldResult| -> Vec<usize> {
            r.predictions.iter().map(|p| p.record.label).collect()
        };
        assert_eq!(truth(&res_a), test_labels(&a));
        assert_eq!(truth(&res_b), test_labels(&b));
        assert!(res_a.predictions.iter().all(|p| p.record.pred == 0));
    }
}
