//! Named fp32 master parameters and their optimisers (PyTorch's update rules), with frozen parameters.
//!
//! SGD step for a trainable parameter `p` with gradient `g`: `g += wd * p; buf = momentum * buf + g` (the
//! first step sets `buf = g`); `p -= lr * buf`. Adam ([`adam_update`], `optim.kind = "adam"`): `g += wd *
//! p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) +
//! eps)`, with `t` counted per parameter. Frozen parameters have no gradient and are never touched, so they
//! stay bit-identical. Updates run in place under `no_grad`.

use crate::train::precision::Precision;
use mer_shared::train_config::{OptimConfig, OptimKind};
use tch::{Kind, Tensor};

/// Adam's first-moment decay (PyTorch's default, as the baselines use).
pub const ADAM_BETA1: f64 = 0.9;
/// Adam's second-moment decay.
pub const ADAM_BETA2: f64 = 0.999;
/// Adam's denominator term.
pub const ADAM_EPS: f64 = 1e-8;

/// One Adam update of `p` from gradient `g`, the `step`-th (1-based) for this parameter: moves the moments
/// `m` and `v` and the parameter in place. The one Adam rule of the worker: SinC3D's `optim.kind = "adam"`
/// and the baselines' optimiser both call it.
pub fn adam_update(p: &Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, step: i32, lr: f64) {
    let bc1 = 1.0 - ADAM_BETA1.powi(step);
    let bc2 = 1.0 - ADAM_BETA2.powi(step);
    let _ = m.g_mul_scalar_(ADAM_BETA1);
    let _ = m.g_add_(&(g * (1.0 - ADAM_BETA1)));
    let _ = v.g_mul_scalar_(ADAM_BETA2);
    let _ = v.g_add_(&(g * g * (1.0 - ADAM_BETA2)));
    let denom = v.sqrt() / bc2.sqrt() + ADAM_EPS;
    let mut p = p.shallow_clone();
    let _ = p.g_sub_(&(&*m / denom * (lr / bc1)));
}

/// A set of named parameters with their optimiser state.
pub struct ParamSet {
    names: Vec<String>,
    values: Vec<Tensor>,
    trainable: Vec<bool>,
    /// SGD's momentum buffer, or Adam's first moment (checkpointed as `momentum.<name>`).
    momentum: Vec<Option<Tensor>>,
    /// Adam's second moment (`adam_v.<name>`); never created under SGD.
    second: Vec<Option<Tensor>>,
    /// Adam's per-parameter step count (`adam_step.<name>`), for the bias corrections.
    steps: Vec<i32>,
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
            second: (0..n).map(|_| None).collect(),
            steps: vec![0; n],
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

    /// One step of `o.kind`'s rule with learning rate `lr`, then clears the gradients. Both rules share
    /// the walk: frozen parameters and those without a gradient are skipped, weight decay is added as L2.
    pub fn step(&mut self, lr: f64, o: &OptimConfig) {
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
                match o.kind {
                    OptimKind::Sgd => self.sgd_update(i, &g, lr, o.momentum),
                    OptimKind::Adam => {
                        let m = self.momentum[i].get_or_insert_with(|| g.zeros_like());
                        let v = self.second[i].get_or_insert_with(|| g.zeros_like());
                        self.steps[i] += 1;
                        adam_update(&self.values[i], &g, m, v, self.steps[i], lr);
                    }
                }
                let _ = g.zero_();
            }
        });
    }

    /// SGD's update of parameter `i` from gradient `g` (weight decay already added).
    fn sgd_update(&mut self, i: usize, g: &Tensor, lr: f64, momentum: f64) {
        let step = if momentum != 0.0 {
            match &mut self.momentum[i] {
                Some(buf) => {
                    let _ = buf.g_mul_scalar_(momentum);
                    let _ = buf.g_add_(g);
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
            second: self.second.iter().map(|m| m.as_ref().map(copy)).collect(),
            steps: self.steps.clone(),
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

    /// CPU copies of the optimiser state that exists: `momentum.<param>` (SGD's buffer or Adam's first
    /// moment), and under Adam `adam_v.<param>` and the step count `adam_step.<param>` (a 1-element i64).
    pub fn state_to_cpu(&self) -> Vec<(String, Tensor)> {
        let cpu = |t: &Tensor| t.to_device(tch::Device::Cpu).contiguous();
        let mut out = Vec::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(m) = &self.momentum[i] {
                out.push((format!("momentum.{n}"), cpu(m)));
            }
            if let Some(v) = &self.second[i] {
                out.push((format!("adam_v.{n}"), cpu(v)));
                out.push((
                    format!("adam_step.{n}"),
                    Tensor::from_slice(&[i64::from(self.steps[i])]),
                ));
            }
        }
        out
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
                let state = |key: &str| {
                    // An own copy: `src` may hold live tensors (another set's state) on this device.
                    src.get(&format!("{key}.{}", self.names[i])).map(|m| {
                        prec.master_layout(m.to_device(prec.device).to_kind(Kind::Float).copy())
                    })
                };
                if let Some(m) = state("momentum") {
                    self.momentum[i] = Some(m);
                }
                if let Some(v) = state("adam_v") {
                    self.second[i] = Some(v);
                }
                if let Some(t) = src.get(&format!("adam_step.{}", self.names[i])) {
                    self.steps[i] = i32::try_from(t.int64_value(&[0])).unwrap_or(i32::MAX);
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
            ps.step(0.1, &o);
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
    fn adam_matches_pytorch_rule_skips_frozen_and_resumes_from_its_state() {
        let prec = Precision::new(false, Device::Cpu);
        let make = || {
            let mut ps = ParamSet::new(
                vec!["a".into(), "b".into()],
                vec![
                    Tensor::from_slice(&[1.0f32, -2.0]),
                    Tensor::from_slice(&[3.0f32]),
                ],
                &prec,
            );
            ps.freeze(1);
            ps
        };
        let o = OptimConfig {
            kind: OptimKind::Adam,
            ..OptimConfig::default()
        };
        let step = |ps: &mut ParamSet| {
            let w = ps.compute(&prec);
            let loss = (&w[0] * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float)
                + w[1].sum(Kind::Float);
            loss.backward();
            ps.step(0.1, &o);
        };
        let mut ps = make();
        step(&mut ps);
        // A constant gradient g: m_hat = g and v_hat = g^2 at every step, so p moves by lr * sign(g).
        let a: Vec<f32> = Vec::try_from(&ps.values()[0].detach()).unwrap();
        assert!(
            (a[0] - 0.9).abs() < 1e-6 && (a[1] + 1.9).abs() < 1e-6,
            "{a:?}"
        );
        assert_eq!(ps.values()[1].double_value(&[0]), 3.0);
        // Its state round-trips: a copy loaded from it takes the same second step as the original.
        let state: std::collections::HashMap<String, Tensor> =
            ps.to_cpu().into_iter().chain(ps.state_to_cpu()).collect();
        assert!(state.contains_key("adam_v.a") && !state.contains_key("adam_v.b"));
        let mut resumed = make();
        assert!(resumed.load(&state, &prec).is_empty());
        step(&mut ps);
        step(&mut resumed);
        assert!(ps.values()[0].equal(&resumed.values()[0]));
        let a: Vec<f32> = Vec::try_from(&ps.values()[0].detach()).unwrap();
        assert!(
            (a[0] - 0.8).abs() < 1e-6 && (a[1] + 1.8).abs() < 1e-6,
            "{a:?}"
        );
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
