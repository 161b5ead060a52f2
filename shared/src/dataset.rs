//! The three spontaneous micro-expression datasets of the MEGC2019 composite and their name conventions.

use crate::error::SharedError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One of the three datasets (parts) of the composite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// SMIC-HS (100 fps).
    Smic,
    /// CASME II (200 fps).
    Casme2,
    /// SAMM (200 fps).
    Samm,
}

impl Dataset {
    /// All parts, in the order the paper's tables list them.
    pub const ALL: [Dataset; 3] = [Dataset::Smic, Dataset::Casme2, Dataset::Samm];

    /// The lower-case key used in files, JSON and the composite list (`smic`, `casme2`, `samm`).
    pub fn key(self) -> &'static str {
        match self {
            Dataset::Smic => "smic",
            Dataset::Casme2 => "casme2",
            Dataset::Samm => "samm",
        }
    }

    /// The name as the literature prints it.
    pub fn display_name(self) -> &'static str {
        match self {
            Dataset::Smic => "SMIC-HS",
            Dataset::Casme2 => "CASME II",
            Dataset::Samm => "SAMM",
        }
    }

    /// Recording frame rate of the high-speed camera.
    pub fn fps(self) -> u32 {
        match self {
            Dataset::Smic => 100,
            Dataset::Casme2 | Dataset::Samm => 200,
        }
    }

    /// Normalises a subject name to the composite list's spelling: SMIC `s1`/`s01` -> `s01`,
    /// CASME II `sub1`/`sub01`/`1` -> `sub01`, SAMM `006`/`6` -> `6`.
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
        assert!("casme3".parse::<Dataset>().is_err());
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
    }
}
