//! The document as a whole: a fresh scan of this node that found both
//! runtimes and nothing it could not read.

use anyhow::Result;
use headroom::model::SCHEMA;
use headroom::runtime::RuntimeKind;

use crate::checks::Checks;
use crate::subject::NODE_NAME;
use crate::World;

/// schema, node, source, both runtimes found at the given places, no problems.
pub fn scan_of_both_runtimes(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let mut c = Checks::new();
    c.eq(
        "exit code of a healthy node",
        "fixture: no pressure",
        0,
        run.code,
    );
    c.eq("schema", "model::SCHEMA", SCHEMA, status.schema);
    c.eq("node", "NODE_NAME", NODE_NAME, status.node.as_str());
    c.eq(
        "source",
        "one-shot scan, no agent",
        "scan",
        serde_json::to_value(status.source)?
            .as_str()
            .unwrap_or_default(),
    );
    for (kind, location) in [
        (RuntimeKind::Docker, w.docker_root.display().to_string()),
        (
            RuntimeKind::Containerd,
            w.containerd_sock.display().to_string(),
        ),
    ] {
        match status.runtimes.iter().find(|r| r.runtime == kind) {
            None => c.that(false, || format!("runtimes[] has no {kind:?} entry")),
            Some(r) => {
                c.eq(&format!("{kind:?} found"), "daemon is up", true, r.found);
                c.that(r.location.contains(&location), || {
                    format!("{kind:?} location {:?} should name {location}", r.location)
                });
            }
        }
    }
    c.eq(
        "problems",
        "fixture metadata is intact",
        &[][..],
        status.problems.as_slice(),
    );
    c.eq(
        "scan errors",
        "fixture trees are readable",
        0,
        status.scan.errors,
    );
    c.that(status.scan.files > 0, || {
        "scan.files should count the entries examined".to_owned()
    });
    c.finish(&format!("{}\n{}", run.command, run.describe()))
}
