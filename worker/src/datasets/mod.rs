//! Readers for the real on-disk layouts of CASME II, SAMM and SMIC-HS (see `docs/datasets.md`), the
//! MEGC2019 composite selection, and explicit annotation corrections. A reader turns a dataset root into
//! [`ClipRecord`]s: one per annotated clip, with its frame files found by listing.

pub mod casme2;
pub mod composite;
pub mod corrections;
pub mod frames;
pub mod samm;
pub mod smic;

use crate::error::{Result, WorkerError};
use frames::FrameFile;
use mer_shared::labels::LabelScheme;
use mer_shared::Dataset;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One annotated clip of a dataset, as read from its annotation file and its frame folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipRecord {
    /// Dataset part.
    pub dataset: Dataset,
    /// Subject in the composite list's spelling (`sub01`, `s01`, `6`).
    pub subject: String,
    /// Clip name in the composite list's spelling (SMIC `s1_ne_01` becomes `s01_ne_01`; others verbatim).
    pub filename: String,
    /// Annotated emotion, verbatim (SMIC: the class folder name).
    pub emotion: String,
    /// Objective class 1..7 where the dataset has one.
    pub objective_class: Option<u32>,
    /// Onset frame number.
    pub onset: u32,
    /// Apex frame number (`None` when the annotation has none; a correction must supply it).
    pub apex: Option<u32>,
    /// Offset frame number.
    pub offset: u32,
    /// True when the apex is estimated (SMIC: the middle frame), not annotated.
    pub apex_estimated: bool,
    /// The dataset root the frame paths are relative to.
    pub root: PathBuf,
    /// The clip's frame folder.
    pub dir: PathBuf,
    /// Frame files of the folder, sorted by number (may be empty when the folder is missing: checked at
    /// preparation time so that `--skip-bad` can leave the clip out).
    pub frames: Vec<FrameFile>,
    /// A problem found while reading (missing folder...), reported when the clip is prepared.
    pub problem: Option<String>,
    /// Where the annotation came from (`file:row`), for error messages.
    pub source: String,
    /// Corrections applied (human-readable), recorded with the sample.
    pub corrections: Vec<String>,
    /// MEGC2019 label forced by the official composite list (`Some(None)`: the list leaves the clip out).
    pub megc3_override: Option<Option<usize>>,
}

impl ClipRecord {
    /// The sample id `dataset/subject/filename`.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.dataset, self.subject, self.filename)
    }

    /// Class index under each scheme that includes this clip. megc3 comes from the composite list when one
    /// was applied, otherwise from the emotion mapping.
    pub fn labels(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        let megc = match self.megc3_override {
            Some(l) => l,
            None => LabelScheme::Megc3.from_emotion(self.dataset, &self.emotion),
        };
        if let Some(l) = megc {
            m.insert(LabelScheme::Megc3.key().to_string(), l);
        }
        if let Some(l) = LabelScheme::Emotion5.from_emotion(self.dataset, &self.emotion) {
            m.insert(LabelScheme::Emotion5.key().to_string(), l);
        }
        if let Some(l) = self
            .objective_class
            .and_then(|c| LabelScheme::Objective5.from_objective_class(c))
        {
            m.insert(LabelScheme::Objective5.key().to_string(), l);
        }
        m
    }

    /// A frame path relative to the dataset root (for the sample's metadata).
    pub fn relative(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .to_string_lossy()
            .to_string()
    }
}

/// Which reader a dataset root is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetKind {
    /// CASME II (coding workbook + `CASME2_RAW_selected` or `Cropped`).
    Casme2,
    /// SAMM (workbook with a 13-row preamble + `SAMM/<subject>/<clip>`).
    Samm,
    /// SMIC-HS original release (`HS/sN/micro/<class>/<clip>/`).
    Smic,
    /// SMIC-E extended release (`SMIC-HS-E/sNN/<clip>/` + `SMIC-HS-E_annotation.xlsx`).
    SmicE,
}

/// Reads every clip of a dataset root.
pub fn read_dataset(kind: DatasetKind, root: &Path) -> Result<Vec<ClipRecord>> {
    if !root.is_dir() {
        return Err(WorkerError::layout(root, "dataset root is not a folder"));
    }
    match kind {
        DatasetKind::Casme2 => casme2::read(root),
        DatasetKind::Samm => samm::read(root),
        DatasetKind::Smic => smic::read_original(root),
        DatasetKind::SmicE => smic::read_extended(root),
    }
}

/// One row of an annotation table: its 1-based row (spreadsheet numbering, or CSV line) and its cells as
/// trimmed text (numbers written without a trailing `.0`; empty cells as "").
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based row number as the spreadsheet shows it.
    pub number: usize,
    /// Cells, left to right, starting at column A.
    pub cells: Vec<String>,
}

impl Row {
    /// The cell at a 0-based column ("" past the end).
    pub fn cell(&self, col: usize) -> &str {
        self.cells.get(col).map(String::as_str).unwrap_or("")
    }

    /// True when every cell is empty.
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(|c| c.is_empty())
    }
}

/// Reads the first sheet of a workbook (xlsx, xls, ods via calamine) or a CSV file into rows.
pub fn read_table(path: &Path) -> Result<Vec<Row>> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if ext == "csv" {
        let text = std::fs::read_to_string(path).map_err(|e| WorkerError::io(path, e))?;
        return Ok(text
            .lines()
            .enumerate()
            .map(|(i, l)| Row {
                number: i + 1,
                cells: split_csv_line(l),
            })
            .collect());
    }
    use calamine::{Data, Reader};
    let bad = |m: String| WorkerError::Annotation {
        file: path.into(),
        row: 0,
        field: "workbook".into(),
        message: m,
    };
    let mut wb =
        calamine::open_workbook_auto(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let range = wb
        .worksheet_range_at(0)
        .ok_or_else(|| bad("has no sheet".into()))?
        .map_err(|e| bad(e.to_string()))?;
    let (r0, c0) = range.start().unwrap_or((0, 0));
    let mut out = Vec::new();
    for (i, r) in range.rows().enumerate() {
        let mut cells = vec![String::new(); c0 as usize];
        cells.extend(r.iter().map(|d| match d {
            Data::Empty => String::new(),
            Data::String(s) => s.trim().to_string(),
            Data::Int(i) => i.to_string(),
            Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
            Data::Float(f) => f.to_string(),
            Data::Bool(b) => b.to_string(),
            other => other.to_string().trim().to_string(),
        }));
        out.push(Row {
            number: r0 as usize + i + 1,
            cells,
        });
    }
    Ok(out)
}

/// Splits one CSV line (double quotes, doubled quotes inside) into trimmed cells.
pub fn split_csv_line(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    cells.push(cur.trim().to_string());
    cells
}

/// Parses a frame-number cell; `None` for blank or `/` (missing annotation).
pub fn parse_frame_cell(file: &Path, row: &Row, col: usize, field: &str) -> Result<Option<u32>> {
    let s = row.cell(col);
    if s.is_empty() || s == "/" || s == "-" || s.eq_ignore_ascii_case("n/a") {
        return Ok(None);
    }
    let v: f64 = s.parse().map_err(|_| WorkerError::Annotation {
        file: file.into(),
        row: row.number,
        field: field.into(),
        message: format!("'{s}' is not a frame number"),
    })?;
    if v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
        return Err(WorkerError::Annotation {
            file: file.into(),
            row: row.number,
            field: field.into(),
            message: format!("'{s}' is not a frame number"),
        });
    }
    Ok(Some(v as u32))
}

/// A frame-number cell that must be present.
pub fn required_frame_cell(file: &Path, row: &Row, col: usize, field: &str) -> Result<u32> {
    parse_frame_cell(file, row, col, field)?.ok_or_else(|| WorkerError::Annotation {
        file: file.into(),
        row: row.number,
        field: field.into(),
        message: "missing".into(),
    })
}

/// Parses an objective class written as `3`, `III` or `Class III`; `None` for blank.
pub fn parse_objective_class(s: &str) -> Option<std::result::Result<u32, String>> {
    let t = s.trim();
    if t.is_empty() || t == "/" {
        return None;
    }
    let t = t
        .trim_start_matches("Class")
        .trim_start_matches("class")
        .trim();
    if let Ok(v) = t.parse::<f64>() {
        return Some(if v.fract() == 0.0 && (1.0..=7.0).contains(&v) {
            Ok(v as u32)
        } else {
            Err(s.to_string())
        });
    }
    let roman = ["I", "II", "III", "IV", "V", "VI", "VII"];
    Some(
        roman
            .iter()
            .position(|r| r.eq_ignore_ascii_case(t))
            .map(|i| i as u32 + 1)
            .ok_or_else(|| s.to_string()),
    )
}

/// Finds the first file in `dir` whose name satisfies `pred` (sorted by name for determinism).
pub fn find_file(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<Option<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| WorkerError::io(dir, e))?;
    let mut hits: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            !n.starts_with('.') && !n.starts_with("~$") && pred(&n)
        })
        .collect();
    hits.sort();
    Ok(hits.into_iter().next())
}

/// Lists the sub-folders of `dir`, sorted by name.
pub fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| WorkerError::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    Ok(v)
}

/// Lists a clip folder for a record: the frames, or a problem note when the folder is missing/unreadable.
pub(crate) fn list_clip(dir: &Path) -> (Vec<FrameFile>, Option<String>) {
    if !dir.is_dir() {
        return (
            Vec::new(),
            Some(format!("frame folder {} is missing", dir.display())),
        );
    }
    match frames::list_frames(dir) {
        Ok(f) if f.is_empty() => (
            f,
            Some(format!("frame folder {} has no frames", dir.display())),
        ),
        Ok(f) => (f, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_and_cells() {
        assert_eq!(
            split_csv_line(r#"1, "a,b" ,"q""x""#),
            vec!["1", "a,b", "q\"x"]
        );
        let row = Row {
            number: 7,
            cells: vec!["12".into(), "/".into(), "x".into()],
        };
        let f = Path::new("w.xlsx");
        assert_eq!(parse_frame_cell(f, &row, 0, "Onset").unwrap(), Some(12));
        assert_eq!(parse_frame_cell(f, &row, 1, "Apex").unwrap(), None);
        let e = parse_frame_cell(f, &row, 2, "Offset")
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.xlsx: row 7: Offset"), "{e}");
        assert_eq!(parse_objective_class("III"), Some(Ok(3)));
        assert_eq!(parse_objective_class("5"), Some(Ok(5)));
        assert_eq!(parse_objective_class(""), None);
        assert!(matches!(parse_objective_class("9"), Some(Err(_))));
    }
}
