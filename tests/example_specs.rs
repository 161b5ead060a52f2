//! Every shipped experiment spec (`examples/*.toml`, `charts/mer/examples/*.toml`) parses with the real
//! spec parser (unknown keys are refused), so the examples cannot drift from the spec format.

use std::path::Path;

#[test]
fn every_example_spec_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in ["examples", "charts/mer/examples"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                let spec = mer_coordinator::spec::parse_spec(&path.display().to_string(), &text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!spec.name.is_empty(), "{}", path.display());
                n += 1;
            }
        }
    }
    assert!(n >= 9, "only {n} example specs found");
}
