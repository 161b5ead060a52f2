//! The LBP-TOP features against an independent computation: `scripts/lbptop_reference.py` (scikit-image's
//! `local_binary_pattern(..., 8, R, 'nri_uniform')` per plane where the plane's two radii are equal, a plain
//! numpy elliptic implementation, cross-checked against skimage, where they differ) on seeded random
//! volumes. Needs the project's `.venv` with scikit-image (scripts/bootstrap.sh installs it); without it
//! the test fails, it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use mer_shared::method::LbpTopSvmConfig;
use mer_worker::baselines::lbptop::{lbptop_features, UNIFORM_BINS};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn python() -> PathBuf {
    let p = mer_shared::fixtures::project_python();
    let probe = Command::new(&p)
        .args(["-c", "import skimage, numpy"])
        .output()
        .expect("run the project's Python");
    assert!(
        probe.status.success(),
        "scikit-image is missing from {}: run scripts/bootstrap.sh ({})",
        p.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    p
}

/// One fixture: a seeded random volume; `levels` gray levels (few levels: many ties with the centre).
struct Case {
    name: &'static str,
    shape: [usize; 3],
    radius: [usize; 3],
    blocks: [usize; 2],
    levels: u32,
    smooth: bool,
}

fn volume(case: &Case, seed: u64) -> Vec<u8> {
    let [t, h, w] = case.shape;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(t * h * w);
    for ti in 0..t {
        for y in 0..h {
            for x in 0..w {
                let noise = rng.random_range(0..case.levels);
                let value = if case.smooth {
                    // A slowly moving ramp plus a little noise: large flat and linear regions.
                    ((x + 2 * y + 3 * ti) / 4) as u32 + noise
                } else {
                    noise
                };
                v.push(value.min(255) as u8);
            }
        }
    }
    v
}

#[test]
fn lbptop_matches_the_skimage_and_numpy_reference() {
    let python = python();
    let cases = [
        Case {
            name: "r111_random",
            shape: [10, 40, 36],
            radius: [1, 1, 1],
            blocks: [5, 5],
            levels: 256,
            smooth: false,
        },
        Case {
            name: "r222_ties_odd_blocks",
            shape: [9, 23, 17],
            radius: [2, 2, 2],
            blocks: [3, 4],
            levels: 3,
            smooth: false,
        },
        Case {
            name: "r333_smooth",
            shape: [10, 30, 28],
            radius: [3, 3, 3],
            blocks: [4, 3],
            levels: 2,
            smooth: true,
        },
        Case {
            name: "r114_default_tim10",
            shape: [10, 64, 60],
            radius: [1, 1, 4],
            blocks: [5, 5],
            levels: 256,
            smooth: false,
        },
        Case {
            name: "r123_elliptic_ties",
            shape: [10, 26, 21],
            radius: [1, 2, 3],
            blocks: [2, 3],
            levels: 3,
            smooth: true,
        },
        Case {
            name: "r211_elliptic",
            shape: [7, 19, 25],
            radius: [2, 1, 1],
            blocks: [1, 1],
            levels: 256,
            smooth: false,
        },
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let mut manifest = Vec::new();
    let mut ours = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let vol = volume(case, 1000 + i as u64);
        let path = dir.path().join(format!("{}.u8", case.name));
        std::fs::write(&path, &vol).expect("write fixture");
        let out = dir.path().join(format!("{}.f64", case.name));
        manifest.push(serde_json::json!({
            "name": case.name,
            "volume": path,
            "shape": case.shape,
            "radius": case.radius,
            "blocks": case.blocks,
            "out": out,
        }));
        let cfg = LbpTopSvmConfig {
            blocks: case.blocks,
            radius: case.radius,
            ..LbpTopSvmConfig::default()
        };
        let [t, h, w] = case.shape;
        let f = lbptop_features(&vol, t, h, w, &cfg).expect("features");
        assert_eq!(f.len(), case.blocks[0] * case.blocks[1] * 3 * UNIFORM_BINS);
        ours.push((out, f));
    }
    let manifest_path = dir.path().join("manifest.json");
    std::fs::write(
        &manifest_path,
        serde_json::to_vec(&serde_json::json!({ "cases": manifest })).expect("json"),
    )
    .expect("write manifest");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lbptop_reference.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(&manifest_path)
        .output()
        .expect("run scripts/lbptop_reference.py");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "lbptop_reference.py failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    // Every plane with equal radii went through skimage.
    assert!(stdout.contains("r111_random: XY:skimage+numpy XT:skimage+numpy YT:skimage+numpy"));
    assert!(stdout.contains("r114_default_tim10: XY:skimage+numpy XT:numpy YT:numpy"));
    assert!(stdout.contains("r211_elliptic: XY:numpy XT:numpy YT:skimage+numpy"));

    for ((out, f), case) in ours.iter().zip(&cases) {
        let bytes = std::fs::read(out).expect("read reference output");
        let reference: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        assert_eq!(reference.len(), f.len(), "{}: lengths", case.name);
        for (i, (&r, &o)) in reference.iter().zip(f).enumerate() {
            let (block, plane, bin) = (
                i / (3 * UNIFORM_BINS),
                i / UNIFORM_BINS % 3,
                i % UNIFORM_BINS,
            );
            assert!(
                (r - f64::from(o)).abs() <= 1e-6,
                "{}: block {block} plane {} bin {bin}: reference {r}, ours {o}",
                case.name,
                ["XY", "XT", "YT"][plane]
            );
        }
        // The histograms are not trivially all in one bin.
        let nonzero = f.iter().filter(|&&v| v > 0.0).count();
        assert!(
            nonzero > 3 * case.blocks[0] * case.blocks[1],
            "{}: {nonzero}",
            case.name
        );
    }
}
