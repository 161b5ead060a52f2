//! `prepare` on bad inputs (each with its clear error; nothing half-written where the output goes; the
//! `skip_bad` report), corrections, and the other key-frame methods / interpolators / layouts.

use mer_shared::prepared::Prepared;
use mer_shared::Dataset;
use mer_worker::prep::datasets::frames::find_frame;
use mer_worker::prep::datasets::{read_dataset, DatasetKind};
use mer_worker::prep::keyframes::KeyframeMethod;
use mer_worker::prep::pipeline::{prepare, skip_report_path, InterpolatorChoice, PrepOptions};
use mer_worker::synth::{generate, generate_with, Casme2Layout, Preset, SynthOptions};
use std::path::{Path, PathBuf};

fn python() -> PathBuf {
    mer_shared::fixtures::project_python()
}

fn run_py(script: &str) {
    let o = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Sets one cell of the CASME II coding workbook with openpyxl (an independent writer).
fn set_casme2_cell(root: &Path, filename: &str, col: usize, value: &str) {
    let wb = root.join("CASME2-coding-20140508.xlsx");
    run_py(&format!(
        "import openpyxl\nwb = openpyxl.load_workbook(r'{p}')\nws = wb.active\nhit = 0\nfor row in ws.iter_rows(min_row=2):\n    if row[1].value == '{filename}':\n        row[{col}].value = {value}\n        hit += 1\nassert hit == 1\nwb.save(r'{p}')\n",
        p = wb.display()
    ));
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn each_bad_input_gives_its_error_and_skip_bad_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = generate(Preset::Tiny, 3, &dir.path().join("data")).unwrap();
    let casme = read_dataset(DatasetKind::Casme2, &s.casme2).unwrap();
    let samm = read_dataset(DatasetKind::Samm, &s.samm).unwrap();
    let smic = read_dataset(DatasetKind::Smic, &s.smic).unwrap();
    // 1. Missing frames: delete a frame inside onset..offset.
    let c0 = &casme[0];
    std::fs::remove_file(&find_frame(&c0.frames, c0.onset + 2).unwrap().path).unwrap();
    // 2. Apex outside onset..offset (workbook edited by openpyxl).
    let c1 = &casme[1];
    set_casme2_cell(&s.casme2, &c1.filename, 4, &(c1.offset + 5).to_string());
    // 3. No apex annotated ("/").
    let c2 = &casme[2];
    set_casme2_cell(&s.casme2, &c2.filename, 4, "'/'");
    // 4. Unreadable image: the onset frame of a SAMM clip is garbage.
    let m0 = &samm[0];
    std::fs::write(
        &find_frame(&m0.frames, m0.onset).unwrap().path,
        b"garbage, not a jpeg",
    )
    .unwrap();
    // 5. No face: the onset frame of a SMIC clip is a flat grey image.
    let k0 = &smic[0];
    {
        use opencv::core::{Mat, Scalar, Vector, CV_8UC1};
        let m = Mat::new_rows_cols_with_default(128, 144, CV_8UC1, Scalar::all(120.0)).unwrap();
        let p = find_frame(&k0.frames, k0.onset).unwrap().path.clone();
        assert!(opencv::imgcodecs::imwrite(&p, &m, &Vector::new()).unwrap());
    }

    let outdir = dir.path().join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    let out = outdir.join("p.safetensors");
    let mut opts = s.prep_options(&out);
    opts.threads = Some(2);
    let e = prepare(&opts).unwrap_err().to_string();
    assert!(e.starts_with("sample casme2/"), "{e}");
    // Nothing half-written where the output goes.
    assert!(files_in(&outdir).is_empty(), "{:?}", files_in(&outdir));

    // Each bad input's own message, one dataset at a time.
    let only = |kind: DatasetKind| {
        let mut o = PrepOptions {
            out: out.clone(),
            threads: Some(2),
            ..Default::default()
        };
        match kind {
            DatasetKind::Samm => o.samm = Some(s.samm.clone()),
            _ => o.smic = Some(s.smic.clone()),
        }
        prepare(&o).unwrap_err().to_string()
    };
    let e = only(DatasetKind::Samm);
    assert!(
        e.contains(&format!("sample {}", m0.id())) && e.contains("unreadable image"),
        "{e}"
    );
    let e = only(DatasetKind::Smic);
    assert!(
        e.contains(&format!("sample {}", k0.id())) && e.contains("no face found"),
        "{e}"
    );
    assert!(files_in(&outdir).is_empty());

    opts.skip_bad = true;
    let rep = prepare(&opts).unwrap();
    assert_eq!(rep.samples, 28 - 5);
    let reasons: std::collections::BTreeMap<String, String> = rep.skipped.iter().cloned().collect();
    assert!(
        reasons[&c0.id()].contains("frames") && reasons[&c0.id()].contains("missing"),
        "{reasons:?}"
    );
    assert!(
        reasons[&c1.id()].contains("outside onset..offset"),
        "{reasons:?}"
    );
    assert!(
        reasons[&c2.id()].contains("no apex annotated"),
        "{reasons:?}"
    );
    assert!(
        reasons[&m0.id()].contains("unreadable image"),
        "{reasons:?}"
    );
    assert!(reasons[&k0.id()].contains("no face found"), "{reasons:?}");
    let report = std::fs::read_to_string(skip_report_path(&out)).unwrap();
    assert_eq!(report.lines().count(), 1 + 5);
    assert!(report.contains(&k0.id()));
    assert_eq!(
        files_in(&outdir),
        vec!["p.safetensors", "p.safetensors.skipped.tsv"]
    );

    // The documented fallback crops the full frame where no face is found; corrections supply the apex.
    let corr = dir.path().join("corrections.toml");
    std::fs::write(
        &corr,
        format!(
            "[[correction]]\nsample = \"{}\"\nfield = \"apex\"\nvalue = \"{}\"\nreason = \"apex missing in the coding workbook\"\n",
            c2.id(),
            c2.onset + 1
        ),
    )
    .unwrap();
    let mut opts2 = PrepOptions {
        smic: Some(s.smic.clone()),
        casme2: Some(s.casme2.clone()),
        out: out.clone(),
        ..Default::default()
    };
    opts2.face_fallback = true;
    opts2.skip_bad = true;
    opts2.corrections = Some(corr);
    let rep = prepare(&opts2).unwrap();
    assert_eq!(rep.fallbacks, 1);
    assert_eq!(rep.skipped.len(), 2, "{:?}", rep.skipped);
    let p = Prepared::read(&out).unwrap();
    let k = p.samples.iter().find(|m| m.id == k0.id()).unwrap();
    assert_eq!(k.crop_box, [8, 0, 128, 128]);
    assert!(p.info.crop.contains("fallback"));
    let c = p.samples.iter().find(|m| m.id == c2.id()).unwrap();
    assert_eq!(c.apex, c2.onset + 1);
    assert_eq!(c.corrections.len(), 1);
    assert!(
        c.corrections[0].contains("apex: none ->"),
        "{:?}",
        c.corrections
    );
}

#[test]
fn tim_tas_magnitude_torchscript_cropped_and_smic_e() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SynthOptions {
        casme2_layout: Casme2Layout::Cropped,
        smic_e: true,
        ..SynthOptions::new(Preset::Tiny, 11)
    };
    let s = generate_with(&opts, &dir.path().join("data")).unwrap();
    assert!(s.casme2.join("Cropped").is_dir());
    let smic_e = s.smic_e.clone().unwrap();

    // TIM with magnitude over CASME II (Cropped layout) and SMIC-E.
    let out = dir.path().join("tim.safetensors");
    let o = PrepOptions {
        casme2: Some(s.casme2.clone()),
        smic_e: Some(smic_e),
        keyframes: KeyframeMethod::Tim,
        magnitude: true,
        out: out.clone(),
        ..Default::default()
    };
    let r = prepare(&o).unwrap();
    assert_eq!(r.samples, 19);
    let p = Prepared::read(&out).unwrap();
    assert_eq!(p.shape, [19, 3, 10, 112, 112]);
    assert_eq!(p.info.channels, vec!["u", "v", "magnitude"]);
    assert_eq!(p.info.keyframes, "tim");
    let m = p
        .samples
        .iter()
        .find(|m| m.dataset == Dataset::Smic)
        .unwrap();
    assert_eq!(m.keyframe_times[0], m.onset as f64);
    assert_eq!(m.keyframe_times[10], m.offset as f64);
    assert_eq!(m.source_frames.len() as u32, m.offset - m.onset + 1);
    assert!(
        m.source_frames[0].starts_with("SMIC-HS-E/"),
        "{:?}",
        m.source_frames
    );
    // Magnitude channel = sqrt(u^2 + v^2).
    let f = p.sample_flow(0);
    let n = 10 * 112 * 112;
    for i in (0..n).step_by(997) {
        let (u, v, mag) = (f[i], f[n + i], f[2 * n + i]);
        assert!((mag - (u * u + v * v).sqrt()).abs() < 1e-4);
    }

    // TAS over SAMM: original frames at the adaptive times.
    let out2 = dir.path().join("tas.safetensors");
    let r = prepare(&PrepOptions {
        samm: Some(s.samm.clone()),
        keyframes: KeyframeMethod::Tas,
        out: out2.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.samples, 9);
    let p = Prepared::read(&out2).unwrap();
    assert_eq!(p.info.keyframes, "tas");
    for m in &p.samples {
        let distinct: std::collections::BTreeSet<u64> =
            m.keyframe_times.iter().map(|t| *t as u64).collect();
        assert_eq!(m.source_frames.len(), distinct.len());
    }

    // A TorchScript interpolator (here a traced weighted blend) replaces the Farneback one.
    let model = dir.path().join("blend.pt");
    run_py(&format!(
        "import torch\nclass M(torch.nn.Module):\n    def forward(self, a, b):\n        return 0.5 * a + 0.5 * b\nex = (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))\ntorch.jit.trace(M(), ex).save(r'{}')\n",
        model.display()
    ));
    let out3 = dir.path().join("ts.safetensors");
    let r = prepare(&PrepOptions {
        samm: Some(s.samm.clone()),
        interpolator: InterpolatorChoice::TorchScript {
            path: model,
            channels: 1,
        },
        out: out3.clone(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.samples, 9);
    let p = Prepared::read(&out3).unwrap();
    assert!(
        p.info.interpolator.starts_with("torchscript:blend.pt:"),
        "{}",
        p.info.interpolator
    );
}

#[test]
fn composite_flag_keeps_only_listed_clips_with_list_labels() {
    // Tiny names are not in the official list: with a user's list naming two of them (one relabelled),
    // exactly those two come out, with the list's labels; a listed clip missing on disk is an error
    // unless skip_bad.
    let dir = tempfile::tempdir().unwrap();
    let s = generate(Preset::Tiny, 5, &dir.path().join("data")).unwrap();
    let t: Vec<_> = s
        .truth
        .iter()
        .filter(|t| t.dataset == Dataset::Casme2 && t.megc3.is_some())
        .take(2)
        .collect();
    let list = dir.path().join("list.csv");
    let relabel = (t[1].megc3.unwrap() + 1) % 3;
    std::fs::write(
        &list,
        format!(
            "casme2,{},{},{}\ncasme2,{},{},{}\ncasme2,sub01,EP99_99,0\n",
            t[0].subject,
            t[0].filename,
            t[0].megc3.unwrap(),
            t[1].subject.trim_start_matches("sub"),
            t[1].filename,
            relabel
        ),
    )
    .unwrap();
    let out = dir.path().join("c.safetensors");
    let mut o = PrepOptions {
        casme2: Some(s.casme2.clone()),
        composite: true,
        composite_list: Some(list),
        out: out.clone(),
        ..Default::default()
    };
    let e = prepare(&o).unwrap_err().to_string();
    assert!(
        e.contains("casme2/sub01/EP99_99") && e.contains("not found on disk"),
        "{e}"
    );
    o.skip_bad = true;
    let r = prepare(&o).unwrap();
    assert_eq!(r.samples, 2);
    assert_eq!(r.skipped.len(), 1);
    let p = Prepared::read(&out).unwrap();
    assert_eq!(p.samples[1].labels["megc3"], relabel);
    assert_eq!(p.samples[1].subject, t[1].subject);
}
