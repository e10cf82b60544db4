//! The command-line faces, one file each.

pub mod agent;
pub mod check_pull;
pub mod du;
mod screen;
pub mod status;

use headroom::report::State;

/// Exit code when Headroom itself failed.
pub const EXIT_ERROR: u8 = 3;

/// The exit code of the worst verdict among `states`: 2 pressure, 1
/// warning, else 0.
fn exit_code_of(states: impl Iterator<Item = State>) -> u8 {
    match states.max() {
        Some(State::Pressure) => 2,
        Some(State::Warning) => 1,
        Some(State::Ok) | None => 0,
    }
}
