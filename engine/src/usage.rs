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
    /// Prompt plus completion tokens (at most `u64::MAX`).
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// Each count summed, saturating: counts read back from a results file can be anything (a
/// damaged line), and a sum that wrapped would make a spent budget look unspent.
impl Add for Usage {
    type Output = Usage;

    fn add(self, rhs: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.saturating_add(rhs.prompt_tokens),
            cached_prompt_tokens: self
                .cached_prompt_tokens
                .saturating_add(rhs.cached_prompt_tokens),
            completion_tokens: self.completion_tokens.saturating_add(rhs.completion_tokens),
            calls: self.calls.saturating_add(rhs.calls),
            elapsed_ms: self.elapsed_ms.saturating_add(rhs.elapsed_ms),
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        *self = *self + rhs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_past_u64_saturate_instead_of_wrapping() {
        // A damaged results line can carry any count.
        let huge = Usage {
            prompt_tokens: u64::MAX - 1,
            cached_prompt_tokens: u64::MAX,
            completion_tokens: 5,
            calls: u64::MAX,
            elapsed_ms: u64::MAX,
        };
        assert_eq!(huge.total_tokens(), u64::MAX);
        let one = Usage {
            prompt_tokens: 1,
            cached_prompt_tokens: 1,
            completion_tokens: 1,
            calls: 1,
            elapsed_ms: 1,
        };
        let sum = huge + one + one;
        assert_eq!(
            sum,
            Usage {
                prompt_tokens: u64::MAX,
                cached_prompt_tokens: u64::MAX,
                completion_tokens: 7,
                calls: u64::MAX,
                elapsed_ms: u64::MAX,
            }
        );
        let mut spent = one;
        spent += huge;
        spent += huge;
        assert_eq!(spent.total_tokens(), u64::MAX);
        assert_eq!(spent.calls, u64::MAX);
    }
}
