//! Prior learning (the paper's first stage): the siamese network learns same/different pairs of the
//! fold's training samples (eq. 7, 8); its tower is the artifact target learning starts from. Monitored on
//! held-out pairs of the same clips and, with `prior.unseen_subjects`, on pairs of training subjects kept
//! out of the stage. With `prior.shuffle_labels` (a control) the pairs follow permuted labels.

use super::{fingerprint, setup, PriorSummary, Setup, StageCheckpoint};
use crate::error::WorkerError;
use crate::mersiamc3d::augment::{Augmenter, DeviceSet, Variant};
use crate::mersiamc3d::data_parallel::{prior_step, PairBatch, StepContext, TrainSets};
use crate::mersiamc3d::model::init_params;
use crate::mersiamc3d::pairs::{eq7_pair_count, unseen_split, Pair, PairSet};
use crate::mersiamc3d::siamese;
use crate::train::checkpoint::{self, PRIOR_FORMAT};
use crate::train::epochs::{Cancel, EpochEval, EpochLoop, EpochPass, EpochStep, Hooks};
use crate::train::fold::{split_fold, Fold};
use crate::train::optim::{lr_at, ParamSet};
use crate::train::replicas::Weights;
use crate::train::seeds::rng;
use mer_shared::fold::EpochLog;
use mer_shared::labels::LabelScheme;
use mer_shared::loso::HeldOut;
use mer_shared::prepared::Prepared;
use mer_shared::train_config::TrainConfig;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The pairs of one fold's prior learning.
pub(super) struct FoldPairs {
    /// Positions (into the fold's training samples) that prior learning learns from.
    pub(super) learn: Vec<usize>,
    /// The training subjects kept out (`prior.unseen_subjects`).
    pub(super) unseen_subjects: Vec<String>,
    /// Eq. 7's count over the learned samples: all, same-class, different-class pairs.
    pub(super) counts: (u64, u64, u64),
    /// The training pairs (positions into the training samples), with the permuted labels' same and
    /// different under `prior.shuffle_labels`.
    pub(super) pairs: PairSet,
    /// Held-out pairs of the same clips (the monitor), labelled as the training pairs are.
    pub(super) val: Vec<Pair>,
    /// Pairs of the kept-out subjects' clips, by their true labels.
    pub(super) unseen: Vec<Pair>,
}

impl FoldPairs {
    /// Splits off the unseen subjects, counts eq. 7's pairs and draws the pair sets.
    pub(super) fn build(
        data: &Prepared,
        fold: &Fold,
        cfg: &TrainConfig,
        classes: usize,
    ) -> Result<Self, WorkerError> {
        let subjects: Vec<String> = fold
            .train
            .iter()
            .map(|&i| data.samples[i].fold_key())
            .collect();
        let split = unseen_split(
            &subjects,
            &fold.train_labels,
            cfg.prior.unseen_subjects,
            &mut rng(cfg.seed, "prior-unseen", 0),
        )?;
        let labels_of =
            |pos: &[usize]| -> Vec<usize> { pos.iter().map(|&k| fold.train_labels[k]).collect() };
        let mut learn_labels = labels_of(&split.learn);
        if cfg.prior.shuffle_labels {
            learn_labels.shuffle(&mut rng(cfg.seed, "prior-shuffle", 0));
        }
        let mut counts = vec![0usize; classes];
        learn_labels.iter().for_each(|&l| counts[l] += 1);
        let pairs = PairSet::build(
            &learn_labels,
            cfg.prior.val_fraction,
            &mut rng(cfg.seed, "pairs", 0),
        )?
        .remap(&split.learn);
        let n_val =
            ((cfg.prior.pairs_per_epoch as f64 * cfg.prior.val_fraction).ceil() as usize).max(2);
        let val = pairs.validation(n_val);
        let unseen = if split.unseen.is_empty() {
            Vec::new()
        } else {
            PairSet::build(
                &labels_of(&split.unseen),
                0.0,
                &mut rng(cfg.seed, "unseen-pairs", 0),
            )?
            .remap(&split.unseen)
            .balanced(n_val.max(200))
        };
        Ok(FoldPairs {
            learn: split.learn,
            unseen_subjects: split.subjects,
            counts: eq7_pair_count(&counts),
            pairs,
            val,
            unseen,
        })
    }
}

/// Prior learning's part of the epoch loop.
struct PriorEpochs<'a> {
    su: &'a Setup,
    cfg: &'a TrainConfig,
    aug: Augmenter,
    pairs: &'a FoldPairs,
    weights: Weights,
    sets: TrainSets,
    checkpoint: StageCheckpoint,
}

impl EpochStep for PriorEpochs<'_> {
    fn train_epoch(&mut self, epoch: usize, cancel: Cancel) -> Result<EpochPass, WorkerError> {
        let o = &self.cfg.prior.optim;
        let ctx = StepContext {
            model: &self.su.model,
            prec: &self.su.prec,
            lr: lr_at(o, epoch),
            optim: o,
        };
        let mut r = rng(self.cfg.seed, "prior-epoch", epoch);
        let plan = self
            .pairs
            .pairs
            .epoch(self.cfg.prior.pairs_per_epoch, &mut r);
        let mut loss_acc = Tensor::zeros([], (Kind::Float, self.su.device));
        let (mut idx, mut vars, mut same) = (Vec::new(), Vec::<Variant>::new(), Vec::new());
        for chunk in plan.chunks(o.batch_size) {
            cancel.check()?;
            idx.clear();
            vars.clear();
            same.clear();
            idx.extend(chunk.iter().map(|p| p.a as usize));
            idx.extend(chunk.iter().map(|p| p.b as usize));
            vars.extend((0..idx.len()).map(|_| self.aug.draw(&mut r)));
            same.extend(chunk.iter().map(|p| if p.same { 1.0f32 } else { 0.0 }));
            let batch = PairBatch {
                idx: &idx,
                vars: &vars,
                same: &same,
            };
            let loss = prior_step(&ctx, &mut self.weights, &mut self.sets, &batch)?;
            loss_acc += loss * chunk.len() as f64;
        }
        Ok(EpochPass {
            loss: loss_acc.double_value(&[]) / plan.len().max(1) as f64,
            samples: 2 * plan.len(),
        })
    }

    fn evaluate(&mut self, _epoch: usize, _test: bool) -> Result<EpochEval, WorkerError> {
        let bs = self.cfg.prior.optim.batch_size;
        let set = &mut self.sets.primary;
        Ok(EpochEval {
            monitor: pair_accuracy(self.su, self.weights.primary(), set, &self.pairs.val, bs),
            unseen: pair_accuracy(self.su, self.weights.primary(), set, &self.pairs.unseen, bs),
            ..Default::default()
        })
    }

    fn checkpoint(&mut self, logs: &[EpochLog]) -> Result<(), WorkerError> {
        self.checkpoint.save(self.weights.primary(), logs)
    }
}

/// Stage 1 for one fold (see [`super::run_prior`]).
pub(super) fn learn(
    data: &Prepared,
    scheme: LabelScheme,
    held: &HeldOut,
    cfg: &TrainConfig,
    out: &Path,
    hooks: Hooks,
) -> Result<PriorSummary, WorkerError> {
    let t0 = Instant::now();
    let fold = split_fold(data, scheme, held)?;
    let su = setup(cfg, scheme)?;
    let aug = Augmenter::new(&cfg.augment, cfg.model.input_size)?;
    let pairs = FoldPairs::build(data, &fold, cfg, scheme.num_classes())?;
    let mut set = DeviceSet::new(data, &fold.train, &cfg.model, su.device)?;
    let gain = set.input_gain(cfg.model.input_scale)?;
    set.scale(gain);

    let mut specs = su.model.param_specs();
    specs.extend(siamese::head_specs(cfg.model.dense));
    let init = init_params(&specs, &mut rng(cfg.seed, "prior-init", 0), su.device);
    let mut ps = ParamSet::new(
        specs.iter().map(|s| s.name.clone()).collect(),
        init,
        &su.prec,
    );
    let fp = fingerprint("prior", cfg, scheme, held, data, &fold.train, "");
    let checkpoint = StageCheckpoint {
        dir: hooks.checkpoint_dir.clone(),
        stage: "prior",
        fingerprint: fp.clone(),
    };
    let logs = checkpoint.resume(&mut ps, &su.prec)?;
    let start = logs.len();
    tracing::info!(
        fold = %held.describe(),
        train = pairs.learn.len(),
        unseen = ?pairs.unseen_subjects,
        pairs_total = pairs.counts.0,
        start,
        input_gain = gain,
        devices = %su.device_names(),
        "prior learning"
    );
    let weights = Weights::new(ps, &su.devices, cfg.fast_path)?;
    let sets = TrainSets::new(set, data, &fold.train, &cfg.model, &su.devices, gain)?;
    let mut step = PriorEpochs {
        su: &su,
        cfg,
        aug,
        pairs: &pairs,
        weights,
        sets,
        checkpoint,
    };
    let fold_name = held.describe();
    let logs = EpochLoop {
        stage: "prior",
        name: "prior",
        fold: &fold_name,
        epochs: cfg.prior.optim.epochs,
        eval_every: cfg.eval_every,
        cancel: Cancel::new(hooks.cancel.as_deref()),
        on_epoch: hooks.on_epoch,
    }
    .run(logs, &mut step)?;
    let (pairs_total, pairs_same, pairs_different) = pairs.counts;
    let summary = PriorSummary {
        path: out.to_path_buf(),
        test_subject: held.fold.clone(),
        train_samples: pairs.learn.len(),
        unseen_subjects: pairs.unseen_subjects.clone(),
        pairs_total,
        pairs_same,
        pairs_different,
        epochs: logs,
        seconds: t0.elapsed().as_secs_f64(),
        device: su.device_names(),
    };
    save_artifact(&su, step.weights.primary(), cfg, fp, &summary)?;
    Ok(summary)
}

/// Writes the prior artifact: the tower's weights with the fingerprint, the model and the summary.
fn save_artifact(
    su: &Setup,
    ps: &ParamSet,
    cfg: &TrainConfig,
    fp: String,
    summary: &PriorSummary,
) -> Result<(), WorkerError> {
    let n = su.model.tower_len();
    let tower: Vec<(String, Tensor)> = ps.to_cpu().into_iter().take(n).collect();
    let meta: BTreeMap<String, String> = [
        ("format".to_string(), PRIOR_FORMAT.to_string()),
        ("fingerprint".into(), fp),
        (
            "model".into(),
            serde_json::to_string(&cfg.model).unwrap_or_default(),
        ),
        (
            "summary".into(),
            serde_json::to_string(summary).unwrap_or_default(),
        ),
    ]
    .into();
    checkpoint::save(&summary.path, &tower, &meta)
}

/// Accuracy (threshold 0.5) of the siamese head on fixed monitoring pairs; `None` without pairs.
fn pair_accuracy(
    su: &Setup,
    ps: &ParamSet,
    set: &mut DeviceSet,
    val: &[Pair],
    bs: usize,
) -> Option<f64> {
    if val.is_empty() {
        return None;
    }
    let mut correct = 0usize;
    tch::no_grad(|| {
        let w = ps.compute(&su.prec);
        for chunk in val.chunks(bs) {
            let mut idx: Vec<usize> = chunk.iter().map(|p| p.a as usize).collect();
            idx.extend(chunk.iter().map(|p| p.b as usize));
            let x = set.batch(&idx, None, &su.prec);
            let z: Vec<f32> = Vec::try_from(
                &siamese::pair_logits(&su.model, &w, &x)
                    .to_kind(Kind::Float)
                    .to_device(Device::Cpu),
            )
            .unwrap_or_default();
            correct += z
                .iter()
                .zip(chunk)
                .filter(|(z, p)| (**z > 0.0) == p.same)
                .count();
        }
    });
    Some(correct as f64 / val.len() as f64)
}
