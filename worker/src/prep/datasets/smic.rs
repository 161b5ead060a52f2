//! SMIC-HS readers.
//!
//! - Original release: `HS/sN/micro/<negative|positive|surprise>/<sN_ne_01>/reg_image559740.bmp`. The clip
//!   folder holds only the ME frames: onset = first frame, offset = last frame. SMIC has no apex annotation;
//!   like the paper and public code we take the middle frame (index `(n-1)/2` of the sorted listing) and mark
//!   the apex as estimated.
//! - Extended release SMIC-E: `SMIC-HS-E/s03/s3_sur_01/image308866.jpg` with `SMIC-HS-E_annotation.xlsx`
//!   (Subject, Filename, OnsetF, OffsetF, Emotion); apex = middle frame of onset..offset, estimated.
//!
//! Names are normalised to the composite list's spelling: subject `s1` -> `s01`, clip `s1_ne_01` ->
//! `s01_ne_01` (the folder keeps its own name; `ClipRecord::dir` points at it).

use super::frames::FrameFile;
use super::{find_file, list_clip, read_table, required_frame_cell, subdirs, ClipRecord};
use crate::error::{Result, WorkerError};
use mer_shared::Dataset;
use std::path::{Path, PathBuf};

/// The class folders of the original release (which are also the clips' emotions).
pub const CLASSES: [&str; 3] = ["negative", "positive", "surprise"];

/// Normalises a SMIC clip name to the composite spelling: `s1_ne_01` -> `s01_ne_01`.
pub fn canonical_clip(name: &str) -> String {
    if let Some(rest) = name.strip_prefix('s') {
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if let (false, Ok(n)) = (digits.is_empty(), digits.parse::<u32>()) {
            return format!("s{n:02}{}", &rest[digits.len()..]);
        }
    }
    name.to_string()
}

/// The middle frame of a sorted listing, SMIC's estimated apex.
pub fn middle_frame(frames: &[FrameFile]) -> Option<u32> {
    if frames.is_empty() {
        None
    } else {
        Some(frames[(frames.len() - 1) / 2].number)
    }
}

/// The `HS` folder: the root itself when it holds `sN` subject folders, else `root/HS`.
fn hs_root(root: &Path) -> PathBuf {
    let hs = root.join("HS");
    if hs.is_dir() {
        hs
    } else {
        root.to_path_buf()
    }
}

/// Reads every clip of the original SMIC-HS layout.
pub fn read_original(root: &Path) -> Result<Vec<ClipRecord>> {
    let hs = hs_root(root);
    let mut out = Vec::new();
    let subjects: Vec<PathBuf> = subdirs(&hs)?
        .into_iter()
        .filter(|p| p.join("micro").is_dir())
        .collect();
    if subjects.is_empty() {
        return Err(WorkerError::layout(
            &hs,
            "no SMIC-HS subject folders (HS/sN/micro/...) here",
        ));
    }
    for sdir in subjects {
        let sname = sdir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let subject = Dataset::Smic
            .canonical_subject(&sname)
            .map_err(|e| WorkerError::layout(&sdir, e.to_string()))?;
        for class in CLASSES {
            let cdir = sdir.join("micro").join(class);
            if !cdir.is_dir() {
                continue;
            }
            for clip in subdirs(&cdir)? {
                let cname = clip
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let (frames, problem) = list_clip(&clip);
                let onset = frames.first().map(|f| f.number).unwrap_or(0);
                let offset = frames.last().map(|f| f.number).unwrap_or(0);
                out.push(ClipRecord {
                    dataset: Dataset::Smic,
                    subject: subject.clone(),
                    filename: canonical_clip(&cname),
                    emotion: class.to_string(),
                    objective_class: None,
                    onset,
                    apex: middle_frame(&frames),
                    offset,
                    apex_estimated: true,
                    root: root.to_path_buf(),
                    dir: clip.clone(),
                    frames,
                    problem,
                    source: clip.display().to_string(),
                    corrections: Vec::new(),
                    megc3_override: None,
                });
            }
        }
    }
    Ok(out)
}

fn norm(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Maps SMIC-E emotion spellings (`negative`, `ne`, `positive`, `po`, `surprise`, `sur`) to the class name.
pub fn smic_emotion(s: &str) -> Option<&'static str> {
    match norm(s).as_str() {
        "negative" | "ne" | "neg" => Some("negative"),
        "positive" | "po" | "pos" => Some("positive"),
        "surprise" | "sur" | "su" => Some("surprise"),
        _ => None,
    }
}

/// Reads every clip of the SMIC-E layout (annotation workbook + `SMIC-HS-E/sNN/<clip>/`).
pub fn read_extended(root: &Path) -> Result<Vec<ClipRecord>> {
    let ann = find_file(root, |n| {
        let l = n.to_ascii_lowercase();
        l.contains("annotation")
            && (l.ends_with(".xlsx") || l.ends_with(".xls") || l.ends_with(".csv"))
    })?
    .ok_or_else(|| {
        WorkerError::layout(
            root,
            "no SMIC-E annotation workbook (SMIC-HS-E_annotation.xlsx) here",
        )
    })?;
    let fr = {
        let e = root.join("SMIC-HS-E");
        if e.is_dir() {
            e
        } else {
            root.to_path_buf()
        }
    };
    let rows = read_table(&ann)?;
    let hidx = rows
        .iter()
        .position(|r| norm(r.cell(0)) == "subject")
        .ok_or_else(|| WorkerError::Annotation {
            file: ann.clone(),
            row: 1,
            field: "header".into(),
            message: "no header row starting with 'Subject'".into(),
        })?;
    let header = &rows[hidx];
    let col = |names: &[&str], what: &str| -> Result<usize> {
        header
            .cells
            .iter()
            .position(|c| names.contains(&norm(c).as_str()))
            .ok_or_else(|| WorkerError::Annotation {
                file: ann.clone(),
                row: header.number,
                field: "header".into(),
                message: format!("no '{what}' column"),
            })
    };
    let c_file = col(&["filename"], "Filename")?;
    let c_on = col(&["onsetf", "onsetframe", "onset"], "OnsetF")?;
    let c_off = col(&["offsetf", "offsetframe", "offset"], "OffsetF")?;
    let c_emo = col(&["emotion"], "Emotion")?;
    let mut out = Vec::new();
    for row in rows[hidx + 1..].iter().filter(|r| !r.is_blank()) {
        let err = |field: &str, message: String| WorkerError::Annotation {
            file: ann.clone(),
            row: row.number,
            field: field.into(),
            message,
        };
        let subject = Dataset::Smic
            .canonical_subject(row.cell(0))
            .map_err(|e| err("Subject", e.to_string()))?;
        let raw_file = row.cell(c_file).to_string();
        if raw_file.is_empty() {
            return Err(err("Filename", "missing".into()));
        }
        let onset = required_frame_cell(&ann, row, c_on, "OnsetF")?;
        let offset = required_frame_cell(&ann, row, c_off, "OffsetF")?;
        let emotion = smic_emotion(row.cell(c_emo)).ok_or_else(|| {
            err(
                "Emotion",
                format!("'{}' is not negative/positive/surprise", row.cell(c_emo)),
            )
        })?;
        let n: u32 = subject[1..].parse().unwrap_or(0);
        let sdir = [fr.join(&subject), fr.join(format!("s{n}"))]
            .into_iter()
            .find(|p| p.is_dir())
            .unwrap_or(fr.join(&subject));
        let dir = sdir.join(&raw_file);
        let (frames, problem) = list_clip(&dir);
        let inside: Vec<FrameFile> = frames
            .iter()
            .filter(|f| f.number >= onset && f.number <= offset)
            .cloned()
            .collect();
        out.push(ClipRecord {
            dataset: Dataset::Smic,
            subject,
            filename: canonical_clip(&raw_file),
            emotion: emotion.to_string(),
            objective_class: None,
            onset,
            apex: middle_frame(&inside),
            offset,
            apex_estimated: true,
            root: root.to_path_buf(),
            dir,
            frames,
            problem,
            source: format!("{}:{}", ann.display(), row.number),
            corrections: Vec::new(),
            megc3_override: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_middle_frame() {
        assert_eq!(canonical_clip("s1_ne_01"), "s01_ne_01");
        assert_eq!(canonical_clip("s12_sur_03"), "s12_sur_03");
        let f: Vec<FrameFile> = [10, 11, 12, 13]
            .iter()
            .map(|&n| FrameFile {
                number: n,
                path: PathBuf::new(),
            })
            .collect();
        assert_eq!(middle_frame(&f), Some(11));
        assert_eq!(middle_frame(&f[..3]), Some(11));
        assert_eq!(smic_emotion("sur"), Some("surprise"));
        assert_eq!(smic_emotion("happy"), None);
    }
}
