//! The command-line faces, one file each.

use anyhow::Context;

pub mod agent;
pub mod check_pull;
pub mod du;
mod screen;
pub mod status;

/// Exit code when Headroom itself failed.
pub const EXIT_ERROR: u8 = 3;

/// The command's one async runtime (containerd speaks gRPC), with `workers`
/// threads. A multi-thread runtime even for one worker: its workers drive
/// the I/O of futures that other threads block on (`Handle::block_on`), as
/// the scanner thread and a one-shot scan do.
fn async_runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// The exit code of the worst verdict among `states` (`ok`, `warning`,
/// `pressure`): 2 pressure, 1 warning, else 0.
fn exit_code_of<'a>(states: impl Iterator<Item = &'a str>) -> u8 {
    states
        .map(|s| match s {
            "pressure" => 2,
            "warning" => 1,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}
