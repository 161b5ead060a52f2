//! The one epoch loop of every libtorch training here (MERSiamC3D's prior and target learning, the
//! apex-flow CNN baselines), after `burn-train`'s learner: the loop is written once and a method supplies
//! its step ([`EpochStep`]).
//!
//! Per epoch, in this order: the method trains one pass (checking [`Cancel`] between batches); the loop
//! refuses a loss that is not finite and stops when cancel was set; the method measures what it monitors
//! and, on the epochs [`evaluates_epoch`] names, the test subject's predictions (the leakage diagnostics'
//! per-epoch record; nothing in training reads them); the loop writes the [`EpochLog`], calls the
//! `on_epoch` hook, and the method saves its checkpoint. A fixed budget: no epoch is ever selected.

use crate::error::WorkerError;
use mer_shared::fold::{predicted_class, EpochLog, LayerStats};
use mer_shared::train_config::evaluates_epoch;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Callbacks and controls of a running training (what the agent passes to a trainer).
#[derive(Default)]
pub struct Hooks<'a> {
    /// Called after every epoch of either stage (progress, heartbeats).
    pub on_epoch: Option<&'a mut dyn FnMut(&EpochLog)>,
    /// Folder for per-epoch checkpoints; a rerun with the same folder resumes after the last finished epoch.
    pub checkpoint_dir: Option<PathBuf>,
    /// Checked between batches; when set the training stops with [`WorkerError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Hooks<'_> {
    /// The same hooks for a nested stage (prior learning, then target learning on the same hooks).
    pub fn reborrow(&mut self) -> Hooks<'_> {
        Hooks {
            on_epoch: match &mut self.on_epoch {
                Some(f) => Some(&mut **f),
                None => None,
            },
            checkpoint_dir: self.checkpoint_dir.clone(),
            cancel: self.cancel.clone(),
        }
    }
}

/// The cancel flag as a step sees it: [`Cancel::check`] between batches.
#[derive(Clone, Copy, Default)]
pub struct Cancel<'a>(Option<&'a AtomicBool>);

impl<'a> Cancel<'a> {
    /// A view of `flag` (none: never cancelled).
    pub fn new(flag: Option<&'a AtomicBool>) -> Self {
        Cancel(flag)
    }

    /// True once the flag is set.
    pub fn is_set(&self) -> bool {
        self.0.is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// [`WorkerError::Cancelled`] once the flag is set.
    pub fn check(&self) -> Result<(), WorkerError> {
        if self.is_set() {
            Err(WorkerError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// What one epoch's training pass gave: its mean loss and how many samples went through the network (for
/// the throughput in the log).
pub struct EpochPass {
    /// Mean training loss of the epoch.
    pub loss: f64,
    /// Samples run forward and backward (a pair counts two).
    pub samples: usize,
}

/// What a method measured after an epoch: the optional fields of its [`EpochLog`].
#[derive(Default)]
pub struct EpochEval {
    /// The stage's monitor (prior learning: accuracy on the held-out pairs).
    pub monitor: Option<f64>,
    /// Prior learning: accuracy on pairs of subjects kept out of it.
    pub unseen: Option<f64>,
    /// The test subject's predicted classes, on the epochs that test.
    pub test_predictions: Vec<usize>,
    /// Per-layer statistics (`train.layer_stats`).
    pub layers: Vec<LayerStats>,
}

/// The test subject's probabilities of the last epoch that tested. After the last epoch they are the final
/// ones (the same weights), so the final test reuses them instead of running the test set again.
#[derive(Default)]
pub struct LastTest(Option<Vec<Vec<f32>>>);

impl LastTest {
    /// Keeps `probs` (an epoch that tested; `None` for one that did not) and returns its predicted classes,
    /// the epoch log's `test_predictions`.
    pub fn keep(&mut self, probs: Option<Vec<Vec<f32>>>) -> Vec<usize> {
        let Some(probs) = probs else {
            return Vec::new();
        };
        let preds = probs.iter().map(|row| predicted_class(row)).collect();
        self.0 = Some(probs);
        preds
    }

    /// The kept probabilities; `None` when no epoch tested (every epoch was restored from a checkpoint).
    pub fn take(&mut self) -> Option<Vec<Vec<f32>>> {
        self.0.take()
    }
}

/// A method's part of the loop: one training pass, what it measures after it, and its checkpoint.
pub trait EpochStep {
    /// Trains epoch `epoch` (0-based), calling `cancel.check()` between batches.
    fn train_epoch(&mut self, epoch: usize, cancel: Cancel) -> Result<EpochPass, WorkerError>;

    /// Measures after the pass; `test` says whether this epoch records the test subject's predictions.
    fn evaluate(&mut self, epoch: usize, test: bool) -> Result<EpochEval, WorkerError>;

    /// Saves a checkpoint after the epoch's log (`logs` holds every epoch so far); the default keeps none.
    fn checkpoint(&mut self, logs: &[EpochLog]) -> Result<(), WorkerError> {
        let _ = logs;
        Ok(())
    }
}

/// One run of the loop: a stage's budget, names and hooks.
pub struct EpochLoop<'a, 'h> {
    /// The log's stage (`prior` or `target`).
    pub stage: &'a str,
    /// What a diverged loss is named after (the stage, or the baseline's network).
    pub name: &'a str,
    /// The fold, for the logs.
    pub fold: &'a str,
    /// The epoch budget; epochs already in the resumed logs are not run again.
    pub epochs: usize,
    /// Test every `eval_every`-th epoch besides the last ([`evaluates_epoch`]).
    pub eval_every: usize,
    /// Cancel flag.
    pub cancel: Cancel<'a>,
    /// Called after every epoch.
    pub on_epoch: Option<&'h mut dyn FnMut(&EpochLog)>,
}

impl EpochLoop<'_, '_> {
    /// Runs the epochs after those in `done` (the logs a checkpoint restored), and returns all logs.
    pub fn run(
        mut self,
        mut done: Vec<EpochLog>,
        step: &mut dyn EpochStep,
    ) -> Result<Vec<EpochLog>, WorkerError> {
        for epoch in done.len()..self.epochs {
            let t0 = Instant::now();
            let pass = step.train_epoch(epoch, self.cancel)?;
            let secs = t0.elapsed().as_secs_f64();
            if !pass.loss.is_finite() {
                return Err(WorkerError::Training(format!(
                    "{} loss is not finite at epoch {epoch} (diverged; lower the learning rate)",
                    self.name
                )));
            }
            self.cancel.check()?;
            let eval =
                step.evaluate(epoch, evaluates_epoch(self.eval_every, epoch, self.epochs))?;
            let log = EpochLog {
                stage: self.stage.into(),
                epoch,
                loss: pass.loss,
                monitor: eval.monitor,
                unseen: eval.unseen,
                samples_per_s: pass.samples as f64 / secs.max(1e-9),
                test_predictions: eval.test_predictions,
                layers: eval.layers,
            };
            tracing::info!(
                fold = %self.fold,
                stage = %self.stage,
                epoch,
                loss = pass.loss,
                monitor = ?log.monitor,
                unseen = ?log.unseen,
                "epoch"
            );
            if let Some(f) = self.on_epoch.as_mut() {
                f(&log);
            }
            done.push(log);
            step.checkpoint(&done)?;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step whose loss is 1 / (epoch + 1), or NaN at `nan_at`; it counts its calls.
    struct Counting {
        passes: Vec<usize>,
        tested: Vec<usize>,
        saved: usize,
        nan_at: Option<usize>,
    }

    impl EpochStep for Counting {
        fn train_epoch(&mut self, epoch: usize, cancel: Cancel) -> Result<EpochPass, WorkerError> {
            cancel.check()?;
            self.passes.push(epoch);
            let loss = if Some(epoch) == self.nan_at {
                f64::NAN
            } else {
                1.0 / (epoch + 1) as f64
            };
            Ok(EpochPass { loss, samples: 10 })
        }

        fn evaluate(&mut self, epoch: usize, test: bool) -> Result<EpochEval, WorkerError> {
            if test {
                self.tested.push(epoch);
            }
            Ok(EpochEval {
                monitor: Some(epoch as f64),
                test_predictions: if test { vec![epoch] } else { vec![] },
                ..Default::default()
            })
        }

        fn checkpoint(&mut self, logs: &[EpochLog]) -> Result<(), WorkerError> {
            self.saved = logs.len();
            Ok(())
        }
    }

    fn counting() -> Counting {
        Counting {
            passes: vec![],
            tested: vec![],
            saved: 0,
            nan_at: None,
        }
    }

    fn looped<'a>(epochs: usize, cancel: Cancel<'a>) -> EpochLoop<'a, 'a> {
        EpochLoop {
            stage: "target",
            name: "target",
            fold: "casme2/sub01",
            epochs,
            eval_every: 2,
            cancel,
            on_epoch: None,
        }
    }

    #[test]
    fn runs_the_epochs_after_the_resumed_ones_tests_on_schedule_and_checkpoints_each() {
        let mut step = counting();
        let mut seen = Vec::new();
        let mut hook = |l: &EpochLog| seen.push(l.epoch);
        let resumed = EpochLog {
            stage: "target".into(),
            epoch: 0,
            loss: 1.0,
            monitor: None,
            unseen: None,
            samples_per_s: 1.0,
            test_predictions: vec![],
            layers: vec![],
        };
        let mut l = looped(5, Cancel::default());
        l.on_epoch = Some(&mut hook);
        let logs = l.run(vec![resumed], &mut step).unwrap();
        assert_eq!(step.passes, [1, 2, 3, 4]);
        // Every 2nd epoch (1-based) and the last.
        assert_eq!(step.tested, [1, 3, 4]);
        assert_eq!(step.saved, 5);
        assert_eq!(seen, [1, 2, 3, 4]);
        assert_eq!(logs.len(), 5);
        assert_eq!(logs[2].loss, 1.0 / 3.0);
        assert_eq!(logs[2].monitor, Some(2.0));
        assert_eq!(logs[3].test_predictions, [3]);
        assert!(logs.iter().all(|l| l.stage == "target"));
    }

    #[test]
    fn a_diverged_loss_and_a_cancel_stop_the_loop() {
        let mut step = Counting {
            nan_at: Some(2),
            ..counting()
        };
        let e = looped(5, Cancel::default())
            .run(vec![], &mut step)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("target loss is not finite at epoch 2"),
            "{e}"
        );
        assert_eq!(step.saved, 2);

        let flag = AtomicBool::new(true);
        let mut step = counting();
        let e = looped(5, Cancel::new(Some(&flag)))
            .run(vec![], &mut step)
            .unwrap_err();
        assert!(matches!(e, WorkerError::Cancelled));
        assert!(step.passes.is_empty());
    }
}
