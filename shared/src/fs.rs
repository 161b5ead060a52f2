//! File utilities every crate uses: [`write_atomic`], the one way results, prepared files,
//! checkpoints and logs reach the disk.

use crate::error::SharedError;
use std::io::Write;
use std::path::Path;

/// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, then rename. A crash
/// leaves either the old file or the new one, never a partial file under `path`.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SharedError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| SharedError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(SharedError::io(path, e));
    }
    Ok(())
}
