//! Readers for the real on-disk layouts of CASME II, SAMM and SMIC-HS, and of the newer CAS(ME)^3 (parts A
//! and C), 4DME and MMEW (see `docs/datasets.md`), the MEGC2019 composite selection, and explicit annotation
//! corrections. A reader turns a dataset root into [`ClipRecord`]s: one per annotated clip, with its frame
//! files found by listing.

pub mod casme2;
pub mod casme3;
pub mod composite;
pub mod corrections;
pub mod fourdme;
pub mod frames;
pub mod mmew;
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
    /// The fields every reader fills the same way, for struct-update syntax: a clip of `dataset` whose
    /// frames are in `dir` (listed now; a missing or empty folder becomes the record's `problem`), annotated
    /// at `source` (`file:row`), under `root`. The annotation itself (subject, name, emotion, times) is left
    /// empty for the reader to set; no apex estimate, no objective class, no correction.
    pub fn located(dataset: Dataset, root: &Path, dir: PathBuf, source: String) -> ClipRecord {
        let (frames, problem) = list_clip(&dir);
        ClipRecord {
            dataset,
            subject: String::new(),
            filename: String::new(),
            emotion: String::new(),
            objective_class: None,
            onset: 0,
            apex: None,
            offset: 0,
            apex_estimated: false,
            root: root.to_path_buf(),
            dir,
            frames,
            problem,
            source,
            corrections: Vec::new(),
            megc3_override: None,
        }
    }

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

    /// Whether the clip can be prepared as read: its folder was found, it has an apex, onset <= apex <=
    /// offset, and every frame from onset to offset is on disk (a dropped frame refuses the clip; nothing is
    /// interpolated). Returns the apex; the error names the sample, the annotation's file and row, and for
    /// missing frames the folder, the count and the first one.
    pub fn check(&self) -> Result<u32> {
        let bad = |m: String| WorkerError::sample(self.id(), m);
        if let Some(p) = &self.problem {
            return Err(bad(format!("{p} ({})", self.source)));
        }
        let apex = self.apex.ok_or_else(|| {
            bad(format!(
                "no apex annotated ({}); add a correction to the corrections file",
                self.source
            ))
        })?;
        crate::prep::keyframes::check_times(self.onset, apex, self.offset)
            .map_err(|m| bad(format!("{m} ({})", self.source)))?;
        let missing: Vec<u32> = (self.onset..=self.offset)
            .filter(|&t| frames::find_frame(&self.frames, t).is_none())
            .collect();
        if let Some(first) = missing.first() {
            return Err(bad(format!(
                "{} of the frames {}..{} are missing in {} (first: {first}; {})",
                missing.len(),
                self.onset,
                self.offset,
                self.dir.display(),
                self.source
            )));
        }
        Ok(apex)
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
    /// CAS(ME)^3 part A (`cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx` + `<Subject>/<Filename>/color/`).
    Casme3a,
    /// CAS(ME)^3 part C (`CAS(ME)3_part_C_ME.xlsx` + `<sub>/<count>/color/`).
    Casme3c,
    /// 4DME (`4DME_Labelling_Micro_release v1.xlsx` + `gray_micro/<subject>/<fold_name>/`).
    Fourdme,
    /// MMEW (`MMEW_Micro_Exp.xlsx` + `Micro_Expression/<emotion>/<Filename>/`).
    Mmew,
}

impl DatasetKind {
    /// The dataset part a reader's clips belong to.
    pub fn dataset(self) -> Dataset {
        match self {
            DatasetKind::Casme2 => Dataset::Casme2,
            DatasetKind::Samm => Dataset::Samm,
            DatasetKind::Smic | DatasetKind::SmicE => Dataset::Smic,
            DatasetKind::Casme3a => Dataset::Casme3a,
            DatasetKind::Casme3c => Dataset::Casme3c,
            DatasetKind::Fourdme => Dataset::Fourdme,
            DatasetKind::Mmew => Dataset::Mmew,
        }
    }

    /// The readers that can read clips of `dataset` (SMIC-HS has two releases).
    pub fn of(dataset: Dataset) -> &'static [DatasetKind] {
        match dataset {
            Dataset::Casme2 => &[DatasetKind::Casme2],
            Dataset::Samm => &[DatasetKind::Samm],
            Dataset::Smic => &[DatasetKind::Smic, DatasetKind::SmicE],
            Dataset::Casme3a => &[DatasetKind::Casme3a],
            Dataset::Casme3c => &[DatasetKind::Casme3c],
            Dataset::Fourdme => &[DatasetKind::Fourdme],
            Dataset::Mmew => &[DatasetKind::Mmew],
        }
    }
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
        DatasetKind::Casme3a => casme3::read_part_a(root),
        DatasetKind::Casme3c => casme3::read_part_c(root),
        DatasetKind::Fourdme => fourdme::read(root),
        DatasetKind::Mmew => mmew::read(root),
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
    read_sheet(path, None)
}

/// Reads the sheet named `sheet` of a workbook when it has one (else its first sheet), or a CSV file.
pub fn read_sheet(path: &Path, sheet: Option<&str>) -> Result<Vec<Row>> {
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
    let named = sheet.filter(|n| wb.sheet_names().iter().any(|s| s == n));
    let range = match named {
        Some(n) => wb
            .worksheet_range(n)
            .map_err(|e| bad(format!("sheet {n}: {e}")))?,
        None => wb
            .worksheet_range_at(0)
            .ok_or_else(|| bad("has no sheet".into()))?
            .map_err(|e| bad(e.to_string()))?,
    };
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

/// The columns of an annotation table found by their header names, for the layouts whose workbooks name
/// their columns (the newer sets; their column order differs between releases). Names compare without
/// case, spaces and underscores.
#[derive(Debug, Clone)]
pub struct Columns {
    file: PathBuf,
    header_row: usize,
    by_name: BTreeMap<String, usize>,
}

fn column_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace() && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

impl Columns {
    /// Reads the header `row` of `file` and checks that every one of `required` is there; the error names
    /// the file, the row, the missing columns and the ones found.
    pub fn find(file: &Path, row: &Row, required: &[&str]) -> Result<Self> {
        let by_name: BTreeMap<String, usize> = row
            .cells
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .map(|(i, c)| (column_key(c), i))
            .collect();
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|n| !by_name.contains_key(&column_key(n)))
            .collect();
        if !missing.is_empty() {
            let found: Vec<&str> = row
                .cells
                .iter()
                .map(String::as_str)
                .filter(|c| !c.is_empty())
                .collect();
            return Err(WorkerError::Annotation {
                file: file.into(),
                row: row.number,
                field: "header".into(),
                message: format!(
                    "missing column(s) {}; the header has {}",
                    missing.join(", "),
                    found.join(", ")
                ),
            });
        }
        Ok(Columns {
            file: file.into(),
            header_row: row.number,
            by_name,
        })
    }

    /// The 0-based position of column `name` (one of the required ones, or an optional one).
    pub fn get(&self, name: &str) -> Option<usize> {
        self.by_name.get(&column_key(name)).copied()
    }

    /// The text of column `name` in `row` ("" when the table has no such column).
    pub fn text<'r>(&self, row: &'r Row, name: &str) -> &'r str {
        self.get(name).map_or("", |c| row.cell(c))
    }

    /// A required frame number in column `name`.
    pub fn frame(&self, row: &Row, name: &str) -> Result<u32> {
        match self.get(name) {
            Some(c) => required_frame_cell(&self.file, row, c, name),
            None => Err(self.no_column(row, name)),
        }
    }

    /// An optional frame number in column `name` (blank, `/` or `-`: `None`).
    pub fn optional_frame(&self, row: &Row, name: &str) -> Result<Option<u32>> {
        match self.get(name) {
            Some(c) => parse_frame_cell(&self.file, row, c, name),
            None => Ok(None),
        }
    }

    /// The header's row number (1-based), the data starts after it.
    pub fn header_row(&self) -> usize {
        self.header_row
    }

    /// An error for `row`'s `field`, naming the file and row.
    pub fn error(&self, row: &Row, field: &str, message: impl Into<String>) -> WorkerError {
        WorkerError::Annotation {
            file: self.file.clone(),
            row: row.number,
            field: field.into(),
            message: message.into(),
        }
    }

    fn no_column(&self, row: &Row, name: &str) -> WorkerError {
        self.error(row, name, "the table has no such column")
    }
}

/// Finds a workbook in `dir` whose lower-case name starts with one of `prefixes` (the first prefix that
/// matches wins, so list the preferred release first), with `what` named in the error when none does.
pub fn find_workbook(dir: &Path, prefixes: &[&str], what: &str) -> Result<PathBuf> {
    for p in prefixes {
        let p = p.to_ascii_lowercase();
        if let Some(f) = find_file(dir, |n| {
            let l = n.to_ascii_lowercase();
            l.starts_with(&p) && [".xlsx", ".xls", ".csv"].iter().any(|e| l.ends_with(e))
        })? {
            return Ok(f);
        }
    }
    Err(WorkerError::layout(
        dir,
        format!("no {what} workbook in this folder"),
    ))
}

/// A canonical subject name of `dataset` from a workbook cell, or an error naming the file and row.
pub fn subject_cell(dataset: Dataset, cols: &Columns, row: &Row, field: &str) -> Result<String> {
    dataset
        .canonical_subject(cols.text(row, field))
        .map_err(|e| cols.error(row, field, e.to_string()))
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
