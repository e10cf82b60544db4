//! The pulls already in flight on the node, for `check-pull`'s verdict:
//! what each will still download (from the node's ingests) and what its
//! layers not yet unpacked will take, measured from its registry like the
//! checked image's own layers when the registry can be asked, else at the
//! node's unpack ratio ([`check_pull::pulls_in_flight`]), saying so.

use anyhow::Context;
use headroom::inventory::check_pull::{self, InFlightPull};
use headroom::model::{Pull, Status};
use headroom::registry::sizing::{size_layer, Fallback};
use headroom::registry::{self, Options, Reference};

/// How to measure a layer: the store's block size and the fallback.
pub struct Sizer<'a> {
    /// Block size of the store's filesystem.
    pub block_size: u64,
    /// The estimate when a blob teaches nothing.
    pub fallback: &'a Fallback,
}

/// The sized pulls in flight in `status`, each measured with `options_for`
/// its registry; `checked` is the image being checked, whose registry
/// stands in for a pull's registry named without its port.
pub fn pulls_in_flight(
    status: &Status,
    checked: &Reference,
    options_for: &dyn Fn(&Reference) -> anyhow::Result<Options>,
    sizer: &Sizer<'_>,
) -> Vec<InFlightPull> {
    check_pull::pulls_in_flight(status, |p| {
        measured(p, checked, options_for, sizer).context("its registry could not be asked")
    })
}

/// `pull` with the layers it has not unpacked yet (the top ones: layers
/// unpack base first) measured from its registry.
fn measured(
    pull: &Pull,
    checked: &Reference,
    options_for: &dyn Fn(&Reference) -> anyhow::Result<Options>,
    sizer: &Sizer<'_>,
) -> anyhow::Result<InFlightPull> {
    let (Some(image), Some(manifest)) = (&pull.image, &pull.manifest) else {
        anyhow::bail!("the pull names no image and manifest");
    };
    let mut reference: Reference = format!("{image}@{manifest}").parse()?;
    // containerd's distribution.source label drops the registry's port; the
    // inventory puts it back when the image list names the repository, and
    // otherwise the checked image's registry stands in for the same host.
    if checked.registry.split(':').next() == Some(reference.registry.as_str()) {
        reference.registry.clone_from(&checked.registry);
    }
    let options = options_for(&reference)?;
    let mut client = registry::connect(&reference, &options)?;
    let resolved = client.resolve()?;
    let waiting = resolved
        .layers
        .iter()
        .skip(usize::try_from(pull.layers_present).unwrap_or(usize::MAX));
    let mut out = InFlightPull {
        method: "its layers measured from the registry".to_string(),
        unpack_bytes: 0,
        ..InFlightPull::at_node_ratio(pull)
    };
    for layer in waiting {
        let unpacked = size_layer(&mut client, layer, sizer.block_size, sizer.fallback);
        out.unpack_bytes = out.unpack_bytes.saturating_add(unpacked.disk_bytes);
        out.inodes = out.inodes.saturating_add(unpacked.inodes);
        out.layer_digests.push(layer.digest.clone());
    }
    Ok(out)
}
