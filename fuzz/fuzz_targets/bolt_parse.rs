//! Parses arbitrary bytes as a bbolt file and walks every bucket and entry
//! reachable from the root: no input may panic, hang or exhaust memory.
#![no_main]

use headroom::runtime::bolt::{Bucket, Db, Value};
use libfuzzer_sys::fuzz_target;

/// Sub-buckets deeper than this are not followed (real files nest < 8).
const MAX_DEPTH: usize = 16;
/// Entries listed per input at most: sub-buckets may share pages, so an
/// unbounded walk of a small hostile file can be exponential in the depth.
const MAX_ENTRIES: usize = 1 << 16;

fn walk(bucket: Bucket<'_>, depth: usize, budget: &mut usize) {
    let Ok(entries) = bucket.entries() else { return };
    *budget = budget.saturating_sub(entries.len());
    for entry in entries {
        if *budget == 0 {
            return;
        }
        match entry.value {
            Value::Bucket(sub) if depth < MAX_DEPTH => walk(sub, depth + 1, budget),
            Value::Bucket(_) => {}
            Value::Data(data) => {
                std::hint::black_box(data);
            }
        }
    }
    // Point lookups take their own path through the tree.
    let _ = bucket.get(b"v1");
    let _ = bucket.bucket(b"snapshots");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(db) = Db::parse(data) {
        let mut budget = MAX_ENTRIES;
        walk(db.root(), 0, &mut budget);
    }
});
