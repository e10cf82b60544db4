//! sha256 content digests and layer chain IDs, for every reader: Docker's
//! layer DB, containerd's snapshots and the registry all name layers by the
//! same chain IDs, and registry documents are checked against their digest
//! before they are believed.

use sha2::{Digest as _, Sha256};

/// The only digest algorithm supported (the one registries use).
const SHA256_PREFIX: &str = "sha256:";

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("{SHA256_PREFIX}{:x}", Sha256::digest(bytes))
}

/// Whether `s` is a canonical `sha256:<64 lowercase hex>` digest.
pub fn is_sha256(s: &str) -> bool {
    s.strip_prefix(SHA256_PREFIX).is_some_and(is_hex64)
}

/// Whether `s` is 64 lowercase hex digits (a sha256 in hex, an ID).
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Chain IDs of the layers with diff IDs `diff_ids`, base first, stopping
/// at the first diff ID that is not a sha256 digest:
/// `ChainID(d0) = d0`, `ChainID(d0..dn) = sha256(ChainID(d0..dn-1) + " " + dn)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        if !is_sha256(diff_id) {
            break;
        }
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => sha256(format!("{parent} {diff_id}").as_bytes()),
        };
        chains.push(chain);
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// `sha256:<hex>` of `bytes` as coreutils' sha256sum computes it.
    fn sha256sum(bytes: &[u8]) -> String {
        let mut child = Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        format!("sha256:{}", text.split_whitespace().next().unwrap())
    }

    #[test]
    fn sha256_matches_sha256sum() {
        for input in [&b""[..], b"headroom", &[0u8; 70_000]] {
            assert_eq!(sha256(input), sha256sum(input));
            assert!(is_sha256(&sha256(input)));
        }
    }

    #[test]
    fn only_canonical_sha256_digests_are_accepted() {
        assert!(!is_sha256(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_sha256(&format!("sha512:{}", "a".repeat(64))));
        assert!(!is_sha256("sha256:abc"));
    }

    #[test]
    fn chain_ids_match_sha256sum_and_stop_at_a_foreign_digest() {
        let diffs: Vec<String> = ["a1", "b2", "c3"]
            .iter()
            .map(|s| format!("sha256:{}", s.repeat(32)))
            .collect();
        let c1 = sha256sum(format!("{} {}", diffs[0], diffs[1]).as_bytes());
        let c2 = sha256sum(format!("{c1} {}", diffs[2]).as_bytes());
        assert_eq!(chain_ids(&diffs), [diffs[0].clone(), c1, c2]);
        assert!(chain_ids(&[]).is_empty());
        let foreign = [diffs[0].clone(), "md5:abc".to_string()];
        assert_eq!(chain_ids(&foreign), [diffs[0].clone()]);
    }
}
