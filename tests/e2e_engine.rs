//! End to end with every real part: `mer synth` (tiny preset, real on-disk layouts), `mer prep` (OpenCV face
//! crop, adaptive key-frames, Farneback flow), `mer run` (a coordinator and two worker processes over gRPC
//! on loopback, each training with libtorch), then `mer score` on the run's MEGC2019 log. Checks that every
//! fold finished, that the pooled scores in results.json are exactly what `mer score` computes from the
//! prediction log, that the run learned (pooled UF1 above the majority-class predictor's on the same
//! folds), and that re-running the same command re-runs nothing.
#![cfg(feature = "worker")]

use std::path::Path;

mod support;

use support::mer_in as mer;

#[test]
fn tiny_loso_experiment_with_the_real_engine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    mer(
        &["synth", "--preset", "tiny", "--seed", "3", "--out", "synth"],
        d,
    );
    mer(
        &[
            "prep",
            "--casme2",
            "synth/casme2",
            "--samm",
            "synth/samm",
            "--smic",
            "synth/smic",
            "--out",
            "tiny.safetensors",
        ],
        d,
    );
    // The shipped tiny example, pointed at this prepared file.
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tiny.toml"))
            .unwrap();
    let spec: String = example
        .lines()
        .map(|l| {
            if l.starts_with("dataset =") {
                "dataset = \"tiny.safetensors\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(d.join("tiny.toml"), spec).unwrap();
    mer(
        &[
            "run",
            "tiny.toml",
            "--workers",
            "2",
            "--run-dir",
            "run",
            "--quiet",
        ],
        d,
    );

    let res: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run/results.json")).unwrap())
            .unwrap();
    assert_eq!(res["partial"], false, "{res}");
    let points = res["sweep_points"].as_array().unwrap();
    assert!(!points.is_empty());
    for p in points {
        assert_eq!(p["folds_done"], p["folds_total"]);
        assert_eq!(
            p["folds_total"], 9,
            "tiny has 3 subjects in each of 3 datasets"
        );
        let label = p["label"].as_str().unwrap();
        let log = d.join(format!("run/predictions/{label}.megc.txt"));
        let scored: serde_json::Value =
            serde_json::from_str(&mer(&["score", log.to_str().unwrap(), "--json"], d)).unwrap();
        for k in ["n", "acc", "uf1", "uar", "f1_macro"] {
            assert_eq!(scored[k], p["scores"][k], "{k} of {label}");
        }
        assert_eq!(scored["parts"], p["scores"]["parts"]);
        // The majority-class predictor on the same pooled test samples.
        let confusion: Vec<Vec<u64>> =
            serde_json::from_value(p["scores"]["confusion"].clone()).unwrap();
        let support: Vec<u64> = confusion.iter().map(|r| r.iter().sum()).collect();
        let n: u64 = support.iter().sum();
        let maj = *support.iter().max().unwrap();
        let majority_uf1 =
            (2.0 * maj as f64 / (2.0 * maj as f64 + (n - maj) as f64)) / support.len() as f64;
        let uf1 = p["scores"]["uf1"].as_f64().unwrap();
        println!("{label}: pooled UF1 {uf1:.4} vs majority-class UF1 {majority_uf1:.4}");
        assert!(
            uf1 > majority_uf1 + 0.15,
            "{label}: UF1 {uf1} is not clearly above the majority predictor's {majority_uf1}"
        );
    }

    // Re-running the same command resumes: every task is reused, results are identical.
    let before = std::fs::read_to_string(d.join("run/results.json")).unwrap();
    let out = mer(
        &[
            "run",
            "tiny.toml",
            "--workers",
            "1",
            "--run-dir",
            "run",
            "--quiet",
        ],
        d,
    );
    let after = std::fs::read_to_string(d.join("run/results.json")).unwrap();
    let points = |s: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(s).unwrap()["sweep_points"].clone()
    };
    assert_eq!(points(&before), points(&after), "{out}");
}
