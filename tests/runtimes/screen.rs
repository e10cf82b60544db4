//! The human screen (`headroom status` without `--json`) says the same
//! things as the document, exits the same way, and fits a real terminal.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use headroom::model::Status;

use crate::agent::{self, poll, Proc};
use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle::{self, path_str};
use crate::pulls::{self, Throttle};
use crate::subject;
use crate::{exposition, web, World};

/// Every filesystem signal and the top image's ref appear; same exit code.
pub fn mentions_signals_and_top_image(w: &World) -> Result<()> {
    let (json, status) = w.report()?;
    let run = subject::status(w, &subject::node_layout(w), false)?;
    let mut c = Checks::new();
    c.eq(
        "exit code",
        &format!("`{}`", json.command),
        json.code,
        run.code,
    );
    for fs in &status.filesystems {
        c.that(run.stdout.contains(fs.signal.as_str()), || {
            format!("screen should mention signal {}", fs.signal)
        });
    }
    match status.images.first() {
        None => c.that(false, || "the document lists no images".to_owned()),
        Some(top) => c.that(
            top.refs.iter().any(|r| run.stdout.contains(r.as_str())),
            || format!("screen should mention the top image, one of {:?}", top.refs),
        ),
    }
    c.that(!status.filesystems.is_empty(), || {
        "the document lists no filesystems".to_owned()
    });
    c.finish(&format!("{}\n{}", run.command, run.describe()))
}

/// The repository the trial pushes and pulls (this trial's own).
const REPOSITORY: &str = "hr/screen";
/// Size of its one layer (random bytes: the blob is as big).
const LAYER_BYTES: u64 = 150_000_000;
/// What the proxy lets through, bytes per second: the pull lasts ~30 s,
/// time for two one-shot scans.
const RATE: u64 = 5_000_000;
/// The terminal's height: the screen's history is captured too.
const ROWS: &str = "60";
/// What the pane prints once `headroom` has exited, before its code.
const DONE: &str = "headroom-exited=";

/// Trial: `headroom status` in a real terminal (tmux) 80 and 120 columns
/// wide while a pull is in flight. No line may wrap (`capture-pane -J`
/// joins wrapped lines: the captures must agree), and the emptyDir, the
/// data's age, the image GC sentence and the pull, named with its
/// registry's port as the image list names it, must be on screen.
pub fn fits_80_and_120_columns_in_tmux(w: &World) -> Result<()> {
    let _node = w.changing();
    let registry = pulls::registry_of(w)?;
    pulls::push_noise_image(w, &registry, REPOSITORY, LAYER_BYTES)?;
    let proxy = Throttle::start(&registry, RATE)?;
    let repository = format!("{}/{REPOSITORY}", proxy.addr);
    let (earlier, pulled) = (format!("{repository}:0"), format!("{repository}:1"));
    let _undo = Undo {
        w,
        names: vec![earlier.clone(), pulled.clone()],
    };
    // An earlier tag of the repository, as a node has before an upgrade:
    // the image list names the registry with its port.
    let sock = &w.containerd_sock;
    oracle::ctr(
        sock,
        K8S_NS,
        &["images", "tag", w.fixtures.image("base"), &earlier],
    )?;
    let mut cmd = Command::new("ctr");
    cmd.args(["-a", path_str(sock)?, "-n", K8S_NS]).args([
        "images",
        "pull",
        "--plain-http",
        &pulled,
    ]);
    let mut pull = Proc::spawn("ctr pull", cmd, w.dir.join("screen-ctr.log"))?;
    poll(Duration::from_secs(30), || {
        let active = oracle::ctr(sock, K8S_NS, &["content", "active"])?;
        if active.lines().count() > 1 {
            Ok(())
        } else {
            bail!("no download in the content store yet\n{}", pull.output())
        }
    })?;
    let tmux = Tmux::start(&w.dir.join("screen-tmux.sock"))?;
    let local = status_command(w, &["--local"])?;
    for width in WIDTHS {
        tmux.start_session(&format!("w{width}"), width, &local)?;
    }
    let mut c = Checks::new();
    let mut screens = Vec::new();
    for width in WIDTHS {
        match tmux.screen(&format!("w{width}"), width) {
            Ok(screen) => screens.push(screen),
            Err(e) => c.error(&format!("the screen at {width} columns"), e),
        }
    }
    c.that(pull.exited().is_none(), || {
        format!(
            "the pull ended before both screens were drawn\n{}",
            pull.output()
        )
    });
    if let Some(narrow) = screens.iter().find(|s| s.width == 80) {
        eprintln!(
            "runtimes: the screen at 80 columns:\n{}",
            narrow.lines.join("\n")
        );
    }
    let (_, doc) = w.report()?;
    for screen in &screens {
        check_screen(&mut c, screen, &doc, "scanned ");
    }
    if let Some(wide) = screens.iter().find(|s| s.width == 120) {
        let pulls = section(&wide.lines, "PULLS IN FLIGHT");
        c.that(pulls.iter().any(|l| l.contains(&repository)), || {
            format!("at 120 columns the pull should be named {repository} (the image list's registry, port included):\n{}", wide.lines.join("\n"))
        });
    }
    if let Ok(live) = w.live() {
        if let Err(e) = agent_names_the_pull(&live.addr, &repository) {
            c.error("the agent's JSON and metrics", e);
        }
        let agent = status_command(w, &["--agent-address", &live.addr])?;
        tmux.start_session("agent", 120, &agent)?;
        match tmux.screen("agent", 120) {
            Ok(screen) => check_screen(&mut c, &screen, &doc, "as of "),
            Err(e) => c.error("the agent's screen at 120 columns", e),
        }
    }
    // The pull ends by itself (stopped only if it hangs).
    let _ = poll(Duration::from_secs(90), || match pull.exited() {
        Some(_) => Ok(()),
        None => bail!("the pull is still running"),
    });
    let ended = pull.terminate(Duration::from_secs(5));
    c.that(ended.is_some_and(|s| s.success()), || {
        format!("`ctr images pull {pulled}` failed\n{}", pull.output())
    });
    drop(proxy);
    c.finish(&format!("headroom status in tmux, pulling {pulled}"))
}

/// Waits until the agent at `addr` lists a pull of `repository` in its
/// JSON and in `headroom_pull_remaining_bytes`: the same full name as the
/// screen's.
fn agent_names_the_pull(addr: &str, repository: &str) -> Result<()> {
    poll(Duration::from_secs(20), || {
        let pulls = agent::status(addr)?.pulls;
        if !pulls.iter().any(|p| p.image.as_deref() == Some(repository)) {
            bail!("the agent's pulls are not named {repository}: {pulls:?}");
        }
        let metrics = web::get(addr, "/metrics")?.body;
        let series = format!("headroom_pull_remaining_bytes{{image=\"{repository}@");
        if !exposition::has(&metrics, &series) {
            bail!("/metrics has no {series}…");
        }
        Ok(())
    })
}

/// The widths the screen must fit.
const WIDTHS: [u16; 2] = [80, 120];

/// No wrapped line; the emptyDir, the age (`age` starts it), the image GC
/// sentence and every filesystem signal on screen.
fn check_screen(c: &mut Checks, screen: &Screen, doc: &Status, age: &str) {
    let width = screen.width;
    let text = screen.lines.join("\n");
    let wrapped: Vec<&String> = screen
        .lines
        .iter()
        .filter(|l| !screen.joined.contains(l))
        .collect();
    c.that(screen.lines == screen.joined, || {
        format!("at {width} columns these lines wrapped: {wrapped:#?}\n{text}")
    });
    // The pull may change the verdict since the JSON run: any verdict, no error.
    c.that((0..=2).contains(&screen.code), || {
        format!(
            "at {width} columns `headroom status` exited {}:\n{text}",
            screen.code
        )
    });
    c.that(text.contains("EMPTYDIR VOLUMES"), || {
        format!("at {width} columns no emptyDir section:\n{text}")
    });
    for volume in &doc.volumes {
        let shown = volume.name.chars().take(10).collect::<String>();
        c.that(text.contains(&shown), || {
            format!(
                "at {width} columns the emptyDir {} is not on screen:\n{text}",
                volume.name
            )
        });
    }
    // The header: its first line and the one it may wrap onto.
    let header = screen
        .lines
        .iter()
        .take(2)
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" ");
    c.that(header.contains(age), || {
        format!("at {width} columns the header should tell the data's age ({age}…):\n{text}")
    });
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    c.that(
        (words.contains("image GC could free") || words.contains("image GC may delete no image"))
            && words.contains("imageMinimumGCAge")
            && words.contains("are kept"),
        || format!("at {width} columns no image GC sentence:\n{text}"),
    );
    for fs in &doc.filesystems {
        c.that(text.contains(fs.signal.as_str()), || {
            format!("at {width} columns signal {} is not on screen", fs.signal)
        });
    }
}

/// The lines of the section titled `title`, up to the next blank line.
fn section<'a>(lines: &'a [String], title: &str) -> Vec<&'a String> {
    lines
        .iter()
        .skip_while(|l| !l.starts_with(title))
        .take_while(|l| !l.is_empty())
        .collect()
}

/// `headroom status EXTRA…` on the fixture node as a shell command line
/// for tmux: a clean environment, then the exit code printed after [`DONE`].
fn status_command(w: &World, extra: &[&str]) -> Result<String> {
    let exe = env!("CARGO_BIN_EXE_headroom");
    let layout = subject::node_layout(w);
    let mut argv: Vec<String> = vec![exe.into(), "status".into()];
    argv.extend(extra.iter().map(|a| a.to_string()));
    argv.extend(subject::layout_args(w, &layout));
    let path = std::env::var("PATH").unwrap_or_default();
    let quoted: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    Ok(format!(
        "env -i PATH={} NODE_NAME={} {}; echo {DONE}$?; sleep 600",
        quote(&path),
        subject::NODE_NAME,
        quoted.join(" ")
    ))
}

/// `s` single-quoted for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a pane showed once `headroom` exited.
struct Screen {
    width: u16,
    /// `capture-pane -p`: one line per terminal row, trailing blanks cut.
    lines: Vec<String>,
    /// `capture-pane -p -J`: wrapped rows joined back into their line.
    joined: Vec<String>,
    /// `headroom`'s exit code.
    code: i32,
}

/// A tmux server of the trial's own (its own socket); killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(socket: &Path) -> Result<Tmux> {
        Ok(Tmux {
            socket: path_str(socket)?.to_owned(),
        })
    }

    fn tmux(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-S", self.socket.as_str()];
        all.extend_from_slice(args);
        oracle::run("tmux", &all)
    }

    /// A detached session `name`, `width` columns wide, running `command`.
    fn start_session(&self, name: &str, width: u16, command: &str) -> Result<()> {
        let width = width.to_string();
        let args = [
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width,
            "-y",
            ROWS,
            command,
        ];
        self.tmux(&args).map(drop)
    }

    /// The pane of session `name` once `headroom` has exited in it.
    fn screen(&self, name: &str, width: u16) -> Result<Screen> {
        let capture = |joined: bool| -> Result<Vec<String>> {
            let mut args = vec!["capture-pane", "-p", "-S", "-", "-t", name];
            if joined {
                args.push("-J");
            }
            let text = self.tmux(&args)?;
            let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_owned()).collect();
            while lines.last().is_some_and(|l| l.is_empty()) {
                lines.pop();
            }
            Ok(lines)
        };
        let code = poll(Duration::from_secs(120), || {
            let lines = capture(false)?;
            let done = lines.iter().find_map(|l| l.strip_prefix(DONE));
            match done.and_then(|c| c.trim().parse::<i32>().ok()) {
                Some(code) => Ok(code),
                None => bail!(
                    "`headroom status` has not exited in {name}:\n{}",
                    lines.join("\n")
                ),
            }
        })?;
        let without_done = |mut lines: Vec<String>| {
            lines.retain(|l| !l.starts_with(DONE));
            lines
        };
        Ok(Screen {
            width,
            lines: without_done(capture(false)?),
            joined: without_done(capture(true)?),
            code,
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// Removes the trial's image names (synchronously, so the space is
/// freed), also when the trial fails.
struct Undo<'a> {
    w: &'a World,
    names: Vec<String>,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        let present = oracle::ctr(&self.w.containerd_sock, K8S_NS, &["images", "ls", "-q"])
            .unwrap_or_default();
        let mut args = vec!["images", "rm", "--sync"];
        args.extend(
            self.names
                .iter()
                .filter(|n| present.lines().any(|l| l == n.as_str()))
                .map(String::as_str),
        );
        if args.len() > 3 {
            if let Err(e) = oracle::ctr(&self.w.containerd_sock, K8S_NS, &args) {
                eprintln!("runtimes: cannot undo the screen trial: {e:#}");
            }
        }
    }
}
