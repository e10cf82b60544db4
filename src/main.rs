//! The `headroom` command: parses the command line, resolves the
//! configuration (flags, `HEADROOM_*` variables, config file, defaults),
//! starts logging, enters the host (`host_root`) and finds the node's
//! layout, and hands over to one face.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use headroom::config::{self, Config, Face, Given};
use headroom::layout::root;
use headroom::logging;

mod cli;

/// Keeps Kubernetes nodes out of DiskPressure: attributes every byte of the
/// node's disk to images, layers, containers and logs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One screen for on-call: filesystems and their verdicts, pulls in
    /// flight, top images, containers and emptyDirs, what image GC would
    /// free. Exit 0 ok, 1 warning, 2 pressure now or predicted, 3 error.
    Status(cli::status::StatusArgs),
    /// A plain du: measures the paths given the way Headroom measures
    /// layers (disk and apparent bytes, hard links once, no symlinks
    /// followed, one filesystem). Exit 0 all examined, 1 some not, 3 error.
    Du(cli::du::DuArgs),
    /// Before a pull: what pulling IMAGE onto this node would cost after
    /// the layers already there, and the kubelet's verdict. Exit 0 ok, 1
    /// warning, 2 pressure now or predicted, 3 error, 4-8 a registry
    /// failure by class. With --fleet, every node's agent is asked; 9 a
    /// node did not answer.
    CheckPull(Box<cli::check_pull::CheckPullArgs>),
    /// Where the images' bytes are wasted, node-wide: files deleted or
    /// replaced by later layers, copies that only changed metadata, caches,
    /// and the same files in images sharing no layer. Exit 0 audited, 3
    /// error, 4 an IMAGE named matches none.
    Audit(cli::audit::AuditArgs),
    /// The node agent: keeps the inventory current and serves /metrics,
    /// /healthz, /readyz and /api/v1/status. Exit 0 when stopped by a
    /// signal, 3 error.
    Agent,
}

impl Command {
    fn face(&self) -> Face {
        match self {
            Command::Status(_) => Face::Status,
            Command::Du(_) => Face::Du,
            Command::CheckPull(_) => Face::CheckPull,
            Command::Agent => Face::Agent,
            Command::Audit(_) => Face::Audit,
        }
    }
}

/// `headroom` with every face's configuration flags, output and exit codes.
fn command() -> clap::Command {
    cli::help::with_face_help(config::with_flags(Args::command()))
}

fn main() -> ExitCode {
    // Run as `kubectl-headroom`, check-pull asks the fleet.
    let argv = cli::fleet::plugin_argv(std::env::args_os().collect());
    let matches = match command().try_get_matches_from(argv) {
        Ok(matches) => matches,
        Err(err) => return clap_exit(&err),
    };
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(err) => return clap_exit(&err),
    };
    let face = args.command.face();
    // The configuration flags sit on the face's subcommand.
    let face_matches = matches.subcommand().map_or(&matches, |(_, m)| m);
    let given = Given::new(face_matches, std::env::vars_os());
    let (mut config, settings) = match Config::load_with_settings(&given, face) {
        Ok(loaded) => loaded,
        Err(err) => {
            for problem in &err.problems {
                eprintln!("headroom: {problem}");
            }
            return ExitCode::from(cli::EXIT_ERROR);
        }
    };
    if let Err(err) = logging::init(&config.log) {
        eprintln!("headroom: {err}");
        return ExitCode::from(cli::EXIT_ERROR);
    }
    // After the config file (it lives in Headroom's own filesystem), before
    // anything reads the node.
    let timeout = config.layout.containerd_timeout;
    config.layout = match root::on_node(&config.host_root, &settings, timeout) {
        Ok(layout) => layout,
        Err(err) => {
            eprintln!("headroom: {err}");
            return ExitCode::from(cli::EXIT_ERROR);
        }
    };
    let outcome = match args.command {
        Command::Status(status) => cli::status::run(&status, &config),
        Command::Du(du) => cli::du::run(&du),
        Command::CheckPull(check) => cli::check_pull::run(&check, &config),
        Command::Agent => cli::agent::run(&config),
        Command::Audit(audit) => cli::audit::run(&audit, &config),
    };
    outcome.unwrap_or_else(|err| {
        if is_broken_pipe(&err) {
            // The reader (`| head`) has what it wanted: not an error.
            return ExitCode::SUCCESS;
        }
        eprintln!("headroom: {err:#}");
        ExitCode::from(cli::EXIT_ERROR)
    })
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints clap's message: `--help` and `--version` exit 0, a usage error
/// exits 3 (clap's own 2 would read as "pressure now").
fn clap_exit(err: &clap::Error) -> ExitCode {
    // Nothing better to do when stdout/stderr are gone.
    let _ = err.print();
    if err.use_stderr() {
        ExitCode::from(cli::EXIT_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_face_is_a_subcommand_with_its_config_flags() {
        let cmd = command();
        for face in Face::ALL {
            let sub = cmd.find_subcommand(face.name()).unwrap();
            let longs: Vec<&str> = sub.get_arguments().filter_map(|a| a.get_long()).collect();
            assert!(longs.contains(&"config"), "{}: {longs:?}", face.name());
            assert!(longs.contains(&"docker-root"), "{}: {longs:?}", face.name());
            assert_eq!(longs.contains(&"listen"), face == Face::Agent);
            let client = matches!(face, Face::Status | Face::Audit);
            assert_eq!(longs.contains(&"local"), client);
        }
    }
}
