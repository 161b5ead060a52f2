//! Dropout drawn from a seeded generator: the one rule for dropout masks, shared by the engine's steps,
//! the data-parallel steps (which draw the whole batch's mask once and slice it per replica) and the CNN
//! baselines. Never libtorch's global generator, so concurrent trainings in one process stay
//! deterministic.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

/// Dropout with a mask drawn from `rng` (inverted scaling), in `x`'s dtype and device; one draw per
/// element, never libtorch's global generator (the baselines use it too).
pub fn dropout(x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> Tensor {
    if p <= 0.0 {
        return x.shallow_clone();
    }
    let mask = dropout_mask(x.numel(), p, rng);
    x * Tensor::from_slice(&mask)
        .view(x.size().as_slice())
        .to_device(x.device())
        .to_kind(x.kind())
}

/// The inverted-dropout mask of `n` elements (0 or `1 / (1 - p)`), one draw from `rng` per element in
/// order: the one rule for dropout masks (the data-parallel step slices the same mask per replica).
pub fn dropout_mask(n: usize, p: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    (0..n)
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect()
}
