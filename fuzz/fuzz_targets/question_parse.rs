//! Parses arbitrary bytes as a what-if question (the body of the agent's
//! `POST /api/v1/check-pull`); a question that parses must round-trip and
//! be answerable on a fixed node: no input may panic, hang or exhaust memory.
#![no_main]

use std::sync::OnceLock;

use headroom::inventory::Scanned;
use headroom::kubelet::KubeletConfig;
use headroom::model::Status;
use headroom::what_if::{self, Question, MAX_LAYERS};
use libfuzzer_sys::fuzz_target;

/// The unit tests' node, its store on the document's imagefs (no I/O).
fn node() -> &'static Scanned {
    static NODE: OnceLock<Scanned> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut status: Status =
            serde_json::from_str(include_str!("../../tests/fixtures/status.json"))
                .expect("the fixture parses");
        for runtime in &mut status.runtimes {
            runtime.image_root = None;
        }
        Scanned {
            status,
            kubelet: KubeletConfig::defaults(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(question) = Question::parse(data) else {
        return;
    };
    assert!(question.layers.len() <= MAX_LAYERS);
    let again = serde_json::to_vec(&question).expect("a question serializes");
    assert_eq!(Question::parse(&again).expect("a question re-parses"), question);
    let answer = what_if::answer_from_inventory(&question, node());
    assert!(answer.layers.len() <= question.layers.len());
    assert!(answer.total_bytes >= answer.download_bytes);
});
