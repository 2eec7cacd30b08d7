//! One running agent per identity: an exclusive lock on the agent's data directory or key file.
//!
//! Two live processes with the same agent key would publish clashing sequence numbers, which
//! receivers drop as replays, so a second `build()` with the same home fails instead. The lock
//! is an advisory `flock` on a small file that also names the holder's process id; the kernel
//! drops it when its holder exits, however it exits, so a stale file never blocks anyone.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Held while an agent runs; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the lock file at `path` (created, mode 0600, if missing) for the agent whose `what`
    /// (e.g. "data dir /home/me/agent") it guards; fails with [`ErrorKind::InUse`] naming the
    /// holding process while another agent holds it.
    pub fn acquire(path: &Path, what: &str) -> Result<Self> {
        let io = |e: std::io::Error| Error::io(format_args!("cannot lock {}", path.display()), &e);
        let mut file = crate::private_files::open_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim().parse::<u32>() {
                    Ok(pid) => format!("process {pid}"),
                    Err(_) => "another process".to_owned(),
                };
                return Err(Error::new(
                    ErrorKind::InUse,
                    format!(
                        "{what} is in use by a running agent ({holder} holds {}): an agent runs \
                         once at a time; give each agent its own data dir, or close the other one",
                        path.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // Ours now: say who holds it, for the error the next one gets.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.lock");
        let first = InstanceLock::acquire(&path, "data dir X").unwrap();
        let err = InstanceLock::acquire(&path, "data dir X").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InUse);
        let pid = std::process::id().to_string();
        assert!(err.message().starts_with("data dir X is in use"), "{err}");
        assert!(
            err.message().contains(&format!("process {pid} holds")),
            "{err}"
        );
        assert!(err.message().contains(&path.display().to_string()), "{err}");
        drop(first);
        InstanceLock::acquire(&path, "data dir X").unwrap();
    }

    #[test]
    fn an_unusable_path_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = InstanceLock::acquire(&dir.path().join("missing/agent.lock"), "x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.message().contains("cannot lock"), "{err}");
    }
}
