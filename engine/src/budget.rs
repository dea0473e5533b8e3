//! Budgets: how many tokens, calls and milliseconds some work may spend.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits on spending. Every field is optional; `None` means unlimited (the default).
///
/// A budget is enforced by [`crate::Metered`], which reserves the worst case of each call before
/// sending it (prompt tokens plus `n * max_tokens`, shrinking `max_tokens` to fit), so the totals
/// are never exceeded, even with many calls in flight. (The prompt's tokens are exact where the
/// backend tokenizes it; a chat prompt it cannot is reserved on an estimate, which a template
/// that adds text of its own, a default system prompt, can exceed by a few tokens.)
///
/// In a config file it is a table (`[budget]`); serde's derive alone would also read a list
/// positionally, so that `[[budget]]` was "a map where a whole number was expected".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct Budget {
    /// Most prompt plus completion tokens.
    pub max_tokens: Option<u64>,
    /// Most completion tokens.
    pub max_completion_tokens: Option<u64>,
    /// Most backend calls.
    pub max_calls: Option<u64>,
    /// Most wall-clock milliseconds; calls in flight at the deadline are abandoned.
    pub max_wall_ms: Option<u64>,
}

impl Serialize for Budget {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Budget::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Table;
        impl<'de> serde::de::Visitor<'de> for Table {
            type Value = Budget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of limits (`[budget]` in TOML, not `[[budget]]`)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Budget, A::Error> {
                Budget::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Table)
    }
}

impl Budget {
    /// No limits.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Limits prompt plus completion tokens.
    pub fn with_max_tokens(mut self, tokens: u64) -> Self {
        self.max_tokens = Some(tokens);
        self
    }

    /// Limits completion tokens.
    pub fn with_max_completion_tokens(mut self, tokens: u64) -> Self {
        self.max_completion_tokens = Some(tokens);
        self
    }

    /// Limits backend calls.
    pub fn with_max_calls(mut self, calls: u64) -> Self {
        self.max_calls = Some(calls);
        self
    }

    /// Limits wall time.
    pub fn with_max_wall(mut self, wall: Duration) -> Self {
        self.max_wall_ms = Some(u64::try_from(wall.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// The tighter of two budgets, limit by limit.
    pub fn tighter(self, other: Self) -> Self {
        Self {
            max_tokens: min_limit(self.max_tokens, other.max_tokens),
            max_completion_tokens: min_limit(
                self.max_completion_tokens,
                other.max_completion_tokens,
            ),
            max_calls: min_limit(self.max_calls, other.max_calls),
            max_wall_ms: min_limit(self.max_wall_ms, other.max_wall_ms),
        }
    }
}

/// The smaller of two limits, `None` being no limit.
pub(crate) fn min_limit(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The resource a budget ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Prompt plus completion tokens.
    Tokens,
    /// Completion tokens.
    CompletionTokens,
    /// Backend calls.
    Calls,
    /// Wall time.
    WallTime,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tokens => "tokens",
            Self::CompletionTokens => "completion tokens",
            Self::Calls => "calls",
            Self::WallTime => "wall time",
        })
    }
}
