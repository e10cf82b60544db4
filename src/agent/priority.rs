//! The lowest CPU and I/O priority for the scanning thread, so measuring the
//! node never competes with its workloads. Linux applies both per thread and
//! new threads inherit them, so the walker's workers run at this priority too
//! while the HTTP server's threads keep the normal one.

use std::io;

/// The weakest nice value.
const NICE_LOWEST: i32 = 19;
/// `IOPRIO_WHO_PROCESS` from linux/ioprio.h: `who` is a thread ID (0: caller).
const IOPRIO_WHO_PROCESS: libc::c_long = 1;
/// `IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0)`: I/O only when the disk is idle.
const IOPRIO_IDLE: libc::c_long = 3 << 13;

/// Lowers the calling thread to nice 19 and the idle I/O class. Each that
/// fails (e.g. a seccomp profile forbids it) is returned as an error for the
/// caller to log; scanning works either way.
pub fn lower_current_thread() -> Vec<io::Error> {
    let mut failures = Vec::new();
    if let Err(e) = rustix::process::setpriority_process(None, NICE_LOWEST) {
        failures.push(io::Error::other(format!("setting nice {NICE_LOWEST}: {e}")));
    }
    if let Err(e) = set_idle_io_class() {
        failures.push(io::Error::other(format!("setting the idle I/O class: {e}")));
    }
    failures
}

#[allow(unsafe_code)]
fn set_idle_io_class() -> io::Result<()> {
    // SAFETY: ioprio_set takes three integers and touches no memory of ours;
    // no safe wrapper exists in libc, nix or rustix.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_IDLE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run on a thread of its own so the test runner's threads keep theirs.
    #[test]
    fn lowers_nice_and_io_class_of_the_calling_thread_only() {
        let (nice, io_class) = std::thread::spawn(|| {
            assert!(lower_current_thread().is_empty());
            let tid = rustix::thread::gettid().as_raw_nonzero().get();
            (read_nice(tid), read_io_class(tid))
        })
        .join()
        .unwrap();
        assert_eq!(nice, NICE_LOWEST);
        assert_eq!(io_class, "idle");
        let own = rustix::thread::gettid().as_raw_nonzero().get();
        assert_ne!(
            read_nice(own),
            NICE_LOWEST,
            "the caller's other threads keep theirs"
        );
    }

    /// Field 19 of /proc/thread-self/stat, read independently of rustix.
    fn read_nice(tid: i32) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        after_comm.split(' ').nth(16).unwrap().parse().unwrap()
    }

    /// The class as util-linux's ionice reports it.
    fn read_io_class(tid: i32) -> String {
        let out = std::process::Command::new("ionice")
            .args(["-p", &tid.to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        text.split(':').next().unwrap_or("").to_string()
    }
}
