//! The field's baseline methods, run on the same LOSO folds, with the same fold split, labels and pooled
//! scoring as MERSiamC3D: STSTNet and OFF-ApexNet (small CNNs on the onset->apex flow and its optical
//! strain, the prepared file's `apex_flow` group) and LBP-TOP + linear SVM (the MEGC2019 official
//! baseline on the `tim10` group). [`run_baseline`] is one fold of one of them: train on the fold's
//! training subjects with a fixed budget, then predict the held-out subject once. Nothing is selected on
//! the test subject, and every random choice flows from the task's seed.
//!
//! Settings, their sources and the choices the originals leave open: `docs/methods.md`.

pub mod cnn;
mod layers;
pub mod lbptop;
pub mod offapexnet;
pub mod ststnet;
pub mod svm;

use crate::error::WorkerError;
use crate::prep::planes::keyframe_sum_input;
use crate::train::device::{configure, device_name, parse_device};
use crate::train::epochs::Hooks;
use crate::train::fold::{split_fold, Fold};
use mer_shared::fold::{predicted_class, FoldResult, SamplePrediction, Timings};
use mer_shared::labels::LabelScheme;
use mer_shared::loso::HeldOut;
use mer_shared::method::{BaselineSettings, CnnInput, InputGroup, LbpTopSvmConfig};
use mer_shared::metrics::Confusion;
use mer_shared::prepared::Prepared;
use mer_shared::train_config::TrainConfig;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One fold of a baseline method: trains on the labelled samples of the training subjects of `held` and
/// tests on its test subjects' samples. `cfg` supplies only the device, the thread count and the seed.
pub fn run_baseline(
    data: &Prepared,
    scheme: LabelScheme,
    held: &HeldOut,
    settings: &BaselineSettings,
    cfg: &TrainConfig,
    hooks: Hooks,
) -> Result<FoldResult, WorkerError> {
    let t0 = Instant::now();
    settings
        .validate()
        .map_err(|e| WorkerError::InvalidOption {
            option: e.field,
            message: e.message,
        })?;
    let method = settings.method();
    if let Some(g) = method.inputs().iter().find(|g| !data.info.has_group(**g)) {
        return Err(WorkerError::InvalidOption {
            option: "dataset".into(),
            message: format!(
                "method '{method}' needs the prepared file's '{}' group; prepare it again with `mer prep ... {}`",
                g.key(),
                g.prep_flag()
            ),
        });
    }
    let fold = split_fold(data, scheme, held)?;
    let device = parse_device(&cfg.device)?;
    configure(device, cfg.threads, false);
    let classes = scheme.num_classes();
    let (probs, epochs, train_s, test_s) = match settings {
        BaselineSettings::Ststnet(c) => cnn_fold(
            data,
            &fold,
            classes,
            CnnSettings {
                net: cnn::Net::Ststnet,
                epochs: c.epochs,
                batch_size: c.batch_size,
                lr: c.lr,
                dropout: c.dropout,
                shuffle: c.shuffle,
                dense: 0,
                eval_every: cfg.eval_every,
                input: c.input,
                device,
                seed: cfg.seed,
            },
            hooks,
        )?,
        BaselineSettings::Offapexnet(c) => cnn_fold(
            data,
            &fold,
            classes,
            CnnSettings {
                net: cnn::Net::Offapexnet,
                epochs: c.epochs,
                batch_size: c.batch_size,
                lr: c.lr,
                dropout: c.dropout,
                shuffle: c.shuffle,
                dense: c.dense,
                eval_every: cfg.eval_every,
                input: c.input,
                device,
                seed: cfg.seed,
            },
            hooks,
        )?,
        BaselineSettings::LbptopSvm(c) => {
            let (p, tr, te) = lbptop_fold(data, &fold, classes, c, &hooks)?;
            (p, vec![], tr, te)
        }
        BaselineSettings::User(u) => {
            return Err(WorkerError::InvalidOption {
                option: "method".into(),
                message: format!(
                    "'{}' is a method of the spec's own: a worker runs it as a command (user_method::WithUserMethods), not as a built-in baseline",
                    u.name
                ),
            })
        }
    };
    let mut confusion = Confusion::new(classes);
    let mut predictions = Vec::with_capacity(fold.test.len());
    for ((&i, &label), (pred, row)) in fold.test.iter().zip(&fold.test_labels).zip(probs) {
        confusion.add(label, pred)?;
        predictions.push(SamplePrediction::new(&data.samples[i], label, pred, row));
    }
    Ok(FoldResult {
        test_subject: held.fold.clone(),
        scheme: scheme.key().into(),
        seed: cfg.seed,
        device: device_name(device),
        predictions,
        confusion,
        epochs,
        timings: Timings {
            prior_s: 0.0,
            target_s: train_s,
            test_s,
            total_s: t0.elapsed().as_secs_f64(),
        },
    })
}

/// The network and training settings of one CNN fold (the two CNNs share them).
struct CnnSettings {
    net: cnn::Net,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    dropout: f64,
    shuffle: bool,
    dense: i64,
    eval_every: usize,
    input: CnnInput,
    device: tch::Device,
    seed: u64,
}

/// Per test sample, the predicted class and the class scores.
type Predicted = Vec<(usize, Vec<f32>)>;

/// The test subject's predictions, the epoch log, training and test seconds.
type FoldOutput = (Predicted, Vec<mer_shared::fold::EpochLog>, f64, f64);

/// Gathers the fold's raw inputs (`s.input`: the `apex_flow` group, or [`keyframe_sum_input`] at that
/// group's size) and trains one of the CNNs (which normalises each sample on its own, so no statistic
/// crosses the fold boundary).
fn cnn_fold(
    data: &Prepared,
    fold: &Fold,
    classes: usize,
    s: CnnSettings,
    mut hooks: Hooks,
) -> Result<FoldOutput, WorkerError> {
    let size = data
        .info
        .apex_flow
        .as_ref()
        .map(|a| a.size as usize)
        .ok_or_else(|| missing(InputGroup::ApexFlow))?;
    let gather = |idx: &[usize]| -> Result<Vec<f32>, WorkerError> {
        let mut x = Vec::with_capacity(idx.len() * 3 * size * size);
        for &i in idx {
            match s.input {
                CnnInput::ApexFlow => x.extend_from_slice(
                    data.sample_apex_flow(i)
                        .ok_or_else(|| missing(InputGroup::ApexFlow))?,
                ),
                CnnInput::KeyframeSum => x.extend(keyframe_sum_input(data, i, size as u32)?),
            }
        }
        Ok(x)
    };
    let train_x = gather(&fold.train)?;
    let test_x = gather(&fold.test)?;
    let stop = hooks.cancel.clone();
    let flag = stop.as_deref();
    let out = cnn::train_and_predict(cnn::CnnRun {
        net: s.net,
        train_x: &train_x,
        train_y: &fold.train_labels,
        test_x: &test_x,
        size,
        classes,
        epochs: s.epochs,
        batch_size: s.batch_size,
        lr: s.lr,
        dropout: s.dropout,
        shuffle: s.shuffle,
        dense: s.dense,
        device: s.device,
        seed: s.seed,
        eval_every: s.eval_every,
        // A reborrow, so the callback's lifetime can shrink to this call's.
        on_epoch: match hooks.on_epoch.as_mut() {
            Some(f) => Some(&mut **f),
            None => None,
        },
        cancel: flag,
    })?;
    let preds = out
        .probs
        .into_iter()
        .map(|row| (predicted_class(&row), row))
        .collect();
    Ok((preds, out.epochs, out.train_s, out.test_s))
}

fn missing(g: InputGroup) -> WorkerError {
    WorkerError::InvalidOption {
        option: "dataset".into(),
        message: format!(
            "the prepared file has no '{}' group (`mer prep ... {}`)",
            g.key(),
            g.prep_flag()
        ),
    }
}

/// LBP-TOP features of every sample of a prepared file and their Gram matrix (`n * n` dot products,
/// row-major), kept between the folds of an experiment since neither depends on the fold.
struct Features {
    rows: Vec<Vec<f32>>,
    gram: Vec<f64>,
}

/// The fingerprint of the data and the feature settings, and what was computed for them.
type FeatureCache = Option<(String, Arc<Features>)>;

static FEATURES: Mutex<FeatureCache> = Mutex::new(None);

/// The Gram matrix of `a`'s rows against `b`'s rows (`a.len() * b.len()`, row-major), through ndarray's
/// matrix product.
fn gram_of(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<f64> {
    let dim = a.first().map_or(0, Vec::len);
    let m = |x: &[Vec<f32>]| {
        ndarray::Array2::from_shape_fn((x.len(), dim), |(i, j)| {
            f64::from(x[i].get(j).copied().unwrap_or(0.0))
        })
    };
    let g = m(a).dot(&m(b).t());
    g.iter().copied().collect()
}

/// The LBP-TOP features of every sample and their Gram matrix (computed once per prepared file and
/// settings, then reused by the worker process's next folds).
fn lbptop_all(data: &Prepared, c: &LbpTopSvmConfig) -> Result<Arc<Features>, WorkerError> {
    let t = data
        .info
        .tim10
        .as_ref()
        .ok_or_else(|| missing(InputGroup::Tim10))?;
    let (frames, g) = (t.frames as usize, t.size as usize);
    let mut h = Sha256::new();
    h.update(
        format!(
            "{:?}|{:?}|{}|{frames}|{g}",
            c.blocks, c.radius, c.neighbours
        )
        .as_bytes(),
    );
    for s in &data.samples {
        h.update(s.id.as_bytes());
        h.update([0]);
    }
    if let Some(v) = &data.groups.tim10 {
        h.update(v);
    }
    let key = hex::encode(h.finalize());
    if let Ok(guard) = FEATURES.lock() {
        if let Some((k, f)) = guard.as_ref() {
            if *k == key {
                return Ok(f.clone());
            }
        }
    }
    use rayon::prelude::*;
    let rows = (0..data.samples.len())
        .into_par_iter()
        .map(|i| {
            let v = data
                .sample_tim10(i)
                .ok_or_else(|| missing(InputGroup::Tim10))?;
            lbptop::lbptop_features(v, frames, g, g, c)
                .map_err(|e| WorkerError::sample(&data.samples[i].id, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let gram = gram_of(&rows, &rows);
    let feats = Arc::new(Features { rows, gram });
    if let Ok(mut guard) = FEATURES.lock() {
        *guard = Some((key, feats.clone()));
    }
    Ok(feats)
}

/// LBP-TOP histograms of the fold's samples, a one-vs-rest linear SVM on the training subjects (trained
/// on [`svm::GramBasis`] coordinates: the same SVM as on the histograms, much faster), its decision
/// values on the test subject turned into a softmax (a score per class, for the prediction files).
fn lbptop_fold(
    data: &Prepared,
    fold: &Fold,
    classes: usize,
    c: &LbpTopSvmConfig,
    hooks: &Hooks,
) -> Result<(Predicted, f64, f64), WorkerError> {
    let t0 = Instant::now();
    let feats = lbptop_all(data, c)?;
    if hooks
        .cancel
        .as_ref()
        .is_some_and(|f| f.load(Ordering::Relaxed))
    {
        return Err(WorkerError::Cancelled);
    }
    let n = fold.train.len();
    // Dot products among the training rows, and of each test row with them.
    let (k_train, k_test): (Vec<f64>, Vec<Vec<f64>>) = if c.standardise {
        let mut train: Vec<Vec<f32>> = fold.train.iter().map(|&i| feats.rows[i].clone()).collect();
        let mut test: Vec<Vec<f32>> = fold.test.iter().map(|&i| feats.rows[i].clone()).collect();
        let st = svm::Standardiser::fit(&train)?;
        for r in train.iter_mut().chain(test.iter_mut()) {
            st.apply(r);
        }
        let kt = gram_of(&test, &train);
        (
            gram_of(&train, &train),
            kt.chunks(n.max(1)).map(<[f64]>::to_vec).collect(),
        )
    } else {
        let all = data.samples.len();
        let at = |i: usize, j: usize| feats.gram[i * all + j];
        (
            fold.train
                .iter()
                .flat_map(|&i| fold.train.iter().map(move |&j| at(i, j)))
                .collect(),
            fold.test
                .iter()
                .map(|&t| fold.train.iter().map(|&j| at(t, j)).collect())
                .collect(),
        )
    };
    let basis = svm::GramBasis::new(&k_train, n)?;
    let model = svm::LinearSvm::fit(&basis.train_rows(), &fold.train_labels, classes, c.c)?;
    let train_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let probs = k_test
        .iter()
        .map(|k| {
            let (pred, scores) = model.decide(&basis.project(k));
            (pred, softmax(&scores))
        })
        .collect();
    Ok((probs, train_s, t1.elapsed().as_secs_f64()))
}

/// Softmax of decision values: the per-class scores recorded with a prediction (the prediction itself is
/// the SVM's own arg-max).
fn softmax(scores: &[f64]) -> Vec<f32> {
    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| (v / z) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::synthetic;

    /// Constant flow frames: frame f of sample 0 moves every pixel by (f + 1, -2(f + 1)) px.
    fn constant_frames(times: Vec<f64>, apex: u32) -> Prepared {
        let mut d = synthetic(1, 2, 32, 0);
        let [_, c, t, h, w] = d.shape;
        for ch in 0..c {
            for f in 0..t {
                let value = (f + 1) as f32 * if ch == 0 { 1.0 } else { -2.0 };
                let start = (ch * t + f) * h * w;
                d.flow[start..start + h * w].fill(value);
            }
        }
        d.samples[0].keyframe_times = times;
        d.samples[0].apex = apex;
        d
    }

    #[test]
    #[cfg(feature = "opencv")]
    fn keyframe_sum_input_sums_the_flows_up_to_the_apex_key_frame_in_the_apex_group_form() {
        let times: Vec<f64> = (0..11).map(|i| f64::from(i) * 10.0).collect();
        // Apex at frame 42: key-frame 4 (time 40) is nearest, so flows 0..4 are summed: u = 1+2+3+4 = 10.
        let d = constant_frames(times, 42);
        let x = keyframe_sum_input(&d, 0, 8).unwrap();
        assert_eq!(x.len(), 3 * 8 * 8);
        // 32 -> 8 px: displacements scale by 1/4; a uniform motion has no strain.
        let (u, v, strain) = (&x[..64], &x[64..128], &x[128..]);
        assert!(u.iter().all(|a| (a - 2.5).abs() < 1e-5), "{u:?}");
        assert!(v.iter().all(|a| (a + 5.0).abs() < 1e-5), "{v:?}");
        assert!(strain.iter().all(|a| a.abs() < 1e-5), "{strain:?}");
        // No key-frame times: the error names the sample.
        let d = constant_frames(vec![], 42);
        let e = keyframe_sum_input(&d, 0, 8).unwrap_err().to_string();
        assert!(e.contains(&d.samples[0].id), "{e}");
    }
}
