//! Final-answer extraction and answer equivalence, for grading and for voting.
//!
//! * [`extract_answer`] pulls the final answer out of a model completion: the last
//!   `\boxed{...}` / `\fbox{...}`, else the text after the last "Final Answer" (or GSM8K's
//!   `#### 42`), else after the last weaker cue ("the answer is", "answer:"), skipping cues
//!   followed by a remark ("this answer is correct"), else the last number; of a reasoning
//!   model's completion, from what follows its thinking first ([`after_thinking`]).
//! * [`equivalent`] decides whether two answers denote the same value. Both sides are
//!   normalised (thousands separators, units, currency, percent and degree signs, a
//!   temperature's scale (`-5°C`), a leading `\approx`, scale words (`3 million`),
//!   `\left`/`\right`, LaTeX spacing, `\dfrac`/`\tfrac`, `\text{...}`, the words after a
//!   value (`18 dollars per day`), assignments to a name (`x = 5`, `(x,y) = (1,2)`, `DE = 3`,
//!   `f(2) = 7`), multiple-choice letters, case), then compared as exact strings, as numbers
//!   (two exact values exactly; others within a relative tolerance of 1e-6; a decimal written
//!   to four or more places to its last place; fractions, decimals, `\sqrt`, `\pi`), or
//!   element by element for tuples, intervals, unordered lists (also written with words,
//!   `1 and -2`, `x=1 \text{ or } x=-2`) and matrices.
//! * [`canonical_key`] maps an answer to a key such that equivalent answers get the
//!   same key in the common cases (rational values become a reduced `p/q`), for grouping
//!   votes in a `HashMap`.
//!
//! Everything is heuristic and works on plain strings; it never panics, and deep nesting
//! is cut off rather than recursed into without bound.

mod extract;
mod normalize;
mod num;
mod scan;
mod structure;
#[cfg(test)]
mod tests;

use extract::{after_strong_cue, after_weak_cue, last_boxed, last_number};
use normalize::normalize;
use num::eval;
use structure::{key_of, same_function, same_structure};

/// Maximum nesting depth for the recursive helpers.
const MAX_DEPTH: usize = 48;

/// Letter runs that are mathematics rather than prose in a plain-text answer.
const MATH_WORDS: &str = "sqrt pi inf infty infinity sin cos tan cot sec csc log ln exp mod";

/// True when `word` is one of the whitespace-separated words of `list`.
fn is_listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// Pull the final answer out of a model's completion, or None.
///
/// Priority: the last `\boxed{...}` or `\fbox{...}` (balanced braces); else the text
/// after the last strong cue ("Final Answer:", "final answer is", `#### N`), else after the
/// last weak one ("the answer is", "answer:"), cut to its line or sentence and skipping cues
/// followed by a remark rather than an answer; else the last number in the text (integers,
/// decimals, negatives, `1,234,567`, `3/4`, `\frac{1}{2}`, `3 million`), not counting list
/// markers (`1. First, ...`), steps (`Step 2:`, `### Step 3`) or exponents (`24 m^2`).
/// A sentence after a cue gives the number its verb states (`The cost of 3 shirts is $45`:
/// 45); math written after a cue, the span after the last `is` or `=` between spans (`The
/// value of $x$ is $5$`: 5).
///
/// The box wins over a later cue (`\boxed{9} ... Final Answer: 18` reads 9): ponder's prompts
/// ask for `Final Answer:`, but a line after a box is as often the box said again rounded,
/// with words, or as "see above" (helper-167 measured the later-of-the-two rule worse).
///
/// A reasoning model's completion is read after its thinking first ([`after_thinking`]): a
/// `\boxed{5}` tried out while thinking does not outrank the 7 it answers with after
/// `</think>`. Where that part gives no answer (it says none, or thinking was cut off before
/// it ended), the whole text is read. (An answer the thinking states does not outrank a last
/// number after it: thinking tries answers out and drops them, 972 of 1000 GSM8K solutions
/// with an early guess read wrong that way.)
pub fn extract_answer(text: &str) -> Option<String> {
    after_thinking(text)
        .and_then(extract_in)
        .or_else(|| extract_in(text))
}

fn extract_in(text: &str) -> Option<String> {
    stated_in(text).or_else(|| last_number(text))
}

/// The answer `text` states: its last `\boxed{...}`, else the answer after its last strong
/// cue, else after its last weak cue.
fn stated_in(text: &str) -> Option<String> {
    last_boxed(text)
        .or_else(|| after_strong_cue(text))
        .or_else(|| after_weak_cue(text))
}

/// The answer a completion states, read as [`extract_answer`] reads it but never guessed: its
/// last `\boxed{...}` or what follows an answer cue, not the last number it happens to end on.
/// What a completion cut off mid-way says for sure (`... so 3 boxes cost 3` states nothing;
/// nor does a `\boxed{5}` tried inside thinking, cut before it closed or right after: after
/// `</think>`, only what follows it states).
pub fn stated_answer(text: &str) -> Option<String> {
    if text.contains(THINK_OPEN) && !text.contains(THINK_CLOSE) {
        return None;
    }
    // After thinking, only what follows it states (nothing, where it was cut right there).
    if text.contains(THINK_CLOSE) {
        return after_thinking(text).and_then(stated_in);
    }
    stated_in(text)
}

/// [`stated_answer`] of a completion whose turn the chat template began with `<think>`
/// where `thinking_opened` ([`crate::turn::opens_thinking`]): without a `</think>` of its
/// own, all of it is thinking, and an answer tried there is not stated.
pub fn stated_answer_in_turn(completion: &str, thinking_opened: bool) -> Option<String> {
    if thinking_opened && !completion.contains(THINK_OPEN) {
        stated_answer(&format!("{THINK_OPEN}{completion}"))
    } else {
        stated_answer(completion)
    }
}

/// The delimiter that opens a reasoning model's thinking (a chat template may write it).
pub const THINK_OPEN: &str = "<think>";

/// The delimiter that ends a reasoning model's thinking (DeepSeek-R1 and its distills, QwQ,
/// Qwen3, and ponder's budget forcing by default).
pub const THINK_CLOSE: &str = "</think>";

/// What a reasoning model wrote after its thinking: the text after the last [`THINK_CLOSE`];
/// None where there is none, or only whitespace after it.
pub fn after_thinking(text: &str) -> Option<&str> {
    let (_, after) = text.rsplit_once(THINK_CLOSE)?;
    (!after.trim().is_empty()).then_some(after)
}

/// The reference answer a worked solution marks, as the datasets mark it: its last `\boxed{...}`
/// (MATH) or what follows its last `####` (GSM8K: `... #### 72`); `None` when it marks none.
/// Unlike [`extract_answer`] it never guesses from prose.
pub fn marked_answer(solution: &str) -> Option<String> {
    if let Some(boxed) = last_boxed(solution) {
        return Some(boxed);
    }
    let (_, after) = solution.rsplit_once("####")?;
    let answer = after.lines().next().unwrap_or_default().trim();
    (!answer.is_empty()).then(|| answer.to_string())
}

/// True when two answers denote the same value (used for grading against a reference
/// and for grouping votes). Empty answers are never equivalent to anything.
pub fn equivalent(a: &str, b: &str) -> bool {
    Comparable::new(a).equivalent(&Comparable::new(b))
}

/// An answer normalised and evaluated once, to compare with many others ([`equivalent`]
/// prepares both sides each call).
#[derive(Debug, Clone)]
pub struct Comparable {
    norm: normalize::Normalized,
    value: Option<num::Num>,
}

impl Comparable {
    /// `answer`, prepared.
    pub fn new(answer: &str) -> Self {
        let norm = normalize(answer);
        let value = eval(&norm.text);
        Self { norm, value }
    }

    /// [`equivalent`] of the two answers.
    pub fn equivalent(&self, other: &Self) -> bool {
        let (na, nb) = (&self.norm, &other.norm);
        if na.text.is_empty() || nb.text.is_empty() {
            return false;
        }
        if na.text == nb.text {
            return true;
        }
        if let (Some(x), Some(y)) = (self.value, other.value) {
            return x.same(y)
                || (float_noise(&na.text, &nb.text) && structure::close(x.value(), y.value()))
                // One side's percent read as a fraction (`25%` is `0.25`); with a percent sign
                // on both, the numbers are compared as written (`0.1%` is not `10%`).
                || (na.percent && !nb.percent && x.percent().is_some_and(|x| x.same(y)))
                || (nb.percent && !na.percent && y.percent().is_some_and(|y| x.same(y)))
                || same_when_rounded(&na.text, &nb.text, x.value(), y.value());
        }
        same_structure(&na.text, &nb.text, 0) || same_function(&na.text, &nb.text)
    }
}

/// True when a side written as a rounded decimal (four or more decimal places and four or more
/// significant digits, like MAWPS's `3.33333` for 10/3) agrees with the other to its last
/// place: `3.33333` ~ `10/3` ~ `3.3333`. Fewer places are taken as exact (`2.125` is not
/// `2.13`), and so are fewer significant digits, whose last place is a large share of the value
/// (`0.0001` is not `0.0000672`, 49% less).
fn same_when_rounded(a: &str, b: &str, x: f64, y: f64) -> bool {
    let places = [a, b]
        .into_iter()
        .filter(|s| significant_digits(s) >= 4)
        .filter_map(decimal_places)
        .filter(|&k| k >= 4)
        .min();
    places.is_some_and(|k| within_last_place(x, y, k))
}

/// True when `x` and `y` differ by at most half a unit in the `places`-th decimal place: `y`
/// written to that place could be `x` rounded.
fn within_last_place(x: f64, y: f64, places: usize) -> bool {
    let half_ulp = 0.5 * 10f64.powi(-i32::try_from(places).unwrap_or(i32::MAX));
    (x - y).abs() <= half_ulp * (1.0 + 1e-9)
}

/// The number of decimal places of a plain decimal literal (`-3.33333` -> 5), else None.
fn decimal_places(s: &str) -> Option<usize> {
    let (int, frac) = s.strip_prefix('-').unwrap_or(s).split_once('.')?;
    (int.chars().all(|c| c.is_ascii_digit())
        && !frac.is_empty()
        && frac.chars().all(|c| c.is_ascii_digit()))
    .then_some(frac.len())
}

/// Whether either side is a decimal printed from a binary float (15 or more significant digits:
/// `0.30000000000000004`, `12.500000000000002`): compared within the tolerance, not exactly.
fn float_noise(a: &str, b: &str) -> bool {
    [a, b]
        .into_iter()
        .any(|s| decimal_places(s).is_some() && significant_digits(s) >= 15)
}

/// The significant digits of a plain decimal literal (`0.00672` -> 3, `3.33333` -> 6): its
/// digits from the first that is not 0.
fn significant_digits(s: &str) -> usize {
    s.chars()
        .filter(char::is_ascii_digit)
        .skip_while(|&c| c == '0')
        .count()
}

/// A canonical key such that equivalent answers (in the common cases) get the same key;
/// used to group votes in a HashMap.
pub fn canonical_key(answer: &str) -> String {
    key_of(&normalize(answer).text, 0)
}
