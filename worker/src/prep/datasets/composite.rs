//! Selection of the MEGC2019 composite: keep exactly the clips of the official list (shipped with the
//! project, `mer_shared::composite`), with the list's 3-class labels. The list is authoritative: a clip the
//! emotion mapping would take in but the list leaves out is dropped, and the list's label wins.

use super::ClipRecord;
use mer_shared::composite::CompositeEntry;
use mer_shared::Dataset;
use std::collections::HashMap;

/// The outcome of applying the composite list to the clips read from disk.
#[derive(Debug, Clone)]
pub struct CompositeSelection {
    /// The list's clips found on disk, in list order, with their megc3 label set from the list.
    pub selected: Vec<ClipRecord>,
    /// List entries with no clip on disk (`dataset/subject/filename`).
    pub missing: Vec<String>,
    /// Clips on disk that the list leaves out (ids), for the log.
    pub left_out: Vec<String>,
}

/// Keeps the clips of `list` (matching by dataset, subject and filename in the list's spelling).
/// Datasets that were not read at all are not reported as missing.
pub fn select(records: Vec<ClipRecord>, list: &[CompositeEntry]) -> CompositeSelection {
    let read_parts: std::collections::BTreeSet<Dataset> =
        records.iter().map(|r| r.dataset).collect();
    let mut by_id: HashMap<String, ClipRecord> = HashMap::new();
    let mut order = Vec::new();
    for r in records {
        order.push(r.id());
        by_id.insert(r.id(), r);
    }
    let mut selected = Vec::new();
    let mut missing = Vec::new();
    for e in list {
        let id = format!("{}/{}/{}", e.dataset, e.subject, e.filename);
        match by_id.remove(&id) {
            Some(mut r) => {
                r.megc3_override = Some(Some(e.label));
                selected.push(r);
            }
            None if read_parts.contains(&e.dataset) => missing.push(id),
            None => {}
        }
    }
    let left_out = order
        .into_iter()
        .filter(|id| by_id.contains_key(id))
        .collect();
    CompositeSelection {
        selected,
        missing,
        left_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn rec(d: Dataset, s: &str, f: &str, emo: &str) -> ClipRecord {
        ClipRecord {
            dataset: d,
            subject: s.into(),
            filename: f.into(),
            emotion: emo.into(),
            objective_class: None,
            onset: 1,
            apex: Some(2),
            offset: 3,
            apex_estimated: false,
            root: PathBuf::new(),
            dir: PathBuf::new(),
            frames: vec![],
            problem: None,
            source: String::new(),
            corrections: vec![],
            megc3_override: None,
        }
    }

    #[test]
    fn list_is_authoritative() {
        let list = vec![
            CompositeEntry {
                dataset: Dataset::Casme2,
                subject: "sub01".into(),
                filename: "EP02_01f".into(),
                label: 1,
            },
            CompositeEntry {
                dataset: Dataset::Casme2,
                subject: "sub01".into(),
                filename: "EP03_02".into(),
                label: 0,
            },
            CompositeEntry {
                dataset: Dataset::Samm,
                subject: "6".into(),
                filename: "006_1_2".into(),
                label: 0,
            },
        ];
        let recs = vec![
            rec(Dataset::Casme2, "sub01", "EP02_01f", "happiness"),
            rec(Dataset::Casme2, "sub01", "EP09_01", "disgust"),
        ];
        let s = select(recs, &list);
        assert_eq!(s.selected.len(), 1);
        assert_eq!(s.selected[0].labels()["megc3"], 1);
        assert_eq!(s.missing, vec!["casme2/sub01/EP03_02"]);
        assert_eq!(s.left_out, vec!["casme2/sub01/EP09_01"]);
        // Without the list the disgust clip would be negative.
        assert_eq!(
            rec(Dataset::Casme2, "sub01", "EP09_01", "disgust").labels()["megc3"],
            0
        );
    }
}
