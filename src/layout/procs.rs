//! The node's processes as `<root>/proc` shows them: pid and command line.
//!
//! Read directly (not through procfs' `Process`, which reads a whole
//! `cmdline` however long) so that every read is bounded: at most
//! [`MAX_PROCESSES`] entries of `/proc`, at most [`MAX_CMDLINE_BYTES`] of
//! each command line. A process that vanished or hides its command line
//! (`hidepid`) is skipped.

use std::io::Read;
use std::path::Path;

/// The most `/proc` entries looked at (a busy node has a few thousand).
pub const MAX_PROCESSES: usize = 100_000;

/// The most bytes of one command line read (a kubelet's is a few KB).
pub const MAX_CMDLINE_BYTES: u64 = 128 * 1024;

/// One process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Its command line, one element per argument (lossy UTF-8).
    pub argv: Vec<String>,
}

impl Proc {
    /// The program's file name (`kubelet` for `/usr/bin/kubelet`).
    pub fn program(&self) -> &str {
        let first = self.argv.first().map_or("", String::as_str);
        // A process that rewrote its title (`/usr/local/bin/k3s server`)
        // has one argument with spaces: the program is its first word.
        let first = first.split(' ').next().unwrap_or(first);
        first.rsplit('/').next().unwrap_or(first)
    }

    /// The arguments after the program, split as the kernel keeps them, or
    /// at spaces for a rewritten title.
    pub fn args(&self) -> Vec<String> {
        match self.argv.as_slice() {
            [title] => title.split(' ').skip(1).map(str::to_string).collect(),
            [_, rest @ ..] => rest.to_vec(),
            [] => Vec::new(),
        }
    }
}

/// The processes under `<root>/proc`, by pid; empty when there is no
/// `/proc` to read.
pub fn processes(root: &Path) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir(root.join("proc")) else {
        return Vec::new();
    };
    let mut procs: Vec<Proc> = entries
        .take(MAX_PROCESSES)
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let argv = cmdline(&root.join("proc").join(pid.to_string()).join("cmdline"))?;
            Some(Proc { pid, argv })
        })
        .collect();
    procs.sort_by_key(|p| p.pid);
    procs
}

/// A NUL-separated command line, bounded; `None` when unreadable or empty
/// (a kernel thread, a zombie).
fn cmdline(path: &Path) -> Option<Vec<String>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_CMDLINE_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    let argv: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    // The last element is what followed the final NUL (nothing), or a
    // truncated argument.
    let mut argv: Vec<String> = match bytes.last() {
        Some(0) => argv[..argv.len() - 1].to_vec(),
        _ if bytes.len() as u64 == MAX_CMDLINE_BYTES => argv[..argv.len() - 1].to_vec(),
        _ => argv,
    };
    // A rewritten title (k3s') is padded with NULs.
    while argv.last().is_some_and(String::is_empty) {
        argv.pop();
    }
    (!argv.is_empty()).then_some(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, pid: u32, cmdline: &[u8]) {
        let dir = root.join("proc").join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cmdline"), cmdline).unwrap();
    }

    #[test]
    fn command_lines_are_read_by_pid() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), 812, b"/usr/bin/kubelet\0--root-dir=/k\0");
        write(root.path(), 2, b"");
        write(root.path(), 77, b"/usr/local/bin/k3s server\0\0\0");
        std::fs::create_dir_all(root.path().join("proc/self")).unwrap();
        let procs = processes(root.path());
        let got: Vec<(u32, &str, Vec<String>)> = procs
            .iter()
            .map(|p| (p.pid, p.program(), p.args()))
            .collect();
        assert_eq!(
            got,
            [
                (77, "k3s", vec!["server".to_string()]),
                (812, "kubelet", vec!["--root-dir=/k".to_string()]),
            ]
        );
    }

    #[test]
    fn fault_a_huge_command_line_is_read_up_to_the_bound() {
        let root = tempfile::tempdir().unwrap();
        let mut line = b"/usr/bin/kubelet\0--root-dir=/k\0".to_vec();
        line.extend(std::iter::repeat_n(b'x', 4 * MAX_CMDLINE_BYTES as usize));
        write(root.path(), 9, &line);
        write(root.path(), 10, &[0xff, 0xfe, 0, b'-', 0]);
        let procs = processes(root.path());
        assert_eq!(procs[0].argv, ["/usr/bin/kubelet", "--root-dir=/k"]);
        assert_eq!(procs[1].argv, ["\u{fffd}\u{fffd}", "-"]);
    }
}
