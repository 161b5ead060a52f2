//! Target learning (the paper's second stage): SinC3D with a classifier head learns the fold's emotion
//! classes, from the prior artifact's tower (its first `frozen_layers` conv layers frozen) or from random
//! weights, with the focal loss; then the held-out subject is tested once, forward only.

use super::{fingerprint, setup, Setup, StageCheckpoint};
use crate::error::WorkerError;
use crate::mersiamc3d::augment::{Augmenter, DeviceSet, Variant};
use crate::mersiamc3d::data_parallel::{target_step, StepContext, TargetBatch, TrainSets};
use crate::mersiamc3d::focal_loss::Loss;
use crate::mersiamc3d::layer_stats::LayerProbe;
use crate::mersiamc3d::model::{classifier_specs, init_params};
use crate::train::checkpoint::{self, PRIOR_FORMAT};
use crate::train::epochs::{Cancel, EpochEval, EpochLoop, EpochPass, EpochStep, Hooks, LastTest};
use crate::train::fold::{split_fold, Fold};
use crate::train::optim::{lr_at, ParamSet};
use crate::train::replicas::Weights;
use crate::train::seeds::rng;
use mer_shared::fold::{predicted_class, EpochLog, FoldResult, SamplePrediction, Timings};
use mer_shared::labels::LabelScheme;
use mer_shared::loso::HeldOut;
use mer_shared::metrics::Confusion;
use mer_shared::prepared::Prepared;
use mer_shared::train_config::TrainConfig;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Target learning's part of the epoch loop.
struct TargetEpochs<'a> {
    su: &'a Setup,
    cfg: &'a TrainConfig,
    fold: &'a Fold,
    classes: usize,
    aug: Augmenter,
    loss_fn: Loss,
    weights: Weights,
    sets: TrainSets,
    /// The test subject's samples, scaled with the training set's gain. Run forward after the epochs that
    /// test, only to record the leakage diagnostics' per-epoch predictions (nothing in training reads them).
    test: DeviceSet,
    probe: Option<LayerProbe>,
    /// The last tested epoch's probabilities.
    last_test: LastTest,
    checkpoint: StageCheckpoint,
}

impl EpochStep for TargetEpochs<'_> {
    fn train_epoch(&mut self, epoch: usize, cancel: Cancel) -> Result<EpochPass, WorkerError> {
        let o = &self.cfg.target.optim;
        let ctx = StepContext {
            model: &self.su.model,
            prec: &self.su.prec,
            lr: lr_at(o, epoch),
            optim: o,
        };
        let mut r = rng(self.cfg.seed, "target-epoch", epoch);
        let plan = self.aug.epoch_plan(self.sets.primary.len(), &mut r);
        let mut loss_acc = Tensor::zeros([], (Kind::Float, self.su.device));
        let (mut idx, mut vars, mut ys) = (Vec::new(), Vec::<Variant>::new(), Vec::new());
        for chunk in plan.chunks(o.batch_size) {
            cancel.check()?;
            idx.clear();
            vars.clear();
            ys.clear();
            for &(i, v) in chunk {
                idx.push(i);
                vars.push(v);
                ys.push(self.fold.train_labels[i] as i64);
            }
            let batch = TargetBatch {
                idx: &idx,
                vars: &vars,
                ys: &ys,
                loss: &self.loss_fn,
                dropout: self.cfg.model.dropout,
            };
            let loss = target_step(&ctx, &mut self.weights, &mut self.sets, &batch, &mut r)?;
            loss_acc += loss * chunk.len() as f64;
        }
        Ok(EpochPass {
            loss: loss_acc.double_value(&[]) / plan.len().max(1) as f64,
            samples: plan.len(),
        })
    }

    fn evaluate(&mut self, _epoch: usize, test: bool) -> Result<EpochEval, WorkerError> {
        let layers = match &self.probe {
            Some(p) => p.measure(
                &self.su.model,
                &self.su.prec,
                self.weights.primary_mut(),
                &mut self.sets.primary,
                &self.loss_fn,
            )?,
            None => Vec::new(),
        };
        let probs = if test { Some(self.test_probs()?) } else { None };
        Ok(EpochEval {
            test_predictions: self.last_test.keep(probs),
            layers,
            ..Default::default()
        })
    }

    fn checkpoint(&mut self, logs: &[EpochLog]) -> Result<(), WorkerError> {
        self.checkpoint.save(self.weights.primary(), logs)
    }
}

impl TargetEpochs<'_> {
    /// Softmax class probabilities of every test sample under the current weights (forward only,
    /// unaugmented, no dropout), in set order.
    fn test_probs(&mut self) -> Result<Vec<Vec<f32>>, WorkerError> {
        let su = self.su;
        let classes = self.classes;
        let n = su.model.tower_len();
        let w = tch::no_grad(|| self.weights.primary().compute(&su.prec));
        let positions: Vec<usize> = (0..self.test.len()).collect();
        let mut out = Vec::with_capacity(self.test.len());
        for chunk in positions.chunks(self.cfg.target.optim.batch_size.max(1)) {
            let probs = tch::no_grad(|| {
                let x = self.test.batch(chunk, None, &su.prec);
                let f = su.model.features(&w[..n], &x, None);
                f.linear(&w[n], Some(&w[n + 1]))
                    .to_kind(Kind::Float)
                    .softmax(1, Kind::Float)
                    .to_device(Device::Cpu)
                    .contiguous()
            });
            let flat: Vec<f32> = Vec::try_from(&probs.flatten(0, -1))
                .map_err(|e| WorkerError::torch("reading test probabilities", e))?;
            out.extend(flat.chunks(classes).map(<[f32]>::to_vec));
        }
        Ok(out)
    }
}

/// The loss of the fold: the configured one, class-balanced when `target.balance_classes`.
fn fold_loss(
    cfg: &TrainConfig,
    fold: &Fold,
    classes: usize,
    device: Device,
) -> Result<Loss, WorkerError> {
    let loss_fn = Loss::new(&cfg.target.loss, classes, device)?;
    if cfg.target.balance_classes {
        let mut counts = vec![0usize; classes];
        fold.train_labels.iter().for_each(|&l| counts[l] += 1);
        loss_fn.balanced(&counts, device)
    } else {
        Ok(loss_fn)
    }
}

/// The initial weights: the tower from the prior artifact (or random), a random classifier head, the
/// first `frozen_layers` conv layers frozen. Returns them with the prior's fingerprint ("" without one).
fn initial_weights(
    su: &Setup,
    cfg: &TrainConfig,
    classes: usize,
    prior: Option<&Path>,
) -> Result<(ParamSet, String), WorkerError> {
    let tower_specs = su.model.param_specs();
    let (tower, prior_fp) = match prior {
        None => (
            init_params(
                &tower_specs,
                &mut rng(cfg.seed, "target-init", 0),
                su.device,
            ),
            String::new(),
        ),
        Some(path) => {
            let f = checkpoint::load(path, PRIOR_FORMAT)?;
            let shapes: Vec<(String, Vec<i64>)> = tower_specs
                .iter()
                .map(|s| (s.name.clone(), s.shape.clone()))
                .collect();
            checkpoint::check_shapes(path, &f, &shapes)?;
            let t = tower_specs
                .iter()
                .map(|s| f.tensors[&s.name].to_device(su.device))
                .collect();
            (t, f.get(path, "fingerprint")?.to_string())
        }
    };
    let head_specs = classifier_specs(&cfg.model, classes);
    let head = init_params(&head_specs, &mut rng(cfg.seed, "target-head", 0), su.device);
    let names = tower_specs
        .iter()
        .chain(&head_specs)
        .map(|s| s.name.clone())
        .collect();
    let mut ps = ParamSet::new(names, tower.into_iter().chain(head).collect(), &su.prec);
    for i in 0..2 * cfg.target.frozen_layers {
        ps.freeze(i);
    }
    Ok((ps, prior_fp))
}

/// Stage 2 for one fold and one sweep point (see [`super::run_target`]).
pub(super) fn learn(
    data: &Prepared,
    scheme: LabelScheme,
    held: &HeldOut,
    cfg: &TrainConfig,
    prior: Option<&Path>,
    hooks: Hooks,
) -> Result<FoldResult, WorkerError> {
    let t0 = Instant::now();
    let fold = split_fold(data, scheme, held)?;
    let su = setup(cfg, scheme)?;
    let classes = scheme.num_classes();
    let loss_fn = fold_loss(cfg, &fold, classes, su.device)?;
    let aug = Augmenter::new(&cfg.augment, cfg.model.input_size)?;
    let (mut ps, prior_fp) = initial_weights(&su, cfg, classes, prior)?;
    let fp = fingerprint("target", cfg, scheme, held, data, &fold.train, &prior_fp);
    let checkpoint = StageCheckpoint {
        dir: hooks.checkpoint_dir.clone(),
        stage: "target",
        fingerprint: fp,
    };
    let logs = checkpoint.resume(&mut ps, &su.prec)?;
    let start = logs.len();
    tracing::info!(
        fold = %held.describe(),
        train = fold.train.len(),
        test = fold.test.len(),
        frozen = cfg.target.frozen_layers,
        prior = prior.is_some(),
        start,
        devices = %su.device_names(),
        "target learning"
    );
    let weights = Weights::new(ps, &su.devices, cfg.fast_path)?;
    let mut set = DeviceSet::new(data, &fold.train, &cfg.model, su.device)?;
    let gain = set.input_gain(cfg.model.input_scale)?;
    set.scale(gain);
    tracing::debug!(fold = %held.describe(), input_gain = gain, "target input scale");
    let sets = TrainSets::new(set, data, &fold.train, &cfg.model, &su.devices, gain)?;
    let probe = cfg.layer_stats.then(|| {
        LayerProbe::new(
            &sets.primary,
            &fold.train_labels,
            cfg.target.optim.batch_size,
        )
    });
    let mut test = DeviceSet::new(data, &fold.test, &cfg.model, su.device)?;
    test.scale(gain);
    let mut step = TargetEpochs {
        su: &su,
        cfg,
        fold: &fold,
        classes,
        aug,
        loss_fn,
        weights,
        sets,
        test,
        probe,
        last_test: LastTest::default(),
        checkpoint,
    };
    let fold_name = held.describe();
    let logs = EpochLoop {
        stage: "target",
        name: "target",
        fold: &fold_name,
        epochs: cfg.target.optim.epochs,
        eval_every: cfg.eval_every,
        cancel: Cancel::new(hooks.cancel.as_deref()),
        on_epoch: hooks.on_epoch,
    }
    .run(logs, &mut step)?;
    let target_s = t0.elapsed().as_secs_f64();

    // Testing: the held-out subject, forward only, no augmentation, no dropout.
    let t1 = Instant::now();
    let probs = match step.last_test.take() {
        Some(p) => p,
        // Every epoch was restored from a checkpoint: nothing was tested yet.
        None => step.test_probs()?,
    };
    let mut predictions = Vec::with_capacity(fold.test.len());
    let mut confusion = Confusion::new(classes);
    for (pos, row) in probs.into_iter().enumerate() {
        let s = &data.samples[fold.test[pos]];
        let label = fold.test_labels[pos];
        let pred = predicted_class(&row);
        confusion.add(label, pred)?;
        predictions.push(SamplePrediction::new(s, label, pred, row));
    }
    let test_s = t1.elapsed().as_secs_f64();
    Ok(FoldResult {
        test_subject: held.fold.clone(),
        scheme: scheme.key().into(),
        seed: cfg.seed,
        device: su.device_names(),
        predictions,
        confusion,
        epochs: logs,
        timings: Timings {
            prior_s: 0.0,
            target_s,
            test_s,
            total_s: t0.elapsed().as_secs_f64(),
        },
    })
}
