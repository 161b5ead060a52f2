//! Helpers the root crate's integration tests share (`mod support;` in each; each test crate uses a
//! part of it): running the built `mer` binary ([`mer`], [`mer_in`]), reading the result files of a run
//! folder ([`read_tree`]), and, as [`cluster`], the coordinator's own test harness (a sim dataset and
//! spec, an in-process cluster), compiled in through `#[path]` so that both crates use one copy.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

#[path = "../../coordinator/tests/support/mod.rs"]
pub mod cluster;

/// Runs `mer args`: whether it succeeded, its stdout and its stderr.
pub fn mer(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(args)
        .output()
        .expect("run mer");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs `mer args` in `cwd`, which must succeed; returns its stdout.
pub fn mer_in(args: &[&str], cwd: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run mer");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "mer {args:?} failed:\n{out}\n{err}");
    out
}

/// The result files under `root` (`results.json`, `summary.md` and the prediction files), by path
/// relative to it, without descending into the folders named in `skip`.
pub fn read_tree(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                if !skip.contains(&name.as_str()) {
                    stack.push(p);
                }
            } else if name == "results.json"
                || name == "summary.md"
                || p.parent().unwrap().ends_with("predictions")
            {
                out.insert(
                    p.strip_prefix(root).unwrap().to_string_lossy().to_string(),
                    std::fs::read_to_string(&p).unwrap(),
                );
            }
        }
    }
    out
}
