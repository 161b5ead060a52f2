//! The planner's tests: expansion, keys, seeds, errors located in the spec, every example spec.

use super::*;
use crate::spec::parse_spec;
use crate::test_support::{composite_summary, composite_with_groups, with_newer_parts};
use mer_shared::digest::sha256_hex;
use mer_shared::prepared::{Prepared, SampleMeta};
use std::collections::BTreeSet;
use std::path::Path;

const HEAD: &str = "name = \"t\"\ndataset = \"d.safetensors\"\nscheme = \"megc3\"\n";

fn plan(extra: &str) -> Plan {
    let spec = parse_spec("s.toml", &format!("{HEAD}{extra}")).unwrap_or_else(|e| panic!("{e}"));
    expand(&spec, &composite_summary("adaptive")).unwrap()
}

#[test]
fn methods_are_a_sweep_axis_and_baselines_have_no_prior_stage() {
    let spec = |extra: &str| parse_spec("s.toml", &format!("{HEAD}{extra}")).unwrap();
    let old = expand(
        &spec("[sweep]\nalpha = [1, 4]\n"),
        &composite_with_groups("adaptive"),
    )
    .unwrap();
    let p = expand(
        &spec("[sweep]\nalpha = [1, 4]\nmethod = [\"lbptop_svm\", \"mersiamc3d\", \"ststnet\", \"offapexnet\"]\n"),
        &composite_with_groups("adaptive"),
    )
    .unwrap();
    // Two MERSiamC3D points (the alpha axis) first, with the old points' task keys; one point per
    // baseline (the alpha axis does not multiply them), in the axis' order.
    let methods: Vec<Method> = p.sweep_points.iter().map(|s| s.method.clone()).collect();
    assert_eq!(
        methods,
        vec![
            Method::Mersiamc3d,
            Method::Mersiamc3d,
            Method::LbptopSvm,
            Method::Ststnet,
            Method::Offapexnet
        ]
    );
    assert_eq!(p.sweep_points[2].label, "method=lbptop_svm");
    assert_eq!(p.sweep_points[0].label, "method=mersiamc3d,alpha=1");
    let keys =
        |p: &Plan, i: u32| -> Vec<String> { p.targets_of(i).map(|t| t.key.clone()).collect() };
    assert_eq!(keys(&p, 0), keys(&old, 0));
    assert_eq!(keys(&p, 1), keys(&old, 1));
    let priors = p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count();
    assert_eq!(priors, 68, "prior tasks only for MERSiamC3D");
    assert_eq!(p.tasks.len(), 68 + 5 * 68);
    for i in 2..5 {
        for t in p.targets_of(i) {
            assert!(t.deps.is_empty() && t.payload.prior_key.is_none());
            assert_eq!(t.payload.method(), p.sweep_points[i as usize].method);
            assert_ne!(t.payload.test_subject, "");
        }
    }
    // Baseline keys depend on the method's settings and the seed, not on MERSiamC3D's `[train]`.
    let st = |extra: &str| {
        expand(
            &spec(&format!("method = \"ststnet\"\n{extra}")),
            &composite_with_groups("adaptive"),
        )
        .unwrap()
    };
    let base = keys(&st(""), 0);
    assert_eq!(base, keys(&p, 3));
    assert_eq!(base, keys(&st("[train.target.optim]\nlr = 0.1\n"), 0));
    assert_ne!(base, keys(&st("[methods.ststnet]\nepochs = 5\n"), 0));
    // The input source keys apart only when it is not the default (keys of older specs stay).
    assert_eq!(
        base,
        keys(&st("[methods.ststnet]\ninput = \"apex_flow\"\n"), 0)
    );
    assert_ne!(
        base,
        keys(&st("[methods.ststnet]\ninput = \"keyframe_sum\"\n"), 0)
    );
    assert_ne!(base, keys(&st("[train]\nseed = 9\n"), 0));
    assert_eq!(st("").sweep_points[0].label, "method=ststnet");
    // Every fold of a baseline is a fold of MERSiamC3D: the same folds.
    let folds = |i: u32| p.targets_of(i).map(|t| t.fold.clone()).collect::<Vec<_>>();
    assert_eq!(folds(0), folds(4));
}

#[test]
fn a_method_whose_inputs_are_missing_is_refused_with_the_prep_flag() {
    let spec = parse_spec(
        "s.toml",
        &format!("{HEAD}[sweep]\nmethod = [\"mersiamc3d\", \"lbptop_svm\"]\n"),
    )
    .unwrap();
    let e = expand(&spec, &composite_summary("adaptive"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("lbptop_svm") && e.contains("--tim10") && e.contains("s.toml:5"),
        "{e}"
    );
    let mut only_apex = composite_with_groups("adaptive");
    only_apex.info.tim10 = None;
    let spec = parse_spec("s.toml", &format!("{HEAD}method = \"offapexnet\"\n")).unwrap();
    assert!(expand(&spec, &only_apex).is_ok());
    let spec = parse_spec("s.toml", &format!("{HEAD}method = \"lbptop_svm\"\n")).unwrap();
    let e = expand(&spec, &only_apex).unwrap_err().to_string();
    assert!(e.contains("--tim10") && e.contains("s.toml:4"), "{e}");
    // Bad settings are located in their table.
    let e = parse_spec(
        "s.toml",
        &format!("{HEAD}method = \"ststnet\"\n[methods.ststnet]\nlr = 0\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("s.toml:6") && e.contains("lr"), "{e}");
    let e = parse_spec(
        "s.toml",
        &format!("{HEAD}[sweep]\nmethod = [\"ststnet\", \"ststnet\"]\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("twice"), "{e}");
}

#[test]
fn composite_expands_to_68_folds_per_sweep_point() {
    let p = plan("[sweep]\nalpha = [1, 2, 3]\nfrozen_layers = [0, 1]\n");
    assert_eq!(p.folds.len(), 68);
    assert_eq!(p.sweep_points.len(), 6);
    let priors = p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count();
    let targets = p
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Target)
        .count();
    assert_eq!(
        priors, 68,
        "one prior task per fold, shared by every sweep point"
    );
    assert_eq!(targets, 68 * 6);
    // Prior tasks come first and every target depends on its fold's prior task.
    assert!(p.tasks[..68].iter().all(|t| t.kind == TaskKind::Prior));
    for t in p.tasks.iter().filter(|t| t.kind == TaskKind::Target) {
        assert_eq!(t.deps.len(), 1);
        let prior = p.task(&t.deps[0]).unwrap();
        assert_eq!(prior.fold, t.fold);
        assert_eq!(t.payload.prior_key.as_deref(), Some(prior.key.as_str()));
    }
    let keys: BTreeSet<&str> = p.tasks.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys.len(), p.tasks.len(), "keys are unique");
    assert_eq!(p.sweep_points[0].label, "alpha=1,frozen=0");
    assert_eq!(p.folds[0], "smic/s01");
    assert_eq!(p.folds[16], "casme2/sub01");
    assert_eq!(p.parts, vec![Dataset::Smic, Dataset::Casme2, Dataset::Samm]);
}

#[test]
fn seeds_multiply_prior_tasks_and_no_prior_has_no_dependency() {
    let p = plan("[sweep]\nseeds = [1, 2]\nprior = [true, false]\nfrozen_layers = [0, 2]\n");
    // (prior=true: frozen 0, 2) + (prior=false: frozen 0) = 3 points x 2 seeds.
    assert_eq!(p.sweep_points.len(), 6);
    assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
    assert_eq!(
        p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count(),
        68 * 2
    );
    let d = p.describe();
    assert!(
        d.contains("68 LOSO folds")
            && d.contains("6 sweep point(s), 544 tasks (136 prior, 408 target)"),
        "{d}"
    );
    assert!(
        d.contains("skipped: prior=false with frozen_layers=2"),
        "{d}"
    );
    let no_prior: Vec<&SweepPoint> = p
        .sweep_points
        .iter()
        .filter(|s| !s.train.prior.enabled)
        .collect();
    assert_eq!(no_prior.len(), 2);
    assert_eq!(no_prior[0].label, "prior=false,seed=1");
    for t in p.targets_of(no_prior[0].index) {
        assert!(t.deps.is_empty() && t.payload.prior_key.is_none());
    }
    // Each seed's targets depend on that seed's prior tasks.
    let s1 = p
        .sweep_points
        .iter()
        .find(|s| s.label == "prior=true,frozen=2,seed=1")
        .unwrap();
    let s2 = p
        .sweep_points
        .iter()
        .find(|s| s.label == "prior=true,frozen=2,seed=2")
        .unwrap();
    let d1: Vec<_> = p.targets_of(s1.index).map(|t| t.deps[0].clone()).collect();
    let d2: Vec<_> = p.targets_of(s2.index).map(|t| t.deps[0].clone()).collect();
    assert!(d1.iter().zip(&d2).all(|(a, b)| a != b));
}

#[test]
fn duplicate_and_irrelevant_combinations_collapse() {
    let p = plan("[sweep]\nalpha = [2, 2.0, 3]\nloss = [\"focal\", \"cross_entropy\"]\n");
    let labels: Vec<&str> = p.sweep_points.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        vec![
            "loss=focal,alpha=2",
            "loss=focal,alpha=3",
            "loss=cross_entropy"
        ]
    );
    assert_eq!(
        p.tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Target)
            .count(),
        68 * 3
    );
}

#[test]
fn keys_are_stable_and_depend_only_on_what_matters() {
    let base = plan("[sweep]\nalpha = [2]\n");
    let again = plan("[sweep]\nalpha = [2]\n");
    assert_eq!(base.tasks, again.tasks);
    // The experiment name and description are not part of any key.
    let spec = parse_spec("o.toml", "name = \"other\"\ndescription = \"x\"\ndataset = \"elsewhere.safetensors\"\nscheme = \"megc3\"\n[sweep]\nalpha = [2]\n").unwrap();
    let other = expand(&spec, &composite_summary("adaptive")).unwrap();
    assert_eq!(base.tasks, other.tasks);
    // Device, thread count, retries and lease length do not change keys either.
    let dev = plan("max_attempts = 9\nlease_seconds = 5\n[train]\ndevice = \"cpu\"\nthreads = 2\n[sweep]\nalpha = [2]\n");
    assert_eq!(
        dev.tasks.iter().map(|t| &t.key).collect::<Vec<_>>(),
        base.tasks.iter().map(|t| &t.key).collect::<Vec<_>>()
    );
    // Settings at their defaults, spelled out, keep the keys of specs written before they existed.
    let spelled = plan("[train]\nlayer_stats = false\neval_every = 1\n[train.model]\ninput_scale = \"raw\"\ninput_flow = \"consecutive\"\nmin_grid = 1\n[train.target.optim]\nkind = \"sgd\"\n[sweep]\nalpha = [2]\n");
    assert_eq!(spelled.tasks, base.tasks);
    // A sweep point shared with a bigger experiment has the same tasks.
    let big = plan("[sweep]\nalpha = [1, 2, 3]\n");
    let shared: BTreeSet<&str> = big.tasks.iter().map(|t| t.key.as_str()).collect();
    assert!(base.tasks.iter().all(|t| shared.contains(t.key.as_str())));

    let target_keys = |p: &Plan| -> BTreeSet<String> {
        p.tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Target)
            .map(|t| t.key.clone())
            .collect()
    };
    let prior_keys = |p: &Plan| -> BTreeSet<String> {
        p.tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Prior)
            .map(|t| t.key.clone())
            .collect()
    };
    let b_t = target_keys(&base);
    let b_p = prior_keys(&base);
    // Target-stage settings change target keys only.
    for extra in [
        "[sweep]\nalpha = [3]\n",
        "[sweep]\nalpha = [2]\nfrozen_layers = [1]\n",
        "[train.target.optim]\nepochs = 99\n[sweep]\nalpha = [2]\n",
        "[train.target.optim]\nlr = 0.01\n[sweep]\nalpha = [2]\n",
        "[train.target.optim]\nkind = \"adam\"\n[sweep]\nalpha = [2]\n",
        "[train]\nlayer_stats = true\n[sweep]\nalpha = [2]\n",
        "[train]\neval_every = 4\n[sweep]\nalpha = [2]\n",
        "[train.target.loss]\nkind = \"focal\"\ngamma = 1.0\nalpha = 1.0\n[sweep]\nalpha = [2]\n",
    ] {
        let p = plan(extra);
        assert!(target_keys(&p).is_disjoint(&b_t), "{extra}");
        assert_eq!(prior_keys(&p), b_p, "{extra}");
    }
    // Prior-stage, model, augmentation, numeric-path and seed settings change both.
    for extra in [
        "[train.prior.optim]\nepochs = 3\n[sweep]\nalpha = [2]\n",
        "[train.prior]\npairs_per_epoch = 100\n[sweep]\nalpha = [2]\n",
        "[train.model]\ndense = 64\n[sweep]\nalpha = [2]\n",
        "[train.model]\ninput_scale = \"train-rms\"\n[sweep]\nalpha = [2]\n",
        "[train.model]\ninput_scale = \"sample-minmax\"\n[sweep]\nalpha = [2]\n",
        "[train.prior.optim]\nkind = \"adam\"\n[sweep]\nalpha = [2]\n",
        "[train.model]\ninput_flow = \"cumulative\"\n[sweep]\nalpha = [2]\n",
        "[train.model]\nframes = 1\ninput_flow = \"apex-sum\"\n[sweep]\nalpha = [2]\n",
        "[train.model]\nmin_grid = 3\n[sweep]\nalpha = [2]\n",
        "[train.augment]\ncrops = false\n[sweep]\nalpha = [2]\n",
        "[train]\nfast_path = false\n[sweep]\nalpha = [2]\n",
        "[train]\nseed = 7\n[sweep]\nalpha = [2]\n",
        "[sweep]\nalpha = [2]\nseeds = [5]\n",
    ] {
        let p = plan(extra);
        assert!(target_keys(&p).is_disjoint(&b_t), "{extra}");
        assert!(prior_keys(&p).is_disjoint(&b_p), "{extra}");
    }
    // Parts, scheme and dataset bytes change every key.
    let p = plan("parts = [\"casme2\", \"samm\"]\n[sweep]\nalpha = [2]\n");
    let casme = p
        .tasks
        .iter()
        .find(|t| t.fold == "casme2/sub01" && t.kind == TaskKind::Target)
        .unwrap();
    let casme_b = base
        .tasks
        .iter()
        .find(|t| t.fold == "casme2/sub01" && t.kind == TaskKind::Target)
        .unwrap();
    assert_ne!(casme.key, casme_b.key);
    let mut other_bytes = composite_summary("adaptive");
    other_bytes.hash = sha256_hex(b"other");
    let spec = parse_spec("s.toml", &format!("{HEAD}[sweep]\nalpha = [2]\n")).unwrap();
    let p = expand(&spec, &other_bytes).unwrap();
    assert!(target_keys(&p).is_disjoint(&b_t) && prior_keys(&p).is_disjoint(&b_p));
    // Seeds are derived per fold and recorded in the payload.
    let t0 = base
        .tasks
        .iter()
        .find(|t| t.kind == TaskKind::Target)
        .unwrap();
    assert_eq!(
        t0.payload.train.seed,
        derive_seed(0, &t0.fold, TaskKind::Target)
    );
    assert_ne!(
        derive_seed(0, "casme2/sub01", TaskKind::Target),
        derive_seed(0, "casme2/sub02", TaskKind::Target)
    );
    assert_ne!(
        derive_seed(0, "casme2/sub01", TaskKind::Target),
        derive_seed(1, "casme2/sub01", TaskKind::Target)
    );
}

#[test]
fn dataset_dependent_errors_are_located() {
    let spec = parse_spec("s.toml", &format!("{HEAD}parts = [\"casme2\", \"samm\"]\n")).unwrap();
    let mut ds = composite_summary("adaptive");
    ds.samples.retain(|s| s.dataset != Dataset::Samm);
    let e = expand(&spec, &ds).unwrap_err().to_string();
    assert!(
        e.starts_with("s.toml:4:20: ") && e.contains("not in the prepared file"),
        "{e}"
    );
    // A scheme with no labelled sample in the chosen part.
    let spec = parse_spec(
        "s.toml",
        "name = \"t\"\ndataset = \"d\"\nscheme = \"emotion5\"\n",
    )
    .unwrap();
    let e = expand(&spec, &composite_summary("adaptive"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.toml:3:10: ") && e.contains("emotion5"),
        "{e}"
    );
    let spec = parse_spec(
        "s.toml",
        "name = \"t\"\ndataset = \"d\"\nscheme = \"objective5\"\nparts = [\"samm\"]\n",
    )
    .unwrap();
    let mut ds = composite_summary("adaptive");
    for s in ds.samples.iter_mut().filter(|s| s.dataset == Dataset::Samm) {
        s.labels.remove("objective5");
    }
    let e = expand(&spec, &ds).unwrap_err().to_string();
    assert!(
        e.starts_with("s.toml:4:10: ") && e.contains("no sample labelled"),
        "{e}"
    );
    // The key-frame tag must match the prepared file.
    let spec = parse_spec("s.toml", &format!("{HEAD}[sweep]\nkeyframes = [\"tim\"]\n")).unwrap();
    let e = expand(&spec, &composite_summary("adaptive"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("s.toml:5:14: ") && e.contains("tim"), "{e}");
    // Model frames must match the file.
    let spec = parse_spec("s.toml", &format!("{HEAD}[train.model]\nframes = 8\n")).unwrap();
    let e = expand(&spec, &composite_summary("adaptive"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("8 frames"), "{e}");
}

#[test]
fn objective5_folds_and_keyframe_datasets() {
    let spec = parse_spec(
        "s.toml",
        "name = \"t\"\ndataset = \"d\"\nscheme = \"objective5\"\nparts = [\"casme2\"]\n",
    )
    .unwrap();
    let p = expand(&spec, &composite_summary("adaptive")).unwrap();
    assert_eq!(p.folds.len(), 24);
    assert!(p.folds.iter().all(|f| f.to_string().starts_with("casme2/")));
    let spec = parse_spec(
        "s.toml",
        "name = \"t\"\nscheme = \"megc3\"\n[datasets]\nadaptive = \"a\"\ntas = \"b\"\n[sweep]\nalpha = [1, 2]\n",
    )
    .unwrap();
    let ds = BTreeMap::from([
        ("adaptive".to_string(), composite_summary("adaptive")),
        ("tas".to_string(), composite_summary("tas")),
    ]);
    let p = expand_multi(&spec, &ds).unwrap();
    assert_eq!(p.sweep_points.len(), 4);
    assert_eq!(p.sweep_points[0].label, "alpha=1,keyframes=adaptive");
    assert_eq!(p.datasets.len(), 2);
    assert_eq!(
        p.tasks.iter().filter(|t| t.kind == TaskKind::Prior).count(),
        68 * 2
    );
    assert!(expand(&spec, &composite_summary("adaptive")).is_err());
}

/// Loads the spec at `path` and plans it against fake composite-shaped summaries: one with both
/// baseline groups (plus 3 subjects of each newer part if the spec names one), or one per `[datasets]`
/// tag, each with its own hash and the tag's key-frame method. Both example tests plan this way.
fn plan_spec_file(path: &Path) -> (crate::spec::ExperimentSpec, Plan) {
    let spec = crate::spec::load_spec(path).unwrap_or_else(|e| panic!("{e}"));
    let newer = spec
        .parts
        .iter()
        .flatten()
        .any(|d| !Dataset::COMPOSITE.contains(d));
    let p = if spec.datasets.is_empty() && newer {
        expand(&spec, &with_newer_parts(composite_with_groups("adaptive")))
    } else if spec.datasets.is_empty() {
        expand(&spec, &composite_with_groups("adaptive"))
    } else {
        // One composite-shaped file per tag, each with its own hash, made with the tag's method.
        let ds = spec
            .datasets
            .keys()
            .map(|tag| {
                let mut s = composite_summary(tag);
                s.info.keyframes = tag.split('-').next().unwrap_or(tag).to_string();
                (tag.clone(), s)
            })
            .collect();
        expand_multi(&spec, &ds)
    }
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (spec, p)
}

/// `path` with its `..` components applied (no file system access).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The `.toml` files directly in `dir`, sorted.
fn spec_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    files.sort();
    files
}

/// The recommended CPU configuration (`examples/realistic_cpu.toml`) runs exactly the MERSiamC3D tasks
/// whose three-seed numbers the evidence reports (`realistic_ablation_input_size_adam.toml`).
#[test]
fn the_recommended_cpu_configuration_is_the_measured_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let keys = |p: &Plan| -> BTreeSet<String> {
        p.tasks
            .iter()
            .filter(|t| t.payload.method() == mer_shared::method::Method::Mersiamc3d)
            .map(|t| t.key.clone())
            .collect()
    };
    let (_, recommended) = plan_spec_file(&root.join("examples/realistic_cpu.toml"));
    let (_, measured) =
        plan_spec_file(&root.join("experiments/evidence/realistic_ablation_input_size_adam.toml"));
    assert!(!keys(&measured).is_empty());
    assert_eq!(keys(&recommended), keys(&measured));
}

#[test]
fn every_example_spec_parses_and_expands() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let examples = root.join("examples");
    let evidence = root.join("experiments/evidence");
    // examples/ holds what a user runs: at most 15 specs, each opening with a header comment.
    let shipped = spec_files(&examples);
    assert!(shipped.len() <= 15, "{} specs in examples/", shipped.len());
    for path in &shipped {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.starts_with('#'),
            "{}: starts with a header comment",
            path.display()
        );
    }
    let mut seen = BTreeMap::new();
    let mut inner_tasks = BTreeMap::new();
    let moved = spec_files(&evidence);
    let specs = shipped.iter().map(|p| (&examples, p));
    for (dir, path) in specs.chain(moved.iter().map(|p| (&evidence, p))) {
        let (spec, p) = plan_spec_file(path);
        // Names are unique: a name is a run folder.
        let name = spec.name.clone();
        assert!(
            !seen.contains_key(&name),
            "{}: spec name '{name}' is taken",
            path.display()
        );
        let files: Vec<_> = spec.dataset.iter().chain(spec.datasets.values()).collect();
        assert!(
            !files.is_empty() && files.iter().all(|d| d.starts_with(dir)),
            "{}: dataset paths are resolved",
            path.display()
        );
        // ... and lead to data/ at the repository root from either folder.
        assert!(
            files
                .iter()
                .all(|d| lexical(d).starts_with(lexical(&root.join("data")))),
            "{}: dataset paths lead to data/",
            path.display()
        );
        let targets = p
            .tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Target && !t.is_inner())
            .count();
        let inner = p.tasks.iter().filter(|t| t.is_inner()).count();
        inner_tasks.insert(name.clone(), inner);
        assert_eq!(
            targets,
            p.folds.len() * p.sweep_points.len(),
            "{}",
            path.display()
        );
        seen.insert(
            name,
            (
                p.folds.len(),
                p.sweep_points.len(),
                p.tasks.len() - targets - inner,
            ),
        );
    }
    // (folds, sweep points, prior tasks) on a composite-shaped dataset.
    assert_eq!(seen["composite_megc3"], (68, 10, 68));
    assert_eq!(seen["alpha_sweep"], (68, 10, 68));
    assert_eq!(seen["ablation_frozen_layers"], (68, 7, 68));
    assert_eq!(seen["objective5_casme2"], (24, 3, 24));
    assert_eq!(seen["objective5_samm"], (28, 3, 28));
    assert_eq!(seen["tiny"], (68, 1, 68));
    assert_eq!(seen["mini"], (68, 2, 68));
    assert_eq!(seen["composite_small"], (68, 1, 68));
    // CASME II + SAMM (24 + 28 composite subjects) + 3 subjects of each newer part; six LODO parts.
    assert_eq!(seen["five-datasets-tiny"], (24 + 28 + 9, 1, 24 + 28 + 9));
    assert_eq!(seen["lodo-tiny"], (6, 1, 6));
    // Two prepared files (two fill rules) x two alphas; one prior per fold and file.
    assert_eq!(seen["ablation_keyframe_fill"], (68, 4, 136));
    // One MERSiamC3D point with its priors, one point per baseline.
    assert_eq!(seen["methods_composite"], (68, 4, 68));
    assert_eq!(seen["methods_cpu"], (68, 4, 68));
    // The four built-ins and two methods of the spec's own.
    assert_eq!(seen["own_models"], (68, 6, 68));
    assert_eq!(seen["realistic_cpu_recommended"], (68, 4, 68));
    assert_eq!(seen["realistic_ablation_epochs"], (68, 1, 68));
    assert_eq!(seen["realistic_ablation_input_scale"], (68, 1, 68));
    assert_eq!(seen["realistic_ablation_lr"], (68, 1, 68));
    assert_eq!(seen["realistic_ablation_prior"], (68, 1, 0));
    // Nested selection: 68 x 3 inner priors (shared by both alphas) and 68 x 3 x 2 inner targets.
    assert_eq!(seen["nested_mini"], (68, 2, 68));
    assert_eq!(inner_tasks["nested_mini"], 68 * 3 + 68 * 3 * 2);
    assert_eq!(inner_tasks.values().filter(|n| **n > 0).count(), 1);
    assert_eq!(seen["realistic_ablation_augment"], (68, 1, 68));
    assert_eq!(seen["realistic_ablation_input_size"], (68, 1, 68));
    // Three prepared files (adaptive, TAS, TIM), one point and one prior per fold each.
    assert_eq!(seen["realistic_ablation_keyframes"], (68, 3, 204));
    assert_eq!(seen["realistic_ablation_cumulative"], (68, 1, 68));
    assert_eq!(seen["realistic_ablation_balanced"], (68, 1, 68));
    assert_eq!(seen["realistic_ablation_grid"], (68, 1, 68));
    assert_eq!(seen["realistic_ablation_sample_minmax"], (68, 1, 68));
    assert_eq!(seen["realistic_ablation_input_size_adam"], (68, 1, 68));
    // Fourth and fifth rounds, folded: Adam at 48 px and three single changes, each of which changes what
    // prior learning sees (augmentation, or the head's grid and width), so each has its own priors.
    assert_eq!(seen["realistic_ablation_adam_one_change"], (68, 4, 4 * 68));
    assert_eq!(seen["realistic_ablation_keyframe_sum"], (68, 2, 0));
    // Sixth round, folded: the apex-sum reference and five single changes; the slow schedule changes
    // only target learning, so it shares the reference's priors (5 prior settings).
    assert_eq!(
        seen["realistic_ablation_apex_sum_one_change"],
        (68, 6, 5 * 68)
    );
    // Sixth and seventh rounds, folded: OFF-ApexNet's training and the tower changed one piece at a time;
    // no prior learning, so no prior tasks.
    assert_eq!(seen["realistic_ablation_tower"], (68, 6, 0));
    assert_eq!(
        seen["realistic_ablation_ten_frame_offapex_tower"],
        (68, 1, 68)
    );
    // The settings the first evidence was measured with, kept under their old name.
    assert_eq!(seen["realistic_cpu"], (68, 4, 68));
    // Table 7 on the ladder's six folds (the spec's `folds`): two seeds x (six frozen-layer points and no
    // prior), one prior per fold and seed.
    assert_eq!(seen["table7_six_folds"], (6, 14, 12));
    // Prior learning against none over every fold: 0 and 2 frozen layers from one prior per fold, and
    // random init (prior=false with 2 frozen layers is skipped); and its control with shuffled pair labels
    // on the six folds (the prior points only).
    assert_eq!(seen["prior_all_folds"], (68, 3, 68));
    assert_eq!(seen["prior_shuffled_six_folds"], (6, 2, 6));
    assert_eq!(seen["prior_all_folds_default_budget"], (68, 3, 68));
    assert_eq!(seen["prior_all_folds_112px_adam"], (68, 3, 68));
    // 15 in examples/, 27 in experiments/evidence/ (21 ablations, three of them folding 16 earlier specs
    // into variants, realistic_cpu's earlier settings, Table 7 on six folds, prior learning over all folds
    // at two budgets and with the recommended configuration, and its control).
    assert_eq!(seen.len(), 42);
}

/// The specs of experiments/evidence/ folded into one spec with a `variant` axis: (file, variants), each
/// variant standing for the earlier spec `realistic_ablation_<variant>` (its name in `task_keys.json`).
const FOLDED_EVIDENCE: &[(&str, &[&str])] = &[
    (
        "realistic_ablation_tower.toml",
        &[
            "offapex_training",
            "offapex_tower",
            "tower_shallow",
            "tower_two_streams",
            "tower_2d_kernel",
            "tower_torch_init",
        ],
    ),
    (
        "realistic_ablation_apex_sum_one_change.toml",
        &[
            "apex_sum",
            "apex_sum_no_augment",
            "apex_sum_minmax",
            "apex_sum_wide_head",
            "apex_sum_28px",
            "apex_sum_slow_adam",
        ],
    ),
    (
        "realistic_ablation_adam_one_change.toml",
        &["adam", "no_augment", "crop_scaled", "head"],
    ),
];

/// Every spec recorded in `experiments/evidence/task_keys.json` (spec name -> sorted keys of all its
/// tasks, recorded when the specs still lived in examples/, one file each; `realistic_cpu` from
/// examples/realistic_cpu.toml) still plans exactly those keys, so the run folders behind docs/evidence.md
/// keep matching their specs: moving a spec, fixing its relative paths or folding it into a spec with a
/// `variant` axis changes no task. A spec of experiments/evidence/ without that axis must plan its recorded
/// keys; for a folded spec ([`FOLDED_EVIDENCE`]), the target tasks of the points labelled
/// `variant=<name>` plus the prior tasks they depend on must equal the keys recorded for
/// `realistic_ablation_<name>`, and its variants are exactly the listed ones.
#[test]
fn moved_specs_keep_their_task_keys() {
    let evidence = Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments/evidence");
    let text = std::fs::read_to_string(evidence.join("task_keys.json")).unwrap();
    let recorded: BTreeMap<String, Vec<String>> = serde_json::from_str(&text).unwrap();
    // Recorded name -> (file, variant).
    let mut folded = BTreeMap::new();
    for (file, variants) in FOLDED_EVIDENCE {
        for v in *variants {
            let old = format!("realistic_ablation_{v}");
            assert!(
                folded.insert(old.clone(), (*file, *v)).is_none(),
                "{old} folded twice"
            );
        }
    }
    // Spec name -> (file, plan) of every spec in experiments/evidence/.
    let mut plans = BTreeMap::new();
    for path in spec_files(&evidence) {
        let (spec, p) = plan_spec_file(&path);
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let listed = FOLDED_EVIDENCE.iter().find(|(f, _)| *f == file);
        match (&spec.sweep.variant, listed) {
            (None, None) => assert!(
                recorded.contains_key(&spec.name),
                "{file}: no recorded keys for '{}'",
                spec.name
            ),
            (Some(v), Some((_, names))) => {
                assert!(
                    !recorded.contains_key(&spec.name),
                    "{file}: a folded spec takes a new name (a new run folder)"
                );
                let want: BTreeSet<&str> = names.iter().copied().collect();
                let have: BTreeSet<&str> = v.keys().map(String::as_str).collect();
                assert_eq!(have, want, "{file}: variants");
            }
            _ => panic!(
                "{file}: a spec with a variant axis is listed in FOLDED_EVIDENCE, and only such"
            ),
        }
        assert!(
            plans.insert(spec.name.clone(), (file.clone(), p)).is_none(),
            "{file}: name twice"
        );
    }
    let file_plan = |file: &str| -> &Plan {
        plans
            .values()
            .find(|(f, _)| f == file)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("{file} is not in experiments/evidence/"))
    };
    for (name, want) in &recorded {
        let (what, keys): (String, Vec<String>) = match folded.get(name) {
            Some((file, variant)) => {
                let p = file_plan(file);
                let points: Vec<u32> = p
                    .sweep_points
                    .iter()
                    .filter(|s| s.values.get("variant") == Some(&serde_json::json!(variant)))
                    .map(|s| s.index)
                    .collect();
                assert!(!points.is_empty(), "{file}: no point of variant {variant}");
                for i in &points {
                    assert!(
                        p.sweep_points[*i as usize]
                            .label
                            .split(',')
                            .any(|l| l == format!("variant={variant}")),
                        "{file}: point {i} is labelled variant={variant}"
                    );
                }
                let mut keys = BTreeSet::new();
                for i in &points {
                    for t in p.targets_of(*i) {
                        keys.insert(t.key.clone());
                        for d in &t.deps {
                            assert!(
                                p.tasks.iter().any(|u| u.key == *d && u.kind == TaskKind::Prior),
                                "{file}: a target of {variant} depends on {d}, not a prior task of the plan"
                            );
                            keys.insert(d.clone());
                        }
                    }
                }
                (
                    format!("{file}, variant {variant}"),
                    keys.into_iter().collect(),
                )
            }
            None => {
                let (file, p) = plans
                    .get(name)
                    .unwrap_or_else(|| panic!("'{name}' is recorded but neither a spec nor a variant of experiments/evidence/"));
                let mut keys: Vec<String> = p.tasks.iter().map(|t| t.key.clone()).collect();
                keys.sort();
                (file.clone(), keys)
            }
        };
        let (now, then): (BTreeSet<_>, BTreeSet<_>) =
            (keys.iter().collect(), want.iter().collect());
        assert!(
            keys == *want,
            "{what} (recorded as {name}): {} tasks now, {} recorded; {} keys new, {} gone",
            keys.len(),
            want.len(),
            now.difference(&then).count(),
            then.difference(&now).count()
        );
    }
    // A folded spec plans nothing beyond its variants' recorded tasks.
    for (file, variants) in FOLDED_EVIDENCE {
        let all: BTreeSet<&String> = variants
            .iter()
            .flat_map(|v| &recorded[&format!("realistic_ablation_{v}")])
            .collect();
        let planned: BTreeSet<&String> = file_plan(file).tasks.iter().map(|t| &t.key).collect();
        assert_eq!(planned, all, "{file}: tasks beyond its variants'");
    }
}

#[test]
fn dataset_summary_hashes_the_file_and_reads_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.safetensors");
    let full = composite_summary("tas");
    let casme: Vec<SampleMeta> = full
        .samples
        .into_iter()
        .filter(|s| s.dataset == Dataset::Casme2)
        .collect();
    let three: BTreeSet<String> = casme
        .iter()
        .map(|s| s.subject.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .take(3)
        .collect();
    let samples: Vec<SampleMeta> = casme
        .into_iter()
        .filter(|s| three.contains(&s.subject))
        .collect();
    let n = samples.len();
    let mut info = full.info;
    info.size = 4;
    let p = Prepared {
        info,
        samples: samples.clone(),
        shape: [n, 2, 10, 4, 4],
        flow: (0..n * 320).map(|x| x as f32).collect(),
        groups: Default::default(),
    };
    p.write(&path).unwrap();
    let s = dataset_summary(&path).unwrap();
    assert_eq!(s.hash, sha256_hex(&std::fs::read(&path).unwrap()));
    assert_eq!(s.samples, samples);
    assert_eq!(s.info.keyframes, "tas");
    // Through a spec: the tag defaults to the file's key-frame method; folds come from the header.
    let spec_path = dir.path().join("e.toml");
    std::fs::write(
        &spec_path,
        "name = \"e\"\ndataset = \"tiny.safetensors\"\nscheme = \"megc3\"\n",
    )
    .unwrap();
    let spec = crate::spec::load_spec(&spec_path).unwrap();
    let plan = plan_spec(&spec).unwrap();
    assert_eq!(plan.datasets[&s.hash], path);
    assert_eq!(plan.folds.len(), 3);
    assert!(plan
        .folds
        .iter()
        .all(|f| f.to_string().starts_with("casme2/")));
    assert!(plan.tasks.iter().all(|t| t.payload.dataset_hash == s.hash));
    // A missing dataset is refused with its path.
    std::fs::write(
        &spec_path,
        "name = \"e\"\ndataset = \"nope.safetensors\"\nscheme = \"megc3\"\n",
    )
    .unwrap();
    let spec = crate::spec::load_spec(&spec_path).unwrap();
    let e = plan_spec(&spec).unwrap_err().to_string();
    assert!(
        e.contains("nope.safetensors") && e.contains("no such file"),
        "{e}"
    );
    // A corrupt one too.
    std::fs::write(dir.path().join("nope.safetensors"), b"garbage!garbage!").unwrap();
    let e = plan_spec(&spec).unwrap_err().to_string();
    assert!(e.contains("nope.safetensors"), "{e}");
}

/// The simulated trainer (the orchestration tests' stand-in for the engine) gives results that depend only
/// on the task, and not trivially.
#[test]
fn results_depend_only_on_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("d.safetensors");
    mer_worker::agent::sim::write_sim_dataset(&ds, 2, 3).unwrap();
    let spec = crate::spec::parse_spec(
        "s.toml",
        &format!(
            "name = \"s\"\ndataset = {:?}\nscheme = \"megc3\"\n[sweep]\nalpha = [1, 2]\n",
            ds
        ),
    )
    .unwrap();
    let plan = crate::plan::plan_spec(&spec).unwrap();
    assert_eq!(plan.folds.len(), 6);
    let a = mer_worker::agent::sim::SimTrainer::new(std::time::Duration::ZERO, None);
    let b = mer_worker::agent::sim::SimTrainer::new(std::time::Duration::from_millis(4), None);
    let ra = mer_worker::agent::sim::reference_run(
        &plan.task_specs(),
        &plan.datasets,
        &a,
        &dir.path().join("a"),
    )
    .unwrap();
    let rb = mer_worker::agent::sim::reference_run(
        &plan.task_specs(),
        &plan.datasets,
        &b,
        &dir.path().join("b"),
    )
    .unwrap();
    assert_eq!(ra, rb);
    assert_eq!(ra.len(), 12);
    assert_eq!(a.executions(), 18);
    // Not trivially all right or all wrong, and the two sweep points differ.
    let res = crate::results::aggregate::aggregate(&plan, &ra);
    let uf1: Vec<f64> = res
        .sweep_points
        .iter()
        .map(|p| p.scores.as_ref().unwrap().uf1)
        .collect();
    assert!(
        uf1.iter().all(|&u| u > 0.2) && uf1.iter().any(|&u| u < 1.0),
        "{uf1:?}"
    );
    assert_ne!(
        res.sweep_points[0].predictions,
        res.sweep_points[1].predictions
    );
}

#[test]
fn variants_are_merged_partial_train_tables_with_the_keys_of_the_spec_they_stand_for() {
    let base = "[train.model]\nwidths = [8, 16, 32, 32, 64]\ninput_size = 48\n\
                [train.target.loss]\nkind = \"focal\"\ngamma = 2.0\nalpha = 2.0\n";
    let sweep = "[sweep]\nseeds = [1, 2]\n\
                 [sweep.variant]\nreference = {}\n\
                 ce = { target = { loss = { kind = \"cross_entropy\" } } }\n\
                 torch = { model = { init = \"torch\", groups = 2 } }\n";
    let p = plan(&format!("{base}{sweep}"));
    let labels: Vec<&str> = p.sweep_points.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        vec![
            "variant=ce,seed=1",
            "variant=ce,seed=2",
            "variant=reference,seed=1",
            "variant=reference,seed=2",
            "variant=torch,seed=1",
            "variant=torch,seed=2"
        ]
    );
    // `target.loss` is replaced whole (no focal gamma left on cross-entropy); other tables merge key by
    // key (the widths of [train] stay beside the variant's init and groups).
    assert_eq!(
        p.sweep_points[0].train.target.loss,
        mer_shared::train_config::LossConfig::CrossEntropy
    );
    let torch = &p.sweep_points[4].train.model;
    assert_eq!(torch.widths, [8, 16, 32, 32, 64]);
    assert_eq!((torch.groups, torch.input_size), (2, 48));
    // Each point's tasks are exactly those of the spec its merged [train] stands for.
    let keys =
        |p: &Plan, i: u32| -> Vec<String> { p.targets_of(i).map(|t| t.key.clone()).collect() };
    let alone = |base: &str| plan(&format!("{base}[sweep]\nseeds = [1, 2]\n"));
    assert_eq!(keys(&p, 2), keys(&alone(base), 0));
    assert_eq!(keys(&p, 3), keys(&alone(base), 1));
    let torch_base = base.replace(
        "input_size = 48\n",
        "input_size = 48\ninit = \"torch\"\ngroups = 2\n",
    );
    assert_eq!(keys(&p, 5), keys(&alone(&torch_base), 1));
    let ce_base = base.replace(
        "kind = \"focal\"\ngamma = 2.0\nalpha = 2.0\n",
        "kind = \"cross_entropy\"\n",
    );
    assert_eq!(keys(&p, 0), keys(&alone(&ce_base), 0));
    // The cross-entropy variant shares its prior tasks with the reference (same tower and prior
    // settings); the torch variant's tower differs, so it has its own.
    let priors: BTreeSet<&str> = p
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Prior)
        .map(|t| t.key.as_str())
        .collect();
    assert_eq!(priors.len(), 68 * 2 * 2);
    // An axis that is not swept takes the variant's value (here the seed).
    let p = plan("[train]\nseed = 3\n[sweep.variant]\nbase = {}\nother = { seed = 9 }\n");
    let seeds: Vec<u64> = p.sweep_points.iter().map(|s| s.train.seed).collect();
    assert_eq!(seeds, vec![3, 9]);
    // A spec without the axis is unchanged by it: same points, labels and keys as before.
    assert_eq!(alone(base).sweep_points[0].label, "seed=1");
}

#[test]
fn bad_variants_are_named_and_located() {
    let err = |sweep: &str| {
        parse_spec("s.toml", &format!("{HEAD}[sweep.variant]\n{sweep}"))
            .unwrap_err()
            .to_string()
    };
    let e = err("ok = {}\ntypo = { model = { kernal = [1, 5] } }\n");
    assert!(e.starts_with("s.toml:6:"), "{e}");
    assert!(
        e.contains("sweep.variant.typo") && e.contains("kernal"),
        "{e}"
    );
    let e = err("odd = { model = { groups = 3 } }\n");
    assert!(
        e.contains("sweep.variant.odd") && e.contains("model.groups"),
        "{e}"
    );
    let e = err("deep = { model = { widths = [8, 16] }, target = { frozen_layers = 3 } }\n");
    assert!(e.contains("frozen_layers 3 is out of range"), "{e}");
    let e = err("\"a b\" = {}\n");
    assert!(e.contains("variant name 'a b'"), "{e}");
    let e = parse_spec("s.toml", &format!("{HEAD}[sweep]\nvariant = {{}}\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sweep.variant is empty"), "{e}");
    // The frozen_layers axis is bounded by each variant's own depth.
    let e = parse_spec(
        "s.toml",
        &format!("{HEAD}[sweep]\nfrozen_layers = [3]\n[sweep.variant]\nshallow = {{ model = {{ widths = [8, 16], input_size = 48 }} }}\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("SinC3D has 2 conv layers"), "{e}");
}

#[test]
fn folds_keeps_the_chosen_folds_with_the_full_runs_task_keys() {
    let full = plan("[sweep]\nprior = [true, false]\n");
    let chosen = [full.folds[3].to_string(), full.folds[40].to_string()];
    let p = plan(&format!(
        "folds = [\"{}\", \"{}\"]\n[sweep]\nprior = [true, false]\n",
        chosen[1], chosen[0]
    ));
    assert_eq!(p.folds, vec![full.folds[3].clone(), full.folds[40].clone()]);
    assert_eq!((p.folds_of_data, full.folds_of_data), (Some(68), None));
    // The results and the report say that only a subset ran.
    let res = crate::results::aggregate::aggregate(&p, &Default::default());
    let scope = crate::results::sections::scope(&res);
    assert!(
        scope.contains("Only 2 of the data's 68 test folds ran"),
        "{scope}"
    );
    let full_res = crate::results::aggregate::aggregate(&full, &Default::default());
    assert!(!crate::results::sections::scope(&full_res).contains("test folds ran"));
    // One prior and two targets per chosen fold, each the very task of the full plan (so a subset run
    // reuses, and is reused by, a run of every fold).
    assert_eq!(p.tasks.len(), 2 * 3);
    let full_keys: BTreeSet<&String> = full.tasks.iter().map(|t| &t.key).collect();
    for t in &p.tasks {
        assert!(
            chosen.contains(&t.payload.test_subject),
            "{}",
            t.payload.test_subject
        );
        assert!(full_keys.contains(&t.key));
    }
    // A fold the data does not have is refused at its place in the spec, with the folds it has.
    let spec = parse_spec(
        "s.toml",
        &format!("{HEAD}folds = [\"{}\", \"smic/nobody\"]\n", chosen[0]),
    )
    .unwrap();
    let e = expand(&spec, &composite_summary("adaptive"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("s.toml:4:")
            && e.contains("'smic/nobody' is not a leave-one-subject-out fold"),
        "{e}"
    );
    assert!(e.contains(&chosen[0]), "{e}");
    for (extra, msg) in [
        ("folds = []\n", "folds is empty"),
        (
            &format!("folds = [\"{0}\", \"{0}\"]\n", chosen[0]) as &str,
            "is listed twice",
        ),
    ] {
        let e = parse_spec("s.toml", &format!("{HEAD}{extra}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(msg), "{e}");
    }
}
