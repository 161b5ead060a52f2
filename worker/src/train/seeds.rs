//! The seeded generators of a training: every random choice of a stage (initialisation, pair split and
//! sampling, shuffling, augmentation, dropout) draws from a ChaCha8 generator derived from the run's seed,
//! the choice's purpose and the epoch, never from libtorch's global generator. So the same data, settings,
//! seed and device give the same weights, also after a resume, and a purpose added later leaves the
//! others' draws unchanged.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The generator for one purpose (`tag`) of one epoch, derived from the run's `seed`.
pub fn rng(seed: u64, tag: &str, epoch: usize) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(tag.as_bytes());
    h.update((epoch as u64).to_le_bytes());
    let d = h.finalize();
    let mut s = [0u8; 32];
    s.copy_from_slice(&d);
    ChaCha8Rng::from_seed(s)
}
