//! The spontaneous micro-expression datasets `mer` reads, and their name conventions: the three of the
//! MEGC2019 composite (the paper's) and the larger sets the field uses since (CAS(ME)^3 parts A and C, 4DME,
//! MMEW). `docs/datasets.md` describes each layout.

use crate::error::SharedError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One dataset (a part of a composite experiment). The declaration order is the order of parts in plans
/// and reports: the composite's three as the paper's tables list them, then the newer sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// SMIC-HS (100 fps).
    Smic,
    /// CASME II (200 fps).
    Casme2,
    /// SAMM (200 fps).
    Samm,
    /// CAS(ME)^3 part A, the labelled micro-expressions (30 fps colour frames).
    Casme3a,
    /// CAS(ME)^3 part C (30 fps colour frames; annotated with action units, no emotion).
    Casme3c,
    /// 4DME, its 2D gray frames (60 fps).
    #[serde(rename = "4dme")]
    Fourdme,
    /// MMEW, its micro-expressions (90 fps).
    Mmew,
}

impl Dataset {
    /// Every dataset, in part order.
    pub const ALL: [Dataset; 7] = [
        Dataset::Smic,
        Dataset::Casme2,
        Dataset::Samm,
        Dataset::Casme3a,
        Dataset::Casme3c,
        Dataset::Fourdme,
        Dataset::Mmew,
    ];

    /// The three parts of the MEGC2019 composite (the paper's datasets).
    pub const COMPOSITE: [Dataset; 3] = [Dataset::Smic, Dataset::Casme2, Dataset::Samm];

    /// The lower-case key used in files, JSON, specs and fold names (`smic`, `casme2`, `samm`, `casme3a`,
    /// `casme3c`, `4dme`, `mmew`).
    pub fn key(self) -> &'static str {
        match self {
            Dataset::Smic => "smic",
            Dataset::Casme2 => "casme2",
            Dataset::Samm => "samm",
            Dataset::Casme3a => "casme3a",
            Dataset::Casme3c => "casme3c",
            Dataset::Fourdme => "4dme",
            Dataset::Mmew => "mmew",
        }
    }

    /// The name as the literature prints it.
    pub fn display_name(self) -> &'static str {
        match self {
            Dataset::Smic => "SMIC-HS",
            Dataset::Casme2 => "CASME II",
            Dataset::Samm => "SAMM",
            Dataset::Casme3a => "CAS(ME)^3 A",
            Dataset::Casme3c => "CAS(ME)^3 C",
            Dataset::Fourdme => "4DME",
            Dataset::Mmew => "MMEW",
        }
    }

    /// Recording frame rate of the frames `mer` reads.
    pub fn fps(self) -> u32 {
        match self {
            Dataset::Smic => 100,
            Dataset::Casme2 | Dataset::Samm => 200,
            Dataset::Casme3a | Dataset::Casme3c => 30,
            Dataset::Fourdme => 60,
            Dataset::Mmew => 90,
        }
    }

    /// Normalises a subject name to the composite list's spelling: SMIC `s1`/`s01` -> `s01`,
    /// CASME II `sub1`/`sub01`/`1` -> `sub01`, SAMM `006`/`6` -> `6`; CAS(ME)^3 part C `1`/`01` -> `01`.
    /// The other sets keep their workbook's spelling (CAS(ME)^3 A `spNO.1`, 4DME and MMEW as written),
    /// which must be a usable folder and fold name: not empty, no `/`.
    pub fn canonical_subject(self, raw: &str) -> Result<String, SharedError> {
        let raw = raw.trim();
        let digits = |s: &str| -> Option<u32> {
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
                s.parse().ok()
            } else {
                None
            }
        };
        let bad = || SharedError::BadSubject {
            dataset: self.display_name(),
            raw: raw.to_string(),
        };
        match self {
            Dataset::Smic => {
                let n = raw
                    .strip_prefix('s')
                    .and_then(digits)
                    .or_else(|| digits(raw))
                    .ok_or_else(bad)?;
                Ok(format!("s{n:02}"))
            }
            Dataset::Casme2 => {
                let n = raw
                    .strip_prefix("sub")
                    .and_then(digits)
                    .or_else(|| digits(raw))
                    .ok_or_else(bad)?;
                Ok(format!("sub{n:02}"))
            }
            Dataset::Samm => {
                let n = digits(raw).ok_or_else(bad)?;
                Ok(format!("{n}"))
            }
            Dataset::Casme3c => {
                let n = digits(raw).ok_or_else(bad)?;
                Ok(format!("{n:02}"))
            }
            Dataset::Casme3a | Dataset::Fourdme | Dataset::Mmew => {
                if raw.is_empty() || raw.contains(['/', '\\']) || raw == "." || raw == ".." {
                    return Err(bad());
                }
                Ok(raw.to_string())
            }
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for Dataset {
    type Err = SharedError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_', ' '], "")
            .as_str()
        {
            "smic" | "smichs" => Ok(Dataset::Smic),
            "casme2" | "casmeii" => Ok(Dataset::Casme2),
            "samm" => Ok(Dataset::Samm),
            "casme3a" | "casme3" | "cas(me)3a" | "cas(me)3" | "cas(me)^3a" | "cas(me)^3" => {
                Ok(Dataset::Casme3a)
            }
            "casme3c" | "cas(me)3c" | "cas(me)^3c" => Ok(Dataset::Casme3c),
            "4dme" | "fourdme" => Ok(Dataset::Fourdme),
            "mmew" => Ok(Dataset::Mmew),
            _ => Err(SharedError::UnknownDataset(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases() {
        assert_eq!("CASME II".parse::<Dataset>().unwrap(), Dataset::Casme2);
        assert_eq!("smic".parse::<Dataset>().unwrap(), Dataset::Smic);
        assert_eq!("SAMM".parse::<Dataset>().unwrap(), Dataset::Samm);
        assert!("casme4".parse::<Dataset>().is_err());
        for d in Dataset::ALL {
            assert_eq!(d.key().parse::<Dataset>().unwrap(), d);
            assert_eq!(
                serde_json::to_string(&d).unwrap(),
                format!("\"{}\"", d.key())
            );
        }
        assert_eq!("CAS(ME)^3".parse::<Dataset>().unwrap(), Dataset::Casme3a);
        assert_eq!("4DME".parse::<Dataset>().unwrap(), Dataset::Fourdme);
    }

    #[test]
    fn normalises_subjects_between_folders_and_the_composite_list() {
        assert_eq!(Dataset::Smic.canonical_subject("s1").unwrap(), "s01");
        assert_eq!(Dataset::Smic.canonical_subject("s01").unwrap(), "s01");
        assert_eq!(Dataset::Casme2.canonical_subject("sub01").unwrap(), "sub01");
        assert_eq!(Dataset::Casme2.canonical_subject("7").unwrap(), "sub07");
        assert_eq!(Dataset::Samm.canonical_subject("006").unwrap(), "6");
        assert_eq!(Dataset::Samm.canonical_subject("6").unwrap(), "6");
        assert!(Dataset::Samm.canonical_subject("x6").is_err());
        assert_eq!(Dataset::Casme3c.canonical_subject("1").unwrap(), "01");
        assert_eq!(
            Dataset::Casme3a.canonical_subject(" spNO.1 ").unwrap(),
            "spNO.1"
        );
        assert!(Dataset::Mmew.canonical_subject("a/b").is_err());
        assert!(Dataset::Fourdme.canonical_subject("").is_err());
    }
}
