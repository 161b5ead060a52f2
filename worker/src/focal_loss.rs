//! The target stage's losses: the multi-class focal loss (eq. 11 as design.md settles it) and cross-entropy.
//!
//! Focal loss per sample with true class y: `-alpha_y * (1 - p_y)^gamma * log p_y`, where `p = softmax(z)`;
//! the batch loss is the mean over samples. With gamma = 0 and alpha = 1 it is exactly cross-entropy.
//! Computed in fp32 from the logits (log-softmax, never `log(softmax)`), also on the bf16 fast path.

use crate::error::WorkerError;
use mer_shared::train_config::{Alpha, LossConfig};
use tch::{Device, Kind, Tensor};

/// A ready-to-use loss for `classes` classes.
#[derive(Debug)]
pub enum Loss {
    /// Focal loss with per-class alpha (a scalar alpha is expanded to all classes).
    Focal {
        /// Focusing parameter.
        gamma: f64,
        /// `[classes]` fp32 alphas on the training device.
        alpha: Tensor,
    },
    /// Softmax cross-entropy.
    CrossEntropy,
}

impl Loss {
    /// Builds the loss from its configuration; checks that per-class alphas match the scheme's classes.
    pub fn new(cfg: &LossConfig, classes: usize, device: Device) -> Result<Self, WorkerError> {
        match cfg {
            LossConfig::CrossEntropy => Ok(Loss::CrossEntropy),
            LossConfig::Focal { gamma, alpha } => {
                if !(gamma.is_finite() && *gamma >= 0.0) {
                    return Err(WorkerError::InvalidOption {
                        option: "target.loss.gamma".into(),
                        message: format!("{gamma} must be >= 0"),
                    });
                }
                let a: Vec<f32> = match alpha {
                    Alpha::Scalar(a) => vec![*a as f32; classes],
                    Alpha::PerClass(v) => {
                        if v.len() != classes {
                            return Err(WorkerError::InvalidOption {
                                option: "target.loss.alpha".into(),
                                message: format!(
                                    "{} values given, the scheme has {classes} classes",
                                    v.len()
                                ),
                            });
                        }
                        v.iter().map(|&x| x as f32).collect()
                    }
                };
                if a.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                    return Err(WorkerError::InvalidOption {
                        option: "target.loss.alpha".into(),
                        message: format!("{a:?}: alphas must be > 0"),
                    });
                }
                Ok(Loss::Focal {
                    gamma: *gamma,
                    alpha: Tensor::from_slice(&a).to_device(device),
                })
            }
        }
    }

    /// Mean loss of a batch: `logits [B, K]` (any float dtype), `targets [B]` int64 on the same device.
    pub fn forward(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        let logp = logits.to_kind(Kind::Float).log_softmax(1, Kind::Float);
        let logp_y = logp.gather(1, &targets.unsqueeze(1), false).squeeze_dim(1);
        match self {
            Loss::CrossEntropy => -logp_y.mean(Kind::Float),
            Loss::Focal { gamma, alpha } => {
                let a = alpha.index_select(0, targets);
                let w: Tensor = if *gamma == 0.0 {
                    a
                } else {
                    let q: Tensor = 1.0 - logp_y.exp();
                    a * q.pow_tensor_scalar(*gamma)
                };
                -(w * logp_y).mean(Kind::Float)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> (Tensor, Tensor) {
        let z =
            Tensor::from_slice(&[2.0f32, 0.5, -1.0, 0.1, 0.2, 0.3, -0.5, 1.5, 0.0]).view([3, 3]);
        let y = Tensor::from_slice(&[0i64, 2, 1]);
        (z, y)
    }

    fn f(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    #[test]
    fn focal_with_gamma0_alpha1_is_cross_entropy() {
        let (z, y) = batch();
        let focal = Loss::new(
            &LossConfig::Focal {
                gamma: 0.0,
                alpha: Alpha::Scalar(1.0),
            },
            3,
            Device::Cpu,
        )
        .unwrap();
        let ce = Loss::new(&LossConfig::CrossEntropy, 3, Device::Cpu).unwrap();
        let torch_ce = z.cross_entropy_for_logits(&y);
        assert!((f(&focal.forward(&z, &y)) - f(&torch_ce)).abs() < 1e-6);
        assert!((f(&ce.forward(&z, &y)) - f(&torch_ce)).abs() < 1e-6);
    }

    #[test]
    fn focal_matches_hand_computed_values() {
        let (z, y) = batch();
        let rows = [[2.0f64, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0]];
        let ys = [0usize, 2, 1];
        let alphas = [0.25, 2.0, 4.0];
        let mut want_scalar = 0.0;
        let mut want_per_class = 0.0;
        for (r, &t) in rows.iter().zip(&ys) {
            let s: f64 = r.iter().map(|v| v.exp()).sum();
            let p = r[t].exp() / s;
            let base = -(1.0 - p).powi(2) * p.ln();
            want_scalar += 3.0 * base / 3.0;
            want_per_class += alphas[t] * base / 3.0;
        }
        let scalar = Loss::new(
            &LossConfig::Focal {
                gamma: 2.0,
                alpha: Alpha::Scalar(3.0),
            },
            3,
            Device::Cpu,
        )
        .unwrap();
        assert!(
            (f(&scalar.forward(&z, &y)) - want_scalar).abs() < 1e-6,
            "{} vs {want_scalar}",
            f(&scalar.forward(&z, &y))
        );
        let per = Loss::new(
            &LossConfig::Focal {
                gamma: 2.0,
                alpha: Alpha::PerClass(alphas.to_vec()),
            },
            3,
            Device::Cpu,
        )
        .unwrap();
        assert!((f(&per.forward(&z, &y)) - want_per_class).abs() < 1e-6);
        // Focal loss down-weights easy samples: below cross-entropy at alpha 1.
        let g2 = Loss::new(
            &LossConfig::Focal {
                gamma: 2.0,
                alpha: Alpha::Scalar(1.0),
            },
            3,
            Device::Cpu,
        )
        .unwrap();
        assert!(f(&g2.forward(&z, &y)) < f(&z.cross_entropy_for_logits(&y)));
        // bf16 logits give the fp32 result of the bf16-rounded logits.
        let zb = z.to_kind(Kind::BFloat16);
        assert!((f(&scalar.forward(&zb, &y)) - want_scalar).abs() < 2e-2);
    }

    #[test]
    fn bad_alphas_are_rejected() {
        let e = Loss::new(
            &LossConfig::Focal {
                gamma: 2.0,
                alpha: Alpha::PerClass(vec![1.0, 2.0]),
            },
            3,
            Device::Cpu,
        )
        .unwrap_err();
        assert!(e.to_string().contains("target.loss.alpha"), "{e}");
        assert!(Loss::new(
            &LossConfig::Focal {
                gamma: -1.0,
                alpha: Alpha::Scalar(1.0)
            },
            3,
            Device::Cpu
        )
        .is_err());
        assert!(Loss::new(
            &LossConfig::Focal {
                gamma: 2.0,
                alpha: Alpha::Scalar(0.0)
            },
            3,
            Device::Cpu
        )
        .is_err());
    }
}
