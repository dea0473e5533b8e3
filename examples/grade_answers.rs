//! ponder's grader on its own: reads JSON Lines of `{"answer": ..., "reference": ...}` (or
//! `{"completion": ..., "reference": ...}`, whose answer is extracted first) on stdin and
//! writes each line back with `extracted`, `correct` and both sides' `key` (the vote key
//! equivalent answers share). An `answer` of `null` with no `completion` is wrong; a
//! `reference` of `null` (a code problem's results line) leaves the row ungraded, `correct`
//! `null`. `scripts/grade_audit.py pairs` compares it with math-verify.
//!
//! `echo '{"answer": "0.5", "reference": "\\frac{1}{2}"}' | cargo run --release --example grade_answers`

use std::io::{BufRead, Write};

use anyhow::Context;
use ponder::engine::answer::{canonical_key, equivalent, extract_answer};
use serde_json::{json, Value};

fn main() -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut row: Value =
            serde_json::from_str(&line).with_context(|| format!("stdin line {}", n + 1))?;
        // A number is its text (`"answer": 42`), as a problem file takes it.
        let text = |key: &str| match row.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(x)) => Some(x.to_string()),
            _ => None,
        };
        let reference = match (text("reference"), row.get("reference")) {
            (Some(reference), _) => Some(reference),
            (None, Some(Value::Null)) => None,
            (None, _) => anyhow::bail!(
                "stdin line {}: no `reference` (a string, a number, or null for none)",
                n + 1
            ),
        };
        let answer = match (text("answer"), text("completion"), row.get("answer")) {
            (Some(answer), _, _) => Some(answer),
            (None, Some(completion), _) => extract_answer(&completion),
            (None, None, Some(Value::Null)) => None,
            (None, None, _) => anyhow::bail!(
                "stdin line {}: needs an `answer` (a string, a number, or null for none) or a \
                 string `completion`",
                n + 1
            ),
        };
        let correct = reference
            .as_deref()
            .map(|r| answer.as_deref().is_some_and(|a| equivalent(a, r)));
        row["extracted"] = json!(answer);
        row["correct"] = json!(correct);
        row["answer_key"] = json!(answer.as_deref().map(canonical_key));
        row["reference_key"] = json!(reference.as_deref().map(canonical_key));
        writeln!(out, "{row}")?;
    }
    Ok(())
}
