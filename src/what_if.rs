//! The what-if question a node's agent answers, and its answer: "what would
//! pulling this image do to you?" (`POST /api/v1/check-pull`, and
//! `headroom check-pull`, which asks its own node the same way).
//!
//! The asker resolves the image and measures its layers in the registry
//! ([`crate::registry::sizing`]); the [`Question`] carries those figures, so
//! the agent judges them against its own inventory without an outbound
//! request. The [`Answer`] is `headroom check-pull --json`'s document
//! (docs/check-pull.md), whoever computed it, so answers from several nodes
//! compare field by field.
//!
//! A question comes from the network: [`Question::parse`] bounds the body,
//! the layers and every figure before anything is computed from it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::digest::is_sha256;
use crate::inventory::check_pull::{
    block_size, judge, plan, pulls_in_flight, InFlightPull, PlannedLayer, Target,
};
use crate::inventory::Scanned;
use crate::model::{Prediction, Signal};
use crate::registry::sizing::Unpacked;
use crate::registry::{Platform, Reference, ResolvedImage};
use crate::runtime::RuntimeKind;

/// The version of the [`Question`] this build understands.
pub const SCHEMA: u32 = 1;

/// The largest question body accepted (a 512-layer image takes about 200 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The most layers a question may carry (runtimes stack at most 128).
pub const MAX_LAYERS: usize = 512;

/// The largest byte count or inode count a layer may claim (1 PiB): sums of
/// [`MAX_LAYERS`] of them cannot overflow, and no real layer comes close.
pub const MAX_FIGURE: u64 = 1 << 50;

/// The longest image name or reference, and the longest text in a layer.
pub const MAX_TEXT_BYTES: usize = 1024;

/// The containerd namespace the kubelet pulls into: the one a question
/// without a namespace is judged in, as `check-pull` does.
pub const DEFAULT_NAMESPACE: &str = "k8s.io";

/// What pulling an image would bring: the image as the asker resolved it,
/// and its layers as measured in its registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Question {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The image as the user named it.
    pub image: String,
    /// The reference resolved, normalised (`docker.io/library/…`).
    pub reference: String,
    /// The index's digest when the reference named one.
    pub index_digest: Option<String>,
    /// The manifest chosen for the platform.
    pub manifest_digest: String,
    /// The config's digest: the image ID.
    pub config_digest: String,
    /// `os/arch[/variant]` from the config.
    pub platform: String,
    /// The store the pull goes to, as `check-pull --runtime`; `None`: the
    /// node chooses, as `check-pull` does.
    pub runtime: Option<RuntimeKind>,
    /// The containerd namespace, as `check-pull --namespace`; `None`:
    /// [`DEFAULT_NAMESPACE`].
    pub namespace: Option<String>,
    /// The layers, base first.
    pub layers: Vec<QuestionLayer>,
}

/// One layer of a [`Question`], as the asker measured it in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionLayer {
    /// The compressed blob's digest.
    pub digest: String,
    /// The digest of its uncompressed tar (its chain ID's part).
    pub diff_id: String,
    /// Bytes a pull downloads for it.
    pub compressed_bytes: u64,
    /// What it adds unpacked.
    pub unpacked: Unpacked,
}

/// Why a question body was refused; names the field and says why.
#[derive(Debug, thiserror::Error)]
pub enum QuestionError {
    /// The body is over [`MAX_BODY_BYTES`].
    #[error("the body is {bytes} bytes, over the limit of {MAX_BODY_BYTES}")]
    TooBig {
        /// Its size.
        bytes: usize,
    },
    /// The body is not a question's JSON (syntax, type, unknown key, or
    /// nesting too deep).
    #[error("the body is not a question: at {path}: {source}")]
    Json {
        /// Where in the document (`layers[2].unpacked`; `.` for the top).
        path: String,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// A field holds a value out of bounds or of the wrong form.
    #[error("{field}: {why}")]
    Invalid {
        /// The field's path (`layers[2].diff_id`).
        field: String,
        /// What is wrong with it.
        why: String,
    },
}

impl Question {
    /// The question for `image` (as the user named it), resolved as
    /// `resolved`, its layers measured as `unpacked` (one per layer, base
    /// first), for the store `runtime` and `namespace` (`None`: as the node
    /// chooses).
    pub fn from_resolved(
        image: &str,
        resolved: &ResolvedImage,
        unpacked: Vec<Unpacked>,
        runtime: Option<RuntimeKind>,
        namespace: Option<String>,
    ) -> Question {
        let layers = resolved
            .layers
            .iter()
            .zip(unpacked)
            .map(|(layer, unpacked)| QuestionLayer {
                digest: layer.digest.clone(),
                diff_id: layer.diff_id.clone(),
                compressed_bytes: layer.compressed_size,
                unpacked,
            })
            .collect();
        Question {
            schema: SCHEMA,
            image: image.to_string(),
            reference: resolved.reference.to_string(),
            index_digest: resolved.index_digest.clone(),
            manifest_digest: resolved.manifest_digest.clone(),
            config_digest: resolved.config_digest.clone(),
            platform: resolved.platform.to_string(),
            runtime,
            namespace,
            layers,
        }
    }

    /// Reads and validates a question from a request body: at most
    /// [`MAX_BODY_BYTES`], the current [`SCHEMA`], canonical sha256 digests,
    /// at most [`MAX_LAYERS`] layers, figures at most [`MAX_FIGURE`], texts
    /// at most [`MAX_TEXT_BYTES`], a valid containerd namespace.
    pub fn parse(body: &[u8]) -> Result<Question, QuestionError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(QuestionError::TooBig { bytes: body.len() });
        }
        let mut json = serde_json::Deserializer::from_slice(body);
        let question: Question =
            serde_path_to_error::deserialize(&mut json).map_err(|e| QuestionError::Json {
                path: e.path().to_string(),
                source: e.into_inner(),
            })?;
        json.end().map_err(|source| QuestionError::Json {
            path: ".".into(),
            source,
        })?;
        question.validate()?;
        Ok(question)
    }

    /// Every bound [`Question::parse`] promises, beyond the JSON's shape.
    fn validate(&self) -> Result<(), QuestionError> {
        if self.schema != SCHEMA {
            return invalid("schema", format!("{} is not {SCHEMA}", self.schema));
        }
        reference("image", &self.image)?;
        reference("reference", &self.reference)?;
        if let Some(index) = &self.index_digest {
            digest("index_digest", index)?;
        }
        digest("manifest_digest", &self.manifest_digest)?;
        digest("config_digest", &self.config_digest)?;
        text("platform", &self.platform)?;
        if let Err(why) = self.platform.parse::<Platform>() {
            return invalid("platform", why);
        }
        if let Some(namespace) = &self.namespace {
            if !is_namespace(namespace) {
                return invalid(
                    "namespace",
                    "not a containerd namespace (letters and digits, joined by single `.`, `_` or `-`, at most 76)".into(),
                );
            }
        }
        if self.layers.len() > MAX_LAYERS {
            return invalid(
                "layers",
                format!(
                    "{} layers, over the limit of {MAX_LAYERS}",
                    self.layers.len()
                ),
            );
        }
        for (i, layer) in self.layers.iter().enumerate() {
            layer.validate(&format!("layers[{i}]"))?;
        }
        Ok(())
    }
}

impl QuestionLayer {
    fn validate(&self, at: &str) -> Result<(), QuestionError> {
        digest(&format!("{at}.digest"), &self.digest)?;
        digest(&format!("{at}.diff_id"), &self.diff_id)?;
        figure(&format!("{at}.compressed_bytes"), self.compressed_bytes)?;
        let u = &self.unpacked;
        figure(&format!("{at}.unpacked.stream_bytes"), u.stream_bytes)?;
        figure(&format!("{at}.unpacked.disk_bytes"), u.disk_bytes)?;
        figure(&format!("{at}.unpacked.inodes"), u.inodes)?;
        text(&format!("{at}.unpacked.method"), &u.method)?;
        if let Some(why) = &u.fallback {
            text(&format!("{at}.unpacked.fallback"), why)?;
        }
        Ok(())
    }
}

fn invalid(field: &str, why: String) -> Result<(), QuestionError> {
    Err(QuestionError::Invalid {
        field: field.to_string(),
        why,
    })
}

fn digest(field: &str, value: &str) -> Result<(), QuestionError> {
    if is_sha256(value) {
        return Ok(());
    }
    invalid(
        field,
        "not a sha256 digest (sha256: and 64 lowercase hex digits)".into(),
    )
}

fn figure(field: &str, value: u64) -> Result<(), QuestionError> {
    if value <= MAX_FIGURE {
        return Ok(());
    }
    invalid(field, format!("{value} is over the limit of {MAX_FIGURE}"))
}

fn text(field: &str, value: &str) -> Result<(), QuestionError> {
    if value.len() <= MAX_TEXT_BYTES {
        return Ok(());
    }
    invalid(
        field,
        format!("{} bytes, over the limit of {MAX_TEXT_BYTES}", value.len()),
    )
}

/// A non-empty image reference of at most [`MAX_TEXT_BYTES`].
fn reference(field: &str, value: &str) -> Result<(), QuestionError> {
    text(field, value)?;
    match value.parse::<Reference>() {
        Ok(_) => Ok(()),
        Err(e) => invalid(field, e.to_string()),
    }
}

/// containerd's namespace rule: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, at
/// most 76 characters.
fn is_namespace(s: &str) -> bool {
    let alnum = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric());
    s.len() <= 76 && s.split(['.', '_', '-']).all(alnum)
}

/// What pulling the image would do to one node: `headroom check-pull
/// --json`'s document (docs/check-pull.md), from the CLI or from the node's
/// agent alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The node, as its status document names it.
    pub node: String,
    /// When the inventory judged was made (the status document's time).
    #[serde(with = "crate::model::rfc3339")]
    pub generated_at: SystemTime,
    /// The image as the user named it.
    pub image: String,
    /// The reference resolved, normalised.
    pub reference: String,
    /// The index's digest when the reference named one.
    pub index_digest: Option<String>,
    /// The manifest chosen for the platform.
    pub manifest_digest: String,
    /// The config's digest: the image ID.
    pub config_digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The store the pull goes to.
    pub runtime: RuntimeKind,
    /// Its containerd namespace; empty for Docker.
    pub namespace: String,
    /// Where the registry credentials came from; never the secret. `None`
    /// when anonymous, and from an agent (it calls no registry).
    pub credentials: Option<String>,
    /// The image (its config) is already in the store.
    pub image_present: bool,
    /// The layers, base first, and which the store has.
    pub layers: Vec<PlannedLayer>,
    /// Compressed bytes to download.
    pub download_bytes: u64,
    /// What the layers to pull take unpacked.
    pub unpack_bytes: u64,
    /// Inodes they take.
    pub inodes: u64,
    /// `download_bytes + unpack_bytes`.
    pub total_bytes: u64,
    /// The pulls in flight counted in the verdict.
    pub in_flight: Vec<InFlightPull>,
    /// Σ of their remaining download and unpack.
    pub in_flight_bytes: u64,
    /// The verdict per affected signal.
    pub prediction: BTreeMap<Signal, Prediction>,
}

/// `question` with each layer's disk bytes in the store's own
/// `block_size`-byte blocks: the asker costed them in several (a 1 KiB-block
/// ext4 store takes small files in less than a 4 KiB one).
fn in_own_blocks(question: &Question, block_size: u64) -> Question {
    let mut own = question.clone();
    for layer in &mut own.layers {
        layer.unpacked.disk_bytes = layer.unpacked.disk_bytes_in(block_size);
    }
    own
}

/// What pulling the image `question` describes would do to `node`, with
/// the pulls `in_flight` (sized by the caller, see [`pulls_in_flight`])
/// counted. `credentials` is left `None` for the caller to say.
pub fn answer(question: &Question, node: &Scanned, in_flight: Vec<InFlightPull>) -> Answer {
    let namespace = question.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
    let target = Target::choose(&node.status, question.runtime, namespace);
    let question = in_own_blocks(question, block_size(&node.status, target.runtime));
    let plan = plan(&question, &node.status, &target);
    let check = judge(plan, &question.image, node, target, in_flight);
    Answer {
        node: node.status.node.clone(),
        generated_at: node.status.generated_at,
        image: question.image.clone(),
        reference: question.reference.clone(),
        index_digest: question.index_digest.clone(),
        manifest_digest: question.manifest_digest.clone(),
        config_digest: question.config_digest.clone(),
        platform: question.platform.clone(),
        runtime: check.target.runtime,
        namespace: check.target.namespace,
        credentials: None,
        image_present: check.image_present,
        download_bytes: check.cost.download_bytes,
        unpack_bytes: check.cost.unpack_bytes,
        inodes: check.inodes,
        total_bytes: check.cost.total(),
        in_flight_bytes: check
            .in_flight
            .iter()
            .map(InFlightPull::bytes)
            .fold(0, u64::saturating_add),
        layers: check.layers,
        in_flight: check.in_flight,
        prediction: check.prediction,
    }
}

/// [`answer`] as the node's agent gives it: the pulls in flight at the
/// node's unpack ratio, since the agent asks no registry.
pub fn answer_from_inventory(question: &Question, node: &Scanned) -> Answer {
    let in_flight = pulls_in_flight(&node.status, |_| Err("the agent asks no registry"));
    answer(question, node, in_flight)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn question() -> Question {
        Question {
            schema: SCHEMA,
            image: "registry.example/app:2".into(),
            reference: "registry.example/app:2".into(),
            index_digest: None,
            manifest_digest: digest(0xa0),
            config_digest: digest(0xc0),
            platform: "linux/amd64".into(),
            runtime: Some(RuntimeKind::Containerd),
            namespace: Some("k8s.io".into()),
            layers: (1..=3)
                .map(|n| QuestionLayer {
                    digest: digest(0xb0 + n),
                    diff_id: digest(n),
                    compressed_bytes: 100 * u64::from(n),
                    unpacked: Unpacked {
                        disk_bytes_by_block: Default::default(),
                        stream_bytes: 300,
                        disk_bytes: 4096,
                        inodes: 3,
                        exact: true,
                        method: "decoded whole".into(),
                        fallback: None,
                    },
                })
                .collect(),
        }
    }

    fn parse_value(value: &serde_json::Value) -> Result<Question, QuestionError> {
        Question::parse(&serde_json::to_vec(value).unwrap())
    }

    /// The question as JSON with `edit` applied.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Question, QuestionError> {
        let mut value = serde_json::to_value(question()).unwrap();
        edit(&mut value);
        parse_value(&value)
    }

    type Edit = dyn FnOnce(&mut serde_json::Value);

    fn field_of(result: Result<Question, QuestionError>) -> String {
        match result {
            Err(QuestionError::Invalid { field, .. }) => field,
            Err(QuestionError::Json { path, .. }) => path,
            other => panic!("not a field error: {other:?}"),
        }
    }

    #[test]
    fn a_question_round_trips() {
        let q = question();
        assert_eq!(
            Question::parse(&serde_json::to_vec(&q).unwrap()).unwrap(),
            q
        );
    }

    #[test]
    fn fault_out_of_bounds_fields_are_named() {
        let cases: Vec<(&str, Box<Edit>)> = vec![
            ("schema", Box::new(|v| v["schema"] = 2.into())),
            ("image", Box::new(|v| v["image"] = "".into())),
            ("image", Box::new(|v| v["image"] = "a".repeat(2000).into())),
            (
                "config_digest",
                Box::new(|v| v["config_digest"] = "sha256:ab".into()),
            ),
            ("platform", Box::new(|v| v["platform"] = "linux".into())),
            ("namespace", Box::new(|v| v["namespace"] = "k8s..io".into())),
            ("namespace", Box::new(|v| v["namespace"] = "a/b".into())),
            (
                "layers[1].diff_id",
                Box::new(|v| v["layers"][1]["diff_id"] = "md5:x".into()),
            ),
            (
                "layers[2].unpacked.disk_bytes",
                Box::new(|v| v["layers"][2]["unpacked"]["disk_bytes"] = u64::MAX.into()),
            ),
            (
                "layers[0].compressed_bytes",
                Box::new(|v| v["layers"][0]["compressed_bytes"] = (MAX_FIGURE + 1).into()),
            ),
            (
                "layers[0].unpacked.method",
                Box::new(|v| v["layers"][0]["unpacked"]["method"] = "m".repeat(2000).into()),
            ),
            // Shape errors name their place too.
            (
                "layers[0].compressed_bytes",
                Box::new(|v| v["layers"][0]["compressed_bytes"] = (-1).into()),
            ),
            (
                "layers[1].extra",
                Box::new(|v| v["layers"][1]["extra"] = 1.into()),
            ),
        ];
        for (field, edit) in cases {
            assert_eq!(field_of(edited(edit)), field);
        }
    }

    #[test]
    fn fault_too_many_layers_or_bytes_are_refused() {
        let many = edited(|v| {
            let layer = v["layers"][0].clone();
            v["layers"] = vec![layer; MAX_LAYERS + 1].into();
        });
        assert_eq!(field_of(many), "layers");
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(
            Question::parse(&big),
            Err(QuestionError::TooBig { bytes }) if bytes == MAX_BODY_BYTES + 1
        ));
    }

    #[test]
    fn fault_garbage_deep_nesting_and_trailing_bytes_are_refused() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let mut trailing = serde_json::to_vec(&question()).unwrap();
        trailing.extend_from_slice(b" {}");
        for body in [&b"\xff\xfe"[..], b"", b"{", deep.as_bytes(), &trailing] {
            assert!(
                matches!(Question::parse(body), Err(QuestionError::Json { .. })),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_fuzz_seeds_are_questions() {
        let seeds: [&[u8]; 2] = [
            include_bytes!("../fuzz/corpus/question_parse/seed-question.json"),
            include_bytes!("../fuzz/corpus/question_parse/seed-empty-layers.json"),
        ];
        for seed in seeds {
            Question::parse(seed).expect("a seed parses");
        }
    }

    #[test]
    fn namespaces_follow_containerd_rules() {
        for good in ["k8s.io", "moby", "a-b_c.d", "A1"] {
            assert!(is_namespace(good), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "é", &"a".repeat(77)] {
            assert!(!is_namespace(bad), "{bad}");
        }
    }

    #[test]
    fn a_node_takes_each_layer_in_its_own_blocks() {
        let mut q = question();
        q.layers[0].unpacked.disk_bytes_by_block = [(1024, 111), (4096, 444)].into();
        let own = in_own_blocks(&q, 1024);
        assert_eq!(own.layers[0].unpacked.disk_bytes, 111);
        // A block size not costed keeps the headline figure.
        let odd = in_own_blocks(&q, 65536);
        assert_eq!(
            odd.layers[0].unpacked.disk_bytes,
            q.layers[0].unpacked.disk_bytes
        );
        assert_eq!(in_own_blocks(&q, 4096).layers[0].unpacked.disk_bytes, 444);
    }
}
