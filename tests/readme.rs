//! The README and the docs as a reader meets them: every `mer` command in a README code block names a
//! real subcommand whose `--help` lists each flag the line uses, every script it names exists, and every
//! relative link in README.md and docs/*.md resolves to a file (and, with `#anchor`, to a heading of that
//! file, slugged as GitHub does).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shell lines of the ```sh blocks of `text`, continuations joined, comments dropped.
fn shell_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = line.trim() == "```sh" || line.trim() == "```bash";
            continue;
        }
        if !inside {
            continue;
        }
        let code = line.split(" #").next().unwrap_or("").trim_end();
        if let Some(c) = code.strip_suffix('\\') {
            cur.push_str(c);
            cur.push(' ');
            continue;
        }
        cur.push_str(code);
        if !cur.trim().is_empty() {
            out.push(cur.trim().to_string());
        }
        cur.clear();
    }
    out
}

fn help(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_mer"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run mer");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
fn every_readme_command_parses() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = shell_lines(&text);
    assert!(lines.len() >= 5, "{lines:?}");
    let mut checked = 0;
    for line in &lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"mer") => {}
            Some(w) if w.starts_with("./scripts/") => {
                assert!(root().join(&w[2..]).is_file(), "{line}: no {w}");
                continue;
            }
            _ => continue,
        }
        // The subcommand path: the words after `mer` up to the first flag or argument that is not one.
        let mut path: Vec<&str> = Vec::new();
        for w in &words[1..] {
            if w.starts_with('-') || w.contains('/') || w.contains('.') {
                break;
            }
            let mut next = path.clone();
            next.push(w);
            if help(&next).0 {
                path = next;
            } else {
                break;
            }
        }
        assert!(!path.is_empty(), "{line}: no such subcommand");
        let (ok, h) = help(&path);
        assert!(ok, "{line}");
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            let name = flag.split('=').next().unwrap_or(flag);
            assert!(
                h.contains(name),
                "{line}: `mer {}` has no {name}",
                path.join(" ")
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "checked {checked} commands");
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(md: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(md).unwrap_or_default();
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if !inside && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The `(target)` of every `[text](target)` outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        if inside {
            continue;
        }
        let line: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

/// README.md and every docs/*.md.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    files
}

#[test]
fn every_link_in_the_readme_and_docs_resolves() {
    let files = markdown_files();
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for l in links(&text) {
            if l.starts_with("http://") || l.starts_with("https://") || l.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match l.split_once('#') {
                Some((a, b)) => (a, Some(b)),
                None => (l.as_str(), None),
            };
            let target = if file.is_empty() {
                f.clone()
            } else {
                f.parent().unwrap().join(file)
            };
            if !target.exists() {
                bad.push(format!("{}: {l}: no such file", f.display()));
                continue;
            }
            if let Some(a) = anchor {
                if !anchors(&target).iter().any(|h| h == a) {
                    bad.push(format!("{}: {l}: no heading #{a}", f.display()));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn markdown_prose_lines_stay_under_120_characters() {
    let files = markdown_files();
    let mut long = Vec::new();
    for f in &files {
        let mut inside = false;
        for (i, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            if line.trim_start().starts_with("```") {
                inside = !inside;
                continue;
            }
            if !inside && !line.trim_start().starts_with('|') && line.chars().count() > 120 {
                long.push(format!("{}:{}", f.display(), i + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "lines over 120 characters:\n{}",
        long.join("\n")
    );
}
