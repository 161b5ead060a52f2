//! The official MEGC2019 prediction log: one header line per fold (`casme2 sub01`), then one line per
//! clip of that fold (`EP02_01f 1 1`: file, true label, predicted label).

use crate::dataset::Dataset;
use crate::error::SharedError;
use crate::labels::LabelScheme;
use crate::predictions::{parse_fold, parse_label, perr, PredictionRecord};

/// Writes records as a MEGC2019 log; a fold header is written each time (dataset, subject) changes, so
/// callers pass records grouped by fold (as folds finish).
pub fn write(records: &[PredictionRecord]) -> String {
    let mut out = String::new();
    let mut current: Option<(crate::Dataset, &str)> = None;
    for r in records {
        if current != Some((r.dataset, r.subject.as_str())) {
            out += &format!("{} {}\n", r.dataset, r.subject);
            current = Some((r.dataset, r.subject.as_str()));
        }
        out += &format!("{} {} {}\n", r.filename, r.label, r.pred);
    }
    out
}

/// Reads a MEGC2019 log; `file` names the source in errors.
pub fn parse(
    file: &str,
    text: &str,
    scheme: LabelScheme,
) -> Result<Vec<PredictionRecord>, SharedError> {
    let mut out = Vec::new();
    let mut fold: Option<(Dataset, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.len() {
            0 => continue,
            2 => {
                fold = Some(parse_fold(file, ln, f[0], f[1])?);
            }
            3 => {
                let (d, s) = fold.as_ref().ok_or_else(|| {
                    perr(
                        file,
                        ln,
                        "header",
                        "a sample line before any 'dataset subject' fold header".into(),
                    )
                })?;
                let label = parse_label(file, ln, "label", f[1], scheme)?;
                let pred = parse_label(file, ln, "pred", f[2], scheme)?;
                out.push(PredictionRecord {
                    dataset: *d,
                    subject: s.clone(),
                    filename: f[0].into(),
                    label,
                    pred,
                });
            }
            n => {
                return Err(perr(
                    file,
                    ln,
                    "line",
                    format!("expected 'dataset subject' or 'file label pred', found {n} fields"),
                ))
            }
        }
    }
    if out.is_empty() {
        return Err(SharedError::Input {
            file: file.into(),
            message: "no predictions".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let recs = vec![
            PredictionRecord {
                dataset: Dataset::Casme2,
                subject: "sub01".into(),
                filename: "EP02_01f".into(),
                label: 1,
                pred: 1,
            },
            PredictionRecord {
                dataset: Dataset::Casme2,
                subject: "sub01".into(),
                filename: "EP19_05f".into(),
                label: 0,
                pred: 2,
            },
            PredictionRecord {
                dataset: Dataset::Samm,
                subject: "6".into(),
                filename: "006_1_2".into(),
                label: 0,
                pred: 0,
            },
        ];
        let text = write(&recs);
        assert_eq!(text.lines().next(), Some("casme2 sub01"));
        assert_eq!(parse("l.txt", &text, LabelScheme::Megc3).unwrap(), recs);
    }

    #[test]
    fn errors() {
        let s = LabelScheme::Megc3;
        let e = parse("l.txt", "EP02_01f 1 1\n", s).unwrap_err().to_string();
        assert!(e.contains("l.txt:1: header"), "{e}");
        let e = parse("l.txt", "casme2 sub01\nEP02_01f 1\n", s)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("l.txt:2: dataset") || e.contains("l.txt:2"),
            "{e}"
        );
        let e = parse("l.txt", "casme2 sub01\nEP02_01f 1 one\n", s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("l.txt:2: pred"), "{e}");
        let e = parse("l.txt", "casme2 sub01\nEP02_01f 1 1 1\n", s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("l.txt:2: line"), "{e}");
        assert!(parse("l.txt", "", s).is_err());
    }
}
