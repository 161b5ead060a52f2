//! TEMPORARY golden-output harness for a refactoring (delete before commit).

use mer_shared::prepared::Prepared;
use mer_worker::prep::figures::{clip_figures, FigureOptions};
use mer_worker::prep::keyframes::KeyframeMethod;
use mer_worker::prep::pipeline::{prepare, PrepOptions};
use mer_worker::synth::{generate_with, Casme2Layout, Preset, SynthOptions};
use std::fmt::Write;
use std::path::PathBuf;

fn root() -> Option<PathBuf> {
    std::env::var_os("GOLDEN_DIR").map(PathBuf::from)
}

#[test]
fn golden_synth_and_prep() {
    let Some(root) = root() else { return };
    let mut log = String::new();
    // synth variants
    let mut variants = vec![];
    variants.push(("tiny7", SynthOptions::new(Preset::Tiny, 7)));
    let mut o = SynthOptions::new(Preset::Tiny, 3);
    o.casme2_layout = Casme2Layout::Cropped;
    o.smic_e = true;
    o.newer_parts = true;
    o.co_action = 0.5;
    variants.push(("tiny3all", o));
    variants.push(("rtiny11", SynthOptions::new(Preset::RealisticTiny, 11)));
    let mut o = SynthOptions::new(Preset::RealisticTiny, 5);
    o.smic_e = true;
    o.newer_parts = true;
    variants.push(("rtiny5all", o));
    if std::env::var_os("GOLDEN_BIG").is_some() {
        variants.push(("mini2", SynthOptions::new(Preset::Mini, 2)));
        variants.push(("realistic4", SynthOptions::new(Preset::Realistic, 4)));
    }
    let mut sums = std::collections::BTreeMap::new();
    for (name, o) in &variants {
        let dir = root.join(name);
        let s = generate_with(o, &dir).unwrap();
        writeln!(log, "{name}: {:?}", s).unwrap();
        sums.insert(*name, s);
    }
    // errors
    let mut bad = SynthOptions::new(Preset::Tiny, 1);
    bad.intensity = (0.0, 1.0);
    writeln!(log, "err: {:?}", generate_with(&bad, &root.join("bad"))).unwrap();
    writeln!(
        log,
        "err2: {:?}",
        generate_with(&variants[0].1, &root.join("tiny7"))
    )
    .unwrap();

    let preps: Vec<(&str, &str, Box<dyn Fn(&mut PrepOptions)>)> = vec![
        ("tiny7", "p_default", Box::new(|_o: &mut PrepOptions| {})),
        (
            "tiny3all",
            "p_all",
            Box::new(|o: &mut PrepOptions| {
                o.apex_flow = Some(28);
                o.tim10 = Some(32);
                o.magnitude = true;
                o.smic = None;
                o.skip_bad = true;
                o.face_fallback = true;
            }),
        ),
        (
            "tiny3all",
            "p_tim",
            Box::new(|o: &mut PrepOptions| {
                o.keyframes = KeyframeMethod::Tim;
                o.size = 64;
                o.smic_e = None;
            }),
        ),
        (
            "rtiny11",
            "p_tas",
            Box::new(|o: &mut PrepOptions| {
                o.keyframes = KeyframeMethod::Tas;
                o.apex_flow = Some(28);
                o.tim10 = Some(32);
                o.skip_bad = true;
                o.face_fallback = true;
            }),
        ),
        (
            "rtiny5all",
            "p_comp",
            Box::new(|o: &mut PrepOptions| {
                o.composite = true;
                o.smic_e = None;
                o.skip_bad = true;
                o.face_fallback = true;
            }),
        ),
    ];
    for (src, name, f) in &preps {
        let ss = &sums[src];
        let sum = (
            Some(ss.casme2.clone()),
            Some(ss.samm.clone()),
            Some(ss.smic.clone()),
        );
        let out = root.join(format!("{name}.safetensors"));
        let mut opts = PrepOptions {
            casme2: sum.0.clone(),
            samm: sum.1.clone(),
            smic: sum.2.clone(),
            smic_e: ss.smic_e.clone(),
            casme3a: ss.casme3a.clone(),
            casme3c: ss.casme3c.clone(),
            fourdme: ss.fourdme.clone(),
            mmew: ss.mmew.clone(),
            out: out.clone(),
            threads: Some(2),
            ..Default::default()
        };
        f(&mut opts);
        let rep = prepare(&opts);
        writeln!(log, "{name}: {:?}", rep).unwrap();
        if rep.is_err() {
            continue;
        }
        let meta = Prepared::read_meta(&out).unwrap();
        for (k, sample) in meta.samples.iter().enumerate().filter(|(k, _)| k % 9 == 0) {
            let ds = sample.id.split('/').next().unwrap();
            let dr = match ds {
                "casme2" => sum.0.clone(),
                "samm" => sum.1.clone(),
                "smic" => sum.2.clone(),
                _ => None,
            };
            let Some(dr) = dr else { continue };
            let figs = root.join(format!("figs_{name}_{k}"));
            let r = clip_figures(&FigureOptions {
                prepared: out.clone(),
                dataset_root: dr,
                clip: sample.id.clone(),
                out_dir: figs,
                strip_frames: 7,
            });
            writeln!(log, "fig {name} {k}: {:?}", r).unwrap();
        }
        if let Some(_t) = &opts.tim10 {
            let p = Prepared::read(&out).unwrap();
            let cfg = mer_shared::method::LbpTopSvmConfig::default();
            for i in 0..p.samples.len().min(5) {
                if let Some(v) = p.sample_tim10(i) {
                    let sz = p.info.tim10.as_ref().unwrap().size as usize;
                    let f = mer_worker::baselines::lbptop::lbptop_features(v, 10, sz, sz, &cfg);
                    writeln!(
                        log,
                        "lbp {name} {i}: {:?}",
                        f.map(|x| x.iter().map(|v| v.to_bits() as u64).sum::<u64>())
                    )
                    .unwrap();
                }
            }
        }
    }
    // clip_figures errors
    let r = clip_figures(&FigureOptions {
        prepared: root.join("p_default.safetensors"),
        dataset_root: root.join("tiny7/casme2"),
        clip: "casme2/nope/x".into(),
        out_dir: root.join("figs_err"),
        strip_frames: 7,
    });
    writeln!(log, "fig err: {:?}", r).unwrap();
    std::fs::write(root.join("log.txt"), log).unwrap();
}
