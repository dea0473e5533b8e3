//! ponder's grader on its own: reads JSON Lines of `{"answer": ..., "reference": ...}` (or
//! `{"completion": ..., "reference": ...}`, whose answer is extracted first) on stdin and
//! writes each line back with `extracted`, `correct` and both sides' `key` (the vote key
//! equivalent answers share). `scripts/grade_audit.py pairs` compares it with math-verify.
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
        let text = |key: &str| row.get(key).and_then(Value::as_str).map(str::to_owned);
        let reference = text("reference")
            .with_context(|| format!("stdin line {}: no string `reference`", n + 1))?;
        let answer = match (text("answer"), text("completion")) {
            (Some(answer), _) => Some(answer),
            (None, Some(completion)) => extract_answer(&completion),
            (None, None) => anyhow::bail!(
                "stdin line {}: needs a string `answer` or `completion`",
                n + 1
            ),
        };
        let correct = answer.as_deref().is_some_and(|a| equivalent(a, &reference));
        row["extracted"] = json!(answer);
        row["correct"] = json!(correct);
        row["answer_key"] = json!(answer.as_deref().map(canonical_key));
        row["reference_key"] = json!(canonical_key(&reference));
        writeln!(out, "{row}")?;
    }
    Ok(())
}
