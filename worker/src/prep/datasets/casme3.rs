//! CAS(ME)^3 readers, parts A and C (`docs/datasets.md`).
//!
//! Part A: the workbook `cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` (the releases `_v2_refined.xlsx` and
//! `_v1.xls` circulate too; with several in the folder the refined one is read, then v2, then v1), sheet
//! `label` (else the first sheet), columns by name: Subject, Filename, Onset, Apex, Offset, AU, Objective
//! class, emotion. Frames are `<Subject>/<Filename>/color/<N>.jpg` under the root or under `ME_A/` (the depth
//! frames beside `color/` are not read). A Filename names a whole recording, and several micro-expressions
//! of one subject can come from the same recording: such clips are told apart by their onset and named
//! `<Filename>_<onset>` (recorded with the clip as a correction, so the renaming is visible in `mer prep
//! inspect` and the sample metadata); a Filename used once keeps its name.
//!
//! Part C: the workbook `CAS(ME)3_part_C_ME.xlsx`, columns sub, count, au, onset, offset; frames
//! `<sub>/<count>/color/<N>.jpg` under the root or `ME_C/`. Part C has no apex and no emotion: the apex is the
//! middle frame, recorded as estimated, and the clips carry no emotion label (no scheme scores them).
//!
//! Frames may be missing inside a recording. `mer prep` refuses a clip with any frame missing between its
//! onset and offset (naming the folder, the count and the first missing frame), or leaves it out with
//! `--skip-bad` (listed in the skip report): never silently.

use super::{find_workbook, read_sheet, subject_cell, ClipRecord, Columns};
use crate::error::{Result, WorkerError};
use mer_shared::Dataset;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Part A workbook name prefixes, preferred release first.
pub const PART_A_WORKBOOKS: [&str; 4] = [
    "cas(me)3_part_a_me_label_jpgindex_v2_refined",
    "cas(me)3_part_a_me_label_jpgindex_v2",
    "cas(me)3_part_a_me_label_jpgindex_v1",
    "cas(me)3_part_a",
];

/// Part C workbook name prefix.
pub const PART_C_WORKBOOKS: [&str; 1] = ["cas(me)3_part_c"];

/// The folder the subject folders are in: `sub` of the root when it exists (`ME_A`, `ME_C`), else the root.
fn frames_root(root: &Path, sub: &str) -> PathBuf {
    let p = root.join(sub);
    if p.is_dir() {
        p
    } else {
        root.to_path_buf()
    }
}

/// Reads every micro-expression clip of a CAS(ME)^3 part A root.
pub fn read_part_a(root: &Path) -> Result<Vec<ClipRecord>> {
    let book = find_workbook(root, &PART_A_WORKBOOKS, "CAS(ME)^3 part A label")?;
    let rows = read_sheet(&book, Some("label"))?;
    let Some(head) = rows.iter().find(|r| !r.is_blank()) else {
        return Err(WorkerError::layout(&book, "the label sheet is empty"));
    };
    let cols = Columns::find(
        &book,
        head,
        &["Subject", "Filename", "Onset", "Apex", "Offset", "emotion"],
    )?;
    let frames = frames_root(root, "ME_A");
    let data = rows
        .iter()
        .filter(|r| r.number > cols.header_row() && !r.is_blank())
        .map(|r| Ok((r, subject_cell(Dataset::Casme3a, &cols, r, "Subject")?)))
        .collect::<Result<Vec<_>>>()?;
    // How often each (subject, Filename) occurs: repeated ones are named by their onset.
    let mut uses: HashMap<(String, String), usize> = HashMap::new();
    for (row, subject) in &data {
        *uses
            .entry((subject.clone(), cols.text(row, "Filename").to_string()))
            .or_insert(0) += 1;
    }
    let mut out = Vec::new();
    for (row, subject) in data {
        let recording = cols.text(row, "Filename").to_string();
        if recording.is_empty() || recording.contains(['/', '\\']) {
            return Err(cols.error(row, "Filename", "missing or not a folder name"));
        }
        let onset = cols.frame(row, "Onset")?;
        let apex = cols.optional_frame(row, "Apex")?;
        let offset = cols.frame(row, "Offset")?;
        let mut corrections = Vec::new();
        let filename = if uses[&(subject.clone(), recording.clone())] > 1 {
            let name = format!("{recording}_{onset}");
            corrections.push(format!(
                "Filename {recording} is used by several clips of subject {subject}: this one (onset {onset}) is named {name}"
            ));
            name
        } else {
            recording.clone()
        };
        let objective_class = match super::parse_objective_class(cols.text(row, "Objective class"))
        {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(s)) => {
                return Err(cols.error(
                    row,
                    "Objective class",
                    format!("'{s}' is not a class I..VII"),
                ))
            }
        };
        let dir = frames.join(&subject).join(&recording).join("color");
        let source = format!("{}:{}", book.display(), row.number);
        out.push(ClipRecord {
            subject,
            filename,
            emotion: cols.text(row, "emotion").to_string(),
            objective_class,
            onset,
            apex,
            offset,
            corrections,
            ..ClipRecord::located(Dataset::Casme3a, root, dir, source)
        });
    }
    Ok(out)
}

/// Reads every clip of a CAS(ME)^3 part C root.
pub fn read_part_c(root: &Path) -> Result<Vec<ClipRecord>> {
    let book = find_workbook(root, &PART_C_WORKBOOKS, "CAS(ME)^3 part C")?;
    let rows = read_sheet(&book, None)?;
    let Some(head) = rows.iter().find(|r| !r.is_blank()) else {
        return Err(WorkerError::layout(&book, "the workbook is empty"));
    };
    let cols = Columns::find(&book, head, &["sub", "count", "onset", "offset"])?;
    let frames = frames_root(root, "ME_C");
    let mut out = Vec::new();
    for row in rows
        .iter()
        .filter(|r| r.number > cols.header_row() && !r.is_blank())
    {
        let subject = subject_cell(Dataset::Casme3c, &cols, row, "sub")?;
        let count = cols.text(row, "count").to_string();
        if count.is_empty() || count.contains(['/', '\\']) {
            return Err(cols.error(row, "count", "missing or not a folder name"));
        }
        let onset = cols.frame(row, "onset")?;
        let offset = cols.frame(row, "offset")?;
        if offset < onset {
            return Err(cols.error(
                row,
                "offset",
                format!("offset {offset} is before onset {onset}"),
            ));
        }
        let dir = frames.join(&subject).join(&count).join("color");
        let source = format!("{}:{}", book.display(), row.number);
        out.push(ClipRecord {
            subject,
            filename: count,
            onset,
            apex: Some(onset + (offset - onset) / 2),
            offset,
            apex_estimated: true,
            ..ClipRecord::located(Dataset::Casme3c, root, dir, source)
        });
    }
    Ok(out)
}
