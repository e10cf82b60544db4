//! A trial's list of comparisons: each mismatch is recorded with the oracle
//! command, expected and actual values, and the trial fails at the end with
//! all of them (not just the first).

use std::fmt::Debug;

use anyhow::{bail, Result};

/// Mismatches found so far.
#[derive(Debug, Default)]
pub struct Checks {
    failures: Vec<String>,
}

impl Checks {
    /// A fresh, empty list.
    pub fn new() -> Checks {
        Checks::default()
    }

    /// Records a failure unless `expected == actual`.
    pub fn eq<T: PartialEq + Debug>(&mut self, what: &str, oracle: &str, expected: T, actual: T) {
        if expected != actual {
            self.failures.push(format!(
                "{what}\n    oracle:   {oracle}\n    expected: {expected:?}\n    actual:   {actual:?}"
            ));
        }
    }

    /// Records a failure unless `actual` is within `tolerance` of `expected`.
    pub fn near(&mut self, what: &str, oracle: &str, expected: f64, actual: f64, tolerance: f64) {
        if (expected - actual).abs() > tolerance {
            self.failures.push(format!(
                "{what}\n    oracle:   {oracle}\n    expected: {expected} ± {tolerance}\n    actual:   {actual} (off by {})",
                actual - expected
            ));
        }
    }

    /// Records `message()` unless `ok`.
    pub fn that(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(message());
        }
    }

    /// Records an error from collecting an oracle figure.
    pub fn error(&mut self, what: &str, err: anyhow::Error) {
        self.failures.push(format!("{what}: {err:#}"));
    }

    /// Fails with every recorded mismatch, with `context` (e.g. the run) after.
    pub fn finish(self, context: &str) -> Result<()> {
        if self.failures.is_empty() {
            return Ok(());
        }
        bail!(
            "{} mismatch(es):\n- {}\n{context}",
            self.failures.len(),
            self.failures.join("\n- ")
        )
    }
}
