//! Reading the small text files libfae is pointed at (config files, topology snapshots):
//! regular files only, with a size cap, so a path to `/dev/zero`, a FIFO or a runaway file
//! is a clear error instead of unbounded memory or a hang.

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest config or snapshot file read (16 MiB; a 1000-server topology is ~40 KiB).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Read `path` as UTF-8 text: it must be a regular file (symlinks followed) of at most
/// [`MAX_FILE_BYTES`].
pub fn read(path: &Path) -> io::Result<String> {
    // Checked before opening: opening a FIFO blocks until a writer comes.
    regular(&std::fs::metadata(path)?)?;
    // O_NONBLOCK: if the path was swapped for a FIFO since, open still returns at once.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    regular(&file.metadata()?)?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(text)
}

fn regular(meta: &std::fs::Metadata) -> io::Result<()> {
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(())
}

fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("larger than {MAX_FILE_BYTES} bytes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_huge_files_are_refused_at_once() {
        let e = read(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let dir = std::env::temp_dir().join(format!("fae-textfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = std::time::Instant::now();
        assert!(read(&fifo).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        let big = dir.join("big.json");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_FILE_BYTES + 1).unwrap();
        let e = read(&big).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        std::fs::write(dir.join("ok.json"), "{}").unwrap();
        assert_eq!(read(&dir.join("ok.json")).unwrap(), "{}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
