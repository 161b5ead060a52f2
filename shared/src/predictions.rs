//! Per-sample predictions, their CSV form, and the pooled score report (`mer score`).

use crate::dataset::Dataset;
use crate::error::SharedError;
use crate::labels::LabelScheme;
use crate::metrics::{ClassScores, Confusion};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The header of the predictions CSV.
pub const CSV_HEADER: &str = "dataset,subject,filename,label,pred";

/// One test sample's true and predicted class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// The dataset part.
    pub dataset: Dataset,
    /// Subject, as the composite list writes it.
    pub subject: String,
    /// Clip name.
    pub filename: String,
    /// True class index.
    pub label: usize,
    /// Predicted class index.
    pub pred: usize,
}

/// Scores of one dataset part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartScores {
    /// Samples of that part.
    pub n: u64,
    /// UF1 on the part's pooled predictions.
    pub uf1: f64,
    /// UAR on the part's pooled predictions.
    pub uar: f64,
    /// Accuracy on the part.
    pub acc: f64,
    /// Macro-F1 on the part.
    pub f1_macro: f64,
}

/// The full report `mer score --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreReport {
    /// Label scheme used.
    pub scheme: LabelScheme,
    /// Number of samples.
    pub n: u64,
    /// Accuracy.
    pub acc: f64,
    /// Pooled UF1.
    pub uf1: f64,
    /// Pooled UAR.
    pub uar: f64,
    /// Pooled macro-F1.
    pub f1_macro: f64,
    /// Per-class scores, keyed by class name.
    pub per_class: BTreeMap<String, ClassScores>,
    /// Per-part scores, only for the parts present in the input.
    pub parts: BTreeMap<String, PartScores>,
    /// The pooled confusion matrix `[true][pred]`.
    pub confusion: Vec<Vec<u64>>,
}

impl ScoreReport {
    /// Scores pooled predictions: the whole set and each dataset part present.
    pub fn compute(scheme: LabelScheme, records: &[PredictionRecord]) -> Result<Self, SharedError> {
        let k = scheme.num_classes();
        let mut all = Confusion::new(k);
        let mut parts: BTreeMap<Dataset, Confusion> = BTreeMap::new();
        for r in records {
            all.add(r.label, r.pred)?;
            parts
                .entry(r.dataset)
                .or_insert_with(|| Confusion::new(k))
                .add(r.label, r.pred)?;
        }
        let s = all.scores();
        let names = scheme.class_names(None);
        let per_class = names
            .iter()
            .zip(s.per_class)
            .map(|(n, c)| (n.to_string(), c))
            .collect();
        let parts = parts
            .into_iter()
            .map(|(d, m)| {
                let p = m.scores();
                (
                    d.key().to_string(),
                    PartScores {
                        n: p.n,
                        uf1: p.uf1,
                        uar: p.uar,
                        acc: p.acc,
                        f1_macro: p.f1_macro,
                    },
                )
            })
            .collect();
        Ok(ScoreReport {
            scheme,
            n: s.n,
            acc: s.acc,
            uf1: s.uf1,
            uar: s.uar,
            f1_macro: s.f1_macro,
            per_class,
            parts,
            confusion: all.rows().to_vec(),
        })
    }

    /// A human-readable table of the report.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{:<10} {:>5} {:>8} {:>8} {:>8}\n",
            "part", "n", "UF1", "UAR", "Acc"
        );
        for (name, p) in &self.parts {
            out += &format!(
                "{:<10} {:>5} {:>8.4} {:>8.4} {:>8.4}\n",
                name, p.n, p.uf1, p.uar, p.acc
            );
        }
        out += &format!(
            "{:<10} {:>5} {:>8.4} {:>8.4} {:>8.4}\n",
            "all", self.n, self.uf1, self.uar, self.acc
        );
        out += "\nclass        support  precision   recall       F1\n";
        for (name, c) in &self.per_class {
            out += &format!(
                "{:<12} {:>7} {:>10.4} {:>8.4} {:>8.4}\n",
                name, c.support, c.precision, c.recall, c.f1
            );
        }
        out
    }
}

/// Parses a predictions CSV (header [`CSV_HEADER`]); `file` names the source in errors.
pub fn parse_csv(
    file: &str,
    text: &str,
    scheme: LabelScheme,
) -> Result<Vec<PredictionRecord>, SharedError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (hline, header) = lines.next().ok_or_else(|| SharedError::Input {
        file: file.into(),
        message: "empty file".into(),
    })?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    if cols != CSV_HEADER.split(',').collect::<Vec<_>>() {
        return Err(perr(
            file,
            hline + 1,
            "header",
            format!("expected '{CSV_HEADER}', found '{}'", header.trim()),
        ));
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        let ln = i + 1;
        let f = csv_fields(file, ln, line, 5)?;
        let (dataset, subject) = parse_fold(file, ln, f[0], f[1])?;
        if f[2].is_empty() {
            return Err(perr(file, ln, "filename", "empty".into()));
        }
        let label = parse_label(file, ln, "label", f[3], scheme)?;
        let pred = parse_label(file, ln, "pred", f[4], scheme)?;
        out.push(PredictionRecord {
            dataset,
            subject,
            filename: f[2].to_string(),
            label,
            pred,
        });
    }
    if out.is_empty() {
        return Err(SharedError::Input {
            file: file.into(),
            message: "no predictions".into(),
        });
    }
    Ok(out)
}

/// Writes predictions as CSV with [`CSV_HEADER`].
pub fn to_csv(records: &[PredictionRecord]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for r in records {
        s += &format!(
            "{},{},{},{},{}\n",
            r.dataset, r.subject, r.filename, r.label, r.pred
        );
    }
    s
}

/// Parses one label field as an integer class of `scheme`.
pub(crate) fn parse_label(
    file: &str,
    line: usize,
    field: &str,
    raw: &str,
    scheme: LabelScheme,
) -> Result<usize, SharedError> {
    let v: i64 = raw
        .parse()
        .map_err(|_| perr(file, line, field, format!("'{raw}' is not an integer")))?;
    scheme
        .check(v)
        .map_err(|e| perr(file, line, field, e.to_string()))
}

/// Splits a CSV line into exactly `n` trimmed fields, or names the line in the error.
pub(crate) fn csv_fields<'a>(
    file: &str,
    line: usize,
    text: &'a str,
    n: usize,
) -> Result<Vec<&'a str>, SharedError> {
    let f: Vec<&str> = text.split(',').map(str::trim).collect();
    if f.len() != n {
        return Err(perr(
            file,
            line,
            "line",
            format!("expected {n} fields, found {}", f.len()),
        ));
    }
    Ok(f)
}

/// Parses a dataset name and a subject (normalised to the composite list's spelling), naming the field
/// that is wrong.
pub(crate) fn parse_fold(
    file: &str,
    line: usize,
    dataset: &str,
    subject: &str,
) -> Result<(Dataset, String), SharedError> {
    let d: Dataset = dataset
        .parse()
        .map_err(|e: SharedError| perr(file, line, "dataset", e.to_string()))?;
    let s = d
        .canonical_subject(subject)
        .map_err(|e| perr(file, line, "subject", e.to_string()))?;
    Ok((d, s))
}

pub(crate) fn perr(file: &str, line: usize, field: &str, message: String) -> SharedError {
    SharedError::Parse {
        file: file.into(),
        line,
        field: field.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(d: Dataset, l: usize, p: usize) -> PredictionRecord {
        PredictionRecord {
            dataset: d,
            subject: d.canonical_subject("1").unwrap(),
            filename: "x".into(),
            label: l,
            pred: p,
        }
    }

    #[test]
    fn csv_round_trip_and_parts() {
        let recs = vec![
            rec(Dataset::Smic, 0, 0),
            rec(Dataset::Smic, 1, 0),
            rec(Dataset::Samm, 2, 2),
        ];
        let back = parse_csv("t.csv", &to_csv(&recs), LabelScheme::Megc3).unwrap();
        assert_eq!(back.len(), 3);
        let r = ScoreReport::compute(LabelScheme::Megc3, &back).unwrap();
        assert_eq!(r.parts.len(), 2);
        assert_eq!(r.parts["smic"].n, 2);
        assert!(!r.parts.contains_key("casme2"));
    }

    #[test]
    fn csv_errors_name_line_and_field() {
        let s = LabelScheme::Megc3;
        let e = parse_csv("p.csv", "dataset,subject,file,label,pred\n", s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.csv:1: header"), "{e}");
        let e = parse_csv(
            "p.csv",
            "dataset,subject,filename,label,pred\nsmic,s1,a,1,x\n",
            s,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("p.csv:2: pred"), "{e}");
        let e = parse_csv(
            "p.csv",
            "dataset,subject,filename,label,pred\nsmic,s1,a,3,1\n",
            s,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("p.csv:2: label") && e.contains("outside"), "{e}");
        let e = parse_csv(
            "p.csv",
            "dataset,subject,filename,label,pred\nfoo,s1,a,1,1\n",
            s,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("p.csv:2: dataset"), "{e}");
        let e = parse_csv(
            "p.csv",
            "dataset,subject,filename,label,pred\nsmic,s1,a,1\n",
            s,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("p.csv:2: line"), "{e}");
    }
}
