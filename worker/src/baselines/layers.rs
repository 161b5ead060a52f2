//! Building blocks both apex-flow CNNs share: seeded parameter init, seeded dropout, and the checks of
//! their constructors. Kept apart from the nets and their training loop so neither imports the other.

use crate::error::WorkerError;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A parameter tensor of `shape` with values U(-bound, bound) drawn from `rng` (fp32 on `device`).
pub(crate) fn uniform(shape: &[i64], bound: f64, rng: &mut ChaCha8Rng, device: Device) -> Tensor {
    let n: i64 = shape.iter().product();
    let b = bound as f32;
    let vals: Vec<f32> = (0..n).map(|_| rng.random_range(-b..b)).collect();
    Tensor::from_slice(&vals)
        .view(shape)
        .to_kind(Kind::Float)
        .to_device(device)
}

/// Element-wise (inverted) dropout with a seeded mask: the engine's.
pub(crate) use crate::train::dropout::dropout;

/// Checks shared by both nets' constructors.
pub(crate) fn check_common(classes: usize, dropout: f64) -> Result<(), WorkerError> {
    if classes < 2 {
        return Err(WorkerError::InvalidOption {
            option: "classes".into(),
            message: format!("need at least 2 classes, got {classes}"),
        });
    }
    if !(0.0..1.0).contains(&dropout) {
        return Err(WorkerError::InvalidOption {
            option: "dropout".into(),
            message: format!("must be in [0, 1), got {dropout}"),
        });
    }
    Ok(())
}
