//! Node-wide duplicates: the same big file in layers that are not shared,
//! what one shared copy (a common base layer) would save.
//!
//! Only layers of one store can be shared (a runtime's, in one containerd
//! namespace), so copies are compared store by store: the same image
//! pulled into Docker and into containerd is two stores' business, not a
//! duplicate a rebuild could remove.
//!
//! Only the final filesystems' files of at least
//! [`super::stack::MIN_DUPLICATE_BYTES`] take part, so the candidates stay
//! few on any node; of those, only files whose size another layer's file
//! also has are hashed, and a hash is kept as long as its layer lives.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::pace::Pace;
use super::stack::StackAudit;
use super::{content, Amount, ImageStack};
use crate::runtime::RuntimeKind;

/// Groups listed in the report, by what they would save.
pub const TOP_GROUPS: usize = 20;

/// One content found in more than one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicateGroup {
    /// The file's size (st_size).
    pub bytes: u64,
    /// What one shared copy would save: (layers holding it − 1) × size.
    pub saving_bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Where the copies are.
    pub copies: Vec<Copy>,
}

/// One copy of a duplicated file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Copy {
    /// The layer directory holding it.
    pub layer_dir: String,
    /// Its path in the image.
    pub path: String,
    /// The images showing it (their names).
    pub images: Vec<String>,
}

/// Hashes of candidate files, kept while their layers are on the node.
pub type Hashes = HashMap<(PathBuf, Box<[u8]>), [u8; 32]>;

/// What [`find`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// The biggest groups, biggest saving first.
    pub groups: Vec<DuplicateGroup>,
    /// Node-wide: the copies one shared copy would make unnecessary.
    pub saving: Amount,
    /// Per audited stack (in the order given): its files whose content
    /// lies in a layer it does not have.
    pub per_image: Vec<Amount>,
    /// Files that could not be read: (runtime, layer, path, why).
    pub unread: Vec<(RuntimeKind, PathBuf, String, String)>,
    /// Whether the pace stopped it before every candidate was hashed.
    pub stopped: bool,
}

/// The store a layer belongs to: its runtime and containerd namespace.
type Store<'a> = (RuntimeKind, &'a str);

/// A copy: its layer's directory and its path there.
type Key<'a> = (&'a Path, &'a [u8]);

/// A copy as found: its store, the stacks showing it, and its sizes.
struct Seen<'a> {
    store: Store<'a>,
    images: Vec<usize>,
    size: u64,
    disk: u64,
}

/// Finds the duplicates among the candidates of `audited` (each image
/// with its stack's audit), hashing with `hashes` as a cache.
pub fn find(audited: &[(&ImageStack, &StackAudit)], hashes: &mut Hashes, pace: &mut Pace) -> Found {
    let mut copies: BTreeMap<Key, Seen> = BTreeMap::new();
    for (i, (stack, audit)) in audited.iter().enumerate() {
        for c in &audit.candidates {
            let key = (stack.layers[c.layer].as_path(), &c.path[..]);
            let seen = copies.entry(key).or_insert(Seen {
                store: (stack.runtime, stack.namespace.as_str()),
                images: Vec::new(),
                size: c.size,
                disk: c.disk,
            });
            seen.images.push(i);
        }
    }
    let mut found = Found {
        per_image: vec![Amount::default(); audited.len()],
        ..Found::default()
    };
    let mut by_hash: HashMap<(Store, [u8; 32]), Vec<Key>> = HashMap::new();
    for group in same_size(&copies) {
        for key in group {
            match hash(key, hashes, pace) {
                Ok(Some(digest)) => by_hash
                    .entry((copies[&key].store, digest))
                    .or_default()
                    .push(key),
                Ok(None) => {
                    found.stopped = true;
                    break;
                }
                Err(e) => {
                    let runtime = audited[copies[&key].images[0]].0.runtime;
                    let path = String::from_utf8_lossy(key.1).into_owned();
                    found
                        .unread
                        .push((runtime, key.0.to_path_buf(), path, e.to_string()));
                }
            }
        }
    }
    let live: HashSet<Key> = copies.keys().copied().collect();
    hashes.retain(|(dir, path), _| live.contains(&(dir.as_path(), &path[..])));
    let mut groups = Vec::new();
    for ((_, digest), keys) in by_hash {
        let layers: BTreeSet<&Path> = keys.iter().map(|k| k.0).collect();
        if layers.len() < 2 {
            continue;
        }
        groups.push(group(&digest, &keys, &layers, &copies, audited, &mut found));
    }
    // The first copy's layer tells apart the stores' groups of one content.
    let first = |g: &DuplicateGroup| g.copies.first().map(|c| c.layer_dir.clone());
    groups.sort_by(|a, b| {
        (b.saving_bytes.cmp(&a.saving_bytes))
            .then_with(|| a.sha256.cmp(&b.sha256))
            .then_with(|| first(a).cmp(&first(b)))
    });
    groups.truncate(TOP_GROUPS);
    found.groups = groups;
    found
}

/// The copies worth hashing: those sharing their size with a copy in
/// another layer of their store.
fn same_size<'a>(copies: &BTreeMap<Key<'a>, Seen<'a>>) -> Vec<Vec<Key<'a>>> {
    let mut by_size: BTreeMap<(Store, u64), Vec<Key>> = BTreeMap::new();
    for (key, seen) in copies {
        by_size
            .entry((seen.store, seen.size))
            .or_default()
            .push(*key);
    }
    by_size
        .into_values()
        .filter(|keys| keys.iter().map(|k| k.0).collect::<BTreeSet<_>>().len() > 1)
        .collect()
}

/// The hash of a copy, from the cache or read now.
fn hash(key: Key, hashes: &mut Hashes, pace: &mut Pace) -> std::io::Result<Option<[u8; 32]>> {
    let cache_key = (key.0.to_path_buf(), Box::<[u8]>::from(key.1));
    if let Some(digest) = hashes.get(&cache_key) {
        return Ok(Some(*digest));
    }
    let digest = content::sha256(key.0, key.1, pace)?;
    if let Some(d) = digest {
        hashes.insert(cache_key, d);
    }
    Ok(digest)
}

/// One group of identical copies held by `layers`: counted node-wide, and
/// for every image showing a copy while lacking one of the layers.
fn group(
    digest: &[u8; 32],
    keys: &[Key],
    layers: &BTreeSet<&Path>,
    copies: &BTreeMap<Key, Seen<'_>>,
    audited: &[(&ImageStack, &StackAudit)],
    found: &mut Found,
) -> DuplicateGroup {
    let first = &copies[&keys[0]];
    let extra = layers.len() as u64 - 1;
    found.saving.files += extra;
    found.saving.bytes = found.saving.bytes.saturating_add(extra * first.size);
    found.saving.disk_bytes = found.saving.disk_bytes.saturating_add(extra * first.disk);
    let mut listed = Vec::new();
    for key in keys {
        let seen = &copies[key];
        for &i in &seen.images {
            let own: HashSet<&Path> = audited[i].0.layers.iter().map(PathBuf::as_path).collect();
            if layers.iter().any(|l| !own.contains(l)) {
                found.per_image[i].add(seen.size, seen.disk);
            }
        }
        listed.push(Copy {
            layer_dir: key.0.display().to_string(),
            path: format!("/{}", String::from_utf8_lossy(key.1)),
            images: seen.images.iter().map(|&i| audited[i].0.name()).collect(),
        });
    }
    DuplicateGroup {
        bytes: first.size,
        saving_bytes: extra * first.size,
        sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
        copies: listed,
    }
}
