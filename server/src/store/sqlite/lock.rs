//! One owner per data directory: an exclusive `flock` on `<data-dir>/lock`,
//! held for the life of the store (the process), so that a second
//! `inlet-server` on the same `--data-dir` refuses to start instead of
//! writing the same database beside the first.
//!
//! `flock` (through rustix, already in the dependency tree, rather than a
//! crate of its own or `unsafe` libc calls) is advisory and released by the
//! kernel when the process ends, however it ends: a `kill -9` leaves no
//! stale lock behind. The file holds the owner's pid, written after the
//! lock is taken, only to name it in the second server's message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::store::OpenError;

/// The held lock; dropping it (closing the file) releases it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir` without waiting: `Locked` (naming the holder's
    /// pid when it wrote one) if another process, or another store of this
    /// process, holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, OpenError> {
        let path = dir.join("lock");
        let failed = |source: std::io::Error| OpenError::Lock { dir: dir.to_path_buf(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(failed)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(OpenError::Locked { dir: dir.to_path_buf(), holder: holder(&mut file) });
            }
            Err(e) => return Err(failed(e.into())),
        }
        // Ours now: say who holds it. Not fatal if it fails: the lock is
        // what counts.
        let pid = std::process::id();
        let written = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{pid}"));
        if let Err(e) = written {
            tracing::warn!("cannot write the pid into {}: {e}", path.display());
        }
        Ok(DirLock { _file: file })
    }
}

/// The pid the holder wrote into the lock file, if it is there yet.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TestDir;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = TestDir::new();
        let first = DirLock::acquire(dir.path()).unwrap();
        match DirLock::acquire(dir.path()) {
            Err(OpenError::Locked { dir: d, holder }) => {
                assert_eq!(d, dir.path());
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(dir.path().join("lock")).unwrap(), format!("{}\n", std::process::id()));
        drop(first);
        let again = DirLock::acquire(dir.path());
        assert!(again.is_ok(), "released when the holder is dropped: {again:?}");
    }
}
