//! CUDA tests (feature `cuda`; need a GPU, never run in CI):
//! `cargo test -p mer-worker --features cuda --test cuda -- --nocapture`.
#![cfg(feature = "cuda")]

use mer_shared::labels::LabelScheme;
use mer_worker::bench::{train_throughput, BenchOptions};
use mer_worker::fixtures::random_prepared;
use mer_worker::mersiamc3d::engine::{small_config, train_fold};
use mer_worker::train::device::{memory_in_use, parse_device};
use mer_worker::train::epochs::Hooks;

fn labelled_set() -> mer_shared::prepared::Prepared {
    let cfg = small_config();
    // 24 samples over 4 subjects, classes i % 3 (see `random_prepared`).
    random_prepared(24, &cfg.model, 3)
}

#[test]
fn cuda_device_is_found() {
    let d = parse_device("cuda").expect("a CUDA device");
    assert!(d.is_cuda());
    assert_eq!(parse_device("auto").unwrap(), d);
}

#[test]
fn cuda_memory_in_use_grows_with_an_allocation() {
    let d = parse_device("cuda").expect("a CUDA device");
    let _warm = tch::Tensor::zeros([1], (tch::Kind::Float, d));
    let before = memory_in_use(d).expect("cudaMemGetInfo through the loaded CUDA runtime");
    let big = tch::Tensor::ones([256, 1024, 1024], (tch::Kind::Float, d)); // 1 GiB
    let after = memory_in_use(d).expect("cudaMemGetInfo");
    assert!(after >= before + (900 << 20), "{before} -> {after}");
    drop(big);
}

#[test]
fn cuda_fold_is_deterministic_in_both_paths() {
    let data = labelled_set();
    for fast in [false, true] {
        let mut cfg = small_config();
        cfg.device = "cuda:0".into();
        cfg.fast_path = fast;
        let a = train_fold(
            &data,
            LabelScheme::Megc3,
            "casme2/sub01",
            &cfg,
            Hooks::default(),
        )
        .unwrap();
        let b = train_fold(
            &data,
            LabelScheme::Megc3,
            "casme2/sub01",
            &cfg,
            Hooks::default(),
        )
        .unwrap();
        assert_eq!(a.device, "cuda:0");
        assert_eq!(a.predictions.len(), 6);
        // cuDNN autotuning (fast path) may pick different algorithms between runs: compare with a tolerance.
        for (p, q) in a.predictions.iter().zip(&b.predictions) {
            for (x, y) in p.probs.iter().zip(&q.probs) {
                assert!(
                    (x - y).abs() < if fast { 2e-2 } else { 1e-4 },
                    "fast={fast}: {p:?} vs {q:?}"
                );
            }
        }
    }
}

#[test]
fn cuda_bench_prints_paper_model_throughput() {
    let r = train_throughput(&BenchOptions {
        device: "cuda".into(),
        batch: 32,
        threads: None,
        steps: 20,
        warmup: 5,
        cfg: Default::default(),
    })
    .unwrap();
    for m in &r.results {
        println!(
            "{} {}: {:.1} samples/s, peak device memory {:?} bytes",
            r.device, m.mode, m.samples_per_s, m.peak_bytes
        );
        assert!(m.samples_per_s > 0.0);
    }
}

/// The NCCL collective over every local GPU (one rank on a one-GPU machine): exact sums.
#[test]
fn nccl_all_reduce_sums_over_every_local_gpu() {
    mer_worker::train::device::init_cuda();
    let n = tch::Cuda::device_count() as usize;
    assert!(n >= 1, "a CUDA device");
    let r = mer_worker::bench::allreduce("cuda:0", n, 1 << 20, 5).unwrap();
    println!("{r:?}");
    assert_eq!(r.backend, "nccl");
    assert!(r.correct, "{r:?}");
}

/// A fold trained data-parallel on two GPUs (NCCL) matches the same fold on one GPU within the
/// data-parallel tolerance (fp32 path); skipped with a message on a one-GPU machine.
#[test]
fn a_fold_on_two_gpus_matches_one_gpu() {
    mer_worker::train::device::init_cuda();
    if tch::Cuda::device_count() < 2 {
        println!("one GPU: the two-GPU data-parallel fold is not run");
        return;
    }
    let data = labelled_set();
    let mut cfg = small_config();
    cfg.fast_path = false;
    cfg.device = "cuda:0".into();
    let one = train_fold(
        &data,
        LabelScheme::Megc3,
        "casme2/sub01",
        &cfg,
        Hooks::default(),
    )
    .unwrap();
    cfg.devices_per_task = 2;
    let two = train_fold(
        &data,
        LabelScheme::Megc3,
        "casme2/sub01",
        &cfg,
        Hooks::default(),
    )
    .unwrap();
    assert_eq!(two.device, "cuda:0,cuda:1");
    for (p, q) in one.predictions.iter().zip(&two.predictions) {
        for (x, y) in p.probs.iter().zip(&q.probs) {
            assert!((x - y).abs() < 1e-3, "{p:?} vs {q:?}");
        }
    }
}
