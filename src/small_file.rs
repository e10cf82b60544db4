//! Reading a small file whole (a config, a credential store, a CA bundle),
//! bounded: on a node, any of them may be hostile or simply wrong.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::OFlag;

/// The bytes of the regular file `path`, at most `limit` of them; `None`
/// when there is no file. Symbolic links are followed (configs are often
/// linked into place). Errors: a larger file (`FileTooLarge`); anything but
/// a regular file (`InvalidInput`): a FIFO or a device, which would block or
/// never end, is refused before a byte is read.
pub fn read(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    // O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NONBLOCK.bits())
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    read_at_most(file, limit).map(Some)
}

/// [`read`] as UTF-8 text; text that is not is `InvalidData`.
pub fn read_text(path: &Path, limit: u64) -> io::Result<Option<String>> {
    read(path, limit)?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })
        .transpose()
}

/// One byte past the bound tells a file at the bound from a larger one (a
/// file may grow after its size was read).
fn read_at_most(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than the {limit}-byte limit"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read(&path, 5).unwrap().unwrap(), b"12345");
        assert_eq!(
            read(&path, 4).unwrap_err().kind(),
            io::ErrorKind::FileTooLarge
        );
        assert!(read(&dir.path().join("absent"), 5).unwrap().is_none());
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_text(&path, 5).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn fault_a_fifo_or_a_directory_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(
            &fifo,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .unwrap();
        assert_eq!(
            read(&fifo, 10).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            read(dir.path(), 10).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
