//! The command-line faces, one file each.

pub mod agent;
pub mod du;
mod screen;
pub mod status;

/// Exit code when Headroom itself failed.
pub const EXIT_ERROR: u8 = 3;
