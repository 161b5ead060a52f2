//! Label schemes of the paper's protocols: MEGC2019 3-class, objective classes I-V, and 5 emotion classes.

use crate::dataset::Dataset;
use crate::error::SharedError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A label scheme: which classes a protocol scores. Class indices are `0..num_classes()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelScheme {
    /// MEGC2019 composite: 0 negative, 1 positive, 2 surprise.
    Megc3,
    /// Objective classes I..V (Davison et al. 2018) on CASME II and SAMM: index 0 = class I.
    Objective5,
    /// Five emotion classes; the class names depend on the dataset (see [`LabelScheme::class_names`]).
    Emotion5,
}

impl LabelScheme {
    /// All schemes.
    pub const ALL: [LabelScheme; 3] = [
        LabelScheme::Megc3,
        LabelScheme::Objective5,
        LabelScheme::Emotion5,
    ];

    /// The scheme's key in files and specs.
    pub fn key(self) -> &'static str {
        match self {
            LabelScheme::Megc3 => "megc3",
            LabelScheme::Objective5 => "objective5",
            LabelScheme::Emotion5 => "emotion5",
        }
    }

    /// Number of classes; every one of them counts in UF1/UAR, also when a part has no sample of it.
    pub fn num_classes(self) -> usize {
        match self {
            LabelScheme::Megc3 => 3,
            LabelScheme::Objective5 | LabelScheme::Emotion5 => 5,
        }
    }

    /// Class names for a dataset (`None`: the generic names).
    pub fn class_names(self, dataset: Option<Dataset>) -> Vec<&'static str> {
        match self {
            LabelScheme::Megc3 => vec!["negative", "positive", "surprise"],
            LabelScheme::Objective5 => vec!["I", "II", "III", "IV", "V"],
            LabelScheme::Emotion5 => match dataset {
                Some(Dataset::Samm) => vec!["happiness", "anger", "contempt", "surprise", "others"],
                _ => vec!["happiness", "surprise", "disgust", "repression", "others"],
            },
        }
    }

    /// Checks that a label index belongs to the scheme.
    pub fn check(self, label: i64) -> Result<usize, SharedError> {
        if label >= 0 && (label as usize) < self.num_classes() {
            Ok(label as usize)
        } else {
            Err(SharedError::LabelOutOfRange {
                label,
                scheme: self.key().into(),
                classes: self.num_classes(),
            })
        }
    }

    /// Maps a dataset's annotated emotion to this scheme's class, `None` when the scheme leaves it out.
    /// For `Objective5` use [`LabelScheme::from_objective_class`].
    pub fn from_emotion(self, dataset: Dataset, emotion: &str) -> Option<usize> {
        let e = emotion.trim().to_ascii_lowercase();
        match self {
            // The composite's rules for its three parts; the newer sets by the same reading (happiness is
            // positive, surprise is surprise, the negative emotions are negative, "others" and mixed labels
            // are left out), as cross-dataset work maps them.
            LabelScheme::Megc3 => match (dataset, e.as_str()) {
                (_, "happiness" | "positive") => Some(1),
                (_, "surprise") => Some(2),
                (Dataset::Smic, "negative") => Some(0),
                (Dataset::Casme2, "disgust" | "repression") => Some(0),
                (Dataset::Samm, "anger" | "contempt" | "disgust" | "fear" | "sadness") => Some(0),
                (Dataset::Casme3a, "happy") => Some(1),
                (Dataset::Casme3a, "disgust" | "fear" | "anger" | "sad") => Some(0),
                (Dataset::Fourdme, "negative") => Some(0),
                (Dataset::Mmew, "disgust" | "fear" | "sadness" | "anger") => Some(0),
                _ => None,
            },
            LabelScheme::Emotion5 => {
                let names = self.class_names(Some(dataset));
                // The paper's five-emotion protocols are on CASME II and SAMM only.
                if !matches!(dataset, Dataset::Casme2 | Dataset::Samm) {
                    return None;
                }
                let e = if e == "other" {
                    "others".to_string()
                } else {
                    e
                };
                names.iter().position(|n| *n == e)
            }
            LabelScheme::Objective5 => None,
        }
    }

    /// Maps an objective class 1..=7 to this scheme (`Objective5` keeps I..V, others are left out).
    pub fn from_objective_class(self, class: u32) -> Option<usize> {
        match self {
            LabelScheme::Objective5 if (1..=5).contains(&class) => Some(class as usize - 1),
            _ => None,
        }
    }
}

impl fmt::Display for LabelScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl FromStr for LabelScheme {
    type Err = SharedError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "megc3" | "megc2019" => Ok(LabelScheme::Megc3),
            "objective5" => Ok(LabelScheme::Objective5),
            "emotion5" => Ok(LabelScheme::Emotion5),
            _ => Err(SharedError::UnknownScheme(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megc3_mapping_follows_the_composite_rules() {
        let s = LabelScheme::Megc3;
        assert_eq!(s.from_emotion(Dataset::Casme2, "repression"), Some(0));
        assert_eq!(s.from_emotion(Dataset::Casme2, "others"), None);
        assert_eq!(s.from_emotion(Dataset::Casme2, "fear"), None);
        assert_eq!(s.from_emotion(Dataset::Samm, "Contempt"), Some(0));
        assert_eq!(s.from_emotion(Dataset::Samm, "Happiness"), Some(1));
        assert_eq!(s.from_emotion(Dataset::Smic, "surprise"), Some(2));
        assert_eq!(s.from_emotion(Dataset::Samm, "Other"), None);
    }

    #[test]
    fn megc3_mapping_of_the_newer_sets() {
        let s = LabelScheme::Megc3;
        assert_eq!(s.from_emotion(Dataset::Casme3a, "happy"), Some(1));
        assert_eq!(s.from_emotion(Dataset::Casme3a, "Sad"), Some(0));
        assert_eq!(s.from_emotion(Dataset::Casme3a, "surprise"), Some(2));
        assert_eq!(s.from_emotion(Dataset::Casme3a, "others"), None);
        assert_eq!(s.from_emotion(Dataset::Fourdme, "Negative"), Some(0));
        assert_eq!(s.from_emotion(Dataset::Fourdme, "Positive"), Some(1));
        assert_eq!(s.from_emotion(Dataset::Fourdme, "Repression"), None);
        assert_eq!(s.from_emotion(Dataset::Fourdme, "Negative+Surprise"), None);
        assert_eq!(s.from_emotion(Dataset::Mmew, "sadness"), Some(0));
        assert_eq!(s.from_emotion(Dataset::Mmew, "happiness"), Some(1));
        assert_eq!(s.from_emotion(Dataset::Mmew, "others"), None);
        assert_eq!(s.from_emotion(Dataset::Casme3c, ""), None);
        assert_eq!(
            LabelScheme::Emotion5.from_emotion(Dataset::Mmew, "happiness"),
            None
        );
    }

    #[test]
    fn emotion5_and_objective5() {
        assert_eq!(
            LabelScheme::Emotion5.from_emotion(Dataset::Samm, "Other"),
            Some(4)
        );
        assert_eq!(
            LabelScheme::Emotion5.from_emotion(Dataset::Samm, "Fear"),
            None
        );
        assert_eq!(
            LabelScheme::Emotion5.from_emotion(Dataset::Casme2, "repression"),
            Some(3)
        );
        assert_eq!(LabelScheme::Objective5.from_objective_class(5), Some(4));
        assert_eq!(LabelScheme::Objective5.from_objective_class(6), None);
        assert!(LabelScheme::Megc3.check(3).is_err());
        assert_eq!(LabelScheme::Megc3.check(2).unwrap(), 2);
    }
}
