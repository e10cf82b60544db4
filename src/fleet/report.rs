//! The fleet's answers judged together: each node's verdict (the worst of
//! its signals; unknown when it did not answer), the nodes worst first,
//! the summary sentence and the exit code.

use serde::Serialize;

use crate::model::{Prediction, Signal, State};
use crate::what_if::Answer;

use super::NodeAnswer;

/// Exit code when no node would reach pressure but some did not answer:
/// distinct from ok and warning, since a node not heard from is not known
/// to fit.
pub const EXIT_UNKNOWN: u8 = 9;

/// One node's verdict, least bad first: a node that did not answer ranks
/// above a warning (it may be anything) and below pressure (known bad).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every signal stays ok with the pull.
    Ok,
    /// The worst signal is warning (e.g. it fits only after image GC).
    Warning,
    /// The node did not answer.
    Unknown,
    /// A signal would reach pressure: the kubelet's DiskPressure.
    Pressure,
}

impl Verdict {
    /// Its name on screen and in `--json`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Unknown => "unknown",
            Verdict::Pressure => "pressure",
        }
    }
}

/// The verdict of one node's outcome.
pub fn verdict(node: &NodeAnswer) -> Verdict {
    let Ok(answer) = &node.answer else {
        return Verdict::Unknown;
    };
    match answer.prediction.values().map(|p| p.state).max() {
        Some(State::Pressure) => Verdict::Pressure,
        Some(State::Warning) => Verdict::Warning,
        Some(State::Ok) | None => Verdict::Ok,
    }
}

/// The node's name: its own, once it answered; else the source's.
pub fn node_name(node: &NodeAnswer) -> &str {
    match &node.answer {
        Ok(answer) if !answer.node.is_empty() => &answer.node,
        _ => &node.agent.node,
    }
}

/// `nodes` worst first, then by name.
pub fn worst_first(nodes: &mut [NodeAnswer]) {
    nodes.sort_by(|a, b| {
        verdict(b)
            .cmp(&verdict(a))
            .then_with(|| node_name(a).cmp(node_name(b)))
    });
}

/// The fleet in a few counts and names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Nodes asked.
    pub nodes: usize,
    /// Nodes where the pull fits (ok or warning).
    pub fit: usize,
    /// Nodes that would reach DiskPressure.
    pub pressure: Vec<String>,
    /// Nodes where it fits with a warning.
    pub warning: Vec<String>,
    /// Nodes that did not answer.
    pub unknown: Vec<String>,
    /// All of it in one sentence.
    pub sentence: String,
}

impl Summary {
    /// The summary of `nodes` (names in the order given).
    pub fn of(nodes: &[NodeAnswer]) -> Summary {
        let named = |v: Verdict| -> Vec<String> {
            nodes
                .iter()
                .filter(|n| verdict(n) == v)
                .map(|n| node_name(n).to_string())
                .collect()
        };
        let (pressure, warning, unknown) = (
            named(Verdict::Pressure),
            named(Verdict::Warning),
            named(Verdict::Unknown),
        );
        let fit = nodes.len() - pressure.len() - unknown.len();
        let mut sentence = format!("fits on {fit} of {} nodes", nodes.len());
        let mut part = |names: &[String], what: &str| {
            if !names.is_empty() {
                sentence += &format!("; {} {what}: {}", names.len(), names.join(", "));
            }
        };
        part(&pressure, "would reach DiskPressure");
        part(&unknown, "did not answer");
        part(&warning, "with a warning");
        Summary {
            nodes: nodes.len(),
            fit,
            pressure,
            warning,
            unknown,
            sentence,
        }
    }

    /// The exit code: 2 if a node would reach pressure, else
    /// [`EXIT_UNKNOWN`] if one did not answer, else 1 if one has a
    /// warning, else 0. Never 0 for a node not heard from.
    pub fn exit_code(&self) -> u8 {
        if !self.pressure.is_empty() {
            2
        } else if !self.unknown.is_empty() {
            EXIT_UNKNOWN
        } else if !self.warning.is_empty() {
            1
        } else {
            0
        }
    }
}

/// The answer's worst signal and its prediction.
pub fn worst_signal(answer: &Answer) -> Option<(&Signal, &Prediction)> {
    answer.prediction.iter().max_by_key(|(_, p)| p.state)
}
