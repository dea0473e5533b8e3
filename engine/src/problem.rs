//! Problems and problem files.
//!
//! A problem file is JSON Lines. Math rows are `{"id", "question", "answer"}` (extra fields are
//! kept out of the way); HumanEval rows keep their own fields (`task_id`, `prompt`,
//! `entry_point`, `test`). Rows as the public datasets ship them read too: `problem` for the
//! question, `unique_id` for the id, capitalised keys (`ID`, `Problem`, `Answer`), SVAMP's `Body` (the
//! story its `Question` follows, joined in front of it), a GSM8K answer
//! with its worked solution (`... #### 72`: the reference is `72`), and a MATH row with only a
//! `solution` (the reference is its last `\boxed{}`); a row with no id is named by its line
//! number. Every bad line is reported with its file and line number. A file none of whose
//! problems (code ones aside) has a reference answer is said at once, with the keys its rows
//! give: an error where one of them looks like an answer's (`target`, `final_answer`, `label`),
//! which is not read; else a warning, as its problems go ungraded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One problem to solve. Its serde form is its fields (`answer` is taken for `reference`, as
/// a problem file names it); a problem file's rows, with their other names and numeric
/// answers, are read by [`Problem::parse_jsonl`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Unique within its set.
    pub id: String,
    /// The question (for code problems, the prompt to complete).
    pub question: String,
    /// The reference answer, when known.
    #[serde(alias = "answer")]
    pub reference: Option<String>,
    /// For code problems: what to implement and how to test it.
    pub code: Option<CodeTask>,
}

/// A code-generation task in the HumanEval shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeTask {
    /// The function signature and docstring to complete.
    pub prompt: String,
    /// The function the tests call.
    pub entry_point: String,
    /// Hidden tests: Python defining `check(candidate)`.
    pub test: String,
}

impl Problem {
    /// A math or text problem with no reference answer.
    pub fn new(id: impl Into<String>, question: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            question: question.into(),
            reference: None,
            code: None,
        }
    }

    /// Sets the reference answer.
    pub fn with_reference(mut self, reference: impl Into<String>) -> Self {
        self.reference = Some(reference.into());
        self
    }

    /// Reads a JSON Lines problem file. Blank lines are skipped; ids must be unique.
    pub fn load_jsonl(path: &Path) -> Result<Vec<Problem>> {
        let text = Error::read_text(path)?;
        Self::parse_jsonl(&text, path)
    }

    /// Parses JSON Lines text; `path` names the source in errors. Where none of the problems
    /// graded by a reference (not by tests) has one, an error if a row gives a key that looks
    /// like an answer's (`target`, `final_answer`), else a warning (`tracing`): both name the
    /// keys seen and the ones a reference is read from.
    pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Problem>> {
        // A byte-order mark, as some editors on Windows write one.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut problems = Vec::new();
        // Each id and the line that gave it.
        let mut seen = HashMap::new();
        // The rows (line number and text) of the problems graded by a reference, while none
        // of them has one.
        let mut unreferenced = Vec::new();
        let mut referenced = false;
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| Error::ProblemFile {
                path: path.to_path_buf(),
                line: line_no,
                message,
            };
            if !line.trim_start().starts_with('{') {
                return Err(bad(
                    "not a JSON object: each line is one problem, such as {\"id\": \"p1\", \
                     \"question\": \"...\", \"answer\": \"...\"}"
                        .into(),
                ));
            }
            let mut de = serde_json::Deserializer::from_str(line);
            let row: Row = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let key = e.path().to_string();
                let message = crate::error::json_line_message(e.inner());
                // `?`: the parser stopped before it read a key (a syntax error); the column
                // says where.
                if key == "." || key.is_empty() || key.contains('?') {
                    bad(message)
                } else {
                    bad(format!("`{key}`: {message}"))
                }
            })?;
            // One object a line: a second one after it (two lines joined, a file cut at a
            // lone carriage return) would be dropped silently.
            de.end().map_err(|e| {
                bad(format!(
                    "text after the problem's object (column {}): one problem a line",
                    e.column()
                ))
            })?;
            let row_has_id = row.id.is_some() || row.task_id.is_some() || row.unique_id.is_some();
            let problem = row.into_problem(line_no).map_err(|m| bad(m.to_string()))?;
            if let Some((first, first_has_id)) =
                seen.insert(problem.id.clone(), (line_no, row_has_id))
            {
                // A row without an id has its line number as its id.
                let why = match (row_has_id, first_has_id) {
                    (false, _) => " (this row has no id: its line number is its id)",
                    (true, false) => " (that row has no id: its line number is its id)",
                    (true, true) => "",
                };
                return Err(bad(format!(
                    "duplicate id `{}`, first on line {first}{why}",
                    problem.id
                )));
            }
            if problem.code.is_none() && !referenced {
                referenced = problem.reference.is_some();
                if referenced {
                    unreferenced = Vec::new();
                } else {
                    unreferenced.push((line_no, line));
                }
            }
            problems.push(problem);
        }
        if !unreferenced.is_empty() {
            no_references(&unreferenced, problems.len(), path)?;
        }
        Ok(problems)
    }
}

/// Where a reference answer is read from, as said where a file's problems have none.
const REFERENCE_FROM: &str =
    "`answer`, `Answer` or `reference` (a GSM8K answer: what follows its `####`), \
                              or the last `\\boxed{}` of `solution` or `Solution`";

/// Says that none of a file's problems graded by a reference has one (`rows`: their line
/// numbers and lines; `total`: the file's problems, code ones included), before a run is spent
/// on problems it cannot grade: an error where a row gives a key that looks like an answer's
/// (the answer under a name that is not read), else a warning (problems may be run ungraded).
fn no_references(rows: &[(usize, &str)], total: usize, path: &Path) -> Result<()> {
    // The keys named, at most.
    const SHOWN: usize = 20;
    let mut keys = BTreeSet::new();
    // The first key that looks like an answer's, and its line.
    let mut unread: Option<(usize, String)> = None;
    for &(line, text) in rows {
        // Every row here read as an object already.
        let Ok(row) = serde_json::from_str::<BTreeMap<String, IgnoredAny>>(text) else {
            continue;
        };
        for key in row.into_keys() {
            if unread.is_none() && names_an_answer(&key) {
                unread = Some((line, key.clone()));
            }
            keys.insert(key);
        }
    }
    let mut seen = keys
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > SHOWN {
        seen.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    // Code problems are graded by their tests: only the others are counted.
    let which = if rows.len() == total {
        ""
    } else {
        " not graded by tests"
    };
    let none = |place: &str| match rows.len() {
        1 => format!("the 1 problem{which}{place} has no reference answer, so it is not graded"),
        n => format!(
            "none of the {n} problems{which}{place} has a reference answer, so none of them is \
             graded"
        ),
    };
    if let Some((line, key)) = unread {
        return Err(Error::ProblemFile {
            path: path.to_path_buf(),
            line,
            message: format!(
                "`{key}` is not read as a reference answer ({}; keys seen: {seen}; a reference \
                 is read from {REFERENCE_FROM}): rename `{key}` to `answer` to grade by it, or \
                 leave it out to run the problems ungraded",
                none("")
            ),
        });
    }
    tracing::warn!(
        "{} (keys seen: {seen}; a reference is read from {REFERENCE_FROM})",
        none(&format!(" in {}", path.display()))
    );
    Ok(())
}

/// Whether `key`, one no field of a problem is read from, is a name datasets give a reference
/// answer (`target`, `final_answer`, `ANSWER`, `label`, `gold`, `ground_truth`,
/// `expected_output`, in any case): names alone, not every key with "answer" in it
/// (`answer_type` is a dataset's metadata).
fn names_an_answer(key: &str) -> bool {
    if matches!(key, "answer" | "Answer" | "reference") {
        return false;
    }
    const NAMES: [&str; 19] = [
        "reference",
        "answer",
        "answers",
        "final_answer",
        "correct_answer",
        "gold_answer",
        "answerkey",
        "answer_key",
        "target",
        "targets",
        "label",
        "labels",
        "gold",
        "ground_truth",
        "groundtruth",
        "expected",
        "expected_answer",
        "expected_output",
        "output",
    ];
    NAMES.contains(&key.to_ascii_lowercase().as_str())
}

/// A problem-file row in any of the supported shapes.
#[derive(Deserialize)]
struct Row {
    #[serde(alias = "ID")]
    id: Option<IdOrNumber>,
    task_id: Option<IdOrNumber>,
    unique_id: Option<IdOrNumber>,
    #[serde(alias = "Question")]
    question: Option<String>,
    /// SVAMP's story, which its `Question` follows.
    #[serde(alias = "Body")]
    body: Option<String>,
    #[serde(alias = "Problem")]
    problem: Option<String>,
    prompt: Option<String>,
    #[serde(alias = "Answer")]
    answer: Option<IdOrNumber>,
    /// The reference as a [`Problem`] writes itself: read where there is no `answer`, and
    /// only a string or number (another file's `reference` may be a citation list).
    reference: Option<Box<serde_json::value::RawValue>>,
    #[serde(alias = "Solution")]
    solution: Option<String>,
    entry_point: Option<String>,
    test: Option<String>,
}

enum IdOrNumber {
    Text(String),
    Int(i64),
    Float(f64),
}

impl<'de> Deserialize<'de> for IdOrNumber {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        use serde::de::{Error as _, Unexpected};
        use serde_json::Value;
        // The value as written: a whole number of any length keeps its digits (through an f64
        // one past 2^64 would come back rounded).
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        let text = raw.get().trim();
        let digits = text.strip_prefix('-').unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(text
                .parse()
                .map_or_else(|_| IdOrNumber::Text(text.to_string()), IdOrNumber::Int));
        }
        let unexpected = match serde_json::from_str(text).map_err(D::Error::custom)? {
            Value::String(s) => return Ok(IdOrNumber::Text(s)),
            // Always a float here (serde_json keeps no other kind of number).
            Value::Number(n) => match n.as_f64() {
                Some(x) => return Ok(IdOrNumber::Float(x)),
                None => Unexpected::Other("number"),
            },
            Value::Bool(b) => Unexpected::Bool(b),
            Value::Null => Unexpected::Unit,
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
        };
        Err(D::Error::invalid_type(unexpected, &"a string or a number"))
    }
}

impl IdOrNumber {
    fn into_string(self) -> String {
        match self {
            Self::Text(s) => s,
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
        }
    }
}

impl Row {
    fn into_problem(self, line: usize) -> std::result::Result<Problem, &'static str> {
        let id = self
            .id
            .or(self.task_id)
            .or(self.unique_id)
            .map_or_else(|| line.to_string(), IdOrNumber::into_string);
        if id.trim().is_empty() {
            return Err("empty `id` (leave it out and the line number is the id)");
        }
        let code = match (self.entry_point, self.test) {
            (Some(entry_point), Some(test)) => Some(CodeTask {
                prompt: self.prompt.clone().ok_or("code problem without `prompt`")?,
                entry_point,
                test,
            }),
            (None, None) => None,
            _ => return Err("code problems need both `entry_point` and `test`"),
        };
        let question = self
            .question
            .or(self.problem)
            .or(self.prompt)
            .ok_or("missing `question` (or `problem`, or `prompt`)")?;
        if question.trim().is_empty() {
            return Err("empty question");
        }
        let question = match self.body {
            Some(body) if !body.trim().is_empty() => {
                format!("{} {}", body.trim_end(), question.trim_start())
            }
            _ => question,
        };
        // (Read as `answer` is: a whole number keeps its digits.)
        let answer = self.answer.or_else(|| {
            self.reference
                .and_then(|raw| serde_json::from_str::<IdOrNumber>(raw.get()).ok())
        });
        let reference = match (answer, &self.solution) {
            // A code problem is graded by its tests: an `answer` field is no reference.
            (Some(_), _) if code.is_some() => None,
            (Some(IdOrNumber::Text(answer)), _) if answer.contains("####") => Some(
                crate::answer::marked_answer(&answer).ok_or("`answer` ends in an empty `####`")?,
            ),
            // Graded against nothing, every answer would be wrong: an empty reference is a
            // slip, not one to grade by.
            // (A worked `solution` beside it that marks one is the reference.)
            (Some(IdOrNumber::Text(answer)), solution) if answer.trim().is_empty() => {
                match solution.as_deref().and_then(crate::answer::marked_answer) {
                    Some(marked) if code.is_none() => Some(marked),
                    _ => {
                        return Err(
                            "empty `answer` (leave it out, or null, for a problem without one)",
                        )
                    }
                }
            }
            (Some(answer), _) => Some(answer.into_string()),
            // A solution that marks no answer is not guessed from: the problem goes ungraded.
            (None, Some(solution)) if code.is_none() => crate::answer::marked_answer(solution),
            (None, _) => None,
        };
        Ok(Problem {
            id,
            question,
            reference,
            code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_read_with_serde_keeps_a_files_answer() {
        let problem: Problem =
            serde_json::from_str(r#"{"id": "a", "question": "2+2?", "answer": "4"}"#).unwrap();
        assert_eq!(problem.reference.as_deref(), Some("4"));
    }

    #[test]
    fn parses_math_and_humaneval_rows() {
        let text = r#"{"id": "gsm8k-0", "question": "2+2?", "answer": "4", "solution": "..."}

{"task_id": "HumanEval/0", "prompt": "def f():\n", "entry_point": "f", "canonical_solution": "", "test": "def check(c): pass", "answer": "x"}
{"id": 7, "problem": "x?", "answer": 3.5}
"#;
        let problems = Problem::parse_jsonl(text, Path::new("set.jsonl")).unwrap();
        assert_eq!(problems.len(), 3);
        assert_eq!(problems[0].reference.as_deref(), Some("4"));
        let code = problems[1].code.as_ref().unwrap();
        assert_eq!(code.entry_point, "f");
        assert_eq!(problems[1].question, "def f():\n");
        // Graded by its tests: an `answer` field is no reference.
        assert_eq!(problems[1].reference, None);
        assert_eq!(problems[2].id, "7");
        assert_eq!(problems[2].reference.as_deref(), Some("3.5"));
    }

    #[test]
    fn reads_rows_as_the_public_datasets_ship_them() {
        let text = concat!(
            // GSM8K from the hub: no id, the answer with its worked solution.
            r#"{"question": "Natalia sold 48 clips and half as many more. How many?", "answer": "48/2 = 24\n48 + 24 = 72\n#### 72"}"#,
            "\n",
            // MATH-500: unique_id, problem, answer.
            r#"{"unique_id": "test/algebra/1.json", "problem": "x?", "solution": "so \\boxed{3}", "answer": "3"}"#,
            "\n",
            // Hendrycks MATH: no answer, a boxed solution.
            r#"{"problem": "y?", "solution": "Then $y = \\boxed{\\frac{1}{2}}$."}"#,
            "\n",
            // AIME as one mirror ships it: capitalised keys.
            r#"{"ID": "2024-I-1", "Problem": "z?", "Solution": "...", "Answer": 204}"#,
            "\n",
            // SVAMP from the hub: the story in `Body`, then `Question`; a float answer.
            r#"{"ID": "chal-1", "Body": "Jack had 8 pens. He gave 3 away.", "Question": "How many pens does he have now?", "Equation": "( 8.0 - 3.0 )", "Answer": 5.0, "Type": "Subtraction"}"#,
            "\n",
        );
        let problems = Problem::parse_jsonl(text, Path::new("set.jsonl")).unwrap();
        let got: Vec<(&str, &str, Option<&str>)> = problems
            .iter()
            .map(|p| (p.id.as_str(), p.question.as_str(), p.reference.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "1",
                    "Natalia sold 48 clips and half as many more. How many?",
                    Some("72")
                ),
                ("test/algebra/1.json", "x?", Some("3")),
                ("3", "y?", Some("\\frac{1}{2}")),
                ("2024-I-1", "z?", Some("204")),
                (
                    "chal-1",
                    "Jack had 8 pens. He gave 3 away. How many pens does he have now?",
                    Some("5")
                ),
            ]
        );
        // A solution that marks no answer is not guessed from: no reference, ungraded.
        let text = r#"{"problem": "y?", "solution": "It is 5."}"#;
        let problems = Problem::parse_jsonl(text, Path::new("set.jsonl")).unwrap();
        assert_eq!(problems[0].reference, None);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let text = "{\"id\": \"a\", \"question\": \"q\"}\n{\"id\": \"b\"}\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.jsonl:2: missing `question` (or `problem`, or `prompt`)"
        );
        let text = "{\"id\": \"a\", \"question\": \"q\"}\nnot json\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert!(err.to_string().starts_with("p.jsonl:2: "), "{err}");
        let text = "{\"id\": \"a\", \"question\": \"q\"}\n{\"id\": \"a\", \"question\": \"r\"}\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.jsonl:2: duplicate id `a`, first on line 1"
        );
        let text =
            "{\"question\": \"a\"}\n{\"id\": 3, \"question\": \"b\"}\n{\"question\": \"c\"}\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.jsonl:3: duplicate id `3`, first on line 2 (this row has no id: its line number is its id)"
        );
        let text = "{\"question\": \"a\"}\n{\"id\": 1, \"question\": \"b\"}\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.jsonl:2: duplicate id `1`, first on line 1 (that row has no id: its line number is its id)"
        );
        // A wrong type names its field.
        let text = "{\"id\": \"a\", \"question\": \"q\", \"answer\": true}\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "p.jsonl:1: `answer`: invalid type: boolean `true`, expected a string or a number"
            ),
            "{err}"
        );
        let text = "{\"id\": 7, \"question\": [\"q\"], \"answer\": 3.5}\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert!(
            err.to_string().starts_with("p.jsonl:1: `question`: "),
            "{err}"
        );
        // A syntax error gives its column, no key the parser never read.
        let text = "{\"id\": \"a\", \"question\": \"q\",}\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert_eq!(err.to_string(), "p.jsonl:1: trailing comma (column 29)");
        // A whole number of any length keeps its digits; 1e20 reads as the number it is.
        let text = "{\"id\": 18446744073709551616, \"question\": \"q\", \"answer\": 123456789012345678901234567890}\n{\"id\": \"b\", \"question\": \"q\", \"answer\": 1e20}\n{\"id\": \"c\", \"question\": \"q\", \"answer\": -2.50}\n";
        let problems = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap();
        assert_eq!(problems[0].id, "18446744073709551616");
        assert_eq!(
            problems[0].reference.as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(
            problems[1].reference.as_deref(),
            Some("100000000000000000000")
        );
        assert_eq!(problems[2].reference.as_deref(), Some("-2.5"));
        // Two objects on a line (files joined without a newline, a lone carriage return
        // between lines): not the first alone.
        for text in [
            "{\"id\": \"a\", \"question\": \"q\"}{\"id\": \"b\", \"question\": \"r\"}\n",
            "{\"id\": \"a\", \"question\": \"q\"}\r{\"id\": \"b\", \"question\": \"r\"}\n",
            "{\"id\": \"a\", \"question\": \"q\"}}\n",
        ] {
            let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("p.jsonl:1: text after the problem's object (column "),
                "{err}"
            );
        }
        // A line that is not an object says what one is.
        let err = Problem::parse_jsonl("[1, 2]\n", Path::new("p.jsonl")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("p.jsonl:1: not a JSON object: each line is one problem"),
            "{err}"
        );
        // An empty id, or an empty reference (every answer would be graded wrong).
        for (row, message) in [
            (r#"{"id": " ", "question": "q"}"#, "p.jsonl:1: empty `id`"),
            (
                r#"{"id": "a", "question": "q", "answer": ""}"#,
                "p.jsonl:1: empty `answer`",
            ),
        ] {
            let err = Problem::parse_jsonl(row, Path::new("p.jsonl")).unwrap_err();
            assert!(err.to_string().starts_with(message), "{err}");
        }
        // An empty answer beside a solution that marks one: the solution's.
        let row = r#"{"id": "a", "question": "q", "answer": "", "solution": "so \\boxed{5}"}"#;
        let problems = Problem::parse_jsonl(row, Path::new("p.jsonl")).unwrap();
        assert_eq!(problems[0].reference.as_deref(), Some("5"));
        // A byte that is not UTF-8: its line and place.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        let mut bytes =
            b"{\"id\": \"a\", \"question\": \"q\"}\n{\"id\": \"b\", \"question\": \"caf".to_vec();
        bytes.extend([0xe9]);
        bytes.extend(b"\"}\n");
        std::fs::write(&path, bytes).unwrap();
        let err = Problem::load_jsonl(&path).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("p.jsonl: line 2, byte 29: not UTF-8 (0xe9); save the file as UTF-8"),
            "{err}"
        );
        // A gzip-compressed set (`gzip.compress` of one problem's line): said so.
        let gzipped = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xab\x56\xca\x4c\x51\xb2\x52\x50\x4a\x54\xd2\x51\x50\x2a\x2c\x4d\x2d\x2e\xc9\xcc\xcf\x03\x09\x14\x2a\xd5\x72\x01\x00\xda\xee\x40\xe9\x1d\x00\x00\x00";
        std::fs::write(&path, gzipped).unwrap();
        let err = Problem::load_jsonl(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("p.jsonl: not text: gzip-compressed: decompress it first (`gunzip`)"),
            "{err}"
        );
        // Text that starts like bzip2's magic is read as text.
        std::fs::write(&path, "BZh, not bzip2\n").unwrap();
        let err = Problem::load_jsonl(&path).unwrap_err().to_string();
        assert!(!err.contains("bzip2-compressed"), "{err}");
        let ok = "{\"id\": 7, \"question\": \"q\", \"answer\": 3.5}\n";
        // A byte-order mark before the first line is not part of it.
        let marked = format!("\u{feff}{ok}");
        assert_eq!(
            Problem::parse_jsonl(&marked, Path::new("p.jsonl")).unwrap()[0].id,
            "7"
        );
        let problems = Problem::parse_jsonl(ok, Path::new("p.jsonl")).unwrap();
        assert_eq!(
            (problems[0].id.as_str(), problems[0].reference.as_deref()),
            ("7", Some("3.5"))
        );
    }

    #[test]
    fn answers_under_a_key_that_is_not_read_are_an_error() {
        for (key, seen) in [
            ("target", "id, question, target"),
            ("final_answer", "final_answer, id, question"),
            ("label", "id, label, question"),
        ] {
            let text = format!(
                "{{\"id\": \"a\", \"question\": \"What is 2+3?\", \"{key}\": \"5\"}}\n\
                 {{\"id\": \"b\", \"question\": \"What is 2+4?\", \"{key}\": \"6\"}}\n"
            );
            let err = Problem::parse_jsonl(&text, Path::new("p.jsonl"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!(
                    "p.jsonl:1: `{key}` is not read as a reference answer (none of the 2 \
                     problems has a reference answer, so none of them is graded; keys seen: \
                     {seen}; a reference is read from `answer`, `Answer` or `reference`"
                )) && err.ends_with(&format!(
                    "rename `{key}` to `answer` to grade by it, or leave it out to run the \
                     problems ungraded"
                )),
                "{err}"
            );
        }
        // The line of the first row that gives one.
        let text = "{\"id\": \"a\", \"question\": \"q\"}\n{\"id\": \"b\", \"question\": \"q\", \"ANSWER\": 3}\n";
        let err = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "p.jsonl:2: `ANSWER` is not read as a reference answer (none of the 2 problems"
            ),
            "{err}"
        );
        // One problem with a reference: the others go ungraded, as they may.
        let text = "{\"id\": \"a\", \"question\": \"q\", \"target\": \"5\"}\n{\"id\": \"b\", \"question\": \"q\", \"answer\": \"6\"}\n";
        let problems = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap();
        assert_eq!(problems[1].reference.as_deref(), Some("6"));
        // A problem as it writes itself (`reference`) reads back with it.
        let written = serde_json::to_string(&Problem::new("a", "q").with_reference("5")).unwrap();
        let problems = Problem::parse_jsonl(&written, Path::new("p.jsonl")).unwrap();
        assert_eq!(problems[0].reference.as_deref(), Some("5"), "{written}");
        // Beside an `answer`, or not a string or number, it is none of the reference.
        let text = "{\"id\": \"a\", \"question\": \"q\", \"answer\": \"5\", \"reference\": \"see p. 3\"}\n\
                    {\"id\": \"b\", \"question\": \"q\", \"answer\": 6, \"reference\": [\"x\"]}\n\
                    {\"id\": \"c\", \"question\": \"q\", \"reference\": 7}\n\
                    {\"id\": \"d\", \"question\": \"q\", \"reference\": 12345678901234567890123}\n";
        let problems = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap();
        let references: Vec<_> = problems.iter().map(|p| p.reference.as_deref()).collect();
        assert_eq!(
            references,
            [
                Some("5"),
                Some("6"),
                Some("7"),
                Some("12345678901234567890123")
            ]
        );
        // No key that looks like an answer's: the problems may run ungraded (said as a warning).
        let text = "{\"id\": \"a\", \"question\": \"q\", \"source\": \"x\", \"answer\": null}\n";
        let problems = Problem::parse_jsonl(text, Path::new("p.jsonl")).unwrap();
        assert_eq!(problems[0].reference, None);
        // Code problems are graded by their tests: a key beside them is none of this.
        let text = r#"{"task_id": "t", "prompt": "def f():\n", "entry_point": "f", "test": "def check(c): pass", "label": "x"}"#;
        assert!(Problem::parse_jsonl(text, Path::new("p.jsonl")).is_ok());
        for (key, answer) in [
            ("Target", true),
            ("expected_output", true),
            ("ground_truth", true),
            ("gold", true),
            ("answer", false),
            ("Answer", false),
            ("reference", false),
            ("Reference", true),
            ("source", false),
            ("answer_type", false),
            ("target_audience", false),
            ("reference_url", false),
            ("level", false),
        ] {
            assert_eq!(names_an_answer(key), answer, "{key}");
        }
    }

    #[test]
    fn datasets_parse() {
        // The fixtures' first rows of each set, always there (a clone without `shared/` tests
        // them too); the whole sets where `shared/datasets` is beside the checkout.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let fixtures = manifest.join("tests/fixtures/datasets");
        let shared = manifest.join("../../shared/datasets");
        for (file, fixture_rows, shared_rows) in [
            ("gsm8k/test.jsonl", Some(60), 1000),
            ("math500/test.jsonl", Some(60), 250),
            ("svamp/test.jsonl", Some(60), 1000),
            ("aime24/test.jsonl", Some(30), 30),
            ("mawps/addsub.jsonl", Some(60), 395),
            ("mawps/multiarith.jsonl", Some(60), 600),
            ("mawps/singleeq.jsonl", Some(60), 508),
            ("mawps/singleop.jsonl", Some(60), 562),
            ("humaneval/HumanEval.jsonl", None, 82),
        ] {
            let mut sets = Vec::new();
            if let Some(rows) = fixture_rows {
                sets.push((fixtures.join(file), rows));
            }
            if shared.exists() {
                sets.push((shared.join(file), shared_rows));
            } else {
                eprintln!("{} not present: fixtures only", shared.display());
            }
            for (path, rows) in sets {
                let problems = Problem::load_jsonl(&path).unwrap();
                assert_eq!(problems.len(), rows, "{}", path.display());
                for problem in &problems {
                    match (&problem.reference, &problem.code) {
                        // Every reference reads as an answer equal to itself.
                        (Some(reference), _) => assert!(
                            crate::answer::equivalent(reference, reference),
                            "{}: {}: {reference}",
                            path.display(),
                            problem.id
                        ),
                        (None, Some(_)) => {}
                        (None, None) => {
                            panic!("{}: {} has no reference", path.display(), problem.id)
                        }
                    }
                }
            }
        }
    }
}
