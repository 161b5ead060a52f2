//! Frame files of a clip folder, found by listing and ordered by the trailing integer of the file name
//! (`img46.jpg`, `reg_img46.jpg`, `006_05562.jpg`, `reg_image559740.bmp`). Frame file names are never built
//! from numbers: the datasets pad them differently (none, 4 or 5 digits, 6 digits).

use crate::error::{Result, WorkerError};
use std::path::{Path, PathBuf};

/// Image file extensions read as frames.
pub const FRAME_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "bmp", "png", "tif", "tiff"];

/// One frame file and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameFile {
    /// The frame number parsed from the file name.
    pub number: u32,
    /// Full path of the file.
    pub path: PathBuf,
}

/// Parses the trailing integer of a file stem (`reg_img046` -> 46, `006_05562` -> 5562).
pub fn trailing_number(stem: &str) -> Option<u32> {
    let digits: String = stem
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    if digits.is_empty() {
        return None;
    }
    digits.chars().rev().collect::<String>().parse().ok()
}

/// Lists the frames of a clip folder, sorted numerically. Files that are not images are ignored; an image
/// without a trailing number, or two files with the same number, is an error naming the file.
pub fn list_frames(dir: &Path) -> Result<Vec<FrameFile>> {
    let rd = std::fs::read_dir(dir).map_err(|e| WorkerError::io(dir, e))?;
    let mut out: Vec<FrameFile> = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| WorkerError::io(dir, e))?;
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if !FRAME_EXTENSIONS.contains(&ext.as_str()) {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let number = trailing_number(&stem).ok_or_else(|| {
            WorkerError::layout(&path, "frame file name has no trailing frame number")
        })?;
        out.push(FrameFile { number, path });
    }
    out.sort_by(|a, b| a.number.cmp(&b.number).then_with(|| a.path.cmp(&b.path)));
    for w in out.windows(2) {
        if w[0].number == w[1].number {
            return Err(WorkerError::layout(
                &w[1].path,
                format!(
                    "frame number {} also used by {}",
                    w[1].number,
                    w[0].path.display()
                ),
            ));
        }
    }
    Ok(out)
}

/// Finds the frame with number `n` in a sorted listing.
pub fn find_frame(frames: &[FrameFile], n: u32) -> Option<&FrameFile> {
    frames
        .binary_search_by_key(&n, |f| f.number)
        .ok()
        .map(|i| &frames[i])
}

/// A grayscale frame, row-major, values in 0..=255 as f32 (the working format of key-frame construction).
#[derive(Debug, Clone, PartialEq)]
pub struct GrayFrame {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height` values, row-major.
    pub data: Vec<f32>,
}

impl GrayFrame {
    /// A frame filled with `value`.
    pub fn filled(width: usize, height: usize, value: f32) -> Self {
        GrayFrame {
            width,
            height,
            data: vec![value; width * height],
        }
    }

    /// The pixel at (x, y).
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trailing_numbers() {
        assert_eq!(trailing_number("img46"), Some(46));
        assert_eq!(trailing_number("reg_img046"), Some(46));
        assert_eq!(trailing_number("006_05562"), Some(5562));
        assert_eq!(trailing_number("reg_image559740"), Some(559740));
        assert_eq!(trailing_number("image"), None);
    }

    #[test]
    fn sorts_numerically_with_mixed_padding_and_rejects_duplicates() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "img9.jpg",
            "img10.jpg",
            "img100.jpg",
            "img11.jpg",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let f = list_frames(d.path()).unwrap();
        assert_eq!(
            f.iter().map(|f| f.number).collect::<Vec<_>>(),
            vec![9, 10, 11, 100]
        );
        assert_eq!(
            find_frame(&f, 11).unwrap().path.file_name().unwrap(),
            "img11.jpg"
        );
        assert!(find_frame(&f, 12).is_none());
        std::fs::write(d.path().join("img0010.jpg"), b"x").unwrap();
        let e = list_frames(d.path()).unwrap_err().to_string();
        assert!(e.contains("frame number 10"), "{e}");
    }
}
