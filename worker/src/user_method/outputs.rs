//! Checks on what a user method's command wrote back: `predictions.csv` (one row per test sample, a
//! class in range, probabilities that are finite and sum to 1) and the optional `epoch_predictions.csv`
//! (every test sample once per epoch, epochs 0, 1, ... in order). Every refusal names the file and line.

use super::folder::TestSample;
use std::collections::HashMap;
use std::path::Path;

/// How far a probability row's sum may be from 1.
pub const PROB_SUM_TOLERANCE: f64 = 1e-3;

/// One test sample's prediction, in the folder's test order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The predicted class.
    pub pred: usize,
    /// Class probabilities (empty when the command wrote none).
    pub probs: Vec<f32>,
}

/// A refusal: the file, the 1-based line (0: the file as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputError {
    /// The file's name in the task folder.
    pub file: String,
    /// 1-based line, 0 for the whole file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{} line {}: {}", self.file, self.line, self.message)
        }
    }
}

/// The lines of a CSV file with their 1-based numbers, blank lines left out.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// Reads `predictions.csv` at `path` against the test samples and `classes`.
pub fn read_predictions(
    path: &Path,
    test: &[TestSample],
    classes: usize,
) -> Result<Vec<Prediction>, OutputError> {
    let file = file_name(path);
    let err = |line: usize, message: String| OutputError {
        file: file.clone(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        err(
            0,
            if e.kind() == std::io::ErrorKind::NotFound {
                "the command exited successfully but wrote no predictions".to_string()
            } else {
                format!("unreadable: {e}")
            },
        )
    })?;
    let mut rows = lines(&text);
    let (hl, header) = rows
        .next()
        .ok_or_else(|| err(0, "the file is empty".into()))?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let probs_header: Vec<String> = (0..classes).map(|k| format!("p{k}")).collect();
    let with_probs = match cols.as_slice() {
        ["sample_id", "pred"] => false,
        ["sample_id", "pred", rest @ ..] if rest.iter().eq(probs_header.iter()) => true,
        _ => {
            return Err(err(
                hl,
                format!(
                    "the header must be `sample_id,pred` or `sample_id,pred,{}`, not `{header}`",
                    probs_header.join(",")
                ),
            ))
        }
    };
    let position: HashMap<&str, usize> = test
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut out: Vec<Option<(usize, Prediction)>> = vec![None; test.len()];
    for (ln, line) in rows {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != cols.len() {
            return Err(err(
                ln,
                format!("{} fields, the header has {}", f.len(), cols.len()),
            ));
        }
        let &i = position
            .get(f[0])
            .ok_or_else(|| err(ln, format!("'{}' is not a test sample of this task", f[0])))?;
        if let Some((first, _)) = &out[i] {
            return Err(err(
                ln,
                format!("sample {} is predicted twice (first on line {first})", f[0]),
            ));
        }
        let pred = parse_class(f[1], classes).map_err(|m| err(ln, m))?;
        let probs = if with_probs {
            parse_probs(&f[2..]).map_err(|m| err(ln, m))?
        } else {
            vec![]
        };
        out[i] = Some((ln, Prediction { pred, probs }));
    }
    let missing: Vec<&str> = out
        .iter()
        .zip(test)
        .filter(|(p, _)| p.is_none())
        .map(|(_, t)| t.id.as_str())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).copied().collect();
        return Err(err(
            0,
            format!(
                "{} of {} test samples have no prediction ({}{})",
                missing.len(),
                test.len(),
                shown.join(", "),
                if missing.len() > 5 { ", ..." } else { "" }
            ),
        ));
    }
    Ok(out.into_iter().flatten().map(|(_, p)| p).collect())
}

/// Reads `epoch_predictions.csv` at `path`: per epoch (0, 1, ...), the predicted class of every test
/// sample in the folder's test order. `Ok(None)` when the command wrote none.
pub fn read_epoch_predictions(
    path: &Path,
    test: &[TestSample],
    classes: usize,
) -> Result<Option<Vec<Vec<usize>>>, OutputError> {
    let file = file_name(path);
    let err = |line: usize, message: String| OutputError {
        file: file.clone(),
        line,
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(0, format!("unreadable: {e}"))),
    };
    let mut rows = lines(&text);
    let Some((hl, header)) = rows.next() else {
        return Ok(None);
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    if cols != ["epoch", "sample_id", "pred"] {
        return Err(err(
            hl,
            format!("the header must be `epoch,sample_id,pred`, not `{header}`"),
        ));
    }
    let position: HashMap<&str, usize> = test
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut epochs: Vec<Vec<Option<usize>>> = Vec::new();
    let mut last_line = hl;
    for (ln, line) in rows {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 3 {
            return Err(err(ln, format!("{} fields, the header has 3", f.len())));
        }
        let epoch: usize = f[0]
            .parse()
            .map_err(|_| err(ln, format!("epoch '{}' is not a whole number", f[0])))?;
        if epoch + 1 < epochs.len() || epoch > epochs.len() {
            return Err(err(
                ln,
                format!(
                    "epoch {epoch} out of order (epochs run 0, 1, 2, ... and the last one seen is {})",
                    epochs.len() as i64 - 1
                ),
            ));
        }
        if epoch == epochs.len() {
            if let Some(prev) = epochs.last() {
                check_complete(prev, test).map_err(|m| err(ln, m))?;
            }
            epochs.push(vec![None; test.len()]);
        }
        let &i = position
            .get(f[1])
            .ok_or_else(|| err(ln, format!("'{}' is not a test sample of this task", f[1])))?;
        let row = &mut epochs[epoch];
        if row[i].is_some() {
            return Err(err(
                ln,
                format!("sample {} is predicted twice in epoch {epoch}", f[1]),
            ));
        }
        row[i] = Some(parse_class(f[2], classes).map_err(|m| err(ln, m))?);
        last_line = ln;
    }
    if let Some(prev) = epochs.last() {
        check_complete(prev, test).map_err(|m| err(last_line, m))?;
    }
    Ok(Some(
        epochs
            .into_iter()
            .map(|e| e.into_iter().flatten().collect())
            .collect(),
    ))
}

fn check_complete(row: &[Option<usize>], test: &[TestSample]) -> Result<(), String> {
    let missing = row.iter().filter(|p| p.is_none()).count();
    if missing == 0 {
        return Ok(());
    }
    let first = row
        .iter()
        .zip(test)
        .find(|(p, _)| p.is_none())
        .map_or("", |(_, t)| t.id.as_str());
    Err(format!(
        "the epoch before this line misses {missing} test sample(s) (first: {first})"
    ))
}

fn parse_class(s: &str, classes: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(k) if k < classes => Ok(k),
        _ => Err(format!(
            "class '{s}' is out of range: classes are 0..{} (task.json `classes`)",
            classes - 1
        )),
    }
}

fn parse_probs(fields: &[&str]) -> Result<Vec<f32>, String> {
    let mut sum = 0.0f64;
    let mut out = Vec::with_capacity(fields.len());
    for (k, f) in fields.iter().enumerate() {
        let p: f64 = f
            .parse()
            .map_err(|_| format!("p{k} '{f}' is not a number"))?;
        if !p.is_finite() || !(0.0..=1.0).contains(&p) {
            return Err(format!(
                "p{k} = {f} is not a probability (finite, in [0, 1])"
            ));
        }
        sum += p;
        out.push(p as f32);
    }
    if (sum - 1.0).abs() > PROB_SUM_TOLERANCE {
        return Err(format!(
            "the probabilities sum to {sum}, not 1 (within {PROB_SUM_TOLERANCE})"
        ));
    }
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_samples(n: usize) -> Vec<TestSample> {
        (0..n)
            .map(|i| TestSample {
                id: format!("t{i:04}"),
                index: 10 + i,
                label: i % 3,
            })
            .collect()
    }

    fn read(text: &str) -> Result<Vec<Prediction>, OutputError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("predictions.csv");
        std::fs::write(&p, text).unwrap();
        read_predictions(&p, &test_samples(3), 3)
    }

    fn read_epochs(text: &str) -> Result<Option<Vec<Vec<usize>>>, OutputError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("epoch_predictions.csv");
        std::fs::write(&p, text).unwrap();
        read_epoch_predictions(&p, &test_samples(2), 3)
    }

    #[test]
    fn good_predictions_are_read_in_test_order() {
        let p = read("sample_id,pred\nt0002,1\nt0000,0\r\nt0001,2\n\n").unwrap();
        let preds: Vec<usize> = p.iter().map(|x| x.pred).collect();
        assert_eq!(preds, vec![0, 2, 1]);
        let p =
            read("sample_id,pred,p0,p1,p2\nt0000,1,0.2,0.7,0.1\nt0001,0,1,0,0\nt0002,2,0,0,1\n")
                .unwrap();
        assert_eq!(p[0].probs, vec![0.2, 0.7, 0.1]);
    }

    #[test]
    fn each_bad_output_is_refused_with_its_file_and_line() {
        let cases = [
            (
                "sample_id,pred\nt0000,0\nt0001,1\n",
                0,
                "1 of 3 test samples have no prediction (t0002)",
            ),
            (
                "sample_id,pred\nt0000,0\nt0001,1\nt0000,2\nt0002,1\n",
                4,
                "predicted twice (first on line 2)",
            ),
            (
                "sample_id,pred\nt0000,0\nt9999,1\n",
                3,
                "'t9999' is not a test sample",
            ),
            ("sample_id,pred\nt0000,3\n", 2, "class '3' is out of range"),
            ("sample_id,pred\nt0000,-1\n", 2, "out of range"),
            (
                "sample_id,pred,p0,p1,p2\nt0000,0,NaN,0.5,0.5\n",
                2,
                "not a probability",
            ),
            (
                "sample_id,pred,p0,p1,p2\nt0000,0,inf,0,0\n",
                2,
                "not a probability",
            ),
            (
                "sample_id,pred,p0,p1,p2\nt0000,0,0.5,0.4,0.05\n",
                2,
                "sum to",
            ),
            (
                "sample_id,pred,p0,p1\nt0000,0,0.5,0.5\n",
                1,
                "header must be",
            ),
            ("sample_id,pred\nt0000,0,1\n", 2, "3 fields"),
            ("", 0, "empty"),
        ];
        for (text, line, needle) in cases {
            let e = read(text).unwrap_err();
            assert_eq!(e.file, "predictions.csv");
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let e =
            read_predictions(&dir.path().join("predictions.csv"), &test_samples(1), 3).unwrap_err();
        assert!(e.to_string().contains("wrote no predictions"), "{e}");
    }

    #[test]
    fn epoch_predictions_are_complete_per_epoch_and_in_order() {
        let e = read_epochs("epoch,sample_id,pred\n0,t0001,1\n0,t0000,2\n1,t0000,0\n1,t0001,0\n")
            .unwrap()
            .unwrap();
        assert_eq!(e, vec![vec![2, 1], vec![0, 0]]);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read_epoch_predictions(&dir.path().join("x.csv"), &test_samples(1), 3),
            Ok(None)
        );
        let cases = [
            (
                "epoch,sample_id,pred\n0,t0000,1\n1,t0000,1\n",
                3,
                "misses 1",
            ),
            (
                "epoch,sample_id,pred\n0,t0000,1\n0,t0001,1\n2,t0000,1\n",
                4,
                "out of order",
            ),
            ("epoch,sample_id,pred\n0,t0000,1\n0,t0000,1\n", 3, "twice"),
            (
                "epoch,sample_id,pred\n0,t0000,1\n0,t0001,7\n",
                3,
                "out of range",
            ),
            ("epoch,sample_id,pred\n0,t0000,1\n", 2, "misses 1"),
            ("epoch,id,pred\n", 1, "header"),
        ];
        for (text, line, needle) in cases {
            let e = read_epochs(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
    }
}
