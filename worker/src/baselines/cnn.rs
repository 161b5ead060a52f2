//! The shared training loop of the two apex-flow CNNs (STSTNet, OFF-ApexNet) for one LOSO fold.
//!
//! Rules (the same as the MERSiamC3D engine's):
//! - Fixed epoch budget, no epoch or checkpoint selection, nothing computed on the test samples during
//!   training; the test samples are run forward once, in eval mode (running BatchNorm statistics, no
//!   dropout), under `no_grad`, after the last epoch.
//! - Every random choice comes from ChaCha8 generators seeded from `run.seed` (stream 0: parameter init,
//!   stream 1: shuffling, stream 2: dropout masks); libtorch's global generator is never used, so the same
//!   data, settings, seed and device give the same predictions (bit-identical on the CPU), also when
//!   several trainings run in one process.
//! - Optimiser: Adam written on the plain parameter tensors (PyTorch's `torch.optim.Adam` update with its
//!   defaults beta1 0.9, beta2 0.999, eps 1e-8, no weight decay, as the STSTNet authors' code uses it), so
//!   the parameters stay the seeded tensors the nets built; loss: softmax cross-entropy (mean over the
//!   batch, `nn.CrossEntropyLoss`).
//! - Inputs are normalised per sample by [`normalise_inputs`] (train and test alike) inside
//!   [`train_and_predict`]; no statistic is shared between samples, so nothing leaks across folds.

use super::offapexnet::OffApexNet;
use super::ststnet::Ststnet;
use crate::error::WorkerError;
use crate::train::epochs::{Cancel, EpochEval, EpochLoop, EpochPass, EpochStep, LastTest};
use mer_shared::fold::EpochLog;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Channels per sample of the prepared `apex_flow` tensor (u, v, strain) that [`CnnRun`] takes.
pub const APEX_CHANNELS: usize = 3;

/// Which of the two apex-flow CNNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// STSTNet (u, v, strain).
    Ststnet,
    /// OFF-ApexNet (u, v; the strain channel is ignored).
    Offapexnet,
}

/// One fold's training + test run.
pub struct CnnRun<'a> {
    /// The network.
    pub net: Net,
    /// Training inputs, `N x C x S x S` row-major with C = [`APEX_CHANNELS`] (u, v, strain: all apex_flow
    /// channels; OFF-ApexNet uses the first 2). Raw flow values; normalised here.
    pub train_x: &'a [f32],
    /// Training labels, `N` values in `0..classes`.
    pub train_y: &'a [usize],
    /// Test inputs, `M x C x S x S` like `train_x`.
    pub test_x: &'a [f32],
    /// Side S of the square inputs.
    pub size: usize,
    /// Number of classes.
    pub classes: usize,
    /// Epochs (fixed budget).
    pub epochs: usize,
    /// Mini-batch size (also the test batch size).
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Dropout probability.
    pub dropout: f64,
    /// Shuffle the training samples every epoch (else they go in the given order).
    pub shuffle: bool,
    /// OFF-ApexNet's hidden dense width (ignored by STSTNet).
    pub dense: i64,
    /// Device to train and test on.
    pub device: Device,
    /// Seed of every random choice.
    pub seed: u64,
    /// Test after every `eval_every`-th epoch for the per-epoch predictions (`TrainConfig::eval_every`).
    pub eval_every: usize,
    /// Called after every epoch (stage `target`).
    pub on_epoch: Option<&'a mut dyn FnMut(&EpochLog)>,
    /// Checked between batches; when set the run stops with [`WorkerError::Cancelled`].
    pub cancel: Option<&'a AtomicBool>,
}

/// What one fold's run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct CnnOutput {
    /// Softmax probabilities per test sample (`M` rows of `classes` values), in `test_x` order.
    pub probs: Vec<Vec<f32>>,
    /// One log per epoch (mean training loss, throughput; no monitor).
    pub epochs: Vec<EpochLog>,
    /// Seconds spent training (from the network's build to the last update).
    pub train_s: f64,
    /// Seconds spent predicting the test samples.
    pub test_s: f64,
}

/// Per-sample input normalisation of both nets: every channel of every sample (`x` holds whole samples of
/// `channels x size x size` values) is min-max scaled to [0, 1]; a constant channel becomes 0, non-finite
/// values become 0 first.
///
/// Why: the originals fed flow *images* (each component min-max normalised into 0..255 per image and saved
/// as 8-bit pictures; the STSTNet authors' loader passes the 0..255 values unscaled). Per-sample min-max
/// keeps that per-image contrast normalisation and uses no statistic of other samples, so no information
/// crosses folds. We scale to [0, 1] rather than 0..255: STSTNet's BatchNorm after every conv makes it
/// insensitive to the input scale up to the conv biases, and for OFF-ApexNet (no BatchNorm) unit-range
/// inputs keep the first activations and logits of PyTorch-initialised layers of order one.
pub fn normalise_inputs(x: &mut [f32], channels: usize, size: usize) {
    if channels == 0 {
        return;
    }
    min_max_chunks(x, size * size);
}

/// The min-max rule of [`normalise_inputs`] on every consecutive `chunk` values of `x` (one channel of one
/// sample): non-finite values become 0, then the chunk is mapped to [0, 1]; a constant chunk becomes 0.
pub fn min_max_chunks(x: &mut [f32], chunk: usize) {
    if chunk == 0 {
        return;
    }
    for ch in x.chunks_mut(chunk) {
        for v in ch.iter_mut() {
            if !v.is_finite() {
                *v = 0.0;
            }
        }
        let (lo, hi) = ch
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let range = hi - lo;
        if range > 0.0 && range.is_finite() {
            for v in ch.iter_mut() {
                *v = (*v - lo) / range;
            }
        } else {
            ch.fill(0.0);
        }
    }
}

/// A built network of either kind.
enum Model {
    Ststnet(Ststnet),
    Offapexnet(OffApexNet),
}

impl Model {
    fn parameters(&self) -> &[Tensor] {
        match self {
            Model::Ststnet(m) => m.parameters(),
            Model::Offapexnet(m) => m.parameters(),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool, rng: &mut ChaCha8Rng) -> Tensor {
        match self {
            Model::Ststnet(m) => m.forward_t(x, train, rng),
            Model::Offapexnet(m) => m.forward_t(x, train, rng),
        }
    }
}

/// Adam on plain tensors (`optim::adam_update`: PyTorch's rule, no weight decay, no amsgrad).
struct Adam {
    lr: f64,
    step: i32,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    fn new(params: &[Tensor], lr: f64) -> Self {
        Adam {
            lr,
            step: 0,
            m: params.iter().map(|p| p.zeros_like()).collect(),
            v: params.iter().map(|p| p.zeros_like()).collect(),
        }
    }

    /// One update of every parameter that has a gradient, then clears the gradients.
    fn step(&mut self, params: &[Tensor]) {
        self.step += 1;
        tch::no_grad(|| {
            for ((p, m), v) in params.iter().zip(&mut self.m).zip(&mut self.v) {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                crate::train::optim::adam_update(p, &g, m, v, self.step, self.lr);
                let _ = g.zero_();
            }
        });
    }
}

fn invalid(option: &str, message: String) -> WorkerError {
    WorkerError::InvalidOption {
        option: option.into(),
        message,
    }
}

fn check(run: &CnnRun) -> Result<(usize, usize), WorkerError> {
    let per = APEX_CHANNELS * run.size * run.size;
    if run.size == 0 {
        return Err(invalid("size", "must be at least 1".into()));
    }
    if run.batch_size == 0 {
        return Err(invalid("batch_size", "must be at least 1".into()));
    }
    if !(run.lr.is_finite() && run.lr > 0.0) {
        return Err(invalid("lr", format!("must be positive, got {}", run.lr)));
    }
    let n = run.train_y.len();
    if n == 0 {
        return Err(WorkerError::Training("no training samples".into()));
    }
    if run.train_x.len() != n * per {
        return Err(WorkerError::Training(format!(
            "train_x holds {} values, {n} samples of {APEX_CHANNELS} x {s} x {s} need {}",
            run.train_x.len(),
            n * per,
            s = run.size
        )));
    }
    if !run.test_x.len().is_multiple_of(per) {
        return Err(WorkerError::Training(format!(
            "test_x holds {} values, not a multiple of {APEX_CHANNELS} x {s} x {s}",
            run.test_x.len(),
            s = run.size
        )));
    }
    if let Some((i, y)) = run
        .train_y
        .iter()
        .enumerate()
        .find(|(_, &y)| y >= run.classes)
    {
        return Err(WorkerError::Training(format!(
            "training label {y} of sample {i} is not below the class count {}",
            run.classes
        )));
    }
    Ok((n, run.test_x.len() / per))
}

/// The CNNs' part of the epoch loop: the network, its optimiser, the normalised inputs.
struct CnnEpochs {
    model: Model,
    adam: Adam,
    /// Training inputs `[N, C, S, S]` and labels on the device.
    xs: Tensor,
    ys: Tensor,
    /// The training samples' order, shuffled every epoch when `shuffle` holds its generator.
    order: Vec<usize>,
    shuffle: Option<ChaCha8Rng>,
    drop_rng: ChaCha8Rng,
    batch_size: usize,
    device: Device,
    /// The normalised test inputs.
    tx: Vec<f32>,
    /// Channels, side, classes.
    shape: (i64, i64, usize),
    /// The last tested epoch's probabilities.
    last_test: LastTest,
}

impl EpochStep for CnnEpochs {
    fn train_epoch(&mut self, _epoch: usize, cancel: Cancel) -> Result<EpochPass, WorkerError> {
        if let Some(r) = self.shuffle.as_mut() {
            self.order.shuffle(r);
        }
        let mut loss_sum = 0.0;
        for chunk in self.order.chunks(self.batch_size) {
            cancel.check()?;
            let idx: Vec<i64> = chunk.iter().map(|&i| i as i64).collect();
            let idx = Tensor::from_slice(&idx).to_device(self.device);
            let xb = self.xs.index_select(0, &idx);
            let yb = self.ys.index_select(0, &idx);
            let z = self.model.forward_t(&xb, true, &mut self.drop_rng);
            let loss = z.cross_entropy_for_logits(&yb);
            loss.backward();
            self.adam.step(self.model.parameters());
            loss_sum += loss.double_value(&[]) * chunk.len() as f64;
        }
        let n = self.order.len();
        Ok(EpochPass {
            loss: loss_sum / n as f64,
            samples: n,
        })
    }

    fn evaluate(&mut self, _epoch: usize, test: bool) -> Result<EpochEval, WorkerError> {
        let probs = if test { Some(self.predict()?) } else { None };
        Ok(EpochEval {
            test_predictions: self.last_test.keep(probs),
            ..Default::default()
        })
    }
}

impl CnnEpochs {
    /// Softmax probabilities of the (normalised) test inputs under the network's current weights, in
    /// evaluation mode (BatchNorm running statistics, no dropout, so no random number is drawn).
    fn predict(&self) -> Result<Vec<Vec<f32>>, WorkerError> {
        let (c, s, classes) = self.shape;
        let per = (c * s * s) as usize;
        let mut unused = ChaCha8Rng::seed_from_u64(0);
        let mut probs = Vec::with_capacity(self.tx.len() / per.max(1));
        for chunk in self.tx.chunks(self.batch_size.max(1) * per) {
            let b = (chunk.len() / per) as i64;
            let x = Tensor::from_slice(chunk)
                .view([b, c, s, s])
                .to_device(self.device);
            let p = tch::no_grad(|| {
                self.model
                    .forward_t(&x, false, &mut unused)
                    .softmax(-1, Kind::Float)
                    .to_device(Device::Cpu)
                    .contiguous()
            });
            let flat = Vec::<f32>::try_from(p.view([-1]))
                .map_err(|e| WorkerError::torch("reading test probabilities", e))?;
            probs.extend(flat.chunks(classes).map(<[f32]>::to_vec));
        }
        Ok(probs)
    }
}

/// Trains `run.net` on the training samples for `run.epochs` epochs and returns the softmax probabilities
/// of the test samples (see the module docs for the rules it keeps).
pub fn train_and_predict(run: CnnRun) -> Result<CnnOutput, WorkerError> {
    let (n, _test_count) = check(&run)?;
    let CnnRun {
        net,
        train_x,
        train_y,
        test_x,
        size,
        classes,
        epochs,
        batch_size,
        lr,
        dropout,
        shuffle,
        dense,
        device,
        seed,
        eval_every,
        on_epoch,
        cancel,
    } = run;
    let t0 = Instant::now();
    let s = size as i64;
    let c = APEX_CHANNELS as i64;
    let stream = |k: u64| {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(k);
        r
    };
    let (mut init_rng, shuffle_rng, drop_rng) = (stream(0), stream(1), stream(2));
    let model = match net {
        Net::Ststnet => {
            Model::Ststnet(Ststnet::new(size, classes, dropout, &mut init_rng, device)?)
        }
        Net::Offapexnet => Model::Offapexnet(OffApexNet::new(
            size,
            classes,
            dense,
            dropout,
            &mut init_rng,
            device,
        )?),
    };
    let mut xs = train_x.to_vec();
    normalise_inputs(&mut xs, APEX_CHANNELS, size);
    let xs = Tensor::from_slice(&xs)
        .view([n as i64, c, s, s])
        .to_device(device);
    let ys: Vec<i64> = train_y.iter().map(|&y| y as i64).collect();
    let ys = Tensor::from_slice(&ys).to_device(device);
    let adam = Adam::new(model.parameters(), lr);
    let mut tx = test_x.to_vec();
    normalise_inputs(&mut tx, APEX_CHANNELS, size);
    let mut step = CnnEpochs {
        model,
        adam,
        xs,
        ys,
        order: (0..n).collect(),
        shuffle: shuffle.then_some(shuffle_rng),
        drop_rng,
        batch_size,
        device,
        tx,
        shape: (c, s, classes),
        last_test: LastTest::default(),
    };
    let name = format!("{net:?}");
    let logs = EpochLoop {
        stage: "target",
        name: &name,
        fold: "",
        epochs,
        eval_every,
        cancel: Cancel::new(cancel),
        on_epoch,
    }
    .run(Vec::new(), &mut step)?;
    let train_s = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    let probs = match step.last_test.take() {
        Some(p) => p,
        None => step.predict()?,
    };
    Ok(CnnOutput {
        probs,
        epochs: logs,
        train_s,
        test_s: t1.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_shared::fold::predicted_class;
    use rand::Rng;

    /// `n` samples of 3 x `s` x `s`: class k puts a positive u bump in quadrant k (0: top-left, 1: top-right,
    /// 2: bottom-left) over small noise; v and strain are noise.
    fn separable(n: usize, s: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::with_capacity(n * 3 * s * s);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let k = i % 3;
            y.push(k);
            let (r0, c0) = ((k / 2) * s / 2, (k % 2) * s / 2);
            for ch in 0..3 {
                for r in 0..s {
                    for c in 0..s {
                        let mut v = rng.random_range(-0.2f32..0.2);
                        if ch == 0 && (r0..r0 + s / 2).contains(&r) && (c0..c0 + s / 2).contains(&c)
                        {
                            v += 1.5;
                        }
                        x.push(v);
                    }
                }
            }
        }
        (x, y)
    }

    fn run<'a>(
        net: Net,
        x: &'a [f32],
        y: &'a [usize],
        tx: &'a [f32],
        epochs: usize,
        seed: u64,
    ) -> CnnRun<'a> {
        CnnRun {
            net,
            train_x: x,
            train_y: y,
            test_x: tx,
            size: 28,
            classes: 3,
            epochs,
            batch_size: 16,
            lr: 0.003,
            dropout: 0.3,
            shuffle: true,
            dense: 64,
            device: Device::Cpu,
            seed,
            eval_every: 1,
            on_epoch: None,
            cancel: None,
        }
    }

    fn accuracy(probs: &[Vec<f32>], y: &[usize]) -> f64 {
        let hits = probs
            .iter()
            .zip(y)
            .filter(|(p, &y)| {
                p.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i)
                    == Some(y)
            })
            .count();
        hits as f64 / y.len() as f64
    }

    #[test]
    fn both_nets_learn_a_separable_set_and_predict_held_out_samples() {
        let (x, y) = separable(48, 28, 1);
        let (tx, ty) = separable(9, 28, 2);
        for net in [Net::Ststnet, Net::Offapexnet] {
            let mut seen = Vec::new();
            let mut cb = |l: &EpochLog| seen.push((l.epoch, l.loss, l.stage.clone()));
            let mut r = run(net, &x, &y, &tx, 12, 7);
            r.on_epoch = Some(&mut cb);
            let out = train_and_predict(r).unwrap();
            assert_eq!(out.epochs.len(), 12);
            assert_eq!(seen.len(), 12);
            assert!(seen.iter().all(|(_, _, s)| s == "target"));
            assert!(out
                .epochs
                .iter()
                .all(|l| l.monitor.is_none() && l.samples_per_s > 0.0));
            assert!(
                out.epochs[11].loss < out.epochs[0].loss,
                "{net:?}: loss did not fall: {:?}",
                out.epochs.iter().map(|l| l.loss).collect::<Vec<_>>()
            );
            assert_eq!(out.probs.len(), 9);
            for p in &out.probs {
                assert_eq!(p.len(), 3);
                assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            }
            let acc = accuracy(&out.probs, &ty);
            assert!(acc >= 8.0 / 9.0, "{net:?}: held-out accuracy {acc}");
            // Per-epoch test predictions (leakage diagnostics): one per test sample and epoch; the last
            // epoch's are the final predictions.
            assert!(out.epochs.iter().all(|l| l.test_predictions.len() == 9));
            let finals: Vec<usize> = out.probs.iter().map(|p| predicted_class(p)).collect();
            assert_eq!(out.epochs[11].test_predictions, finals);
            // Testing every 4th epoch only: the same training (bit-identical final probabilities), and
            // per-epoch predictions at epochs 4, 8 and 12 alone.
            let mut sparse = run(net, &x, &y, &tx, 12, 7);
            sparse.eval_every = 4;
            let sparse = train_and_predict(sparse).unwrap();
            assert_eq!(sparse.probs, out.probs);
            let tested: Vec<usize> = sparse
                .epochs
                .iter()
                .filter(|l| !l.test_predictions.is_empty())
                .map(|l| l.epoch)
                .collect();
            assert_eq!(tested, vec![3, 7, 11]);
            assert_eq!(
                sparse.epochs[7].test_predictions,
                out.epochs[7].test_predictions
            );
        }
    }

    #[test]
    fn same_seed_same_probs_different_seed_different() {
        let (x, y) = separable(20, 28, 3);
        let (tx, _) = separable(4, 28, 4);
        for net in [Net::Ststnet, Net::Offapexnet] {
            let a = train_and_predict(run(net, &x, &y, &tx, 2, 11)).unwrap();
            let b = train_and_predict(run(net, &x, &y, &tx, 2, 11)).unwrap();
            let c = train_and_predict(run(net, &x, &y, &tx, 2, 12)).unwrap();
            assert_eq!(a.probs, b.probs, "{net:?}");
            assert_eq!(
                a.epochs.iter().map(|l| l.loss).collect::<Vec<_>>(),
                b.epochs.iter().map(|l| l.loss).collect::<Vec<_>>()
            );
            assert_ne!(a.probs, c.probs, "{net:?}");
        }
    }

    #[test]
    fn bad_runs_are_refused_and_cancel_stops() {
        let (x, y) = separable(6, 28, 5);
        let tx = x[..3 * 28 * 28].to_vec();
        let bad_label = vec![0, 1, 2, 3, 0, 1];
        let e = train_and_predict(run(Net::Ststnet, &x, &bad_label, &tx, 1, 1)).unwrap_err();
        assert!(e.to_string().contains("label 3"), "{e}");
        let e = train_and_predict(run(Net::Ststnet, &x[1..], &y, &tx, 1, 1)).unwrap_err();
        assert!(e.to_string().contains("train_x"), "{e}");
        let e = train_and_predict(run(Net::Offapexnet, &x, &y, &tx[1..], 1, 1)).unwrap_err();
        assert!(e.to_string().contains("test_x"), "{e}");
        let mut r = run(Net::Ststnet, &x, &y, &tx, 1, 1);
        r.batch_size = 0;
        assert!(train_and_predict(r).is_err());
        let mut r = run(Net::Offapexnet, &x, &y, &tx, 1, 1);
        r.dropout = 1.0;
        assert!(train_and_predict(r).is_err());
        let flag = AtomicBool::new(true);
        let mut r = run(Net::Ststnet, &x, &y, &tx, 1, 1);
        r.cancel = Some(&flag);
        assert!(matches!(train_and_predict(r), Err(WorkerError::Cancelled)));
        // No test samples: an empty prediction list.
        let out = train_and_predict(run(Net::Ststnet, &x, &y, &[], 1, 1)).unwrap();
        assert!(out.probs.is_empty());
    }

    #[test]
    fn normalisation_is_per_sample_and_per_channel() {
        let mut x = vec![
            1.0,
            3.0,
            2.0,
            5.0, // sample 0, channel 0
            -2.0,
            -2.0,
            -2.0,
            -2.0, // sample 0, channel 1: constant
            0.0,
            f32::NAN,
            4.0,
            2.0, // sample 1, channel 0: NaN -> 0
            10.0,
            20.0,
            30.0,
            40.0, // sample 1, channel 1
        ];
        normalise_inputs(&mut x, 2, 2);
        assert_eq!(
            x,
            vec![
                0.0,
                0.5,
                0.25,
                1.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                0.0,
                1.0,
                0.5,
                0.0,
                1.0 / 3.0,
                2.0 / 3.0,
                1.0
            ]
        );
    }

    #[test]
    fn adam_matches_the_pytorch_update() {
        // One step: m = 0.1 g, v = 0.001 g^2, m_hat = g, v_hat = g^2: p -= lr * g / (|g| + eps).
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let loss = (&p * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float);
        loss.backward();
        let ps = [p];
        let mut adam = Adam::new(&ps, 0.1);
        adam.step(&ps);
        let got = Vec::<f32>::try_from(ps[0].detach()).unwrap();
        assert!(
            (got[0] - 0.9).abs() < 1e-6 && (got[1] - (-1.9)).abs() < 1e-6,
            "{got:?}"
        );
        assert!(ps[0].grad().abs().sum(Kind::Float).double_value(&[]) == 0.0);
    }
}
