//! The command-line faces, one file each.

pub mod agent;
pub mod check_pull;
pub mod du;
mod screen;
pub mod status;

/// Exit code when Headroom itself failed.
pub const EXIT_ERROR: u8 = 3;

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
