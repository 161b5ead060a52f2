//! The real-layout readers against folders and workbooks written by an INDEPENDENT writer (openpyxl, from
//! the project's Python), not by our own generator: CASME II (both frame layouts + objective classes),
//! SAMM (13-row preamble, mixed 4/5-digit padding), SMIC-HS original and SMIC-E.

use mer_shared::Dataset;
use mer_worker::prep::datasets::{casme2, read_dataset, samm, smic, DatasetKind};
use std::path::{Path, PathBuf};

fn python() -> PathBuf {
    mer_shared::fixtures::project_python()
}

/// Writes an xlsx workbook with openpyxl. `rows` is a Python literal: a list of (row, [cells]) with 1-based
/// spreadsheet rows; `None` cells stay empty.
fn openpyxl(path: &Path, rows: &str) {
    let script = format!(
        "import openpyxl\nwb = openpyxl.Workbook()\nws = wb.active\nfor r, cells in {rows}:\n    for c, v in enumerate(cells):\n        if v is not None:\n            ws.cell(row=r, column=c + 1, value=v)\nwb.save(r'{}')\n",
        path.display()
    );
    let o = std::process::Command::new(python())
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "openpyxl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn frames(dir: &Path, names: impl IntoIterator<Item = String>) {
    std::fs::create_dir_all(dir).unwrap();
    for n in names {
        std::fs::write(dir.join(n), b"not decoded by the readers").unwrap();
    }
}

fn casme2_workbooks(root: &Path) {
    openpyxl(
        &root.join("CASME2-coding-20140508.xlsx"),
        r#"[(1, ["Subject", "Filename", "Unnamed: 2", "OnsetFrame", "ApexFrame", "OffsetFrame", "Unnamed: 6", "Action Units", "Estimated Emotion"]),
            (2, [1, "EP02_01f", None, 8, 11, 14, None, "12", "happiness"]),
            (3, [1, "EP19_05f", None, 46, "/", 86, None, "4+L10", "disgust"]),
            (4, [17, "EP03_02", None, 5, 6, 7, None, "R12", "others"])]"#,
    );
    openpyxl(
        &root.join("CASME2-ObjectiveClasses.xlsx"),
        r#"[(1, ["Subject", "Filename", "Objective Class"]), (2, [1, "EP02_01f", 1]), (3, [1, "EP19_05f", "III"]), (4, [17, "EP03_02", 7])]"#,
    );
}

fn check_casme2(root: &Path, prefix: &str) {
    let r = read_dataset(DatasetKind::Casme2, root).unwrap();
    assert_eq!(r.len(), 3);
    let a = &r[0];
    assert_eq!(
        (a.subject.as_str(), a.filename.as_str()),
        ("sub01", "EP02_01f")
    );
    assert_eq!((a.onset, a.apex, a.offset), (8, Some(11), 14));
    assert_eq!(a.objective_class, Some(1));
    assert_eq!(a.labels()["megc3"], 1);
    assert_eq!(a.labels()["objective5"], 0);
    assert_eq!(a.labels()["emotion5"], 0);
    // Numeric order, not lexical: 8, 9, 10, ... 14.
    let nums: Vec<u32> = a.frames.iter().map(|f| f.number).collect();
    assert_eq!(nums, (8..=14).collect::<Vec<_>>());
    assert!(a.frames[2]
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(prefix));
    assert!(a.problem.is_none());
    // Missing apex ("/") is kept as None: preparation reports it unless a correction supplies it.
    assert_eq!(r[1].apex, None);
    assert_eq!(r[1].objective_class, Some(3));
    assert_eq!(r[1].labels()["megc3"], 0);
    // A clip whose folder is missing is read, with the problem noted for preparation.
    assert_eq!(r[2].subject, "sub17");
    assert!(r[2].problem.as_deref().unwrap().contains("missing"));
    assert!(!r[2].labels().contains_key("megc3"));
    assert_eq!(r[2].labels()["emotion5"], 4);
}

#[test]
fn casme2_raw_selected_and_cropped_layouts() {
    for (layout, prefix) in [("CASME2_RAW_selected", "img"), ("Cropped", "reg_img")] {
        let d = tempfile::tempdir().unwrap();
        casme2_workbooks(d.path());
        frames(
            &d.path().join(layout).join("sub01").join("EP02_01f"),
            (8..=14).map(|n| format!("{prefix}{n}.jpg")),
        );
        frames(
            &d.path().join(layout).join("sub01").join("EP19_05f"),
            (46..=86).map(|n| format!("{prefix}{n}.jpg")),
        );
        check_casme2(d.path(), prefix);
    }
}

#[test]
fn casme2_bad_cells_name_file_row_and_field() {
    let d = tempfile::tempdir().unwrap();
    openpyxl(
        &d.path().join("CASME2-coding-20190701.xlsx"),
        r#"[(1, ["Subject", "Filename", "x", "OnsetFrame", "ApexFrame", "OffsetFrame", "x", "AU", "Estimated Emotion"]),
            (2, [1, "EP02_01f", None, 8, 11, 14, None, "12", "happiness"]),
            (3, [2, "EP02_02", None, "eight", 11, 14, None, "12", "happiness"])]"#,
    );
    std::fs::create_dir_all(d.path().join("CASME2_RAW_selected")).unwrap();
    let e = casme2::read(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("CASME2-coding-20190701.xlsx: row 3: OnsetFrame: 'eight'"),
        "{e}"
    );
    let e = read_dataset(DatasetKind::Casme2, &d.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a folder"), "{e}");
}

#[test]
fn samm_preamble_and_mixed_padding() {
    let d = tempfile::tempdir().unwrap();
    let mut rows = String::from("[(1, [\"SAMM database\"]), (2, [\"Micro-movement coding\"]), (5, [\"Version 2\"]), (13, [\"notes\"]),");
    rows += r#"(14, ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration", "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes"]),
        (15, [6, "006_1_2", 1, 5562, 5566, 5570, 9, "Micro - 1/2", "R14", "Contempt", 4, None]),
        (16, ["006", "006_1_3", 1, 1020, 1021, 1030, 11, "Micro - 1/2", "4+7", "Anger", "III", "x"]),
        (17, ["011", "011_2_1", 2, 300, 305, 310, 11, "Micro - 1/2", "12", "Happiness", 1, None])]"#;
    openpyxl(&d.path().join("SAMM_Micro_FACS_Codes_v2.xlsx"), &rows);
    let clip1 = d.path().join("SAMM").join("006").join("006_1_2");
    frames(&clip1, (5560..=5572).map(|n| format!("006_{n:04}.jpg")));
    let clip2 = d.path().join("SAMM").join("006").join("006_1_3");
    frames(&clip2, (1018..=1032).map(|n| format!("006_{n:05}.jpg")));
    let clip3 = d.path().join("SAMM").join("011").join("011_2_1");
    frames(&clip3, (298..=312).map(|n| format!("011_{n:05}.jpg")));
    let r = samm::read(d.path()).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(
        (r[0].subject.as_str(), r[0].filename.as_str()),
        ("6", "006_1_2")
    );
    assert_eq!(
        (r[0].onset, r[0].apex, r[0].offset),
        (5562, Some(5566), 5570)
    );
    assert_eq!(r[0].frames.first().unwrap().number, 5560);
    assert_eq!(r[0].frames.len(), 13);
    assert_eq!(r[1].subject, "6");
    assert_eq!(r[1].frames.first().unwrap().number, 1018);
    assert!(r[1].frames[0].path.ends_with("006_01018.jpg"));
    assert_eq!(r[1].objective_class, Some(3));
    assert_eq!(r[1].labels()["megc3"], 0);
    assert_eq!(r[1].labels()["emotion5"], 1);
    assert_eq!(r[2].subject, "11");
    assert_eq!(r[2].labels()["megc3"], 1);
    assert!(r[2].source.ends_with(":17"), "{}", r[2].source);

    // No header row at all: a clear error naming the workbook.
    let d2 = tempfile::tempdir().unwrap();
    openpyxl(
        &d2.path().join("SAMM_Micro_FACS_Codes_v2.xlsx"),
        r#"[(1, ["nothing", "here"])]"#,
    );
    let e = samm::read(d2.path()).unwrap_err().to_string();
    assert!(
        e.contains("SAMM_Micro_FACS_Codes_v2.xlsx") && e.contains("header"),
        "{e}"
    );
}

#[test]
fn smic_original_layout() {
    let d = tempfile::tempdir().unwrap();
    let hs = d.path().join("HS");
    frames(
        &hs.join("s1/micro/negative/s1_ne_01"),
        (559740..=559752).map(|n| format!("reg_image{n:06}.bmp")),
    );
    frames(
        &hs.join("s1/micro/surprise/s1_sur_01"),
        (100001..=100010).map(|n| format!("reg_image{n:06}.bmp")),
    );
    frames(
        &hs.join("s12/micro/positive/s12_po_03"),
        (7..=9).map(|n| format!("reg_image{n:06}.bmp")),
    );
    std::fs::create_dir_all(hs.join("s12/non_micro")).unwrap();
    let r = smic::read_original(d.path()).unwrap();
    assert_eq!(r.len(), 3);
    let a = &r[0];
    assert_eq!(
        (a.subject.as_str(), a.filename.as_str(), a.emotion.as_str()),
        ("s01", "s01_ne_01", "negative")
    );
    assert_eq!((a.onset, a.apex, a.offset), (559740, Some(559746), 559752));
    assert!(a.apex_estimated);
    assert_eq!(a.labels()["megc3"], 0);
    assert_eq!(r[1].apex, Some(100005)); // 10 frames: index (10 - 1) / 2 = 4
    assert_eq!(r[1].labels()["megc3"], 2);
    assert_eq!(
        (r[2].subject.as_str(), r[2].filename.as_str()),
        ("s12", "s12_po_03")
    );
    assert_eq!(r[2].labels()["megc3"], 1);
    assert!(!r[2].labels().contains_key("emotion5"));
    // Pointing at the HS folder itself works too.
    assert_eq!(smic::read_original(&hs).unwrap().len(), 3);
}

#[test]
fn smic_e_layout_with_annotation_workbook() {
    let d = tempfile::tempdir().unwrap();
    openpyxl(
        &d.path().join("SMIC-HS-E_annotation.xlsx"),
        r#"[(1, ["Subject", "Filename", "OnsetF", "OffsetF", "Emotion"]),
            (2, ["s03", "s3_sur_01", 308866, 308880, "surprise"]),
            (3, [3, "s3_ne_02", 1200, 1210, "negative"]),
            (4, ["s04", "s4_po_01", 50, 60, "happy"])]"#,
    );
    frames(
        &d.path().join("SMIC-HS-E/s03/s3_sur_01"),
        (308860..=308886).map(|n| format!("image{n}.jpg")),
    );
    frames(
        &d.path().join("SMIC-HS-E/s03/s3_ne_02"),
        (1195..=1215).map(|n| format!("image{n}.jpg")),
    );
    let e = smic::read_extended(d.path()).unwrap_err().to_string();
    assert!(
        e.contains("SMIC-HS-E_annotation.xlsx: row 4: Emotion: 'happy'"),
        "{e}"
    );
    openpyxl(
        &d.path().join("SMIC-HS-E_annotation.xlsx"),
        r#"[(1, ["Subject", "Filename", "OnsetF", "OffsetF", "Emotion"]),
            (2, ["s03", "s3_sur_01", 308866, 308880, "surprise"]),
            (3, [3, "s3_ne_02", 1200, 1210, "negative"])]"#,
    );
    let r = read_dataset(DatasetKind::SmicE, d.path()).unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].subject.as_str(), r[0].filename.as_str()),
        ("s03", "s03_sur_01")
    );
    assert_eq!(
        (r[0].onset, r[0].apex, r[0].offset),
        (308866, Some(308873), 308880)
    );
    assert!(r[0].apex_estimated);
    assert_eq!(r[0].frames.len(), 27); // the folder has context frames beyond onset..offset
    assert_eq!(r[1].dataset, Dataset::Smic);
    assert_eq!(
        (r[1].onset, r[1].apex, r[1].offset),
        (1200, Some(1205), 1210)
    );
    assert_eq!(r[1].labels()["megc3"], 0);
}

#[test]
fn csv_annotations_read_too() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("CASME2-coding-updated.csv"),
        "Subject,Filename,x,OnsetFrame,ApexFrame,OffsetFrame,x,Action Units,Estimated Emotion\n1,EP02_01f,,8,11,14,,12,happiness\n",
    )
    .unwrap();
    frames(
        &d.path().join("Cropped/sub01/EP02_01f"),
        (8..=14).map(|n| format!("reg_img{n}.jpg")),
    );
    let r = casme2::read(d.path()).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].frames.len(), 7);
    assert_eq!(r[0].apex, Some(11));
}
