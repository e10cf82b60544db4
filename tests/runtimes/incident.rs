//! The incident replayed for real (issue 4): a containerd whose root is on a
//! small loop-mounted ext4, the registry behind a throttling proxy so a pull
//! takes seconds, and a `headroom agent` on the shipped defaults on that
//! containerd whose kubelet root is on the same filesystem (imagefs is
//! nodefs), with `imagefs.available`/`nodefs.available` hard thresholds of
//! 10% (see [`crate::smallnode`]). `/api/v1/status` is polled every 200 ms
//! while `ctr images pull` runs:
//!
//! - a pull that does not fit: imagefs must be predicted in pressure while
//!   the pull still runs and before containerd fails with "no space left on
//!   device" (the lead time is printed), while the filesystem is still above
//!   its threshold (a prediction, not an observation);
//! - a pull that fits: never predicted, and the pull succeeds.
//!
//! The lead before the eviction line, several pulls at once and a pull
//! that only image GC makes room for are `lead.rs`'s trials.
//!
//! Each case has its own containerd, filesystem and agent, stopped and
//! unmounted by their guards also when the trial fails.

use std::time::{Duration, Instant};

use anyhow::Result;
use headroom::model::Signal;

use crate::checks::Checks;
use crate::pulls::{push_noise_image, registry_of, Throttle};
use crate::smallnode::{filesystem, kubelet_config, watch, SmallNode, Watch, ENOSPC};
use crate::World;

/// What the proxy lets through, bytes per second per connection.
const RATE: u64 = 12_000_000;
/// The same for the pull that fits (~3 s): slow enough that the agent,
/// which notices a containerd pull within a second, lists it a few times.
const SLOW_RATE: u64 = 6_000_000;
/// How long a pull may take before the trial gives up on it.
const PULL_WITHIN: Duration = Duration::from_secs(40);
/// The small node's hard eviction thresholds.
const PERCENT: f32 = 10.0;

/// Case a: 100 MB of random bytes (as big compressed) on a 160 MiB ext4
/// (~140 MB available): the download fits, download plus unpack do not.
const TOO_BIG: (&str, u64) = ("hr/incident-too-big", 100_000_000);
/// Case b: 20 MB on the same size of filesystem (even at the default
/// unpack ratio of 2.5, 70 MB of ~125 MB above the threshold).
const FITS: (&str, u64) = ("hr/incident-fits", 20_000_000);

/// One case: the run, the registry, the proxy to pull through, the checks.
type Case = fn(&World, &str, &str, &mut Checks) -> Result<()>;

/// Trial: the two cases, one after the other.
pub fn replay(w: &World) -> Result<()> {
    let registry = registry_of(w)?;
    for (repository, bytes) in [TOO_BIG, FITS] {
        push_noise_image(w, &registry, repository, bytes)?;
    }
    let proxy = Throttle::start(&registry, RATE)?;
    let slow = Throttle::start(&registry, SLOW_RATE)?;
    let mut c = Checks::new();
    let cases: [(&str, Case, &str); 2] = [
        ("a pull that does not fit", does_not_fit, &proxy.addr),
        ("a pull that fits", fits, &slow.addr),
    ];
    for (what, case, through) in cases {
        if let Err(e) = case(w, &registry, through, &mut c) {
            c.error(what, e);
        }
    }
    c.finish(&format!(
        "registry {registry}, proxies {} and {}",
        proxy.addr, slow.addr
    ))
}

/// Watches one `ctr images pull` of `reference` on `node` to its end.
fn watch_pull(node: &SmallNode, reference: &str, case: &str) -> Result<Watch> {
    let mut pulls = [node.pull(reference, case, &[])?];
    watch(
        node,
        PERCENT,
        &mut pulls,
        Instant::now(),
        PULL_WITHIN,
        |_| Ok(()),
    )
}

/// Case a: pressure predicted before containerd runs out of space.
fn does_not_fit(w: &World, registry: &str, proxy: &str, c: &mut Checks) -> Result<()> {
    let node = SmallNode::start(w, "incident-a", "160M", &kubelet_config("10%", ""))?;
    let (code, before) = node.check_pull(&format!("{registry}/{}:1", TOO_BIG.0))?;
    c.eq(
        "check-pull exit code before a pull that does not fit",
        "2 = pressure predicted",
        2,
        code,
    );
    c.that(before.predicted, || {
        format!("check-pull should predict pressure: {before:?}")
    });
    let watch = watch_pull(&node, &format!("{proxy}/{}:1", TOO_BIG.0), "a")?;
    let end = &watch.ended[0];
    c.that(end.exit.is_some_and(|s| !s.success()), || {
        format!("the pull should fail: {:?}\n{}", end.exit, end.output)
    });
    c.that(end.output.contains(ENOSPC), || {
        format!("the pull should fail with {ENOSPC:?}\n{}", end.output)
    });
    let first = watch.samples.iter().find(|s| s.imagefs().predicted);
    let Some(first) = first else {
        c.that(false, || {
            format!(
                "imagefs was never predicted in pressure while the pull ran: {}\n{}",
                watch.describe(),
                node.context()
            )
        });
        return Ok(());
    };
    let said = first.imagefs();
    c.eq(
        "imagefs state when first predicted",
        "verdict.rs: a pull that crosses the threshold",
        "pressure",
        said.state.as_str(),
    );
    let fs = filesystem(&first.status, Signal::Imagefs)?;
    c.that(fs.available_bytes >= fs.threshold_bytes, || {
        format!(
            "when first predicted, imagefs should still be above its threshold (a prediction): {}",
            first.line()
        )
    });
    if let Some(failed) = end.at {
        c.that(first.at < failed, || {
            format!(
                "predicted at {:?}, after the pull failed at {failed:?}",
                first.at
            )
        });
        eprintln!(
            "runtimes: incident: pressure predicted {:.1}s before containerd failed ({ENOSPC}); \
             the agent said: {}",
            failed.saturating_sub(first.at).as_secs_f64(),
            said.reason
        );
    }
    Ok(())
}

/// Case b: no false alarm for a pull that fits.
fn fits(w: &World, registry: &str, proxy: &str, c: &mut Checks) -> Result<()> {
    let node = SmallNode::start(w, "incident-b", "160M", &kubelet_config("10%", ""))?;
    let (code, before) = node.check_pull(&format!("{registry}/{}:1", FITS.0))?;
    c.eq(
        "check-pull exit code before a pull that fits",
        "0 = ok",
        0,
        code,
    );
    c.that(!before.predicted, || {
        format!("check-pull should predict nothing: {before:?}")
    });
    let watch = watch_pull(&node, &format!("{proxy}/{}:1", FITS.0), "b")?;
    let end = &watch.ended[0];
    c.that(end.exit.is_some_and(|s| s.success()), || {
        format!("the pull should succeed: {:?}\n{}", end.exit, end.output)
    });
    c.that(watch.samples.iter().any(|s| !s.pulls.is_empty()), || {
        format!("the agent never listed the pull: {}", watch.describe())
    });
    c.that(!watch.samples.iter().any(|s| s.pressure_anywhere()), || {
        format!(
            "pressure predicted for a pull that fits: {}\n{}",
            watch.describe(),
            node.context()
        )
    });
    Ok(())
}
