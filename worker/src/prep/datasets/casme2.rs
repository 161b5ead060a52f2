//! CASME II reader: the coding workbook (`CASME2-coding-*.xlsx`, columns by position: 0 Subject, 1 Filename,
//! 3 OnsetFrame, 4 ApexFrame, 5 OffsetFrame, 8 Estimated Emotion), frames under `CASME2_RAW_selected/subNN/<clip>/`
//! (`img46.jpg`) or `Cropped/subNN/<clip>/` (`reg_img46.jpg`), and the optional objective-class workbook
//! (`CASME2-ObjectiveClasses.xlsx`: Subject, Filename, Objective Class).
//!
//! When both frame layouts are present, `CASME2_RAW_selected` is used (our own face crop runs on it).

use super::{
    find_file, list_clip, parse_frame_cell, parse_objective_class, read_table, required_frame_cell,
    ClipRecord,
};
use crate::error::{Result, WorkerError};
use mer_shared::Dataset;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The two frame layouts, in order of preference.
pub const FRAME_DIRS: [&str; 2] = ["CASME2_RAW_selected", "Cropped"];

/// Finds the coding workbook in the root (`CASME2-coding-*.xlsx`, any workbook or CSV whose name starts
/// with `CASME2-coding`).
pub fn coding_file(root: &Path) -> Result<PathBuf> {
    find_file(root, |n| {
        n.to_ascii_lowercase().starts_with("casme2-coding")
    })?
    .ok_or_else(|| {
        WorkerError::layout(
            root,
            "no CASME II coding workbook (CASME2-coding-*.xlsx) in this folder",
        )
    })
}

/// Reads every clip of a CASME II root.
pub fn read(root: &Path) -> Result<Vec<ClipRecord>> {
    let coding = coding_file(root)?;
    let frames_dir = FRAME_DIRS
        .iter()
        .map(|d| root.join(d))
        .find(|p| p.is_dir())
        .ok_or_else(|| {
            WorkerError::layout(root, "neither CASME2_RAW_selected/ nor Cropped/ is here")
        })?;
    let objective = match find_file(root, |n| {
        let l = n.to_ascii_lowercase();
        l.starts_with("casme2") && l.contains("objective")
    })? {
        Some(p) => read_objective(&p)?,
        None => HashMap::new(),
    };
    let rows = read_table(&coding)?;
    let mut out = Vec::new();
    // One header row; data from the next non-blank row.
    for row in rows.iter().skip(1).filter(|r| !r.is_blank()) {
        let subj_raw = row.cell(0);
        let subject =
            Dataset::Casme2
                .canonical_subject(subj_raw)
                .map_err(|e| WorkerError::Annotation {
                    file: coding.clone(),
                    row: row.number,
                    field: "Subject".into(),
                    message: e.to_string(),
                })?;
        let filename = row.cell(1).to_string();
        if filename.is_empty() {
            return Err(WorkerError::Annotation {
                file: coding.clone(),
                row: row.number,
                field: "Filename".into(),
                message: "missing".into(),
            });
        }
        let onset = required_frame_cell(&coding, row, 3, "OnsetFrame")?;
        let apex = parse_frame_cell(&coding, row, 4, "ApexFrame")?;
        let offset = required_frame_cell(&coding, row, 5, "OffsetFrame")?;
        let emotion = row.cell(8).to_string();
        let dir = frames_dir.join(&subject).join(&filename);
        let (frames, problem) = list_clip(&dir);
        out.push(ClipRecord {
            dataset: Dataset::Casme2,
            objective_class: objective.get(&(subject.clone(), filename.clone())).copied(),
            subject,
            filename,
            emotion,
            onset,
            apex,
            offset,
            apex_estimated: false,
            root: root.to_path_buf(),
            dir,
            frames,
            problem,
            source: format!("{}:{}", coding.display(), row.number),
            corrections: Vec::new(),
            megc3_override: None,
        });
    }
    Ok(out)
}

/// Reads the objective-class workbook: (canonical subject, filename) -> class 1..7.
pub fn read_objective(path: &Path) -> Result<HashMap<(String, String), u32>> {
    let mut m = HashMap::new();
    for row in read_table(path)?.iter().skip(1).filter(|r| !r.is_blank()) {
        let err = |field: &str, message: String| WorkerError::Annotation {
            file: path.into(),
            row: row.number,
            field: field.into(),
            message,
        };
        let subject = Dataset::Casme2
            .canonical_subject(row.cell(0))
            .map_err(|e| err("Subject", e.to_string()))?;
        let class = match parse_objective_class(row.cell(2)) {
            None => continue,
            Some(Ok(c)) => c,
            Some(Err(s)) => {
                return Err(err(
                    "Objective Class",
                    format!("'{s}' is not a class I..VII"),
                ))
            }
        };
        m.insert((subject, row.cell(1).to_string()), class);
    }
    Ok(m)
}
