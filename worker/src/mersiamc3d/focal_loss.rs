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

    /// The same loss with each class weighted by its inverse frequency in `counts` (the training labels'
    /// class counts): `n / (K n_c)` with K the classes present, so their weights average 1; a class with no
    /// training sample keeps weight 1. Cross-entropy becomes the focal loss with gamma 0 and these alphas (weighted
    /// cross-entropy, averaged over samples).
    pub fn balanced(self, counts: &[usize], device: Device) -> Result<Self, WorkerError> {
        let n: usize = counts.iter().sum();
        let k = counts.len();
        let present = counts.iter().filter(|&&c| c > 0).count().max(1);
        let w: Vec<f32> = counts
            .iter()
            .map(|&c| {
                if c == 0 {
                    1.0
                } else {
                    n as f32 / (present * c) as f32
                }
            })
            .collect();
        let w = Tensor::from_slice(&w).to_device(device);
        match self {
            Loss::Focal { gamma, alpha } => {
                if alpha.size() != [k as i64] {
                    return Err(WorkerError::InvalidOption {
                        option: "target.balance_classes".into(),
                        message: format!("{k} class counts for {:?} alphas", alpha.size()),
                    });
                }
                Ok(Loss::Focal {
                    gamma,
                    alpha: alpha * w,
                })
            }
            Loss::CrossEntropy => Ok(Loss::Focal {
                gamma: 0.0,
                alpha: w,
            }),
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

    /// Counts 6 / 3 / 1 give weights 10/18, 10/9, 10/3 (mean 1): the balanced focal loss equals the
    /// per-class one with those alphas times the scalar alpha, and balanced cross-entropy the weighted
    /// per-sample mean.
    #[test]
    fn balanced_weights_are_inverse_frequencies() {
        let (z, y) = batch();
        let counts = [6usize, 3, 1];
        let w = [10.0 / 18.0, 10.0 / 9.0, 10.0 / 3.0];
        let focal = |alpha| LossConfig::Focal { gamma: 2.0, alpha };
        let bal = Loss::new(&focal(Alpha::Scalar(2.0)), 3, Device::Cpu)
            .unwrap()
            .balanced(&counts, Device::Cpu)
            .unwrap();
        let per = Loss::new(
            &focal(Alpha::PerClass(w.iter().map(|x| 2.0 * x).collect())),
            3,
            Device::Cpu,
        )
        .unwrap();
        assert!((f(&bal.forward(&z, &y)) - f(&per.forward(&z, &y))).abs() < 1e-6);
        let ce = Loss::new(&LossConfig::CrossEntropy, 3, Device::Cpu)
            .unwrap()
            .balanced(&counts, Device::Cpu)
            .unwrap();
        let logp = z.log_softmax(1, Kind::Float);
        let want: f64 = [0usize, 2, 1]
            .iter()
            .enumerate()
            .map(|(i, &t)| -w[t] * logp.double_value(&[i as i64, t as i64]) / 3.0)
            .sum();
        assert!((f(&ce.forward(&z, &y)) - want).abs() < 1e-6);
        // A class absent from the training fold keeps weight 1.
        let zero = Loss::new(&LossConfig::CrossEntropy, 3, Device::Cpu)
            .unwrap()
            .balanced(&[2, 2, 0], Device::Cpu)
            .unwrap();
        match zero {
            Loss::Focal { alpha, .. } => {
                assert_eq!(Vec::<f32>::try_from(&alpha).unwrap(), vec![1.0, 1.0, 1.0])
            }
            Loss::CrossEntropy => panic!("balanced cross-entropy is a weighted loss"),
        }
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
