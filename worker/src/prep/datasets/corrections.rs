//! Explicit annotation corrections. Known faults of the releases (CASME II rows without an apex, a wrong
//! offset...) are never fixed silently: the user lists each fix in a TOML file passed to
//! `mer prep --corrections FILE`, every applied fix is logged and stored with the sample
//! (`SampleMeta::corrections`), and a fix that matches no clip is an error.
//!
//! ```toml
//! [[correction]]
//! sample = "casme2/sub04/EP12_01f"   # dataset/subject/filename, composite spelling
//! field = "apex"                      # onset | apex | offset | emotion | objective_class | exclude
//! value = "100"                       # new value (ignored for exclude)
//! reason = "apex missing in the coding workbook"
//! ```

use super::ClipRecord;
use crate::error::{Result, WorkerError};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One correction.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Correction {
    /// Sample id `dataset/subject/filename` (composite spelling).
    pub sample: String,
    /// The field to change: `onset`, `apex`, `offset`, `emotion`, `objective_class`, or `exclude`.
    pub field: String,
    /// The new value (frame number, emotion text or class); not needed for `exclude`.
    #[serde(default)]
    pub value: Option<String>,
    /// Why (kept with the sample).
    pub reason: String,
}

/// A corrections file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corrections {
    /// The corrections, applied in order.
    #[serde(default, rename = "correction")]
    pub corrections: Vec<Correction>,
    /// The file they came from.
    #[serde(skip)]
    pub file: PathBuf,
}

impl Corrections {
    /// Reads a corrections TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| WorkerError::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Parses corrections TOML; `path` names the file in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut c: Corrections = toml::from_str(text).map_err(|e| WorkerError::Corrections {
            file: path.into(),
            message: e.to_string(),
        })?;
        c.file = path.to_path_buf();
        for (i, k) in c.corrections.iter().enumerate() {
            let ok = matches!(
                k.field.as_str(),
                "onset" | "apex" | "offset" | "emotion" | "objective_class" | "exclude"
            );
            if !ok {
                return Err(WorkerError::Corrections {
                    file: path.into(),
                    message: format!(
                        "correction {} ({}): unknown field '{}'",
                        i + 1,
                        k.sample,
                        k.field
                    ),
                });
            }
            if k.field != "exclude" && k.value.is_none() {
                return Err(WorkerError::Corrections {
                    file: path.into(),
                    message: format!(
                        "correction {} ({}): field '{}' needs a value",
                        i + 1,
                        k.sample,
                        k.field
                    ),
                });
            }
        }
        Ok(c)
    }

    /// Applies the corrections to the records (logging each); excluded clips are removed. A correction
    /// that matches no clip of the datasets read is an error (a typo must not pass silently), unless its
    /// dataset was not read at all.
    pub fn apply(&self, records: &mut Vec<ClipRecord>) -> Result<()> {
        let parts: std::collections::BTreeSet<String> = records
            .iter()
            .map(|r| r.dataset.key().to_string())
            .collect();
        let mut excluded = std::collections::HashSet::new();
        for (i, k) in self.corrections.iter().enumerate() {
            let err = |m: String| WorkerError::Corrections {
                file: self.file.clone(),
                message: format!("correction {} ({}): {m}", i + 1, k.sample),
            };
            let Some(r) = records.iter_mut().find(|r| r.id() == k.sample) else {
                let part = k.sample.split('/').next().unwrap_or("");
                if parts.contains(part) {
                    return Err(err("no such clip in the dataset read".into()));
                }
                continue;
            };
            let v = k.value.clone().unwrap_or_default();
            let frame = |v: &str| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| err(format!("'{v}' is not a frame number")))
            };
            let before = match k.field.as_str() {
                "onset" => std::mem::replace(&mut r.onset, frame(&v)?).to_string(),
                "apex" => {
                    let old = r
                        .apex
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "none".into());
                    r.apex = Some(frame(&v)?);
                    r.apex_estimated = false;
                    old
                }
                "offset" => std::mem::replace(&mut r.offset, frame(&v)?).to_string(),
                "emotion" => std::mem::replace(&mut r.emotion, v.clone()),
                "objective_class" => {
                    let c = match super::parse_objective_class(&v) {
                        Some(Ok(c)) => c,
                        _ => return Err(err(format!("'{v}' is not an objective class I..VII"))),
                    };
                    r.objective_class
                        .replace(c)
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "none".into())
                }
                _ => {
                    excluded.insert(r.id());
                    String::from("included")
                }
            };
            let note = if k.field == "exclude" {
                format!("excluded ({})", k.reason)
            } else {
                format!("{}: {} -> {} ({})", k.field, before, v, k.reason)
            };
            tracing::warn!(sample = %k.sample, source = %r.source, "annotation correction applied: {note}");
            r.corrections.push(note);
        }
        records.retain(|r| !excluded.contains(&r.id()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_shared::Dataset;

    fn rec() -> ClipRecord {
        ClipRecord {
            dataset: Dataset::Casme2,
            subject: "sub04".into(),
            filename: "EP12_01f".into(),
            emotion: "disgust".into(),
            objective_class: None,
            onset: 10,
            apex: None,
            offset: 60,
            apex_estimated: false,
            root: PathBuf::new(),
            dir: PathBuf::new(),
            frames: vec![],
            problem: None,
            source: "w.xlsx:5".into(),
            corrections: vec![],
            megc3_override: None,
        }
    }

    #[test]
    fn applies_logs_and_rejects_unknown_targets() {
        let text = r#"
[[correction]]
sample = "casme2/sub04/EP12_01f"
field = "apex"
value = "33"
reason = "apex missing"
"#;
        let c = Corrections::parse(Path::new("c.toml"), text).unwrap();
        let mut v = vec![rec()];
        c.apply(&mut v).unwrap();
        assert_eq!(v[0].apex, Some(33));
        assert_eq!(v[0].corrections, vec!["apex: none -> 33 (apex missing)"]);

        let bad = text.replace("EP12_01f", "EP99_01");
        let c = Corrections::parse(Path::new("c.toml"), &bad).unwrap();
        let e = c.apply(&mut vec![rec()]).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("no such clip"), "{e}");

        let ex = "[[correction]]\nsample = \"casme2/sub04/EP12_01f\"\nfield = \"exclude\"\nreason = \"broken\"\n";
        let c = Corrections::parse(Path::new("c.toml"), ex).unwrap();
        let mut v = vec![rec()];
        c.apply(&mut v).unwrap();
        assert!(v.is_empty());

        assert!(Corrections::parse(
            Path::new("c.toml"),
            "[[correction]]\nsample=\"a\"\nfield=\"colour\"\nreason=\"x\"\n"
        )
        .is_err());
        assert!(Corrections::parse(Path::new("c.toml"), "bogus = 1\n").is_err());
    }
}
