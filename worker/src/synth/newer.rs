//! The annotation workbooks of the newer sets' synthetic copies ([`super::SynthOptions::newer_parts`]),
//! written as their releases have them (`docs/datasets.md`): CAS(ME)^3 part A's label workbook (sheet
//! `label`, one row per clip, the recording's Filename repeated for clips of one recording), part C's
//! workbook (no apex, no emotion), 4DME's labelling workbook and MMEW's workbook (the emotion also names the
//! frame folder).

use super::{s, workbook_aus, write_xlsx, write_xlsx_sheet, Cell, ClipPlan, Roots};
use crate::error::{Result, WorkerError};
use mer_shared::Dataset;
use std::path::Path;

/// Writes the four workbooks for the clips in `plans`.
pub(super) fn write_workbooks(roots: &Roots, plans: &[ClipPlan]) -> Result<()> {
    write_casme3a(&roots.casme3a, plans)?;
    write_casme3c(&roots.casme3c, plans)?;
    write_fourdme(&roots.fourdme, plans)?;
    write_mmew(&roots.mmew, plans)
}

fn of(plans: &[ClipPlan], d: Dataset) -> impl Iterator<Item = &ClipPlan> {
    plans.iter().filter(move |p| p.truth.dataset == d)
}

fn create(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root).map_err(|e| WorkerError::io(root, e))
}

/// The recording a CAS(ME)^3 clip's frames are in: the folder above `color/`.
fn recording(p: &ClipPlan) -> String {
    p.dir
        .parent()
        .and_then(|r| r.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.truth.filename.clone())
}

fn write_casme3a(root: &Path, plans: &[ClipPlan]) -> Result<()> {
    let mut rows = vec![[
        "Subject",
        "Filename",
        "Onset",
        "Apex",
        "Offset",
        "AU",
        "Objective class",
        "emotion",
    ]
    .map(s)
    .to_vec()];
    for p in of(plans, Dataset::Casme3a) {
        let t = &p.truth;
        rows.push(vec![
            s(&t.subject),
            s(recording(p)),
            Cell::N(t.onset as f64),
            Cell::N(t.apex as f64),
            Cell::N(t.offset as f64),
            s(workbook_aus(t)),
            Cell::N(t.action.objective_class() as f64),
            s(&t.emotion),
        ]);
    }
    create(root)?;
    write_xlsx_sheet(
        &root.join("cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"),
        Some("label"),
        &rows,
    )
}

fn write_casme3c(root: &Path, plans: &[ClipPlan]) -> Result<()> {
    let mut rows = vec![["sub", "count", "au", "onset", "offset"].map(s).to_vec()];
    for p in of(plans, Dataset::Casme3c) {
        let t = &p.truth;
        let num = |x: &str| x.parse::<f64>().map(Cell::N).unwrap_or_else(|_| s(x));
        rows.push(vec![
            num(&t.subject),
            num(&t.filename),
            s(workbook_aus(t)),
            Cell::N(t.onset as f64),
            Cell::N(t.offset as f64),
        ]);
    }
    create(root)?;
    write_xlsx(&root.join("CAS(ME)3_part_C_ME.xlsx"), &rows)
}

fn write_fourdme(root: &Path, plans: &[ClipPlan]) -> Result<()> {
    let mut rows = vec![[
        "sub_ID",
        "fold_name",
        "Emotion",
        "Onset",
        "Apex",
        "Offset",
        "AUs",
    ]
    .map(s)
    .to_vec()];
    for p in of(plans, Dataset::Fourdme) {
        let t = &p.truth;
        rows.push(vec![
            s(&t.subject),
            s(&t.filename),
            s(&t.emotion),
            Cell::N(t.onset as f64),
            Cell::N(t.apex as f64),
            Cell::N(t.offset as f64),
            s(workbook_aus(t)),
        ]);
    }
    create(root)?;
    write_xlsx(&root.join("4DME_Labelling_Micro_release v1.xlsx"), &rows)
}

fn write_mmew(root: &Path, plans: &[ClipPlan]) -> Result<()> {
    let mut rows = vec![[
        "Subject",
        "Filename",
        "OnsetFrame",
        "ApexFrame",
        "OffsetFrame",
        "Action Units",
        "Estimated Emotion",
        "remarks",
    ]
    .map(s)
    .to_vec()];
    for p in of(plans, Dataset::Mmew) {
        let t = &p.truth;
        rows.push(vec![
            s(&t.subject),
            s(&t.filename),
            Cell::N(t.onset as f64),
            Cell::N(t.apex as f64),
            Cell::N(t.offset as f64),
            s(workbook_aus(t)),
            s(&t.emotion),
            Cell::Blank,
        ]);
    }
    create(root)?;
    write_xlsx(&root.join("MMEW_Micro_Exp.xlsx"), &rows)
}
