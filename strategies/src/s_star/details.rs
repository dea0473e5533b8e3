//! The `details` of an S* solution: every sample's rounds, the clusters and comparisons of
//! selection, the choice.

use ponder_prm::TestCase;
use serde::{Deserialize, Serialize};

use super::CodeSelection;

/// One test's outcome, compactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestLine {
    /// The call.
    pub call: String,
    /// The expectation, if any.
    pub expected: Option<String>,
    /// `passed`, `failed`, `error`, `timeout`, `skipped` or `not_run`.
    pub status: String,
    /// The value (`repr`) or the exception.
    pub got: Option<String>,
}

impl Round {
    /// 0 for code that does not load, else 1 + the public tests passed.
    pub fn score(&self) -> usize {
        if self.load_error.is_some() {
            0
        } else {
            self.passed + 1
        }
    }

    /// Whether the code loads and passes every public test.
    pub fn passes(&self) -> bool {
        self.load_error.is_none() && self.passed == self.total
    }
}

/// One attempt of one sample: its code and its public-test results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The code tested (the extracted function, without the prompt's preamble).
    pub code: String,
    /// Tokens generated for this attempt.
    pub tokens: usize,
    /// Public tests passed, of `total`.
    pub passed: usize,
    /// Public tests run.
    pub total: usize,
    /// Why the code did not load, if it did not.
    pub load_error: Option<String>,
    /// Each test.
    pub tests: Vec<TestLine>,
    /// Sandbox wall time of the test run in milliseconds.
    pub sandbox_ms: u64,
    /// A rewrite whose code is the previous attempt's again (small models often copy it).
    #[serde(default)]
    pub repeated: bool,
}

/// One sample through its debugging rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleDetail {
    /// Round 0 is the sample; later rounds are rewrites.
    pub rounds: Vec<Round>,
    /// The round selection uses: the one passing the most public tests, the earliest on ties.
    pub best_round: usize,
    /// Whether that round passes every public test.
    pub passes_public: bool,
    /// Why its debugging ended early: a rewrite's request or test run failed, the
    /// conversation outgrew the context window, or a reply came back empty (the sample keeps
    /// its best round so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One pairwise comparison of selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Sample indices compared (A, B).
    pub a: usize,
    pub b: usize,
    /// The synthesised calls that ran.
    pub inputs: Vec<String>,
    /// A's and B's output on each input (`repr`, or what was raised).
    pub outputs_a: Vec<String>,
    pub outputs_b: Vec<String>,
    /// Inputs on which the outputs differ.
    pub differing: usize,
    /// The judge's probability that A is right, the mean over both orders of showing the two
    /// (none when no output differed, or when the two did not fit the judge's context window).
    pub p_a: Option<f64>,
    /// That probability with A shown first, and with B shown first.
    #[serde(default)]
    pub p_a_by_order: Option<(f64, f64)>,
    /// The sample the judge preferred: in a knockout the one that went on (A where nothing
    /// differed or the verdict was even); in a round robin only a preference held in both orders
    /// of showing, else none.
    pub winner: Option<usize>,
    /// Why it has no verdict, or fewer inputs: a request or run of it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Candidates whose outputs agree on every shared synthesised input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// Its samples, earliest first; the first stands for it in comparisons.
    pub samples: Vec<usize>,
    /// Their outputs on each of [`SStarDetails::probes`].
    pub outputs: Vec<String>,
    /// Comparisons the judge gave it in both orders of showing.
    pub wins: usize,
}

/// `details` of an S* solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SStarDetails {
    /// The public tests every sample ran against.
    pub public_tests: Vec<TestCase>,
    /// Each sample, in order.
    pub samples: Vec<SampleDetail>,
    /// The inputs synthesised for the problem that every candidate ran on (round robin only).
    #[serde(default)]
    pub probes: Vec<String>,
    /// The candidates grouped by their outputs on `probes` (round robin only; none where the
    /// request for inputs did not fit the context window: the program the most samples wrote
    /// stands, the earliest among equals).
    #[serde(default)]
    pub clusters: Vec<Cluster>,
    /// The comparisons, in the order played.
    pub comparisons: Vec<Comparison>,
    /// The sample chosen.
    pub selected: usize,
    /// How it was chosen.
    pub selection: CodeSelection,
    /// Total sandbox wall time in milliseconds (test runs and comparisons).
    pub sandbox_ms: u64,
    /// Whether the budget ran out on the way (the choice is then among what was finished).
    pub budget_exhausted: bool,
    /// Failures selection went on without (a request for inputs, or a sandbox run of the
    /// candidates on them, that failed); a comparison's own are in its `error`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selection_errors: Vec<String>,
}
