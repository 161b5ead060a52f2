//! Per-layer magnitudes of SinC3D during target learning (`train.layer_stats`): the check that shows a
//! layer whose signal or gradient vanishes or explodes, which the loss curve alone does not.
//!
//! After every target epoch the probe runs one fixed batch of training samples (the first `batch_size`
//! of the fold's training set, unaugmented, without dropout) forward and backward through the current
//! weights and records, per layer, the RMS of its output, of its weights and of the loss gradient with
//! respect to them. The gradients are then cleared and nothing is updated; no random number is drawn, so
//! a run with the probe trains exactly the same weights as one without.

use crate::error::WorkerError;
use crate::mersiamc3d::augment::DeviceSet;
use crate::mersiamc3d::focal_loss::Loss;
use crate::mersiamc3d::model::SinC3D;
use crate::train::optim::ParamSet;
use crate::train::precision::Precision;
use mer_shared::fold::LayerStats;
use tch::{Kind, Tensor};

/// The fixed probe batch of one fold: positions in its training set and their labels.
pub struct LayerProbe {
    positions: Vec<usize>,
    labels: Vec<i64>,
}

/// Root-mean-square of all elements, in f64.
fn rms(t: &Tensor) -> f64 {
    t.to_kind(Kind::Double)
        .square()
        .mean(Kind::Double)
        .sqrt()
        .double_value(&[])
}

impl LayerProbe {
    /// The first `batch` samples of `set` (whose labels are `labels`, in set order).
    pub fn new(set: &DeviceSet, labels: &[usize], batch: usize) -> Self {
        let k = set.len().min(batch.max(1)).min(labels.len());
        LayerProbe {
            positions: (0..k).collect(),
            labels: labels[..k].iter().map(|&l| l as i64).collect(),
        }
    }

    /// Input, `conv1`..`conv5` (after pooling and ReLU), `dense` and `out` (logits) on the probe batch.
    pub fn measure(
        &self,
        model: &SinC3D,
        prec: &Precision,
        ps: &mut ParamSet,
        set: &mut DeviceSet,
        loss_fn: &Loss,
    ) -> Result<Vec<LayerStats>, WorkerError> {
        if self.positions.is_empty() {
            return Ok(Vec::new());
        }
        let n = model.tower_len();
        let x = set.batch(&self.positions, None, prec);
        let y = Tensor::from_slice(&self.labels).to_device(prec.device);
        let w = ps.compute(prec);
        let mut acts: Vec<(String, f64)> = vec![("input".into(), rms(&x))];
        let mut record = |name: &str, h: &Tensor| {
            if let Some(i) = name.strip_prefix("pool") {
                acts.push((format!("conv{i}"), tch::no_grad(|| rms(h))));
            } else if name == "dense" {
                acts.push((name.to_string(), tch::no_grad(|| rms(h))));
            }
        };
        let f = model.features(&w[..n], &x, Some(&mut record));
        let z = f.linear(&w[n], Some(&w[n + 1]));
        acts.push(("out".into(), tch::no_grad(|| rms(&z))));
        let loss = loss_fn.forward(&z, &y);
        loss.backward();
        // Weight tensor of each recorded layer: conv i -> 2i, dense -> 2 * layers, out -> n.
        let layers = model.conv_layers();
        let weight_index = |layer: usize| match layer {
            0 => None,
            l if l <= layers => Some(2 * (l - 1)),
            l if l == layers + 1 => Some(2 * layers),
            _ => Some(n),
        };
        let stats = tch::no_grad(|| {
            acts.iter()
                .enumerate()
                .map(|(l, (layer, a))| {
                    let wi = weight_index(l);
                    let weight = wi.map(|i| &ps.values()[i]);
                    let grad = wi.filter(|&i| ps.is_trainable(i)).and_then(|i| {
                        let g = ps.values()[i].grad();
                        g.defined().then(|| rms(&g))
                    });
                    LayerStats {
                        layer: layer.clone(),
                        activation_rms: *a,
                        weight_rms: weight.map(rms),
                        grad_rms: grad,
                    }
                })
                .collect::<Vec<_>>()
        });
        ps.zero_grad();
        if let Some(bad) = stats.iter().find(|s| !s.activation_rms.is_finite()) {
            return Err(WorkerError::Training(format!(
                "layer statistics: {} has a non-finite activation RMS",
                bad.layer
            )));
        }
        Ok(stats)
    }
}
