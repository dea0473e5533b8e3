//! Token, call and time accounting.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

/// What some work cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Prompt tokens sent (counted once per request, whatever its `n`).
    pub prompt_tokens: u64,
    /// Of `prompt_tokens`, those the backend served from its prefix cache instead of computing
    /// them, as it reports them (an OpenAI-compatible server's
    /// `usage.prompt_tokens_details.cached_tokens`); 0 where the backend does not say.
    pub cached_prompt_tokens: u64,
    /// Tokens generated, summed over every completion.
    pub completion_tokens: u64,
    /// Backend requests made.
    pub calls: u64,
    /// Wall time in milliseconds. Summed when adding usages of sequential work; for concurrent
    /// work the caller measures the span itself.
    pub elapsed_ms: u64,
}

impl Usage {
    /// Prompt plus completion tokens.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl Add for Usage {
    type Output = Usage;

    fn add(self, rhs: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens + rhs.prompt_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens + rhs.cached_prompt_tokens,
            completion_tokens: self.completion_tokens + rhs.completion_tokens,
            calls: self.calls + rhs.calls,
            elapsed_ms: self.elapsed_ms + rhs.elapsed_ms,
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        *self = *self + rhs;
    }
}
