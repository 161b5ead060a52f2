//! Fig. 5/6 of one clip from `mer prep`'s data: synthetic CASME II (tiny preset), prepared, then the
//! original and key-frame strips and the motion curves drawn from the dataset root.

use mer_shared::prepared::Prepared;
use mer_worker::prep::figures::{clip_figures, FigureOptions};
use mer_worker::prep::pipeline::{prepare, PrepOptions};
use mer_worker::synth::{generate, Preset};

#[test]
fn clip_figures_show_the_prepared_keyframes_and_motion() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate(Preset::Tiny, 7, dir.path()).unwrap();
    let out = dir.path().join("casme2.safetensors");
    let opts = PrepOptions {
        casme2: Some(s.casme2.clone()),
        out: out.clone(),
        threads: Some(2),
        ..Default::default()
    };
    prepare(&opts).unwrap();
    let meta = Prepared::read_meta(&out).unwrap();
    let sample = meta
        .samples
        .iter()
        .max_by_key(|s| s.offset - s.onset)
        .unwrap();
    let figs = dir.path().join("figs");
    let f = clip_figures(&FigureOptions {
        prepared: out.clone(),
        dataset_root: s.casme2.clone(),
        clip: sample.id.clone(),
        out_dir: figs.clone(),
        strip_frames: 8,
    })
    .unwrap();
    // The key-frames are the prepared ones.
    assert_eq!(f.keyframe_times, sample.keyframe_times);
    assert_eq!(
        (f.onset, f.apex, f.offset),
        (sample.onset, sample.apex, sample.offset)
    );
    assert!(
        !f.synthesized.is_empty() && f.synthesized.iter().all(|t| f.keyframe_times.contains(t))
    );
    assert!(f.strip_times.contains(&f.apex));
    assert_eq!(f.motion_original.len() as u32, f.offset - f.onset);
    assert_eq!(f.motion_keyframes.len(), 10);
    assert!(f
        .motion_original
        .iter()
        .chain(&f.motion_keyframes)
        .all(|(_, m)| m.is_finite() && *m >= 0.0));
    assert!(
        f.motion_keyframes.iter().any(|(_, m)| *m > 0.01),
        "{:?}",
        f.motion_keyframes
    );
    // The PNGs decode to strips of the prepared size.
    use opencv::prelude::*;
    for (p, n) in [
        (&f.original_png, f.strip_times.len()),
        (&f.keyframes_png, 11),
    ] {
        let m =
            opencv::imgcodecs::imread(p.as_path(), opencv::imgcodecs::IMREAD_UNCHANGED).unwrap();
        assert!(!m.empty(), "{}", p.display());
        assert_eq!(m.rows(), 112 + 48, "{}", p.display());
        assert_eq!(m.cols() as usize, n * (112 + 4) + 4, "{}", p.display());
    }
    let csv = std::fs::read_to_string(&f.motion_csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + f.motion_original.len() + 10);
    // A clip that is not in the prepared file is an error naming it.
    let e = clip_figures(&FigureOptions {
        clip: "casme2/sub01/nope".into(),
        prepared: out,
        dataset_root: s.casme2.clone(),
        out_dir: figs,
        strip_frames: 8,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("casme2/sub01/nope"), "{e}");
}
