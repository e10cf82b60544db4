//! What each face's `--help` says under its options: what it prints, and
//! what each of its exit codes means. docs/exit-codes.md is the contract;
//! a test below fails when a face's codes and the document's part.

use headroom::config::Face;

/// What a face prints and how it exits.
struct FaceHelp {
    /// The face.
    face: Face,
    /// What it prints, and where.
    output: &'static str,
    /// Each exit code with its meaning, in a line.
    codes: &'static [(u8, &'static str)],
}

/// Every face's help, in [`Face::ALL`]'s order.
const FACES: [FaceHelp; 5] = [
    FaceHelp {
        face: Face::Agent,
        output: "Serves /metrics (OpenMetrics), /healthz, /readyz and /api/v1/status (the \
                 status document, docs/status.md) on --listen; logs go to stderr, nothing \
                 to stdout.",
        codes: &[
            (
                0,
                "stopped by SIGTERM or SIGINT, after serving the requests in flight",
            ),
            (
                3,
                "error: usage or configuration, the address could not be bound, or the \
                 scanner or the layer auditor stopped (so that systemd or the kubelet \
                 restarts it)",
            ),
        ],
    },
    FaceHelp {
        face: Face::Status,
        output: "Prints one screen fitted to the terminal's width: the filesystems with \
                 their verdicts, pulls in flight, top images, containers and emptyDirs, \
                 what image GC would free and keep; or, with --json, the status document \
                 (docs/status.md). It asks the local agent first; when none answers it \
                 scans this node and says so on stderr.",
        codes: &[
            (0, "every signal is ok"),
            (
                1,
                "warning: image GC is due, a soft eviction threshold is crossed, only \
                 image GC keeps a pull in flight from crossing a hard threshold, or a pull \
                 of unknown size nears one",
            ),
            (
                2,
                "pressure: a hard eviction threshold is crossed now, or is predicted to be \
                 (by the pulls in flight even after one image GC pass, or by the agent's \
                 trend within an hour)",
            ),
            (
                3,
                "error: usage or configuration, or no filesystem could be measured",
            ),
        ],
    },
    FaceHelp {
        face: Face::Du,
        output: "Prints one line per path: disk bytes, apparent bytes and the path, \
                 tab-separated (with --json, one object per line, with inodes, entries \
                 and errors). It measures the paths as given, hard links once, one \
                 filesystem; it does not tell images, containers or emptyDirs apart \
                 (status does).",
        codes: &[
            (0, "every entry under every path was examined"),
            (
                1,
                "some entries could not be examined; they are named on stderr and the \
                 figures leave them out",
            ),
            (3, "error: usage or configuration"),
        ],
    },
    FaceHelp {
        face: Face::CheckPull,
        output: "Prints what pulling IMAGE would cost this node (each layer not on it yet, \
                 measured from the registry), the pulls already in flight, and the \
                 kubelet's verdict for each signal the pull lands on; with --json, the \
                 same as a document. With --fleet, one line per node's agent asked, worst \
                 first, then a summary; the code is the worst node's.",
        codes: &[
            (0, "every signal stays ok with the pull's cost added"),
            (
                1,
                "warning, as for status; notably, the pull fits only if image GC frees \
                 enough first",
            ),
            (
                2,
                "pressure: a hard threshold is crossed now, or the pull would cross it \
                 even after one image GC pass",
            ),
            (
                3,
                "error: usage or configuration, an unusable CA or credentials file, a bad \
                 reference, an unusable registry answer, or no filesystem measured",
            ),
            (4, "not found: the tag, manifest, a blob or the platform"),
            (5, "the registry's host name does not resolve"),
            (
                6,
                "the registry cannot be connected to (refused, reset, timed out)",
            ),
            (
                7,
                "TLS failed: an untrusted certificate or a failed handshake",
            ),
            (8, "authentication refused, or no credentials found"),
            (
                9,
                "with --fleet: no node would reach pressure, but one did not answer \
                 (unknown, never ok)",
            ),
        ],
    },
    FaceHelp {
        face: Face::Audit,
        output: "Prints the node's wasted bytes by kind, one row per image (most wasted \
                 first), each image's biggest wasted paths and the biggest duplicated \
                 files; with --json, the audit document (docs/audit.md). It asks the local \
                 agent first; when none answers it audits this node and says so on stderr.",
        codes: &[
            (0, "audited (images not audited yet are listed as pending)"),
            (3, "error: usage or configuration"),
            (4, "an IMAGE named matches no image on the node"),
        ],
    },
];

/// `cmd` with each face's output and exit codes under its options.
pub fn with_face_help(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommands(|sub| match help_of(sub.get_name()) {
        Some(help) => sub.after_help(text(help)),
        None => sub,
    })
}

fn help_of(name: &str) -> Option<&'static FaceHelp> {
    FACES.iter().find(|h| h.face.name() == name)
}

/// "Output:" and "Exit codes:" sections (clap wraps them to the terminal).
fn text(help: &FaceHelp) -> String {
    let codes: Vec<String> = help
        .codes
        .iter()
        .map(|(code, meaning)| format!("  {code}  {meaning}"))
        .collect();
    format!(
        "Output: {}\n\nExit codes (docs/exit-codes.md):\n{}",
        help.output,
        codes.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(command, code)` of every row of docs/exit-codes.md's table.
    fn documented() -> Vec<(String, u8)> {
        include_str!("../../docs/exit-codes.md")
            .lines()
            .filter_map(|line| {
                let mut cells = line.trim().strip_prefix('|')?.split('|').map(str::trim);
                let command = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                let code = cells.next()?.parse().ok()?;
                Some((command.to_string(), code))
            })
            .collect()
    }

    #[test]
    fn every_face_helps_with_the_codes_docs_exit_codes_lists() {
        let documented = documented();
        assert!(documented.len() > 10, "{documented:?}");
        for face in Face::ALL {
            let help = help_of(face.name()).expect("every face has help");
            let ours: Vec<u8> = help.codes.iter().map(|(c, _)| *c).collect();
            let doc: Vec<u8> = documented
                .iter()
                .filter(|(command, _)| command == face.name())
                .map(|(_, c)| *c)
                .collect();
            assert_eq!(ours, doc, "{}", face.name());
        }
    }

    #[test]
    fn help_says_pressure_covers_predicted_and_du_is_a_plain_du() {
        let status = text(help_of("status").expect("status has help"));
        assert!(status
            .contains("  2  pressure: a hard eviction threshold is crossed now, or is predicted"));
        let du = text(help_of("du").expect("du has help"));
        assert!(du.contains("does not tell images, containers or emptyDirs apart"));
    }

    #[test]
    fn the_sections_reach_each_subcommand() {
        let cmd = with_face_help(
            clap::Command::new("headroom")
                .subcommands(Face::ALL.map(|f| clap::Command::new(f.name()))),
        );
        for face in Face::ALL {
            let mut sub = cmd
                .find_subcommand(face.name())
                .expect("the subcommand is there")
                .clone();
            let rendered = sub.render_help().to_string();
            assert!(
                rendered.contains("Exit codes (docs/exit-codes.md):"),
                "{rendered}"
            );
            assert!(rendered.contains("Output: "), "{rendered}");
        }
    }
}
