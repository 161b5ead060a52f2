//! 4DME reader (`docs/datasets.md`): the workbook `4DME_Labelling_Micro_release v1.xlsx`, columns by name
//! sub_ID, fold_name, Emotion, Onset, Apex, Offset, AUs; the 2D gray frames under
//! `gray_micro/<sub_ID>/<fold_name>/` (the 3D meshes and the other modalities are not read). The Emotion
//! column holds positive, negative, surprise, repression or others, and sometimes two of them joined with
//! `+`: only the single positive, negative and surprise clips get a megc3 label.

use super::{find_workbook, read_sheet, subject_cell, ClipRecord, Columns};
use crate::error::{Result, WorkerError};
use mer_shared::Dataset;
use std::path::Path;

/// Workbook name prefix.
pub const WORKBOOKS: [&str; 1] = ["4dme_labelling_micro"];

/// The frame folder under the root.
pub const FRAME_DIR: &str = "gray_micro";

/// Reads every clip of a 4DME root.
pub fn read(root: &Path) -> Result<Vec<ClipRecord>> {
    let book = find_workbook(root, &WORKBOOKS, "4DME labelling")?;
    let frames = root.join(FRAME_DIR);
    if !frames.is_dir() {
        return Err(WorkerError::layout(
            root,
            "no gray_micro/ frame folder here",
        ));
    }
    let rows = read_sheet(&book, None)?;
    let Some(head) = rows.iter().find(|r| !r.is_blank()) else {
        return Err(WorkerError::layout(&book, "the workbook is empty"));
    };
    let cols = Columns::find(
        &book,
        head,
        &["sub_ID", "fold_name", "Emotion", "Onset", "Apex", "Offset"],
    )?;
    let mut out = Vec::new();
    for row in rows
        .iter()
        .filter(|r| r.number > cols.header_row() && !r.is_blank())
    {
        let subject = subject_cell(Dataset::Fourdme, &cols, row, "sub_ID")?;
        let filename = cols.text(row, "fold_name").to_string();
        if filename.is_empty() || filename.contains(['/', '\\']) {
            return Err(cols.error(row, "fold_name", "missing or not a folder name"));
        }
        let dir = frames.join(&subject).join(&filename);
        let source = format!("{}:{}", book.display(), row.number);
        out.push(ClipRecord {
            subject,
            filename,
            emotion: cols.text(row, "Emotion").to_string(),
            onset: cols.frame(row, "Onset")?,
            apex: cols.optional_frame(row, "Apex")?,
            offset: cols.frame(row, "Offset")?,
            ..ClipRecord::located(Dataset::Fourdme, root, dir, source)
        });
    }
    Ok(out)
}
