//! Named fp32 master parameters and SGD with momentum (PyTorch's update rule), with frozen parameters.
//!
//! SGD step for a trainable parameter `p` with gradient `g`: `g += wd * p; buf = momentum * buf + g` (the
//! first step sets `buf = g`); `p -= lr * buf`. Frozen parameters have no gradient and are never touched,
//! so they stay bit-identical. Updates run in place under `no_grad`.

use crate::fastpath::Precision;
use mer_shared::train_config::OptimConfig;
use tch::{Kind, Tensor};

/// A set of named parameters with their momentum buffers.
pub struct ParamSet {
    names: Vec<String>,
    values: Vec<Tensor>,
    trainable: Vec<bool>,
    momentum: Vec<Option<Tensor>>,
}

impl ParamSet {
    /// Takes ownership of fp32 tensors (placed in the precision's master layout), all trainable.
    pub fn new(names: Vec<String>, values: Vec<Tensor>, prec: &Precision) -> Self {
        let values: Vec<Tensor> = values
            .into_iter()
            .map(|v| {
                prec.master_layout(v.to_device(prec.device).to_kind(Kind::Float).detach())
                    .set_requires_grad(true)
            })
            .collect();
        let n = values.len();
        ParamSet {
            names,
            values,
            trainable: vec![true; n],
            momentum: (0..n).map(|_| None).collect(),
        }
    }

    /// Parameter names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The master tensors, in order.
    pub fn values(&self) -> &[Tensor] {
        &self.values
    }

    /// Freezes parameter `i`: no gradient, never updated.
    pub fn freeze(&mut self, i: usize) {
        self.trainable[i] = false;
        let v = self.values[i].detach();
        self.values[i] = v;
    }

    /// Whether parameter `i` is trained.
    pub fn is_trainable(&self, i: usize) -> bool {
        self.trainable[i]
    }

    /// The compute copies of all parameters (bf16 casts on the fast path).
    pub fn compute(&self, prec: &Precision) -> Vec<Tensor> {
        self.values.iter().map(|v| prec.compute(v)).collect()
    }

    /// Clears every gradient without updating (after a diagnostic backward pass).
    pub fn zero_grad(&mut self) {
        tch::no_grad(|| {
            for v in &self.values {
                let mut g = v.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        });
    }

    /// One SGD step with learning rate `lr`, then clears the gradients.
    pub fn sgd_step(&mut self, lr: f64, o: &OptimConfig) {
        tch::no_grad(|| {
            for i in 0..self.values.len() {
                if !self.trainable[i] {
                    continue;
                }
                let mut g = self.values[i].grad();
                if !g.defined() {
                    continue;
                }
                if o.weight_decay != 0.0 {
                    let _ = g.g_add_(&(&self.values[i] * o.weight_decay));
                }
                let step = if o.momentum != 0.0 {
                    match &mut self.momentum[i] {
                        Some(buf) => {
                            let _ = buf.g_mul_scalar_(o.momentum);
                            let _ = buf.g_add_(&g);
                            buf.shallow_clone()
                        }
                        slot @ None => {
                            let buf = g.copy();
                            *slot = Some(buf.shallow_clone());
                            buf
                        }
                    }
                } else {
                    g.shallow_clone()
                };
                let _ = self.values[i].g_add_(&(step * -lr));
                let _ = g.zero_();
            }
        });
    }

    /// An independent copy on `prec.device` (a data-parallel replica): the same values, frozen flags and
    /// momentum buffers, sharing no storage with `self`, so that each replica's in-place update touches
    /// only its own weights.
    pub fn replica(&self, prec: &Precision) -> ParamSet {
        let copy = |t: &Tensor| prec.master_layout(t.detach().copy().to_device(prec.device));
        ParamSet {
            names: self.names.clone(),
            values: self
                .values
                .iter()
                .zip(&self.trainable)
                .map(|(v, &tr)| copy(v).set_requires_grad(tr))
                .collect(),
            trainable: self.trainable.clone(),
            momentum: self.momentum.iter().map(|m| m.as_ref().map(copy)).collect(),
        }
    }

    /// Logical-layout fp32 CPU copies `(name, tensor)` of the parameters (for checkpoints and artifacts).
    pub fn to_cpu(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .zip(&self.values)
            .map(|(n, v)| {
                (
                    n.clone(),
                    v.detach().to_device(tch::Device::Cpu).contiguous(),
                )
            })
            .collect()
    }

    /// CPU copies of the momentum buffers that exist, named `momentum.<param>`.
    pub fn momentum_to_cpu(&self) -> Vec<(String, Tensor)> {
        self.names
            .iter()
            .zip(&self.momentum)
            .filter_map(|(n, m)| {
                m.as_ref().map(|m| {
                    (
                        format!("momentum.{n}"),
                        m.to_device(tch::Device::Cpu).contiguous(),
                    )
                })
            })
            .collect()
    }

    /// Overwrites parameter values (and momentum buffers where given) from named tensors, keeping the
    /// master layout. Returns the names of parameters that were not found in `src`.
    pub fn load(
        &mut self,
        src: &std::collections::HashMap<String, Tensor>,
        prec: &Precision,
    ) -> Vec<String> {
        let mut missing = Vec::new();
        tch::no_grad(|| {
            for i in 0..self.values.len() {
                match src.get(&self.names[i]) {
                    Some(t) => {
                        self.values[i].copy_(&t.to_device(prec.device));
                    }
                    None => missing.push(self.names[i].clone()),
                }
                if let Some(m) = src.get(&format!("momentum.{}", self.names[i])) {
                    self.momentum[i] =
                        Some(prec.master_layout(m.to_device(prec.device).to_kind(Kind::Float)));
                }
            }
        });
        missing
    }
}

/// The learning rate of `epoch` (0-based): `lr / divisor^(epoch / step)`.
pub fn lr_at(o: &OptimConfig, epoch: usize) -> f64 {
    let k = epoch.checked_div(o.lr_step).unwrap_or(0);
    o.lr / o.lr_divisor.powi(k as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn sgd_matches_pytorch_rule_and_skips_frozen() {
        let prec = Precision::new(false, Device::Cpu);
        let mut ps = ParamSet::new(
            vec!["a".into(), "b".into()],
            vec![
                Tensor::from_slice(&[1.0f32, 2.0]),
                Tensor::from_slice(&[3.0f32]),
            ],
            &prec,
        );
        ps.freeze(1);
        let o = OptimConfig {
            momentum: 0.9,
            weight_decay: 0.0,
            ..OptimConfig::default()
        };
        for _ in 0..2 {
            let w = ps.compute(&prec);
            let loss = (&w[0] * &w[0]).sum(Kind::Float) + w[1].sum(Kind::Float);
            loss.backward();
            ps.sgd_step(0.1, &o);
        }
        // step 1: g = 2p = [2, 4]; buf = g; p = [0.8, 1.6]. step 2: g = [1.6, 3.2]; buf = 0.9*[2,4] + g = [3.4, 6.8];
        // p = [0.8 - 0.34, 1.6 - 0.68] = [0.46, 0.92].
        let a: Vec<f32> = Vec::try_from(&ps.values()[0].detach()).unwrap();
        assert!(
            (a[0] - 0.46).abs() < 1e-6 && (a[1] - 0.92).abs() < 1e-6,
            "{a:?}"
        );
        assert_eq!(ps.values()[1].double_value(&[0]), 3.0);
        assert!(!ps.is_trainable(1));
    }

    #[test]
    fn step_decay_schedule() {
        let o = OptimConfig::default();
        assert_eq!(lr_at(&o, 0), 0.004);
        assert_eq!(lr_at(&o, 9), 0.004);
        assert!((lr_at(&o, 10) - 0.0004).abs() < 1e-12);
        assert!((lr_at(&o, 25) - 0.00004).abs() < 1e-12);
    }
}
