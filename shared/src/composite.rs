//! The official MEGC2019 composite sample list (442 clips, 68 subjects), shipped with the project
//! (`shared/data/megc2019_combined_3class_gt.csv`: dataset, subject, filename, label; no header).

use crate::dataset::Dataset;
use crate::error::SharedError;
use crate::labels::LabelScheme;
use crate::predictions::{csv_fields, parse_fold, parse_label};

/// The list's text, compiled in.
pub const COMPOSITE_CSV: &str = include_str!("../data/megc2019_combined_3class_gt.csv");

/// One entry of the composite list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompositeEntry {
    /// Dataset part.
    pub dataset: Dataset,
    /// Subject as the list writes it (`s01`, `sub01`, `6`).
    pub subject: String,
    /// Clip name.
    pub filename: String,
    /// MEGC2019 3-class label: 0 negative, 1 positive, 2 surprise.
    pub label: usize,
}

/// Parses a composite list (the shipped one or a user's copy); `file` names it in errors.
pub fn parse_composite(file: &str, text: &str) -> Result<Vec<CompositeEntry>, SharedError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let f = csv_fields(file, ln, line, 4)?;
        let (dataset, subject) = parse_fold(file, ln, f[0], f[1])?;
        let label = parse_label(file, ln, "label", f[3], LabelScheme::Megc3)?;
        out.push(CompositeEntry {
            dataset,
            subject,
            filename: f[2].to_string(),
            label,
        });
    }
    Ok(out)
}

/// The shipped official list.
pub fn composite_list() -> Vec<CompositeEntry> {
    // The shipped file is checked by the unit test below; a parse failure here would be a build defect.
    parse_composite("megc2019_combined_3class_gt.csv", COMPOSITE_CSV).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn shipped_list_has_the_documented_counts() {
        let l = parse_composite("x", COMPOSITE_CSV).unwrap();
        assert_eq!(l.len(), 442);
        let subjects: BTreeSet<_> = l.iter().map(|e| (e.dataset, e.subject.clone())).collect();
        assert_eq!(subjects.len(), 68);
        let mut counts: BTreeMap<Dataset, [usize; 3]> = BTreeMap::new();
        for e in &l {
            counts.entry(e.dataset).or_default()[e.label] += 1;
        }
        assert_eq!(counts[&Dataset::Smic], [70, 51, 43]);
        assert_eq!(counts[&Dataset::Casme2], [88, 32, 25]);
        assert_eq!(counts[&Dataset::Samm], [92, 26, 15]);
    }
}
