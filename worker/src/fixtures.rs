//! Fixtures for tests and benchmarks, in one place: prepared sets made in memory and the smallest
//! training configuration.

use crate::mersiamc3d::engine::small_config;
use mer_shared::prepared::{PrepInfo, Prepared, SampleMeta};
use mer_shared::train_config::TrainConfig;
use mer_shared::Dataset;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// `subjects` CASME II subjects x `per` samples at `size` px; class c moves a horizontal band at rows
/// `[c * size/3, c * size/3 + size/4)` upwards (v < 0) over noise. Sample 0 of subject 0 is unlabelled.
pub fn synthetic(subjects: usize, per: usize, size: usize, seed: u64) -> Prepared {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (c, t) = (2usize, 10usize);
    let len = c * t * size * size;
    let mut flow = Vec::with_capacity(subjects * per * len);
    let mut samples = Vec::new();
    for s in 0..subjects {
        for k in 0..per {
            let class = (k + s) % 3;
            let y0 = class * size / 3;
            for ch in 0..c {
                for _f in 0..t {
                    for y in 0..size {
                        for _x in 0..size {
                            let mut v: f32 = rng.random_range(-0.5..0.5);
                            if ch == 1 && (y0..y0 + size / 4).contains(&y) {
                                v -= 1.0;
                            }
                            flow.push(v);
                        }
                    }
                }
            }
            let mut labels = BTreeMap::new();
            if !(s == 0 && k == 0) {
                labels.insert("megc3".to_string(), class);
            }
            samples.push(SampleMeta {
                labels,
                onset: 0,
                apex: 1,
                offset: 2,
                keyframe_times: vec![],
                ..mer_shared::fixtures::sample(
                    Dataset::Casme2,
                    &format!("sub{:02}", s + 1),
                    &format!("EP{k:02}"),
                    &[],
                )
            });
        }
    }
    let info = PrepInfo {
        interpolator: "synthetic".into(),
        crop: "none".into(),
        ..mer_shared::fixtures::prep_info("test", size as u32, t as u32)
    };
    Prepared {
        info,
        samples,
        shape: [subjects * per, c, t, size, size],
        flow,
        groups: Default::default(),
    }
}

/// The smallest SinC3D that trains in a test: widths 4/8/8/8/8 at 32 px, 1 prior epoch of 16 pairs, 2
/// target epochs, one thread.
pub fn micro_config() -> TrainConfig {
    let mut c = small_config();
    c.model.widths = vec![4, 8, 8, 8, 8];
    c.model.input_size = 32;
    c.model.dense = 16;
    c.prior.optim.epochs = 1;
    c.prior.pairs_per_epoch = 16;
    c.target.optim.epochs = 2;
    c.augment.variants_per_epoch = 1;
    c.threads = Some(1);
    c
}

/// A random prepared set with the model's geometry (for benchmarks).
pub fn random_prepared(n: usize, m: &mer_shared::train_config::ModelConfig, seed: u64) -> Prepared {
    let (c, t, s) = (
        m.channels as usize,
        m.frames as usize,
        m.input_size as usize,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let flow: Vec<f32> = (0..n * c * t * s * s)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let samples = (0..n)
        .map(|i| SampleMeta {
            emotion: String::new(),
            onset: 0,
            apex: 0,
            offset: 0,
            keyframe_times: vec![],
            crop_box: [0, 0, 0, 0],
            ..mer_shared::fixtures::sample(
                mer_shared::Dataset::Casme2,
                &format!("sub{:02}", i % 4 + 1),
                &format!("bench{i}"),
                &[("megc3", i % 3)],
            )
        })
        .collect();
    let info = PrepInfo {
        keyframes: "random".into(),
        channels: (0..c).map(|i| format!("c{i}")).collect(),
        mer_version: env!("CARGO_PKG_VERSION").into(),
        ..mer_shared::fixtures::prep_info("none", s as u32, t as u32)
    };
    Prepared {
        info,
        samples,
        shape: [n, c, t, s, s],
        flow,
        groups: Default::default(),
    }
}
