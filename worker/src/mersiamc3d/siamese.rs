//! The siamese head of prior learning (Koch et al. form, design.md): twin SinC3D towers with shared weights
//! give dense features F1, F2; a learned weighting of the L1 distance `w . |F1 - F2| + b` is the logit of
//! "same class", trained with binary cross-entropy. (Eq. 8 as printed, a sigmoid of an unweighted L1 sum,
//! is at least 0.5 for every pair and so cannot say "same"; the learned weights fix that.)
//!
//! Both twins run as ONE forward pass over the concatenated batch `[A; B]` (shared weights make that exact),
//! which halves the number of kernel launches and keeps the conv batches large.

use crate::mersiamc3d::model::{Init, ParamSpec, SinC3D};
use tch::{Kind, Tensor};

/// The head's parameters: `siam.weight [1, dense]`, `siam.bias [1]`.
pub fn head_specs(dense: i64) -> Vec<ParamSpec> {
    vec![
        ParamSpec {
            name: "siam.weight".into(),
            shape: vec![1, dense],
            init: Init::LecunUniform,
            fan_in: dense,
        },
        ParamSpec {
            name: "siam.bias".into(),
            shape: vec![1],
            init: Init::Zeros,
            fan_in: dense,
        },
    ]
}

/// Same-class logits `[B]` for pairs: `x` holds the first members of B pairs followed by their second
/// members (`[2B, C, T, H, W]`); `p` is the tower's parameters followed by the head's.
pub fn pair_logits(model: &SinC3D, p: &[Tensor], x: &Tensor) -> Tensor {
    let n = model.tower_len();
    let f = model.features(&p[..n], x, None);
    let b = f.size()[0] / 2;
    let d = (f.narrow(0, 0, b) - f.narrow(0, b, b)).abs();
    d.linear(&p[n], Some(&p[n + 1])).squeeze_dim(1)
}

/// Mean binary cross-entropy of same-class logits against targets (1 same, 0 different), in fp32.
pub fn bce(logits: &Tensor, same: &Tensor) -> Tensor {
    logits
        .to_kind(Kind::Float)
        .binary_cross_entropy_with_logits::<Tensor>(same, None, None, tch::Reduction::Mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mersiamc3d::model::init_params;
    use mer_shared::train_config::ModelConfig;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use tch::Device;

    #[test]
    fn identical_twins_give_the_bias_and_bce_matches_by_hand() {
        let cfg = ModelConfig {
            widths: vec![4, 4, 4, 4, 4],
            input_size: 32,
            dense: 8,
            ..ModelConfig::default()
        };
        let m = SinC3D::new(&cfg).unwrap();
        let mut specs = m.param_specs();
        specs.extend(head_specs(8));
        let mut p = init_params(&specs, &mut ChaCha8Rng::seed_from_u64(0), Device::Cpu);
        p[13] = Tensor::from_slice(&[0.7f32]);
        let a = Tensor::randn([2, 2, 10, 32, 32], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([2, 2, 10, 32, 32], (Kind::Float, Device::Cpu));
        // Pair (a0, a0) has distance 0: logit = bias. Pair (a1, b1) differs.
        let x = Tensor::cat(
            &[
                a.shallow_clone(),
                Tensor::cat(&[a.narrow(0, 0, 1), b.narrow(0, 1, 1)], 0),
            ],
            0,
        );
        let z = tch::no_grad(|| pair_logits(&m, &p, &x));
        assert_eq!(z.size(), vec![2]);
        assert!((z.double_value(&[0]) - 0.7).abs() < 1e-6);
        // The twins are symmetric.
        let x2 = Tensor::cat(
            &[
                Tensor::cat(&[a.narrow(0, 0, 1), b.narrow(0, 1, 1)], 0),
                a.shallow_clone(),
            ],
            0,
        );
        let z2 = tch::no_grad(|| pair_logits(&m, &p, &x2));
        assert!(z.allclose(&z2, 1e-5, 1e-6, false));
        let l = bce(
            &Tensor::from_slice(&[0.0f32, 2.0]),
            &Tensor::from_slice(&[1.0f32, 0.0]),
        )
        .double_value(&[]);
        let want = (-(0.5f64).ln() - (1.0 - 1.0 / (1.0 + (-2.0f64).exp())).ln()) / 2.0;
        assert!((l - want).abs() < 1e-6);
    }
}
