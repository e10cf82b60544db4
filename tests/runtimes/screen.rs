//! The human screen (`headroom status` without `--json`) says the same
//! things as the document, and exits the same way.

use anyhow::Result;

use crate::checks::Checks;
use crate::subject;
use crate::World;

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
