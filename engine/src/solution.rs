//! What a strategy returns.

use serde::{Deserialize, Serialize};

use crate::budget::Resource;
use crate::usage::Usage;

/// Why a strategy stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The strategy ran to its end.
    Completed,
    /// The final completion hit its `max_tokens` before ending by itself.
    MaxTokens,
    /// The token budget ran out; the answer is the best so far.
    TokenBudget,
    /// The completion-token budget ran out; the answer is the best so far.
    CompletionBudget,
    /// The call budget ran out; the answer is the best so far.
    CallBudget,
    /// The wall-time budget ran out; the answer is the best so far.
    TimeBudget,
}

impl From<Resource> for StopReason {
    fn from(resource: Resource) -> Self {
        match resource {
            Resource::Tokens => Self::TokenBudget,
            Resource::CompletionTokens => Self::CompletionBudget,
            Resource::Calls => Self::CallBudget,
            Resource::WallTime => Self::TimeBudget,
        }
    }
}

/// How a solve whose last completion ended so stopped: by itself, or at its `max_tokens`.
impl From<crate::backend::FinishReason> for StopReason {
    fn from(finish: crate::backend::FinishReason) -> Self {
        match finish {
            crate::backend::FinishReason::Stop => Self::Completed,
            crate::backend::FinishReason::Length => Self::MaxTokens,
        }
    }
}

impl StopReason {
    /// True when a budget ended the work.
    pub fn is_budget(self) -> bool {
        matches!(
            self,
            Self::TokenBudget | Self::CompletionBudget | Self::CallBudget | Self::TimeBudget
        )
    }
}

/// One candidate answer a strategy considered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The extracted answer, if any.
    pub answer: Option<String>,
    /// The completion text.
    pub text: String,
    /// Its score, where one was computed.
    pub score: Option<f64>,
    /// Completion tokens spent on it.
    pub tokens: u64,
}

/// A strategy's result for one problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Solution {
    /// The strategy that produced it (its config `kind`).
    pub strategy: String,
    /// The final answer, if one could be extracted.
    pub answer: Option<String>,
    /// The text the answer was taken from.
    pub completion: String,
    /// Every candidate considered (one for single-sample strategies).
    pub candidates: Vec<Candidate>,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// What it cost (filled in by whoever metered the solve).
    pub usage: Usage,
    /// Strategy-specific details (thinking tokens, votes, search statistics, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// The search tree, for strategies that search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
}

/// A search tree as exported: JSON (nodes with their scores and states) and Graphviz DOT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The tree as JSON.
    pub json: serde_json::Value,
    /// The tree in Graphviz DOT.
    pub dot: String,
}

impl Trace {
    /// The files [`Trace::write`] writes for problem `id` in `dir`: `<id>.json`, `<id>.dot` and
    /// `<id>.svg` (the last only where `dot` is installed).
    pub fn paths(dir: &std::path::Path, id: &str) -> [std::path::PathBuf; 3] {
        let stem: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // Ids that needed changing get a hash of the original, so `a/b` and `a_b` stay apart.
        let stem = if stem == id {
            stem
        } else {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(id.as_bytes());
            format!("{stem}-{}", crate::models::hex(&digest[..4]))
        };
        ["json", "dot", "svg"].map(|ext| dir.join(format!("{stem}.{ext}")))
    }

    /// Writes `<dir>/<id>.json` and `<dir>/<id>.dot` (an id with characters other than ASCII
    /// letters, digits, `-`, `_` and `.` has them replaced by `_` and a hash appended), and
    /// `<dir>/<id>.svg` when the `dot` program is installed. Returns the paths written.
    pub fn write(&self, dir: &std::path::Path, id: &str) -> crate::Result<Vec<std::path::PathBuf>> {
        use crate::Error;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let [json_path, dot_path, svg_path] = Self::paths(dir, id);
        let text = serde_json::to_string_pretty(&self.json).map_err(|source| Error::Serialize {
            what: "a search trace",
            source,
        })?;
        std::fs::write(&json_path, text).map_err(|e| Error::io(&json_path, e))?;
        std::fs::write(&dot_path, &self.dot).map_err(|e| Error::io(&dot_path, e))?;
        let mut written = vec![json_path, dot_path.clone()];
        let rendered = std::process::Command::new("dot")
            .arg("-Tsvg")
            .arg(&dot_path)
            .arg("-o")
            .arg(&svg_path)
            .status();
        if rendered.is_ok_and(|s| s.success()) {
            written.push(svg_path);
        }
        Ok(written)
    }
}

impl Solution {
    /// A solution with one candidate and no details.
    pub fn single(
        strategy: impl Into<String>,
        candidate: Candidate,
        stop_reason: StopReason,
    ) -> Self {
        Self {
            strategy: strategy.into(),
            answer: candidate.answer.clone(),
            completion: candidate.text.clone(),
            candidates: vec![candidate],
            stop_reason,
            usage: Usage::default(),
            details: serde_json::Value::Null,
            trace: None,
        }
    }

    /// A solution that ran out of budget before producing anything.
    pub fn exhausted(strategy: impl Into<String>, resource: Resource) -> Self {
        Self {
            strategy: strategy.into(),
            answer: None,
            completion: String::new(),
            candidates: Vec::new(),
            stop_reason: resource.into(),
            usage: Usage::default(),
            details: serde_json::Value::Null,
            trace: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_differ_only_in_unsafe_characters_get_separate_trace_files() {
        let dir = tempfile::tempdir().unwrap();
        let trace = Trace {
            json: serde_json::json!({"nodes": []}),
            dot: "digraph search {}\n".into(),
        };
        let plain = trace.write(dir.path(), "gsm8k-1").unwrap();
        assert_eq!(plain[0], dir.path().join("gsm8k-1.json"));
        let a = trace.write(dir.path(), "a/b").unwrap();
        let b = trace.write(dir.path(), "a_b").unwrap();
        assert_ne!(a[0], b[0]);
        assert_eq!(b[0], dir.path().join("a_b.json"));
        assert!(a[0].starts_with(dir.path()), "{:?}", a[0]);
    }
}
