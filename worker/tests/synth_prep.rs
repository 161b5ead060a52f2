//! End to end over the synthetic `tiny` preset: generation in the real layouts, Haar detection on the
//! generated faces, preparation into one prepared file, Python's safetensors/numpy reading it, and the
//! class signal surviving the flow computation.

use mer_shared::prepared::Prepared;
use mer_shared::Dataset;
use mer_worker::prep::face::{read_gray, FaceDetector};
use mer_worker::prep::pipeline::{inspect, prepare};
use mer_worker::synth::{generate, Preset};
use std::path::PathBuf;

fn python() -> PathBuf {
    mer_shared::fixtures::project_python()
}

#[test]
fn tiny_generates_detectable_faces_and_prepares_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate(Preset::Tiny, 7, dir.path()).unwrap();
    assert_eq!(s.clips["casme2"], 10);
    assert_eq!(s.clips["samm"], 9);
    assert_eq!(s.clips["smic"], 9);
    assert!(s.subjects.values().all(|&n| n == 3));

    // The Haar frontal-face cascade finds the face on every generated onset frame, near the drawn centre.
    let recs: Vec<_> = [
        mer_worker::prep::datasets::casme2::read(&s.casme2).unwrap(),
        mer_worker::prep::datasets::samm::read(&s.samm).unwrap(),
        mer_worker::prep::datasets::smic::read_original(&s.smic).unwrap(),
    ]
    .concat();
    assert_eq!(recs.len(), 28);
    let mut det = FaceDetector::new().unwrap();
    for r in &recs {
        let f = mer_worker::prep::datasets::frames::find_frame(&r.frames, r.onset).unwrap();
        let m = read_gray(&f.path).unwrap();
        use opencv::prelude::*;
        let c = det
            .detect(&m)
            .unwrap()
            .unwrap_or_else(|| panic!("no face found in {}", f.path.display()));
        let (cx, cy) = (c.rect[0] + c.rect[2] / 2, c.rect[1] + c.rect[3] / 2);
        assert!(
            (cx - m.cols() / 2).abs() < m.cols() / 8,
            "{}: face box {:?}",
            r.id(),
            c.rect
        );
        assert!(
            c.rect[2] > m.cols() / 3,
            "{}: face box {:?}",
            r.id(),
            c.rect
        );
        assert!(
            (cy - m.rows() / 2).abs() < m.rows() / 6,
            "{}: face box {:?}",
            r.id(),
            c.rect
        );
    }

    let out = dir.path().join("tiny.safetensors");
    let mut opts = s.prep_options(&out);
    opts.threads = Some(2);
    let rep = prepare(&opts).unwrap();
    assert_eq!(rep.samples, 28);
    assert_eq!(rep.subjects, 9);
    assert_eq!(rep.fallbacks, 0);
    assert_eq!(rep.megc3["casme2"], [3, 3, 3]);
    assert_eq!(rep.megc3["smic"], [3, 3, 3]);
    let p = Prepared::read(&out).unwrap();
    assert_eq!(p.shape, [28, 2, 10, 112, 112]);
    assert_eq!(p.info.keyframes, "adaptive");
    assert_eq!(p.info.interpolator, "farneback-warp-blend");
    // Ground truth from the generator agrees with what the readers and labels produced.
    for t in &s.truth {
        let id = format!("{}/{}/{}", t.dataset, t.subject, t.filename);
        let m = p
            .samples
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(m.labels.get("megc3").copied(), t.megc3, "{id}");
        assert_eq!(
            (m.onset, m.apex, m.offset),
            (t.onset, t.apex, t.offset),
            "{id}"
        );
        assert_eq!(m.apex_estimated, t.dataset == Dataset::Smic);
        assert_eq!(m.keyframe_times.len(), 11);
        assert_eq!(m.source_frames.len(), if m.onset == m.apex { 2 } else { 3 });
    }
    // The `others` CASME II clip has emotion5 and objective5 labels but no megc3 label.
    let others = p.samples.iter().find(|m| m.emotion == "others").unwrap();
    assert!(!others.labels.contains_key("megc3"));
    assert_eq!(others.labels["emotion5"], 4);

    // Class signal: the mean vertical flow (v) in the brow band and in the lip-corner band, integrated over
    // the flows into the apex, separates surprise (brows up) from positive (corners up, brows still).
    // The flows into the apex are those before the apex's key-frame (its position depends on the clip).
    let hw = 112 * 112;
    let band = |i: usize, y0: usize, y1: usize| -> f32 {
        let f = p.sample_flow(i);
        let m = &p.samples[i];
        let apex_at = m
            .keyframe_times
            .iter()
            .position(|&t| t == m.apex as f64)
            .unwrap_or(5);
        let mut s = 0.0;
        for t in 0..apex_at {
            for y in y0..y1 {
                for x in 10..102 {
                    s += f[(10 + t) * hw + y * 112 + x];
                }
            }
        }
        s / ((y1 - y0) * 92) as f32
    };
    let mut checked = 0;
    for (i, m) in p.samples.iter().enumerate() {
        match m.labels.get("megc3") {
            Some(2) => {
                let (brow, mouth) = (band(i, 12, 40), band(i, 70, 100));
                assert!(
                    brow < -0.5 && brow < mouth - 0.4,
                    "{}: brow {brow} mouth {mouth}",
                    m.id
                );
                checked += 1;
            }
            Some(1) => {
                let (brow, mouth) = (band(i, 12, 40), band(i, 70, 100));
                assert!(
                    mouth < -0.3 && mouth < brow - 0.3,
                    "{}: brow {brow} mouth {mouth}",
                    m.id
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, 18);

    let ins = inspect(&out).unwrap();
    assert_eq!(ins.per_dataset[&Dataset::Samm], 9);
    let text = ins.to_text();
    assert!(text.contains("samples 28, subjects 9"), "{text}");
    assert!(
        text.contains("negative 9, positive 9, surprise 9"),
        "{text}"
    );

    // Python's safetensors + numpy read the file and find the documented shapes and metadata.
    let script = r#"
import json, sys
import numpy as np
from safetensors.numpy import load_file
from safetensors import safe_open
path = sys.argv[1]
t = load_file(path)
flow = t["flow"]
assert flow.dtype == np.float32, flow.dtype
assert flow.shape == (28, 2, 10, 112, 112), flow.shape
with safe_open(path, framework="numpy") as f:
    meta = f.metadata()
assert meta["format"] == "mer-prepared/1"
prep = json.loads(meta["prep"])
assert prep["channels"] == ["u", "v"] and prep["frames"] == 10 and prep["size"] == 112
assert prep["flow_params"]["winsize"] == 15
samples = json.loads(meta["samples"])
assert len(samples) == 28
s0 = samples[0]
for k in ["id", "dataset", "subject", "filename", "labels", "keyframe_times", "source_frames", "crop_box", "onset", "apex", "offset"]:
    assert k in s0, k
assert len(s0["keyframe_times"]) == 11 and len(s0["crop_box"]) == 4
assert s0["id"] == "/".join([s0["dataset"], s0["subject"], s0["filename"]])
assert np.isfinite(flow).all() and np.abs(flow).max() > 0.5
# The class signal is learnable: leave-one-subject-out logistic regression on coarse flow features.
from sklearn.linear_model import LogisticRegression
X, y, g = [], [], []
for i, s in enumerate(samples):
    if "megc3" not in s["labels"]:
        continue
    a = flow[i]
    X.append(np.concatenate([a[:, t].sum(1).reshape(2, 14, 8, 14, 8).mean((2, 4)).ravel() for t in (slice(0, 5), slice(5, 10))]))
    y.append(s["labels"]["megc3"])
    g.append(s["dataset"] + "/" + s["subject"])
X, y, g = np.array(X), np.array(y), np.array(g)
pred = np.zeros_like(y)
for sub in np.unique(g):
    tr = g != sub
    pred[~tr] = LogisticRegression(C=0.1, max_iter=2000).fit(X[tr], y[tr]).predict(X[~tr])
acc = (pred == y).mean()
assert acc >= 0.8, f"LOSO accuracy {acc}"
print("python-ok", flow.shape, "loso-acc", acc)
"#;
    let o = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&out)
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && so.contains("python-ok"),
        "{so}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn the_fill_rule_is_recorded_and_changes_only_the_clips_whose_plan_changed() {
    use mer_shared::prepared::KeyframeFill;
    let dir = tempfile::tempdir().unwrap();
    let s = generate(Preset::Tiny, 7, dir.path()).unwrap();
    let prep = |fill: KeyframeFill, run: &str| {
        let out = dir.path().join(format!("{fill}-{run}.safetensors"));
        let mut opts = s.prep_options(&out);
        opts.threads = Some(2);
        opts.size = 48;
        opts.keyframe_fill = fill;
        prepare(&opts).unwrap();
        (Prepared::read(&out).unwrap(), out)
    };
    let (paper, paper_path) = prep(KeyframeFill::Algorithm1, "first");
    let (widest, _) = prep(KeyframeFill::WidestGap, "first");
    // Preparation is deterministic: the same rule twice gives the same bytes, so a clip whose plan is the
    // same under both rules (every clip long enough for bisection, see the unit tests) keeps its flow.
    let (again, _) = prep(KeyframeFill::Algorithm1, "again");
    assert!(again.flow == paper.flow && again.samples == paper.samples);
    assert_eq!(paper.info.keyframe_fill, Some(KeyframeFill::Algorithm1));
    assert_eq!(widest.info.keyframe_fill, Some(KeyframeFill::WidestGap));
    let text = inspect(&paper_path).unwrap().to_text();
    assert!(
        text.contains("key-frames adaptive (fill algorithm1)"),
        "{text}"
    );
    assert_eq!(paper.samples.len(), widest.samples.len());
    let (mut same, mut changed) = (0, 0);
    for (i, (a, b)) in paper.samples.iter().zip(&widest.samples).enumerate() {
        assert_eq!(a.id, b.id);
        if a.keyframe_times == b.keyframe_times {
            // Same plan: bit-identical flow (preparation is deterministic).
            assert!(paper.sample_flow(i) == widest.sample_flow(i), "{}", a.id);
            same += 1;
        } else {
            assert!(paper.sample_flow(i) != widest.sample_flow(i), "{}", a.id);
            // Algorithm 1 never fills next to the apex: its nearest key-frames to the apex are at least as
            // far away as the widest-gap rule's.
            let nearest = |t: &[f64]| {
                t.iter()
                    .map(|&x| (x - a.apex as f64).abs())
                    .filter(|&d| d > 0.0)
                    .fold(f64::INFINITY, f64::min)
            };
            assert!(
                nearest(&a.keyframe_times) >= nearest(&b.keyframe_times),
                "{}: {:?} vs {:?}",
                a.id,
                a.keyframe_times,
                b.keyframe_times
            );
            changed += 1;
        }
    }
    // The tiny clips are short (90-180 ms), so bisection runs out in every one of them.
    assert!(changed > 0, "no tiny clip needs the fill pass");
    assert_eq!(same + changed, paper.samples.len());
    println!("fill rule: {changed} clips changed, {same} unchanged");
}

#[test]
fn the_baselines_groups_are_added_without_touching_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate(Preset::Tiny, 11, dir.path()).unwrap();
    let plain = dir.path().join("plain.safetensors");
    let mut opts = s.prep_options(&plain);
    opts.threads = Some(2);
    prepare(&opts).unwrap();
    let with = dir.path().join("with.safetensors");
    opts.out = with.clone();
    opts.apex_flow = Some(28);
    opts.tim10 = Some(64);
    prepare(&opts).unwrap();
    let (a, b) = (
        Prepared::read(&plain).unwrap(),
        Prepared::read(&with).unwrap(),
    );
    assert_eq!(
        a.flow, b.flow,
        "the key-frame flows are the same with or without the groups"
    );
    assert_eq!(a.samples, b.samples);
    assert!(a.groups.apex_flow.is_none() && a.info.apex_flow.is_none());
    let n = b.samples.len();
    assert_eq!(
        b.groups.apex_flow.as_ref().map(Vec::len),
        Some(n * 3 * 28 * 28)
    );
    assert_eq!(
        b.groups.tim10.as_ref().map(Vec::len),
        Some(n * 10 * 64 * 64)
    );
    // The header-only reader sees the groups too (the planner refuses specs by it).
    let meta = Prepared::read_meta(&with).unwrap();
    assert_eq!(meta.info.apex_flow.map(|a| a.size), Some(28));
    assert_eq!(meta.info.tim10.map(|t| (t.size, t.frames)), Some((64, 10)));
    // The onset->apex flow carries the action: more motion than on a still background, and strain >= 0.
    for i in 0..n {
        let v = b.sample_apex_flow(i).unwrap();
        let (uv, strain) = v.split_at(2 * 28 * 28);
        assert!(
            strain.iter().all(|x| *x >= 0.0 && x.is_finite()),
            "{}",
            b.samples[i].id
        );
        assert!(
            uv.iter().any(|x| x.abs() > 0.05),
            "{}: no motion",
            b.samples[i].id
        );
        // The first TIM frame is the onset crop, the last the offset crop: both are faces, not blank.
        let t = b.sample_tim10(i).unwrap();
        let first = &t[..64 * 64];
        let mean = first.iter().map(|x| *x as f64).sum::<f64>() / first.len() as f64;
        assert!(
            (20.0..235.0).contains(&mean),
            "{}: mean gray {mean}",
            b.samples[i].id
        );
    }
    let text = inspect(&with).unwrap().to_text();
    assert!(
        text.contains("apex_flow f32 [28, 3, 28, 28]") && text.contains("for ststnet, offapexnet"),
        "{text}"
    );
    assert!(text.contains("tim10 u8 [28, 10, 64, 64]"), "{text}");
    let text = inspect(&plain).unwrap().to_text();
    assert!(
        text.contains("absent: apex_flow (add with --apex-flow"),
        "{text}"
    );
}

#[test]
fn newer_parts_are_written_in_their_layouts_and_prepare() {
    use mer_worker::synth::{generate_with, SynthOptions, NEWER_PARTS};
    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        newer_parts: true,
        ..SynthOptions::new(Preset::Tiny, 7)
    };
    let s = generate_with(&opts, &dir.path().join("all")).unwrap();
    assert_eq!(s.clips["casme3a"], 10);
    assert_eq!(s.clips["casme3c"], 6);
    assert_eq!(s.clips["4dme"], 10);
    assert_eq!(s.clips["mmew"], 10);
    assert_eq!(s.subjects.len(), 7);
    assert!(s.subjects.values().all(|&n| n == 3));
    // The newer clips are appended: the preset's clips are the same with and without them.
    let plain = generate(Preset::Tiny, 7, &dir.path().join("plain")).unwrap();
    let old: Vec<_> = s
        .truth
        .iter()
        .filter(|t| !NEWER_PARTS.contains(&t.dataset))
        .cloned()
        .collect();
    assert_eq!(old, plain.truth);

    // The layouts are the releases': read by the readers, and prepared with the generator's truth.
    let out = dir.path().join("all.safetensors");
    let mut p = s.prep_options(&out);
    p.threads = Some(2);
    let rep = prepare(&p).unwrap();
    assert_eq!(rep.samples, 28 + 36);
    assert_eq!(rep.subjects, 21);
    for d in ["casme3a", "4dme", "mmew"] {
        assert_eq!(rep.megc3[d], [3, 3, 3], "{d}");
    }
    // Part C has no emotion: no megc3 label.
    assert_eq!(
        rep.megc3.get("casme3c").copied().unwrap_or_default(),
        [0, 0, 0]
    );
    assert_eq!(rep.per_dataset["casme3c"], 6);
    let prepared = Prepared::read(&out).unwrap();
    for t in &s.truth {
        let id = format!("{}/{}/{}", t.dataset, t.subject, t.filename);
        let m = prepared
            .samples
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(m.labels.get("megc3").copied(), t.megc3, "{id}");
        assert_eq!(
            (m.onset, m.apex, m.offset),
            (t.onset, t.apex, t.offset),
            "{id}"
        );
        assert_eq!(
            m.apex_estimated,
            matches!(t.dataset, Dataset::Smic | Dataset::Casme3c),
            "{id}"
        );
    }
    // CAS(ME)^3 A: subject 1's two clips of recording `a` are named by their onsets, and the renaming
    // is recorded with each.
    let renamed: Vec<_> = prepared
        .samples
        .iter()
        .filter(|m| m.id.starts_with("casme3a/spNO.1/a_"))
        .collect();
    assert_eq!(renamed.len(), 2);
    for m in renamed {
        assert!(
            m.corrections
                .iter()
                .any(|c| c.contains("recording") || c.contains("used by several")),
            "{}: {:?}",
            m.id,
            m.corrections
        );
    }
}
