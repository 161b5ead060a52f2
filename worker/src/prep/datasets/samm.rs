//! SAMM reader: the workbook `SAMM_Micro_FACS_Codes_v2.xlsx` (a 13-row preamble, header on spreadsheet row
//! 14, data from row 15; columns found by their header names), frames under `SAMM/<006>/<006_1_2>/`
//! (`006_05562.jpg`: 4- or 5-digit padding depending on the clip, so frames are found by listing).
//!
//! The header row is searched for (first row whose first cell is `Subject` and that has a `Filename`
//! column) rather than assumed, so copies with a shorter preamble read too.

use super::{
    find_file, list_clip, parse_frame_cell, parse_objective_class, read_table, required_frame_cell,
    ClipRecord, Row,
};
use crate::error::{Result, WorkerError};
use mer_shared::Dataset;
use std::path::{Path, PathBuf};

/// The spreadsheet row (1-based) the SAMM release puts its header on.
pub const HEADER_ROW: usize = 14;

/// Finds the SAMM workbook in the root (a file whose name starts with `SAMM` and ends in xlsx/xls/csv).
pub fn workbook_file(root: &Path) -> Result<PathBuf> {
    find_file(root, |n| {
        let l = n.to_ascii_lowercase();
        l.starts_with("samm")
            && (l.ends_with(".xlsx") || l.ends_with(".xls") || l.ends_with(".csv"))
    })?
    .ok_or_else(|| {
        WorkerError::layout(
            root,
            "no SAMM workbook (SAMM_Micro_FACS_Codes_v2.xlsx) in this folder",
        )
    })
}

/// The folder holding the subject folders: `root/SAMM` when it exists, else the root itself.
pub fn frames_root(root: &Path) -> PathBuf {
    let s = root.join("SAMM");
    if s.is_dir() {
        s
    } else {
        root.to_path_buf()
    }
}

fn norm(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect()
}

/// Reads every clip of a SAMM root.
pub fn read(root: &Path) -> Result<Vec<ClipRecord>> {
    let wb = workbook_file(root)?;
    let rows = read_table(&wb)?;
    let header_idx = rows
        .iter()
        .position(|r| norm(r.cell(0)) == "subject" && r.cells.iter().any(|c| norm(c) == "filename"))
        .ok_or_else(|| WorkerError::Annotation {
            file: wb.clone(),
            row: HEADER_ROW,
            field: "header".into(),
            message:
                "no header row starting with 'Subject' (expected on row 14 after the preamble)"
                    .into(),
        })?;
    let header: &Row = &rows[header_idx];
    let col = |names: &[&str]| -> Option<usize> {
        header
            .cells
            .iter()
            .position(|c| names.contains(&norm(c).as_str()))
    };
    let need = |names: &[&str], what: &str| -> Result<usize> {
        col(names).ok_or_else(|| WorkerError::Annotation {
            file: wb.clone(),
            row: header.number,
            field: "header".into(),
            message: format!("no '{what}' column"),
        })
    };
    let c_subject = 0;
    let c_file = need(&["filename"], "Filename")?;
    let c_on = need(&["onsetframe", "onset"], "Onset Frame")?;
    let c_apex = need(&["apexframe", "apex"], "Apex Frame")?;
    let c_off = need(&["offsetframe", "offset"], "Offset Frame")?;
    let c_emo = need(&["estimatedemotion", "emotion"], "Estimated Emotion")?;
    let c_obj = col(&["objectiveclasses", "objectiveclass"]);
    let fr = frames_root(root);
    let mut out = Vec::new();
    for row in rows[header_idx + 1..].iter().filter(|r| !r.is_blank()) {
        let err = |field: &str, message: String| WorkerError::Annotation {
            file: wb.clone(),
            row: row.number,
            field: field.into(),
            message,
        };
        let subject = Dataset::Samm
            .canonical_subject(row.cell(c_subject))
            .map_err(|e| err("Subject", e.to_string()))?;
        let filename = row.cell(c_file).to_string();
        if filename.is_empty() {
            return Err(err("Filename", "missing".into()));
        }
        let onset = required_frame_cell(&wb, row, c_on, "Onset Frame")?;
        let apex = parse_frame_cell(&wb, row, c_apex, "Apex Frame")?;
        let offset = required_frame_cell(&wb, row, c_off, "Offset Frame")?;
        let objective_class = match c_obj.and_then(|c| parse_objective_class(row.cell(c))) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(s)) => {
                return Err(err(
                    "Objective Classes",
                    format!("'{s}' is not a class I..VII"),
                ))
            }
        };
        // Subject folders are 3-digit (`006`); accept an unpadded folder too.
        let n: u32 = subject.parse().unwrap_or(0);
        let padded = fr.join(format!("{n:03}"));
        let subj_dir = if padded.is_dir() {
            padded
        } else {
            fr.join(&subject)
        };
        let dir = subj_dir.join(&filename);
        let (frames, problem) = list_clip(&dir);
        out.push(ClipRecord {
            dataset: Dataset::Samm,
            subject,
            filename,
            emotion: row.cell(c_emo).to_string(),
            objective_class,
            onset,
            apex,
            offset,
            apex_estimated: false,
            root: root.to_path_buf(),
            dir,
            frames,
            problem,
            source: format!("{}:{}", wb.display(), row.number),
            corrections: Vec::new(),
            megc3_override: None,
        });
    }
    Ok(out)
}
