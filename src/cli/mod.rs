//! The command-line faces, one file each.

use anyhow::Context;

pub mod agent;
pub mod audit;
pub mod check_pull;
pub mod du;
mod fit;
pub mod fleet;
pub mod help;
mod in_flight;
mod printable;
pub mod registry_access;
mod screen;
pub mod status;

use headroom::model::State;

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

/// The exit code of the worst verdict among `states`: 2 pressure, 1
/// warning, else 0.
fn exit_code_of(states: impl Iterator<Item = State>) -> u8 {
    match states.max() {
        Some(State::Pressure) => 2,
        Some(State::Warning) => 1,
        Some(State::Ok) | None => 0,
    }
}
