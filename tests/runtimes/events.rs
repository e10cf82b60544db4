//! The agent follows containerd's events on a quiet containerd (issue 8):
//! with the shipped intervals (resync 5 minutes), only an event can make a
//! new image tag show up within seconds.
//!
//! containerd answers a subscription only with its first event, so a
//! follower that waits for that answer within its call timeout never
//! connects on a quiet node; this trial keeps containerd quiet longer than
//! that timeout before changing anything.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::agent::{has_image, poll, short_lived, status, Paths};
use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle;
use crate::World;

/// Longer than the agent's containerd call timeout (5 s), with no event.
const QUIET: Duration = Duration::from_secs(8);
/// How soon a tag or untag must show in the status: far below the 5-minute
/// resync and the 1-minute rescan, so only an event explains it.
const FOLLOW_WITHIN: Duration = Duration::from_secs(5);
/// The name the trial gives a fixture image (and removes again).
const TAG: &str = "docker.io/headroom/events-trial:tagged";
/// What the follower logs once it is subscribed.
const FOLLOWING: &str = "following containerd events";
/// What a call bounded by the timeout says when it runs out (the symptom).
const TIMED_OUT: &str = "no answer within";

/// Removes the trial's tag when dropped, also when the trial fails.
struct Untag<'a> {
    sock: &'a Path,
}

impl Untag<'_> {
    fn now(&self) -> Result<()> {
        oracle::ctr(self.sock, K8S_NS, &["images", "rm", TAG]).map(drop)
    }
}

impl Drop for Untag<'_> {
    fn drop(&mut self) {
        let listed = oracle::ctr(self.sock, K8S_NS, &["images", "ls", "-q"]);
        if listed.is_ok_and(|l| l.lines().any(|r| r.trim() == TAG)) {
            if let Err(e) = self.now() {
                eprintln!("runtimes: cannot remove the tag {TAG}: {e:#}");
            }
        }
    }
}

/// Waits until the agent at `addr` lists `TAG` (or no longer does).
fn wait_for_tag(addr: &str, listed: bool) -> Result<Duration> {
    let started = Instant::now();
    poll(FOLLOW_WITHIN, || {
        let s = status(addr)?;
        if has_image(&s, TAG) == listed {
            Ok(started.elapsed())
        } else {
            bail!("/api/v1/status should list {TAG}: {listed}")
        }
    })
}

/// A short-lived agent with the default intervals stays subscribed to a
/// quiet containerd (its log says it follows events and never that a call
/// ran out of time), and a tag added or removed with `ctr` shows in its
/// status within seconds.
pub fn follows_events_on_a_quiet_containerd(w: &World) -> Result<()> {
    // Held throughout, not only while tagging: another trial's change would
    // raise an event and so answer a subscription that waits for one.
    let _node = w.changing();
    let sock = w.containerd_sock.as_path();
    let (mut agent, addr) = short_lived(w, "agent-events", Paths::of_world(w))?;

    let mut c = Checks::new();
    sleep(QUIET);
    let said = fs::read_to_string(&agent.log).unwrap_or_default();
    c.that(said.contains(FOLLOWING), || {
        format!("after {QUIET:?} of a quiet containerd the agent should say {FOLLOWING:?}")
    });
    c.that(!said.contains(TIMED_OUT), || {
        format!("the agent should never say {TIMED_OUT:?} on a healthy containerd")
    });

    match status(&addr) {
        Ok(s) if has_image(&s, TAG) => bail!("{TAG} is listed before the trial tagged it"),
        Ok(_) => {}
        Err(e) => c.error("/api/v1/status before tagging", e),
    }
    let source = w.fixtures.image("base");
    let untag = Untag { sock };
    oracle::ctr(sock, K8S_NS, &["images", "tag", source, TAG])?;
    match wait_for_tag(&addr, true) {
        Ok(after) => eprintln!("runtimes: the agent listed the new tag after {after:.1?}"),
        Err(e) => c.error(
            &format!("{TAG} (tagged from {source}) within {FOLLOW_WITHIN:?}"),
            e,
        ),
    }
    untag.now()?;
    match wait_for_tag(&addr, false) {
        Ok(after) => eprintln!("runtimes: the agent dropped the tag after {after:.1?}"),
        Err(e) => c.error(&format!("{TAG} gone within {FOLLOW_WITHIN:?}"), e),
    }
    drop(untag);

    if let Some(code) = agent.exited() {
        c.that(false, || format!("the agent exited ({code})"));
    }
    let said = fs::read_to_string(&agent.log).unwrap_or_default();
    c.that(!said.contains(TIMED_OUT), || {
        format!("the agent said {TIMED_OUT:?} while following a healthy containerd")
    });
    c.finish(&agent.output())
}
