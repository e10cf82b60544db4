//! Gzip: the decoder [`super::sample`] reads through, and the stream size a
//! blob's last four bytes (ISIZE, the size modulo 2³²) allow.

use flate2::bufread::MultiGzDecoder;

use super::{SampleError, StreamSize};

/// Gzip's magic and deflate's method byte.
const MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
/// ISIZE counts modulo this.
const WRAP: u128 = 1 << 32;
/// Deflate's best ratio: a 258-byte match costs at least two bits, so one
/// compressed byte never yields more than ~1032 bytes.
const MAX_RATIO: u128 = 1032;
/// Bytes of a gzip member that are not deflate data (header, trailer,
/// a block header), allowed for on top of deflate's worst expansion.
const OVERHEAD: u128 = 64;

/// A decoder of every gzip member in `prefix`, once its first bytes are
/// gzip's.
pub(super) fn decoder(prefix: &[u8]) -> Result<MultiGzDecoder<&[u8]>, SampleError> {
    super::check_magic("gzip", &MAGIC, prefix)?;
    Ok(MultiGzDecoder::new(prefix))
}

/// A gzip blob's ISIZE (its last four bytes, little-endian): the
/// uncompressed size of its last member modulo 2³². None if `tail` holds
/// fewer than 4 bytes.
pub fn gzip_isize(tail: &[u8]) -> Option<u32> {
    let last: [u8; 4] = tail.get(tail.len().checked_sub(4)?..)?.try_into().ok()?;
    Some(u32::from_le_bytes(last))
}

/// The uncompressed size of a single-member gzip blob of `compressed`
/// bytes whose ISIZE is `isize`. The size is `isize + k·2³²` for some k;
/// only those deflate could have produced from `compressed` bytes are
/// kept (at most ~1032:1, at least the input less ~0.1% and a few bytes).
/// One such candidate is the size, exact. Several (blobs of more than a few
/// MiB: 2³² is within deflate's reach) are resolved by `estimate` (a
/// caller's guess, e.g. from a sampled ratio): the nearest, not exact. None
/// (a multi-member blob, whose ISIZE is its last member's) gives `estimate`,
/// else `compressed`, not exact.
pub fn gzip_stream_size(isize: u32, compressed: u64, estimate: Option<u64>) -> StreamSize {
    let (low, high) = feasible(compressed);
    let isize = u128::from(isize);
    let first = low.saturating_sub(isize).div_ceil(WRAP);
    let last = high.checked_sub(isize).map(|span| span / WRAP);
    match last {
        Some(last) if last == first => StreamSize {
            bytes: clamp(isize + first * WRAP),
            exact: true,
        },
        Some(last) if last > first => {
            let target = u128::from(estimate.unwrap_or(compressed));
            let k = target
                .saturating_sub(isize)
                .div_ceil(WRAP)
                .clamp(first, last);
            // The candidate at or above the target, or the one below it.
            let above = isize + k * WRAP;
            let below = (k > first).then(|| above - WRAP);
            let nearest = match below {
                Some(below) if target - below < above.abs_diff(target) => below,
                _ => above,
            };
            StreamSize {
                bytes: clamp(nearest),
                exact: false,
            }
        }
        _ => StreamSize {
            bytes: estimate.unwrap_or(compressed),
            exact: false,
        },
    }
}

/// The uncompressed sizes deflate can produce from `compressed` bytes.
fn feasible(compressed: u64) -> (u128, u128) {
    let compressed = u128::from(compressed);
    let data = compressed.saturating_sub(OVERHEAD);
    (data - data / 1000, compressed * MAX_RATIO)
}

fn clamp(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn isize_is_the_last_four_bytes() {
        assert_eq!(
            gzip_isize(&[9, 9, 0x78, 0x56, 0x34, 0x12]),
            Some(0x1234_5678)
        );
        assert_eq!(gzip_isize(&[1, 2, 3]), None);
    }

    #[test]
    fn a_small_blob_has_one_candidate_and_it_is_exact() {
        let size = gzip_stream_size(3_000_000, 1_000_000, None);
        assert_eq!(
            size,
            StreamSize {
                bytes: 3_000_000,
                exact: true
            }
        );
    }

    #[test]
    fn incompressible_data_over_4_gib_is_resolved_by_the_estimate() {
        // 5 GiB of random data: ~5 GiB compressed; ISIZE keeps 1 GiB.
        let truth = 5 * GIB;
        let isize = (truth % (1 << 32)) as u32;
        let compressed = truth + truth / 2000;
        let size = gzip_stream_size(isize, compressed, Some(truth - GIB / 2));
        assert_eq!(
            size,
            StreamSize {
                bytes: truth,
                exact: false
            }
        );
        // Without an estimate, the nearest to the compressed size.
        assert_eq!(gzip_stream_size(isize, compressed, None).bytes, truth);
    }

    #[test]
    fn a_very_compressible_layer_picks_the_candidate_nearest_the_estimate() {
        // 20 GiB of zeros compress to ~20 MiB: candidates 0..=~20 GiB.
        let truth = 20 * GIB;
        let isize = (truth % (1 << 32)) as u32;
        let compressed = 20 << 20;
        for estimate in [truth - GIB, truth + GIB, truth] {
            let size = gzip_stream_size(isize, compressed, Some(estimate));
            assert_eq!(
                size,
                StreamSize {
                    bytes: truth,
                    exact: false
                },
                "{estimate}"
            );
        }
        let low = gzip_stream_size(isize, compressed, Some(GIB));
        assert_eq!(
            low.bytes,
            truth - 4 * (4 * GIB),
            "nearest to 1 GiB is 4 GiB"
        );
    }

    #[test]
    fn an_isize_no_deflate_stream_could_have_falls_back() {
        // 1 MB of deflate cannot yield 100 bytes (the ISIZE of a
        // multi-member blob's last member) nor reach 4 GiB (1032:1 is ~1 GB).
        let size = gzip_stream_size(100, 1_000_000, Some(2_500_000));
        assert_eq!(
            size,
            StreamSize {
                bytes: 2_500_000,
                exact: false
            }
        );
        assert_eq!(gzip_stream_size(100, 1_000_000, None).bytes, 1_000_000);
    }
}
