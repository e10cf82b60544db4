//! Where an image's bytes are wasted, node-wide: what later layers hide or
//! replace of earlier ones (re-shipped whole when only metadata changed),
//! the caches left in the final filesystem, and the same big files in
//! images that share no layer. docs/audit.md is the contract.
//!
//! A stack of layers never changes, so its audit is kept, keyed by its top
//! layer's directory, and dropped once no image uses it; only new stacks
//! are audited, within the [`Pace`] the caller gives (the agent's CPU
//! budget). The duplicates are found again from the kept audits each pass,
//! reading only files not hashed before.

mod content;
pub mod duplicates;
pub mod leftovers;
pub mod list;
mod pace;
mod report;
pub mod stack;
mod waste;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use duplicates::DuplicateGroup;
pub use leftovers::CacheKind;
pub use pace::Pace;
pub use report::{
    AuditReport, AuditSummary, ImageAudit, ImageIdentity, ImageWaste, TopPath, SCHEMA,
};
use stack::StackAudit;
pub use waste::{Amount, Waste, WasteKind, KINDS};

use crate::model::{short_id, Status};
use crate::runtime::{Problem, ProblemKind, Reader, RuntimeKind};

/// An image and the directories of its layers, as the audit needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStack {
    /// Its runtime.
    pub runtime: RuntimeKind,
    /// containerd namespace; empty for Docker.
    pub namespace: String,
    /// `sha256:<config digest>`.
    pub id: String,
    /// Its names.
    pub refs: Vec<String>,
    /// Its layers' directories, base first.
    pub layers: Vec<PathBuf>,
}

impl ImageStack {
    /// Its first name, else its short ID.
    pub fn name(&self) -> String {
        self.refs
            .first()
            .cloned()
            .unwrap_or_else(|| short_id(&self.id))
    }

    fn identity(&self) -> ImageIdentity {
        ImageIdentity {
            runtime: self.runtime,
            namespace: self.namespace.clone(),
            id: self.id.clone(),
            refs: self.refs.clone(),
        }
    }
}

/// The images of `status` with their layers' directories; an image with a
/// layer whose directory is unknown is left out (the status document
/// already reports the missing layer).
pub fn stacks(status: &Status) -> Vec<ImageStack> {
    let dirs: HashMap<(RuntimeKind, &str, &str), &str> = status
        .layers
        .iter()
        .map(|l| {
            (
                (l.runtime, l.namespace.as_str(), l.id.as_str()),
                l.path.as_str(),
            )
        })
        .collect();
    status
        .images
        .iter()
        .filter_map(|image| {
            let layers = image
                .layers
                .iter()
                .map(|chain| {
                    dirs.get(&(image.runtime, image.namespace.as_str(), chain.as_str()))
                        .map(PathBuf::from)
                })
                .collect::<Option<Vec<_>>>()?;
            Some(ImageStack {
                runtime: image.runtime,
                namespace: image.namespace.clone(),
                id: image.id.clone(),
                refs: image.refs.clone(),
                layers,
            })
        })
        .collect()
}

/// Audits stacks, keeping each stack's audit for as long as an image uses it.
#[derive(Debug)]
pub struct Auditor {
    stacks: HashMap<PathBuf, Arc<StackAudit>>,
    hashes: duplicates::Hashes,
    /// Whether `trusted.overlay.opaque` can be read (it takes CAP_SYS_ADMIN).
    sees_opaque: bool,
}

impl Default for Auditor {
    /// An auditor that has audited nothing, and knows whether this process
    /// can see opaque directories.
    fn default() -> Self {
        Auditor {
            stacks: HashMap::new(),
            hashes: duplicates::Hashes::default(),
            sees_opaque: reads_trusted_xattrs(),
        }
    }
}

/// `CAP_SYS_ADMIN`'s bit in the capability sets.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether this process holds CAP_SYS_ADMIN, without which the kernel hides
/// `trusted.*` attributes (it reads them as absent, not as refused).
fn reads_trusted_xattrs() -> bool {
    procfs::process::Process::myself()
        .and_then(|me| me.status())
        .is_ok_and(|status| status.capeff & (1 << CAP_SYS_ADMIN) != 0)
}

/// The problem an audit without CAP_SYS_ADMIN has, once per runtime audited.
fn blind_to_opaque(runtime: RuntimeKind) -> Problem {
    let why = "opaque directories (trusted.overlay.opaque) cannot be seen without \
               CAP_SYS_ADMIN: the lower layers' files under one count as visible, not \
               hidden (whiteouts of single files are seen); docs/audit.md";
    Reader::Runtime(runtime).problem(ProblemKind::Unreadable, "trusted.overlay.opaque", why)
}

impl Auditor {
    /// Audits the stacks not audited before (as far as `pace` lets it),
    /// finds the duplicates, and reports on `node`.
    pub fn audit(&mut self, node: &str, stacks: &[ImageStack], pace: &mut Pace) -> AuditReport {
        let live: std::collections::HashSet<&Path> = stacks
            .iter()
            .filter_map(|s| s.layers.last())
            .map(PathBuf::as_path)
            .collect();
        self.stacks.retain(|top, _| live.contains(top.as_path()));
        let mut problems = Vec::new();
        let (mut stopped, mut begun) = (false, 0);
        // Sorted by their layers, stacks sharing layers come together, and
        // the merger lists each layer once.
        let mut new: Vec<&ImageStack> = stacks
            .iter()
            .filter(|s| {
                s.layers
                    .last()
                    .is_some_and(|top| !self.stacks.contains_key(top))
            })
            .collect();
        new.sort_by(|a, b| a.layers.cmp(&b.layers));
        let mut merger = stack::Merger::default();
        for s in new {
            let Some(top) = s.layers.last() else { continue };
            if self.stacks.contains_key(top) {
                continue;
            }
            // A pass audits at least one stack, whatever its budget.
            stopped = stopped || (begun > 0 && pace.spent());
            if stopped {
                continue;
            }
            begun += 1;
            match merger.audit(&s.layers, pace) {
                Ok(Some(audit)) => {
                    self.stacks.insert(top.clone(), Arc::new(audit));
                }
                Ok(None) => stopped = true,
                Err((dir, e)) => {
                    problems.push(report::layer_problem(s.runtime, &dir, &e.to_string()))
                }
            }
        }
        let audited: Vec<(&ImageStack, &StackAudit)> = stacks
            .iter()
            .filter_map(|s| Some((s, &**self.stacks.get(s.layers.last()?)?)))
            .collect();
        let found = duplicates::find(&audited, &mut self.hashes, pace);
        problems.extend(found.unread.iter().map(|(runtime, dir, path, why)| {
            report::layer_problem(*runtime, dir, &format!("reading /{path}: {why}"))
        }));
        if !self.sees_opaque {
            problems.extend(audited.iter().map(|(s, _)| blind_to_opaque(s.runtime)));
        }
        report::report(node, stacks, &audited, found, problems, stopped)
    }
}

#[cfg(test)]
impl Auditor {
    /// An auditor that sees opaque directories or not, whatever this process can.
    fn seeing_opaque(sees_opaque: bool) -> Auditor {
        Auditor {
            sees_opaque,
            ..Auditor::default()
        }
    }
}

#[cfg(test)]
mod tests;
