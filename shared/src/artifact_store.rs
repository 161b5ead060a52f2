//! The content-addressed artifact store (prepared datasets, prior-learning checkpoints): a file's name is
//! the sha256 of its bytes (`<root>/<first two hex digits>/<hash>`). Writes go to a temporary file that is
//! hashed while written, fsynced, compared with the declared hash and only then renamed into place, so a
//! file under a hash name always has that hash. The coordinator and every worker's cache use it.

use crate::error::SharedError;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether `s` is a sha256 hex digest (64 lowercase hex digits).
pub fn valid_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A content-addressed folder of files.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl ArtifactStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, SharedError> {
        std::fs::create_dir_all(root.join("tmp")).map_err(|e| SharedError::io(root, e))?;
        Ok(ArtifactStore {
            root: root.to_path_buf(),
        })
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifact `hash` lies (whether or not it is there).
    pub fn path_of(&self, hash: &str) -> PathBuf {
        self.root.join(&hash[..2.min(hash.len())]).join(hash)
    }

    /// The size of artifact `hash` when present.
    pub fn size_of(&self, hash: &str) -> Option<u64> {
        if !valid_hash(hash) {
            return None;
        }
        std::fs::metadata(self.path_of(hash))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }

    /// Starts writing an artifact that must hash to `expected`.
    pub fn begin(&self, expected: &str) -> Result<ArtifactWriter, SharedError> {
        if !valid_hash(expected) {
            return Err(SharedError::invalid(
                "artifact hash",
                format!("'{expected}' is not a sha256 hex digest"),
            ));
        }
        let tmp = self.root.join("tmp").join(format!(
            "{expected}.{}.{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&tmp).map_err(|e| SharedError::io(&tmp, e))?;
        Ok(ArtifactWriter {
            tmp,
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
            expected: expected.to_string(),
            dest: self.path_of(expected),
        })
    }

    /// Copies a local file into the store (hashing it on the way) and returns its hash.
    pub fn import_file(&self, path: &Path) -> Result<String, SharedError> {
        let hash = crate::digest::sha256_file(path)?;
        if self.size_of(&hash).is_some() {
            return Ok(hash);
        }
        let mut w = self.begin(&hash)?;
        let mut f = std::fs::File::open(path).map_err(|e| SharedError::io(path, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(|e| SharedError::io(path, e))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        w.finish()?;
        Ok(hash)
    }

    /// Stores `bytes` and returns their hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<String, SharedError> {
        let hash = crate::digest::sha256_hex(bytes);
        if self.size_of(&hash).is_none() {
            let mut w = self.begin(&hash)?;
            w.write(bytes)?;
            w.finish()?;
        }
        Ok(hash)
    }
}

/// An artifact being written; dropped without [`ArtifactWriter::finish`] it leaves nothing behind.
pub struct ArtifactWriter {
    tmp: PathBuf,
    file: Option<std::fs::File>,
    hasher: Sha256,
    size: u64,
    expected: String,
    dest: PathBuf,
}

impl ArtifactWriter {
    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), SharedError> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| SharedError::invalid("artifact writer", "already finished"))?;
        f.write_all(data)
            .map_err(|e| SharedError::io(&self.tmp, e))?;
        self.hasher.update(data);
        self.size += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the hash and moves the file into place; a mismatch removes it and is a
    /// [`SharedError::HashMismatch`].
    pub fn finish(mut self) -> Result<(String, u64), SharedError> {
        let f = self
            .file
            .take()
            .ok_or_else(|| SharedError::invalid("artifact writer", "already finished"))?;
        f.sync_all().map_err(|e| SharedError::io(&self.tmp, e))?;
        drop(f);
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if actual != self.expected {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(SharedError::HashMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        if let Some(dir) = self.dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SharedError::io(dir, e))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| SharedError::io(&self.dest, e))?;
        Ok((actual, self.size))
    }
}

impl Drop for ArtifactWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_hash_and_refuses_bytes_that_do_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let s = ArtifactStore::open(dir.path()).unwrap();
        let h = s.put_bytes(b"hello").unwrap();
        assert_eq!(h, crate::digest::sha256_hex(b"hello"));
        assert_eq!(s.size_of(&h), Some(5));
        assert_eq!(std::fs::read(s.path_of(&h)).unwrap(), b"hello");
        let mut w = s.begin(&crate::digest::sha256_hex(b"other")).unwrap();
        w.write(b"not other").unwrap();
        let e = w.finish().unwrap_err();
        assert!(matches!(e, SharedError::HashMismatch { .. }), "{e}");
        assert!(e.to_string().contains("do not match"), "{e}");
        assert_eq!(s.size_of(&crate::digest::sha256_hex(b"other")), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temporary file left"
        );
        assert!(s.begin("../../etc/passwd").is_err());
        let f = dir.path().join("x.bin");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(s.import_file(&f).unwrap(), h);
    }
}
