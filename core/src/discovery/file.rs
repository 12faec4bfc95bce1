//! File source: a topology file (JSON, or TOML when the name ends in `.toml`) that an operator
//! edits or that `fae watch` writes.
//!
//! Change detection is a `stat`: the file is re-read when its (device, inode, size, mtime)
//! changes, so checking costs one syscall and an atomic rename (new inode) is always noticed,
//! even within one mtime tick. A file that fails to parse is reported as an error and the
//! caller keeps its last good topology; the same bad file is not re-parsed until it changes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Error, Result, Source, Topology};

/// The identity of one version of a file, as seen by `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

fn stamp(path: &Path) -> Result<Stamp> {
    let m = std::fs::metadata(path)
        .map_err(|e| Error::Unavailable(format!("{}: {e}", path.display())))?;
    Ok(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// Watches one topology file by polling `stat`.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    poll: Duration,
    seen: Option<Stamp>,
    last: Option<Topology>,
}

impl FileSource {
    /// A source for `path`; [`Source::wait_change`] checks it every 100 ms.
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource {
            path: path.into(),
            poll: Duration::from_millis(100),
            seen: None,
            last: None,
        }
    }

    /// Sets how often [`Source::wait_change`] stats the file (at least 1 ms).
    pub fn poll_interval(mut self, every: Duration) -> FileSource {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// The watched path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Non-blocking check, for a supervisor that ticks on its own: one `stat`; if the file
    /// changed since the last read, re-reads it and returns the topology when its pools differ
    /// from the last good one. Errors (missing file, bad content) leave the last good topology
    /// in place; a bad file is reported once per change of the file.
    pub fn poll(&mut self) -> Result<Option<Topology>> {
        let st = stamp(&self.path)?;
        if self.seen == Some(st) {
            return Ok(None);
        }
        self.seen = Some(st);
        let t = Topology::read(&self.path)?;
        if self.last.as_ref().is_some_and(|l| l.same_pools(&t)) {
            // Same membership; keep the newer version/source for callers that show it.
            self.last = Some(t);
            return Ok(None);
        }
        self.last = Some(t.clone());
        Ok(Some(t))
    }

    /// The last good topology read, if any.
    pub fn last(&self) -> Option<&Topology> {
        self.last.as_ref()
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn current(&mut self) -> Result<Topology> {
        let st = stamp(&self.path)?;
        let t = Topology::read(&self.path)?;
        self.seen = Some(st);
        self.last = Some(t.clone());
        Ok(t)
    }

    fn wait_change(&mut self, timeout: Duration) -> Result<Option<Topology>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = self.poll()? {
                return Ok(Some(t));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(self.poll.min(deadline - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_atomic_replace_and_keeps_last_good() {
        let dir = std::env::temp_dir().join(format!("fae-file-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("topo.json");
        std::fs::write(&p, r#"{"pools": {"a": ["h:1"]}}"#).unwrap();
        let mut src = FileSource::new(&p).poll_interval(Duration::from_millis(5));
        assert_eq!(src.current().unwrap().pools["a"], vec!["h:1"]);
        assert_eq!(src.wait_change(Duration::from_millis(20)).unwrap(), None);
        // Same size, possibly the same mtime tick: the rename changes the inode.
        let tmp = dir.join("t");
        std::fs::write(&tmp, r#"{"pools": {"a": ["h:2"]}}"#).unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        let t = src.wait_change(Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!(t.pools["a"], vec!["h:2"]);
        std::fs::write(&tmp, "{ not json").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert!(matches!(src.poll(), Err(Error::Invalid(_))));
        assert_eq!(src.poll().unwrap(), None, "a bad file is reported once");
        assert_eq!(src.last().unwrap().pools["a"], vec!["h:2"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
