//! What a pull costs on disk before it lands: the compressed bytes still to
//! download (containerd keeps them in its content store) plus the unpacked
//! size they become, estimated from the compressed size with the ratio the
//! layers already on the node show. Layers already present cost nothing.

use crate::model::Image;

/// The ratio used when the node has no unpacked layer with a known
/// compressed size to learn from (gzip on typical image layers).
pub const DEFAULT_UNPACK_RATIO: f64 = 2.5;

/// Unpacked bytes per compressed byte, learned from the node's containerd
/// images whose compressed blobs are still in the content store. Only what
/// each image holds alone counts (Σ unique unpacked / Σ unique blobs), so a
/// base layer shared by many images weighs once, not once per image; when
/// no image holds anything alone, their totals; else a typical gzip ratio.
/// Images without blobs (discarded after unpacking) teach nothing.
pub fn unpack_ratio(images: &[Image]) -> f64 {
    learned_ratio(images).unwrap_or(DEFAULT_UNPACK_RATIO)
}

/// The ratio [`unpack_ratio`] learns, when the images teach one.
pub fn learned_ratio(images: &[Image]) -> Option<f64> {
    ratio(images, |i| (i.unique_disk_bytes, i.unique_content_bytes))
        .or_else(|| ratio(images, |i| (i.disk_bytes, i.content_bytes)))
}

/// Σ unpacked / Σ compressed over the images where both are known.
fn ratio(images: &[Image], figures: impl Fn(&Image) -> (u64, u64)) -> Option<f64> {
    let (unpacked, compressed) = images
        .iter()
        .map(figures)
        .filter(|(u, c)| *u > 0 && *c > 0)
        .fold((0u128, 0u128), |(su, sc), (u, c)| {
            (su + u128::from(u), sc + u128::from(c))
        });
    (compressed > 0).then(|| unpacked as f64 / compressed as f64)
}

/// The disk a pull still needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PullCost {
    /// Compressed bytes still to download.
    pub download_bytes: u64,
    /// Estimated unpacked bytes still to write.
    pub unpack_bytes: u64,
}

impl PullCost {
    /// The cost of layers of `compressed` bytes not yet on the node, of
    /// which `downloaded` are already in the content store or an ingest.
    pub fn of(compressed: u64, downloaded: u64, ratio: f64) -> PullCost {
        PullCost {
            download_bytes: compressed.saturating_sub(downloaded),
            unpack_bytes: (compressed as f64 * ratio).round() as u64,
        }
    }

    /// All the bytes the pull adds.
    pub fn total(&self) -> u64 {
        self.download_bytes.saturating_add(self.unpack_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeKind;

    fn image(disk: u64, content: u64) -> Image {
        shared_image(disk, content, disk, content)
    }

    fn shared_image(disk: u64, content: u64, unique_disk: u64, unique_content: u64) -> Image {
        Image {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
            id: "sha256:x".into(),
            disk_bytes: disk,
            apparent_bytes: disk,
            unique_disk_bytes: unique_disk,
            unique_apparent_bytes: unique_disk,
            content_bytes: content,
            unique_content_bytes: unique_content,
            containers: 0,
            in_use: false,
            ..Image::default()
        }
    }

    #[test]
    fn the_ratio_is_learned_from_images_with_blobs() {
        // 300 unpacked from 100 compressed, and 100 from 100: 400 / 200.
        let images = [image(300, 100), image(100, 100), image(5000, 0)];
        assert_eq!(unpack_ratio(&images), 2.0);
        assert_eq!(unpack_ratio(&[image(5000, 0)]), DEFAULT_UNPACK_RATIO);
        assert_eq!(unpack_ratio(&[]), DEFAULT_UNPACK_RATIO);
    }

    #[test]
    fn a_shared_base_weighs_once() {
        // Two images on a 1000-from-10 base (shared); their own layers are
        // 300 from 100 and 200 from 100: 500 / 200, not (1300+1200)/(110+110).
        let images = [
            shared_image(1300, 110, 300, 100),
            shared_image(1200, 110, 200, 100),
        ];
        assert_eq!(unpack_ratio(&images), 2.5);
        // Nothing held alone: the totals teach.
        let only_shared = [shared_image(1000, 10, 0, 0)];
        assert_eq!(unpack_ratio(&only_shared), 100.0);
    }

    #[test]
    fn a_pull_costs_what_is_left_to_download_plus_the_unpacked_estimate() {
        let cost = PullCost::of(1000, 400, 2.5);
        assert_eq!(
            (cost.download_bytes, cost.unpack_bytes, cost.total()),
            (600, 2500, 3100)
        );
        assert_eq!(PullCost::of(10, 20, 1.0).download_bytes, 0);
    }
}
