//! One server per `--local-dir`: an exclusive lock on a file in the kept folder.
//!
//! Two servers on one data folder would both try to run PostgreSQL in it; the second used
//! to fail deep in PostgreSQL's start-up with a screenful of its log and no word of the
//! cause. The folder's `server.lock` is locked (an OS file lock, `flock` on Unix, through
//! std's `File::try_lock`: no crate needed) for as long as the sandbox lives, and names its
//! holder (pid and start time), so the second server is refused at once, in one line that
//! says who holds the folder. The OS drops the lock when the holder's process ends, however
//! it ends, so a stale file never blocks a later start.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::cluster::ClusterError;

/// The lock file's name inside the kept folder.
pub const LOCK_FILE: &str = "server.lock";

/// The held lock; dropping it (closing the file) releases it.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// Seconds since the Unix epoch, now.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl FolderLock {
    /// Takes the lock of `dir` (which exists), or says who holds it.
    pub fn take(dir: &Path) -> Result<FolderLock, ClusterError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ClusterError(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut held = String::new();
                let _ = file.read_to_string(&mut held);
                return Err(ClusterError(format!(
                    "{} is in use by another aurora-dsql-mcp-server ({}): stop that server, or give this one another --local-dir",
                    dir.display(),
                    holder(&held)
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(ClusterError(format!("cannot lock {}: {e}", path.display())));
            }
        }
        let me = format!("pid={}\nstarted={}\n", std::process::id(), now());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| ClusterError(format!("cannot write {}: {e}", path.display())))?;
        Ok(FolderLock { _file: file })
    }
}

/// "pid 4242, started 12 s ago" from the lock file's text (what can be read of it).
fn holder(text: &str) -> String {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (field("pid"), field("started")) {
        (Some(pid), Some(started)) => {
            format!("pid {pid}, started {} s ago", now().saturating_sub(started))
        }
        (Some(pid), None) => format!("pid {pid}"),
        _ => "its pid is not recorded yet".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = FolderLock::take(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(
            text.starts_with(&format!("pid={}\nstarted=", std::process::id())),
            "{text}"
        );
        // A second open file description conflicts even in the same process.
        let e = FolderLock::take(dir.path()).unwrap_err().0;
        let head = format!(
            "{} is in use by another aurora-dsql-mcp-server (pid {}, started ",
            dir.path().display(),
            std::process::id()
        );
        assert!(e.starts_with(&head), "{e}");
        assert!(
            e.ends_with(" s ago): stop that server, or give this one another --local-dir"),
            "{e}"
        );
        drop(first);
        // Released with the file: the folder can be taken again.
        let again = FolderLock::take(dir.path()).unwrap();
        drop(again);
    }

    #[test]
    fn holder_reads_what_there_is() {
        assert_eq!(holder("pid=7\n"), "pid 7");
        assert_eq!(holder(""), "its pid is not recorded yet");
    }
}
