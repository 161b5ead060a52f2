//! The three baseline methods end to end on one fold of a small synthetic prepared set that carries both
//! optional groups: each learns the class signal, the same seed gives identical predictions, a different
//! seed changes the networks' predictions, and a file without the method's group is refused with the
//! `mer prep` flag that adds it.

use mer_shared::fixtures::{prep_info, sample};
use mer_shared::loso::HeldOut;
use mer_shared::method::{BaselineSettings, Method, MethodsConfig};
use mer_shared::prepared::{ApexFlowInfo, Groups, Prepared, Tim10Info};
use mer_shared::train_config::TrainConfig;
use mer_shared::{Dataset, LabelScheme};
use mer_worker::baselines::run_baseline;
use mer_worker::train::epochs::Hooks;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const S: usize = 28;
const G: usize = 32;
const T: usize = 10;

/// `subjects` x `per` clips, class `i % 3`. Apex flow: class c moves a horizontal band at rows
/// `[c * S/3, c * S/3 + S/4)` upwards, over noise; strain is the band's edge. TIM-10 frames: a noise
/// texture whose band of rows `[c * G/3, ...)` brightens over time, so its XT/YT patterns differ by class.
fn synthetic(subjects: usize, per: usize, seed: u64) -> Prepared {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut samples = Vec::new();
    let mut apex = Vec::new();
    let mut tim = Vec::new();
    for s in 0..subjects {
        for k in 0..per {
            let c = (s + k) % 3;
            let mut m = sample(
                Dataset::Casme2,
                &format!("sub{s:02}"),
                &format!("EP{k:02}"),
                &[("megc3", c)],
            );
            m.keyframe_times = (0..11).map(f64::from).collect();
            samples.push(m);
            let band = c * S / 3..c * S / 3 + S / 4;
            for ch in 0..3 {
                for y in 0..S {
                    for _x in 0..S {
                        let noise: f32 = rng.random_range(-0.3..0.3);
                        let signal = match ch {
                            1 if band.contains(&y) => -1.5,
                            2 if y == band.start || y + 1 == band.end => 0.8,
                            _ => 0.0,
                        };
                        apex.push(signal + noise);
                    }
                }
            }
            let rows = c * G / 3..c * G / 3 + G / 4;
            for t in 0..T {
                for y in 0..G {
                    for _x in 0..G {
                        let base: f32 = rng.random_range(60.0..190.0);
                        let lift = if rows.contains(&y) {
                            6.0 * t as f32
                        } else {
                            0.0
                        };
                        tim.push((base + lift).clamp(0.0, 255.0) as u8);
                    }
                }
            }
        }
    }
    let n = samples.len();
    let mut info = prep_info("test", 8, 10);
    info.apex_flow = Some(ApexFlowInfo {
        size: S as u32,
        channels: vec!["u".into(), "v".into(), "strain".into()],
    });
    info.tim10 = Some(Tim10Info {
        size: G as u32,
        frames: T as u32,
    });
    let flow_len = n * 2 * 10 * 8 * 8;
    Prepared {
        info,
        samples,
        shape: [n, 2, 10, 8, 8],
        flow: vec![0.0; flow_len],
        groups: Groups {
            apex_flow: Some(apex),
            tim10: Some(tim),
        },
    }
}

fn settings(m: Method) -> BaselineSettings {
    let mut c = MethodsConfig::default();
    c.ststnet.epochs = 60;
    c.ststnet.lr = 0.005;
    c.ststnet.batch_size = 16;
    c.offapexnet.epochs = 30;
    c.offapexnet.lr = 0.001;
    c.offapexnet.batch_size = 16;
    c.offapexnet.dense = 64;
    c.lbptop_svm.blocks = [4, 4];
    c.lbptop_svm.radius = [1, 1, 2];
    c.settings(&m).expect("a baseline")
}

fn cfg(seed: u64) -> TrainConfig {
    TrainConfig {
        device: "cpu".into(),
        threads: Some(1),
        seed,
        ..TrainConfig::default()
    }
}

#[test]
fn every_baseline_learns_the_class_signal_and_repeats_itself() {
    let data = synthetic(6, 6, 3);
    for m in [Method::LbptopSvm, Method::Ststnet, Method::Offapexnet] {
        let s = settings(m.clone());
        let a = run_baseline(
            &data,
            LabelScheme::Megc3,
            &HeldOut::subject("casme2/sub02"),
            &s,
            &cfg(5),
            Hooks::default(),
        )
        .unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(a.predictions.len(), 6, "{m}");
        let right = a
            .predictions
            .iter()
            .filter(|p| p.record.label == p.record.pred)
            .count();
        assert!(right >= 5, "{m}: {right}/6 right");
        let b = run_baseline(
            &data,
            LabelScheme::Megc3,
            &HeldOut::subject("casme2/sub02"),
            &s,
            &cfg(5),
            Hooks::default(),
        )
        .unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(
            a.predictions, b.predictions,
            "{m}: same seed, same predictions"
        );
        if m != Method::LbptopSvm {
            assert_eq!(
                a.epochs.len(),
                s.epochs().unwrap_or(0),
                "{m}: one log per epoch"
            );
            let c = run_baseline(
                &data,
                LabelScheme::Megc3,
                &HeldOut::subject("casme2/sub02"),
                &s,
                &cfg(6),
                Hooks::default(),
            )
            .unwrap_or_else(|e| panic!("{m}: {e}"));
            let probs = |r: &mer_shared::fold::FoldResult| -> Vec<Vec<f32>> {
                r.predictions.iter().map(|p| p.probs.clone()).collect()
            };
            assert_ne!(probs(&a), probs(&c), "{m}: the seed drives the network");
        }
    }
}

#[test]
fn a_file_without_the_methods_group_is_refused_with_the_flag_that_adds_it() {
    let mut data = synthetic(3, 3, 1);
    data.info.tim10 = None;
    data.groups.tim10 = None;
    let e = run_baseline(
        &data,
        LabelScheme::Megc3,
        &HeldOut::subject("casme2/sub00"),
        &settings(Method::LbptopSvm),
        &cfg(1),
        Hooks::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--tim10"), "{e}");
    let e = run_baseline(
        &data,
        LabelScheme::Megc3,
        &HeldOut::subject("casme2/sub09"),
        &settings(Method::Ststnet),
        &cfg(1),
        Hooks::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("sub09"), "an unknown fold is named: {e}");
}
