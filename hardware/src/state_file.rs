//! A node's durable state on disk: what `cx.persist` saved, written so that a crash at any
//! instant leaves either the previous state or the new one, and read back so that a torn,
//! truncated or foreign file is an error that names the file, never a wrong state.
//!
//! The file is a header then the state: the magic `REHEARSAL-STATE\n` (16 bytes), the
//! state's length in bytes (u64, little-endian), the BLAKE3 hash of the state (32 bytes),
//! then the state itself, which is opaque here (the protocol's own encoding).
//!
//! ```
//! use rehearsal_hardware::{load_state, save_state, StateFileError};
//!
//! let dir = std::env::temp_dir().join(format!("state-file-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("n0.state");
//! assert_eq!(load_state(&path).unwrap(), None); // never saved: a first start
//! save_state(&path, b"view 3").unwrap();
//! assert_eq!(load_state(&path).unwrap().as_deref(), Some(&b"view 3"[..]));
//!
//! std::fs::write(&path, b"not a state").unwrap();
//! let error = load_state(&path).unwrap_err();
//! assert!(matches!(error, StateFileError::NotAStateFile { .. }));
//! assert!(error.to_string().contains("n0.state"));
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every state file.
const MAGIC: &[u8; 16] = b"REHEARSAL-STATE\n";
/// Magic, length, hash.
const HEADER_BYTES: usize = MAGIC.len() + 8 + 32;

/// Why a state file could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// The file exists but could not be read.
    #[error("cannot read the durable state file {}: {source}", path.display())]
    Read {
        /// The state file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file does not start with the state-file header: not written by [`save_state`].
    #[error(
        "{} is not a durable state file (it does not start with the state-file header); \
         give the node the file it saved, or move this one away to start it afresh",
        path.display()
    )]
    NotAStateFile {
        /// The state file.
        path: PathBuf,
    },
    /// The file ends inside its header.
    #[error(
        "the durable state file {} is truncated: it holds {found} bytes, fewer than its \
         {HEADER_BYTES}-byte header",
        path.display()
    )]
    TruncatedHeader {
        /// The state file.
        path: PathBuf,
        /// Bytes in the file.
        found: u64,
    },
    /// The file is shorter or longer than its header says.
    #[error(
        "the durable state file {} is truncated or has bytes appended: its header announces \
         {expected} bytes of state, it holds {found}",
        path.display()
    )]
    WrongLength {
        /// The state file.
        path: PathBuf,
        /// State bytes the header announces.
        expected: u64,
        /// State bytes present after the header.
        found: u64,
    },
    /// The state's hash does not match the one in the header.
    #[error(
        "the durable state file {} is corrupt: its content does not match its checksum",
        path.display()
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
    },
}

/// Writes a node's durable state to `path` atomically and durably: into a temporary file
/// in the same directory (`path` with `.tmp` appended), synced, renamed over `path`, and
/// the directory synced. A crash leaves either the old state or the new one, never a mix;
/// a leftover temporary file is overwritten by the next save and never read.
pub fn save_state(path: &Path, state: &[u8]) -> io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    let mut header = [0u8; HEADER_BYTES];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&(state.len() as u64).to_le_bytes());
    header[MAGIC.len() + 8..].copy_from_slice(blake3::hash(state).as_bytes());
    file.write_all(&header)?;
    file.write_all(state)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // Syncing a directory is how a rename is made durable on Unix; elsewhere it may be
    // refused, and the rename is as durable as the platform makes it.
    if let Ok(directory) = File::open(directory) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// Reads the durable state [`save_state`] wrote to `path`: `None` if there is no file (a
/// node that never saved, or its first start); an error naming the file if it cannot be
/// read or is not whole.
pub fn load_state(path: &Path) -> Result<Option<Vec<u8>>, StateFileError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let path = || path.to_path_buf();
    if bytes.len() < HEADER_BYTES || !bytes.starts_with(MAGIC) {
        // A file cut inside its header is as unreadable as a foreign one, but say which.
        if bytes.len() < HEADER_BYTES && MAGIC.starts_with(&bytes[..bytes.len().min(16)]) {
            return Err(StateFileError::TruncatedHeader {
                path: path(),
                found: bytes.len() as u64,
            });
        }
        return Err(StateFileError::NotAStateFile { path: path() });
    }
    let (header, state) = bytes.split_at(HEADER_BYTES);
    let mut length = [0u8; 8];
    length.copy_from_slice(&header[MAGIC.len()..MAGIC.len() + 8]);
    let expected = u64::from_le_bytes(length);
    if expected != state.len() as u64 {
        return Err(StateFileError::WrongLength {
            path: path(),
            expected,
            found: state.len() as u64,
        });
    }
    if blake3::hash(state).as_bytes() != &header[MAGIC.len() + 8..] {
        return Err(StateFileError::Corrupt { path: path() });
    }
    Ok(Some(state.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rehearsal-state-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_saved_state_reads_back_and_a_new_save_replaces_it() {
        let dir = scratch("replace");
        let path = dir.join("n1.state");
        assert_eq!(load_state(&path).unwrap(), None);
        save_state(&path, b"first").unwrap();
        save_state(&path, b"second, longer").unwrap();
        assert_eq!(load_state(&path).unwrap().unwrap(), b"second, longer");
        save_state(&path, b"").unwrap();
        assert_eq!(load_state(&path).unwrap().unwrap(), b"");
        // Only the state file is left: the temporary file was renamed over it.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["n1.state"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_leftover_temporary_file_is_neither_read_nor_in_the_way() {
        let dir = scratch("leftover");
        let path = dir.join("n1.state");
        save_state(&path, b"kept").unwrap();
        // A crash between the write of the temporary file and the rename.
        fs::write(dir.join("n1.state.tmp"), b"half a st").unwrap();
        assert_eq!(load_state(&path).unwrap().unwrap(), b"kept");
        save_state(&path, b"next").unwrap();
        assert_eq!(load_state(&path).unwrap().unwrap(), b"next");
        assert!(!dir.join("n1.state.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_truncated_state_file_is_an_error_naming_it() {
        let dir = scratch("truncated");
        let path = dir.join("n2.state");
        save_state(&path, &[7u8; 100]).unwrap();
        let whole = fs::read(&path).unwrap();
        for cut in [whole.len() - 1, HEADER_BYTES, HEADER_BYTES - 1, 10, 0] {
            fs::write(&path, &whole[..cut]).unwrap();
            let error = load_state(&path).unwrap_err();
            let expected = if cut < HEADER_BYTES {
                matches!(error, StateFileError::TruncatedHeader { .. })
            } else {
                matches!(error, StateFileError::WrongLength { .. })
            };
            assert!(expected, "cut at {cut}: {error:?}");
            assert!(error.to_string().contains("n2.state"), "{error}");
        }
        let mut longer = whole.clone();
        longer.push(0);
        fs::write(&path, &longer).unwrap();
        let error = load_state(&path).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("announces 100 bytes of state, it holds 101"),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_or_foreign_state_file_is_an_error_naming_it() {
        let dir = scratch("corrupt");
        let path = dir.join("n3.state");
        save_state(&path, b"a replica's view and checkpoint").unwrap();
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let error = load_state(&path).unwrap_err();
        assert!(matches!(error, StateFileError::Corrupt { .. }), "{error:?}");
        assert!(error.to_string().contains("n3.state"), "{error}");

        fs::write(
            &path,
            b"{\"view\": 3, \"this is\": \"some other file entirely\"}",
        )
        .unwrap();
        let error = load_state(&path).unwrap_err();
        assert!(
            matches!(error, StateFileError::NotAStateFile { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("n3.state"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_file_that_cannot_be_read_is_an_error_naming_it() {
        let dir = scratch("unreadable");
        // A directory where the file should be: exists, yet cannot be read as a file.
        let path = dir.join("n4.state");
        fs::create_dir(&path).unwrap();
        let error = load_state(&path).unwrap_err();
        assert!(matches!(error, StateFileError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("n4.state"), "{error}");
        // And saving over it fails rather than writing elsewhere.
        assert!(save_state(&path, b"x").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
