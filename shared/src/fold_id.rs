//! The name of a fold: what it leaves out, one subject of a dataset part (leave one subject out) or a whole
//! part (leave one dataset out). One type so that a fold is formatted, parsed and ordered in one place;
//! everywhere a fold is stored or sent (task payloads, fold results, the state database, reports) it is the
//! string `dataset/subject` (LOSO) or `dataset` (LODO) that this type's `Display`, `FromStr` and serde forms
//! read and write.

use crate::error::SharedError;
use crate::Dataset;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// One fold, named by what it tests on: a subject (LOSO) or a whole dataset part (LODO). Ordered by
/// dataset part (a part's own fold first), then naturally by subject name (`sub2` before `sub10`, `6`
/// before `11`), the one order of folds in plans, reports and `mer train-fold --list-folds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FoldId {
    dataset: Dataset,
    /// Empty for a whole-part fold.
    subject: String,
}

impl FoldId {
    /// The fold of `subject` of dataset part `dataset`.
    pub fn new(dataset: Dataset, subject: impl Into<String>) -> Self {
        FoldId {
            dataset,
            subject: subject.into(),
        }
    }

    /// The leave-one-dataset-out fold of part `dataset`: it tests on every subject of the part.
    pub fn part(dataset: Dataset) -> Self {
        FoldId::new(dataset, "")
    }

    /// True for a whole-part (LODO) fold.
    pub fn is_part(&self) -> bool {
        self.subject.is_empty()
    }

    /// The dataset part.
    pub fn dataset(&self) -> Dataset {
        self.dataset
    }

    /// The subject, as the dataset names it (empty for a whole-part fold).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject name split into its non-digit prefix and the number after it, for natural order.
    fn natural(&self) -> (&str, Option<u64>) {
        let digits = self
            .subject
            .trim_start_matches(|c: char| !c.is_ascii_digit());
        let prefix = &self.subject[..self.subject.len() - digits.len()];
        (prefix, digits.parse().ok())
    }
}

impl fmt::Display for FoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_part() {
            write!(f, "{}", self.dataset)
        } else {
            write!(f, "{}/{}", self.dataset, self.subject)
        }
    }
}

impl FromStr for FoldId {
    type Err = SharedError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((d, subject)) = s.split_once('/') else {
            return Ok(FoldId::part(s.parse()?));
        };
        if subject.is_empty() || subject.contains('/') {
            return Err(SharedError::invalid(
                format!("fold '{s}'"),
                "expected dataset/subject with a non-empty subject",
            ));
        }
        Ok(FoldId::new(d.parse()?, subject))
    }
}

impl Ord for FoldId {
    fn cmp(&self, o: &Self) -> Ordering {
        self.dataset
            .cmp(&o.dataset)
            .then_with(|| self.natural().cmp(&o.natural()))
            .then_with(|| self.subject.cmp(&o.subject))
    }
}

impl PartialOrd for FoldId {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq<str> for FoldId {
    fn eq(&self, o: &str) -> bool {
        match o.split_once('/') {
            Some((d, s)) => d == self.dataset.key() && s == self.subject,
            None => self.is_part() && o == self.dataset.key(),
        }
    }
}

impl PartialEq<&str> for FoldId {
    fn eq(&self, o: &&str) -> bool {
        *self == **o
    }
}

impl PartialEq<FoldId> for String {
    fn eq(&self, o: &FoldId) -> bool {
        *o == *self.as_str()
    }
}

impl PartialEq<FoldId> for str {
    fn eq(&self, o: &FoldId) -> bool {
        *o == *self
    }
}

impl Serialize for FoldId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FoldId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_reads_and_writes_dataset_slash_subject() {
        let f: FoldId = "samm/006".parse().unwrap();
        assert_eq!(f, FoldId::new(Dataset::Samm, "006"));
        assert_eq!(f.to_string(), "samm/006");
        assert_eq!(serde_json::to_string(&f).unwrap(), "\"samm/006\"");
        assert_eq!(serde_json::from_str::<FoldId>("\"samm/006\"").unwrap(), f);
        assert!(f == "samm/006" && f != "samm/007" && f != "samm");
        let part: FoldId = "samm".parse().unwrap();
        assert!(part.is_part() && part == FoldId::part(Dataset::Samm) && part == "samm");
        assert_eq!(part.to_string(), "samm");
        for bad in ["nope", "nope/x", "samm/", "casme2/a/b"] {
            let e = bad.parse::<FoldId>().unwrap_err().to_string();
            assert!(e.contains(bad.split('/').next().unwrap()), "{bad}: {e}");
        }
        assert!(serde_json::from_str::<FoldId>("\"nope/x\"").is_err());
    }

    #[test]
    fn folds_order_by_part_then_naturally_by_subject() {
        let mut v: Vec<FoldId> = [
            "samm/011",
            "casme2/sub10",
            "casme2/sub2",
            "smic/s3",
            "samm/6",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        v.sort();
        let names: Vec<String> = v.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            names,
            vec![
                "smic/s3",
                "casme2/sub2",
                "casme2/sub10",
                "samm/6",
                "samm/011"
            ]
        );
    }
}
