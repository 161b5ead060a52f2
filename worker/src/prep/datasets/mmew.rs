//! MMEW reader (`docs/datasets.md`): the workbook `MMEW_Micro_Exp.xlsx`, columns by name Subject, Filename,
//! OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion, remarks; frames under
//! `Micro_Expression/<emotion>/<Filename>/`, the emotion being a folder (happiness, surprise, disgust, fear,
//! sadness, anger, others). The folder is looked up by the row's Estimated Emotion, without regard to case;
//! a clip whose folder is not under its emotion is reported with the path that was looked for.

use super::{find_workbook, read_sheet, subdirs, subject_cell, ClipRecord, Columns};
use crate::error::{Result, WorkerError};
use mer_shared::Dataset;
use std::path::{Path, PathBuf};

/// Workbook name prefix.
pub const WORKBOOKS: [&str; 1] = ["mmew_micro_exp"];

/// The frame folder under the root.
pub const FRAME_DIR: &str = "Micro_Expression";

/// The emotion folder of `emotion` among `folders` (case-insensitive), or the path as written.
fn emotion_dir(frames: &Path, folders: &[PathBuf], emotion: &str) -> PathBuf {
    folders
        .iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(emotion))
        })
        .cloned()
        .unwrap_or_else(|| frames.join(emotion))
}

/// Reads every clip of an MMEW root.
pub fn read(root: &Path) -> Result<Vec<ClipRecord>> {
    let book = find_workbook(root, &WORKBOOKS, "MMEW micro-expression")?;
    let frames = root.join(FRAME_DIR);
    if !frames.is_dir() {
        return Err(WorkerError::layout(
            root,
            "no Micro_Expression/ frame folder here",
        ));
    }
    let folders = subdirs(&frames)?;
    let rows = read_sheet(&book, None)?;
    let Some(head) = rows.iter().find(|r| !r.is_blank()) else {
        return Err(WorkerError::layout(&book, "the workbook is empty"));
    };
    let cols = Columns::find(
        &book,
        head,
        &[
            "Subject",
            "Filename",
            "OnsetFrame",
            "ApexFrame",
            "OffsetFrame",
            "Estimated Emotion",
        ],
    )?;
    let mut out = Vec::new();
    for row in rows
        .iter()
        .filter(|r| r.number > cols.header_row() && !r.is_blank())
    {
        let subject = subject_cell(Dataset::Mmew, &cols, row, "Subject")?;
        let filename = cols.text(row, "Filename").to_string();
        if filename.is_empty() || filename.contains(['/', '\\']) {
            return Err(cols.error(row, "Filename", "missing or not a folder name"));
        }
        let emotion = cols.text(row, "Estimated Emotion").to_string();
        if emotion.is_empty() || emotion.contains(['/', '\\']) {
            return Err(cols.error(row, "Estimated Emotion", "missing or not a folder name"));
        }
        let dir = emotion_dir(&frames, &folders, &emotion).join(&filename);
        let source = format!("{}:{}", book.display(), row.number);
        out.push(ClipRecord {
            subject,
            filename,
            emotion,
            onset: cols.frame(row, "OnsetFrame")?,
            apex: cols.optional_frame(row, "ApexFrame")?,
            offset: cols.frame(row, "OffsetFrame")?,
            ..ClipRecord::located(Dataset::Mmew, root, dir, source)
        });
    }
    Ok(out)
}
