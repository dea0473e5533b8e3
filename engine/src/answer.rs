//! Final-answer extraction and answer equivalence, for grading and for voting.
//!
//! * [`extract_answer`] pulls the final answer out of a model completion: the last
//!   `\boxed{...}` / `\fbox{...}`, else the text after the last answer cue
//!   ("Final Answer:", "the answer is", GSM8K's `#### 42`, ...), else the last number.
//! * [`equivalent`] decides whether two answers denote the same value. Both sides are
//!   normalised (thousands separators, units, currency, percent and degree signs,
//!   `\left`/`\right`, LaTeX spacing, `\dfrac`/`\tfrac`, `\text{...}`, single-variable
//!   assignments, multiple-choice letters, case), then compared as exact strings, as
//!   numbers (relative tolerance 1e-6; fractions, decimals, `\sqrt`, `\pi`), or element
//!   by element for tuples, intervals, unordered lists and matrices.
//! * [`canonical_key`] maps an answer to a key such that equivalent answers get the
//!   same key in the common cases (rational values become a reduced `p/q`), for grouping
//!   votes in a `HashMap`.
//!
//! Everything is heuristic and works on plain strings; it never panics, and deep nesting
//! is cut off rather than recursed into without bound.

use std::f64::consts::PI;

/// Relative tolerance for numeric comparison.
const REL_TOL: f64 = 1e-6;
/// Maximum nesting depth for the recursive helpers.
const MAX_DEPTH: usize = 48;

/// Answer cues, searched case-insensitively; the one ending last in the text wins.
const CUES: &[&str] = &[
    "final answer:",
    "final answer is",
    "final answer",
    "the answer is",
    "answer is",
    "answer:",
];

/// Letter runs that are mathematics rather than prose in a plain-text answer.
const MATH_WORDS: &str = "sqrt pi inf infty infinity sin cos tan cot sec csc log ln exp mod";

/// Unit words stripped after a value (compared lower-case).
const UNITS: &str = "mm cm m km meter meters metre metres centimeter centimeters millimeter \
     millimeters kilometer kilometers inch inches ft foot feet yd yard yards mile \
     miles mph kph g kg gram grams kilogram kilograms lb lbs pound pounds oz ounce \
     ounces ml liter liters litre litres gallon gallons sec secs second seconds min \
     mins minute minutes hr hrs hour hours day days week weeks month months year \
     years dollar dollars cent cents euro euros usd unit units sq square cubic \
     degree degrees deg percent rad radians";

/// True when `word` is one of the whitespace-separated words of `list`.
fn is_listed(list: &str, word: &str) -> bool {
    list.split_whitespace().any(|w| w == word)
}

/// Commands whose braced argument is plain text to unwrap.
const TEXT_COMMANDS: &str = "text textbf textit textrm textsf texttt textnormal textup mbox \
     hbox mathrm mathbf mathit mathsf mathtt mathnormal operatorname emph";

/// Literal rewrites applied early in normalisation.
const REWRITES: &[(&str, &str)] = &[
    ("\u{2212}", "-"),
    ("\u{00d7}", "\\times "),
    ("\u{00b7}", "\\cdot "),
    ("\u{03c0}", "\\pi "),
    ("\u{221e}", "\\infty "),
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\dbinom", "\\binom"),
    ("\\tbinom", "\\binom"),
    ("{}^{\\circ}", ""),
    ("{}^\\circ", ""),
    ("^{\\circ}", ""),
    ("^\\circ", ""),
    ("\\circ", ""),
    ("^\\degree", ""),
    ("\\degree", ""),
    ("\u{00b0}", ""),
    ("\\%", ""),
    ("%", ""),
];

/// Pull the final answer out of a model's completion, or None.
///
/// Priority: the last `\boxed{...}` or `\fbox{...}` (balanced braces); else the text
/// after the last cue ("Final Answer:", "final answer is", "the answer is", "answer:",
/// `#### N`), cut to its line or sentence; else the last number in the text (integers,
/// decimals, negatives, `1,234,567`, `3/4`, `\frac{1}{2}`).
pub fn extract_answer(text: &str) -> Option<String> {
    last_boxed(text)
        .or_else(|| after_cue(text))
        .or_else(|| numbers(text).pop())
}

/// True when two answers denote the same value (used for grading against a reference
/// and for grouping votes). Empty answers are never equivalent to anything.
pub fn equivalent(a: &str, b: &str) -> bool {
    let na = normalize(a);
    let nb = normalize(b);
    if na.text.is_empty() || nb.text.is_empty() {
        return false;
    }
    if na.text == nb.text {
        return true;
    }
    if let (Some(x), Some(y)) = (eval(&na.text), eval(&nb.text)) {
        let (x, y) = (x.value(), y.value());
        return close(x, y)
            || (na.percent && close(x / 100.0, y))
            || (nb.percent && close(x, y / 100.0));
    }
    same_structure(&na.text, &nb.text, 0)
}

/// A canonical key such that equivalent answers (in the common cases) get the same key;
/// used to group votes in a HashMap.
pub fn canonical_key(answer: &str) -> String {
    key_of(&normalize(answer).text, 0)
}

// ---------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------

/// Content of the last well-formed `\boxed`/`\fbox` in `text`.
fn last_boxed(text: &str) -> Option<String> {
    let mut starts: Vec<usize> = Vec::new();
    for name in ["\\boxed", "\\fbox"] {
        starts.extend(text.match_indices(name).map(|(p, m)| p + m.len()));
    }
    starts.sort_unstable();
    starts
        .iter()
        .rev()
        .find_map(|&end| text.get(end..).and_then(boxed_argument))
}

/// The argument of a `\boxed` whose name has just been consumed.
fn boxed_argument(rest: &str) -> Option<String> {
    if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let trimmed = rest.trim_start();
    let content = if trimmed.starts_with('{') {
        let chars: Vec<char> = trimmed.chars().collect();
        let end = group_end(&chars, 0)?;
        chars.get(1..end)?.iter().collect::<String>()
    } else {
        trimmed
            .split(|c: char| c.is_whitespace() || c == '$')
            .next()?
            .trim_end_matches(['.', ','])
            .to_string()
    };
    let content = content.trim();
    (!content.is_empty()).then(|| content.to_string())
}

/// The answer after the last cue phrase, if any.
fn after_cue(text: &str) -> Option<String> {
    // ASCII lower-casing keeps byte offsets identical to `text`.
    let lower = text.to_ascii_lowercase();
    let mut best: Option<usize> = None;
    let mut consider = |end: usize| {
        if best.is_none_or(|b| end > b) {
            best = Some(end);
        }
    };
    for cue in CUES {
        if let Some(p) = lower.rfind(cue) {
            consider(p + cue.len());
        }
    }
    // `#### 42` (GSM8K), but not a markdown heading such as `#### Step 3`.
    for (p, m) in lower.match_indices("####") {
        let after = lower.get(p + m.len()..).unwrap_or("");
        let after = after.trim_start_matches(['#', ' ', '\t']);
        if after.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '$' | '.')) {
            consider(p + m.len());
        }
    }
    let tail = text.get(best?..)?;
    let tail = tail.trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '*' | '#'));
    let line = tail.lines().next()?;
    cue_candidate(line)
}

/// Turn the line after a cue into an answer.
fn cue_candidate(line: &str) -> Option<String> {
    let raw = match math_span(line) {
        Some(m) if !m.trim().is_empty() => m,
        _ => cut_sentence(line),
    };
    let cand = clean_candidate(raw);
    if cand.is_empty() {
        return None;
    }
    if is_prose(&cand) {
        if cand.chars().any(|c| c.is_ascii_digit()) {
            return pick_number(&cand);
        }
        // A short text answer ("Evelyn", "east") is kept; long prose is not an answer.
        return (cand.split_whitespace().count() <= 4).then_some(cand);
    }
    Some(arithmetic_rhs(&cand))
}

/// The first math span on the line: `\(..\)`, `\[..\]`, `$$..$$` or `$..$`, using
/// pandoc's rule for single dollars so that currency (`$18 and $20`) is not math.
fn math_span(line: &str) -> Option<&str> {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let at = |k: usize| chars.get(k).map(|&(_, c)| c);
    let mut k = 0;
    while let Some(&(i, c)) = chars.get(k) {
        let next = at(k + 1);
        if c == '\\' {
            let close = match next {
                Some('(') => Some("\\)"),
                Some('[') => Some("\\]"),
                _ => None,
            };
            if let Some(close) = close {
                let body = line.get(i + 2..)?;
                if let Some(e) = body.find(close) {
                    return body.get(..e);
                }
            }
            k += 2;
            continue;
        }
        if c == '$' {
            if next == Some('$') {
                let body = line.get(i + 2..)?;
                if let Some(e) = body.find("$$") {
                    return body.get(..e);
                }
                k += 2;
                continue;
            }
            if next.is_some_and(|n| !n.is_whitespace()) {
                let mut j = k + 1;
                while let Some(&(jp, jc)) = chars.get(j) {
                    if jc == '\\' {
                        j += 2;
                        continue;
                    }
                    if jc == '$' {
                        let prev_ok = j
                            .checked_sub(1)
                            .and_then(&at)
                            .is_some_and(|p| !p.is_whitespace());
                        let next_ok = !at(j + 1).is_some_and(|n| n.is_ascii_digit());
                        if prev_ok && next_ok {
                            return line.get(i + 1..jp);
                        }
                    }
                    j += 1;
                }
            }
        }
        k += 1;
    }
    None
}

/// The line up to its first sentence end (". ", "! ", "? " or a final '.').
fn cut_sentence(line: &str) -> &str {
    let mut it = line.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if matches!(c, '.' | '!' | '?') && it.peek().is_none_or(|&(_, n)| n.is_whitespace()) {
            return line.get(..i).unwrap_or(line);
        }
    }
    line
}

/// Strip whitespace, markdown bold, stray dollars and trailing punctuation.
fn clean_candidate(raw: &str) -> String {
    let mut s = raw.trim();
    loop {
        let before = s;
        s = s.trim();
        s = s.strip_prefix("**").unwrap_or(s);
        s = s.strip_suffix("**").unwrap_or(s);
        s = s.trim_end_matches(['.', ',', ';', '!']);
        s = s.trim_matches('$');
        if s == before {
            break;
        }
    }
    s.to_string()
}

/// Plain text (no LaTeX) containing a word of two or more letters.
fn is_prose(s: &str) -> bool {
    if s.contains('\\') {
        return false;
    }
    s.split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| w.len() >= 2 && !is_listed(MATH_WORDS, &w.to_ascii_lowercase()))
}

/// The answer number inside a prose sentence: the first number after the last '='.
fn pick_number(cand: &str) -> Option<String> {
    let after_eq = cand.rsplit('=').next().unwrap_or(cand);
    numbers(after_eq)
        .into_iter()
        .next()
        .or_else(|| numbers(cand).into_iter().next())
}

/// `9 * 2 = 18` -> `18`: the right side of an equation whose left side is arithmetic.
fn arithmetic_rhs(cand: &str) -> String {
    if let Some((lhs, rhs)) = cand.rsplit_once('=') {
        let lhs = lhs
            .replace("\\times", "")
            .replace("\\cdot", "")
            .replace("\\div", "");
        let arithmetic = lhs
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_whitespace() || "+-*/().,^{}".contains(c));
        let rhs = rhs.trim();
        if arithmetic && !rhs.is_empty() {
            return rhs.to_string();
        }
    }
    cand.to_string()
}

/// Every number in `s`, in order, thousands separators removed.
fn numbers(s: &str) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        let prev = i.checked_sub(1).and_then(|p| c.get(p)).copied();
        let signed = ch == '-'
            && !prev.is_some_and(|p| p.is_ascii_alphanumeric() || matches!(p, ')' | ']' | '}'));
        let body = if signed { i + 1 } else { i };
        let body_prev = body.checked_sub(1).and_then(|p| c.get(p)).copied();
        let sign = if signed { "-" } else { "" };
        if let Some((text, end)) = latex_fraction_at(&c, body) {
            out.push(format!("{sign}{text}"));
            i = end;
            continue;
        }
        if !body_prev.is_some_and(|p| p.is_ascii_digit() || p == '.') {
            if let Some((text, end)) = number_at(&c, body) {
                out.push(format!("{sign}{text}"));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// Count of consecutive ASCII digits starting at `i`.
fn digit_run(c: &[char], i: usize) -> usize {
    c.iter()
        .skip(i)
        .take_while(|ch| ch.is_ascii_digit())
        .count()
}

fn is_digit_at(c: &[char], i: usize) -> bool {
    c.get(i).is_some_and(|ch| ch.is_ascii_digit())
}

fn collect(c: &[char], from: usize, to: usize) -> String {
    c.get(from..to).unwrap_or(&[]).iter().collect()
}

/// A plain number starting at `i`: `12`, `1,234,567`, `3.5`, `.5`, `3/4`.
fn number_at(c: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    let mut text = String::new();
    let int_len = digit_run(c, j);
    if int_len == 0 {
        if c.get(j) == Some(&'.') && is_digit_at(c, j + 1) {
            let frac_len = digit_run(c, j + 1);
            text.push_str("0.");
            text.push_str(&collect(c, j + 1, j + 1 + frac_len));
            return Some((text, j + 1 + frac_len));
        }
        return None;
    }
    text.push_str(&collect(c, j, j + int_len));
    j += int_len;
    let mut grouped = false;
    if int_len <= 3 {
        while c.get(j) == Some(&',') && digit_run(c, j + 1) == 3 {
            text.push_str(&collect(c, j + 1, j + 4));
            j += 4;
            grouped = true;
        }
    }
    if c.get(j) == Some(&'.') && is_digit_at(c, j + 1) {
        let frac_len = digit_run(c, j + 1);
        text.push('.');
        text.push_str(&collect(c, j + 1, j + 1 + frac_len));
        j += 1 + frac_len;
    } else if !grouped && c.get(j) == Some(&'/') && is_digit_at(c, j + 1) {
        let den_len = digit_run(c, j + 1);
        text.push('/');
        text.push_str(&collect(c, j + 1, j + 1 + den_len));
        j += 1 + den_len;
    }
    Some((text, j))
}

/// `\frac{a}{b}` (or `\dfrac`, `\tfrac`, `\frac12`) with integer parts, starting at `i`.
fn latex_fraction_at(c: &[char], i: usize) -> Option<(String, usize)> {
    if c.get(i) != Some(&'\\') {
        return None;
    }
    let name = letters_at(c, i + 1);
    if !matches!(name.as_str(), "frac" | "dfrac" | "tfrac") {
        return None;
    }
    let mut j = i + 1 + name.len();
    let mut parts = Vec::new();
    for _ in 0..2 {
        while c.get(j).is_some_and(|ch| ch.is_whitespace()) {
            j += 1;
        }
        if c.get(j) == Some(&'{') {
            let end = group_end(c, j)?;
            let inner = collect(c, j + 1, end);
            let inner = inner.trim();
            let digits = inner.strip_prefix('-').unwrap_or(inner);
            if digits.is_empty() || !digits.chars().all(|d| d.is_ascii_digit()) {
                return None;
            }
            parts.push(inner.to_string());
            j = end + 1;
        } else if is_digit_at(c, j) {
            parts.push(collect(c, j, j + 1));
            j += 1;
        } else {
            return None;
        }
    }
    let [num, den] = parts.as_slice() else {
        return None;
    };
    Some((format!("\\frac{{{num}}}{{{den}}}"), j))
}

/// The ASCII letters starting at `i` (a command name after a backslash).
fn letters_at(c: &[char], i: usize) -> String {
    c.iter()
        .skip(i)
        .take_while(|ch| ch.is_ascii_alphabetic())
        .collect()
}

/// Index of the `}` matching the `{` at `open`; backslash escapes are skipped.
fn group_end(c: &[char], open: usize) -> Option<usize> {
    if c.get(open) != Some(&'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut j = open;
    while let Some(&ch) = c.get(j) {
        match ch {
            '\\' => {
                j += 2;
                continue;
            }
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
        j += 1;
    }
    None
}

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

/// A normalised answer and whether it carried a percent sign.
struct Normalized {
    text: String,
    percent: bool,
}

fn normalize(raw: &str) -> Normalized {
    let mut s = raw.replace("\\$", "");
    s = strip_math_delimiters(&s);
    s = s.replace('$', "");
    if s.starts_with("\\boxed") || s.starts_with("\\fbox") {
        if let Some(inner) = last_boxed(&s) {
            s = strip_math_delimiters(&inner);
        }
    }
    s = join_latex_thousands(&s);
    s = latex_spacing(&s);
    let lower = s.to_ascii_lowercase();
    let percent = lower.contains('%') || lower.contains("percent");
    for (from, to) in REWRITES {
        s = s.replace(from, to);
    }
    s = unwrap_text(&s, 0);
    s = join_plain_thousands(&s);
    s = strip_units(&s);
    s = collapse_whitespace(&s).to_lowercase();
    s = strip_left_right(&s);
    s = brace_arguments(&s, 0);
    s = s.trim_end_matches('.').to_string();
    s = strip_outer_braces(s);
    s = multiple_choice(s);
    s = assignment_rhs(s);
    Normalized { text: s, percent }
}

fn strip_math_delimiters(s: &str) -> String {
    let mut t = s.trim();
    loop {
        let before = t;
        for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
            if let Some(inner) = t.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
                t = inner.trim();
            }
        }
        if t == before {
            return t.to_string();
        }
    }
}

/// `10,\!080` and `1{,}000` -> `10080`, `1000`.
fn join_latex_thousands(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        let after_digit = out.ends_with(|p: char| p.is_ascii_digit());
        if after_digit && ch == ',' && c.get(i + 1) == Some(&'\\') && c.get(i + 2) == Some(&'!') {
            let mut j = i + 3;
            while c.get(j).is_some_and(|x| x.is_whitespace()) {
                j += 1;
            }
            if is_digit_at(&c, j) {
                i = j;
                continue;
            }
        }
        if after_digit
            && ch == '{'
            && c.get(i + 1) == Some(&',')
            && c.get(i + 2) == Some(&'}')
            && is_digit_at(&c, i + 3)
        {
            i += 3;
            continue;
        }
        out.push(ch);
        i += 1;
    }
    out
}

/// LaTeX spacing commands (`\!`, `\,`, `\;`, `\quad`, `~`, ...) become plain spaces.
fn latex_spacing(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        if ch == '~' {
            out.push(' ');
            i += 1;
            continue;
        }
        if ch != '\\' {
            out.push(ch);
            i += 1;
            continue;
        }
        match c.get(i + 1) {
            Some(&n) if "!,;: ".contains(n) => {
                out.push(' ');
                i += 2;
            }
            Some(&n) if !n.is_ascii_alphabetic() => {
                out.push('\\');
                out.push(n);
                i += 2;
            }
            Some(_) => {
                let name = letters_at(&c, i + 1);
                if matches!(
                    name.as_str(),
                    "quad" | "qquad" | "displaystyle" | "textstyle" | "enspace"
                ) {
                    out.push(' ');
                } else {
                    out.push('\\');
                    out.push_str(&name);
                }
                i += 1 + name.len();
            }
            None => {
                out.push('\\');
                i += 1;
            }
        }
    }
    out
}

/// `\text{..}`, `\mbox{..}`, `\mathrm{..}`, ... are replaced by their (spaced) content.
fn unwrap_text(s: &str, depth: usize) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        if ch != '\\' {
            out.push(ch);
            i += 1;
            continue;
        }
        let name = letters_at(&c, i + 1);
        if name.is_empty() {
            out.push('\\');
            if let Some(&n) = c.get(i + 1) {
                out.push(n);
            }
            i += 2;
            continue;
        }
        let mut j = i + 1 + name.len();
        while c.get(j) == Some(&' ') {
            j += 1;
        }
        if is_listed(TEXT_COMMANDS, &name) && depth < MAX_DEPTH {
            if let Some(end) = group_end(&c, j) {
                out.push(' ');
                out.push_str(&unwrap_text(&collect(&c, j + 1, end), depth + 1));
                out.push(' ');
                i = end + 1;
                continue;
            }
        }
        out.push('\\');
        out.push_str(&name);
        i += 1 + name.len();
    }
    out
}

/// Plain thousands separators at bracket depth 0: `1,234,567` -> `1234567`.
/// `1, 234` (a list) and `(1,234)` (a pair) are left alone.
fn join_plain_thousands(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut depth = 0i32;
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        let prev = i.checked_sub(1).and_then(|p| c.get(p)).copied();
        let starts_run =
            ch.is_ascii_digit() && !prev.is_some_and(|p| p.is_ascii_digit() || p == '.');
        if depth == 0 && starts_run {
            let int_len = digit_run(&c, i);
            let mut j = i + int_len;
            let mut groups = 0;
            if int_len <= 3 {
                while c.get(j) == Some(&',') && digit_run(&c, j + 1) == 3 {
                    j += 4;
                    groups += 1;
                }
            }
            let list_follows = c.get(j) == Some(&',') && is_digit_at(&c, j + 1);
            let run = collect(&c, i, j);
            if groups > 0 && !list_follows {
                out.push_str(&run.replace(',', ""));
            } else {
                out.push_str(&run);
            }
            i = j;
            continue;
        }
        out.push(ch);
        i += 1;
    }
    out
}

/// Strip trailing unit words: `18 dollars`, `10 inches`, `5cm`, `12 sq units`, `3 m^2`.
fn strip_units(s: &str) -> String {
    let mut cur = s.trim().to_string();
    for _ in 0..8 {
        let trimmed = cur.trim_end().trim_end_matches('.').trim_end();
        let mut body = trimmed;
        let mut powered = false;
        for p in ["^{2}", "^{3}", "^2", "^3"] {
            if let Some(b) = body.strip_suffix(p) {
                body = b.trim_end();
                powered = true;
                break;
            }
        }
        let word_len = body
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        // The word is ASCII, so its byte length equals its char count.
        let split = body.len().saturating_sub(word_len);
        let (Some(before), Some(word)) = (body.get(..split), body.get(split..)) else {
            break;
        };
        if word.is_empty() || before.ends_with('\\') {
            break;
        }
        let spaced = before.ends_with(char::is_whitespace);
        let prefix = before.trim_end();
        if prefix.is_empty() {
            break;
        }
        let w = word.to_ascii_lowercase();
        let known = is_listed(UNITS, &w);
        let ok = if spaced {
            known
                || (!powered
                    && w.len() >= 2
                    && !is_listed(MATH_WORDS, &w)
                    && eval(prefix).is_some())
        } else {
            known && w.len() >= 2 && prefix.ends_with(|c: char| c.is_ascii_digit())
        };
        if !ok {
            break;
        }
        cur = prefix.to_string();
    }
    cur.trim().to_string()
}

/// Remove whitespace, keeping one space where a command name meets a letter
/// (`\cot x` stays distinct from `\cotx`).
fn collapse_whitespace(s: &str) -> String {
    let mut out = String::new();
    let mut pending = false;
    for ch in s.chars() {
        if ch.is_whitespace() {
            pending = true;
            continue;
        }
        if pending && ch.is_ascii_alphabetic() && ends_with_command(&out) {
            out.push(' ');
        }
        pending = false;
        out.push(ch);
    }
    out
}

fn ends_with_command(out: &str) -> bool {
    let t = out.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    t.len() < out.len() && t.ends_with('\\')
}

/// Drop `\left`, `\right` and the `\big` family (and a following `.` delimiter).
fn strip_left_right(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        if ch != '\\' {
            out.push(ch);
            i += 1;
            continue;
        }
        let name = letters_at(&c, i + 1);
        if name.is_empty() {
            out.push('\\');
            if let Some(&n) = c.get(i + 1) {
                out.push(n);
            }
            i += 2;
            continue;
        }
        i += 1 + name.len();
        if matches!(
            name.as_str(),
            "left" | "right" | "big" | "bigl" | "bigr" | "bigg" | "biggl" | "biggr"
        ) {
            if c.get(i) == Some(&'.') {
                i += 1;
            }
        } else {
            out.push('\\');
            out.push_str(&name);
        }
    }
    out
}

/// Canonical braces: `\frac12` -> `\frac{1}{2}`, `\sqrt2` -> `\sqrt{2}`, `x^{2}` -> `x^2`.
fn brace_arguments(s: &str, depth: usize) -> String {
    if depth > MAX_DEPTH {
        return s.to_string();
    }
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        match ch {
            '\\' => {
                let name = letters_at(&c, i + 1);
                if name.is_empty() {
                    out.push('\\');
                    if let Some(&n) = c.get(i + 1) {
                        out.push(n);
                    }
                    i += 2;
                    continue;
                }
                out.push('\\');
                out.push_str(&name);
                i += 1 + name.len();
                let nargs = match name.as_str() {
                    "frac" | "binom" => 2,
                    "sqrt" => 1,
                    _ => 0,
                };
                if name == "sqrt" && c.get(i) == Some(&'[') {
                    while let Some(&x) = c.get(i) {
                        out.push(x);
                        i += 1;
                        if x == ']' {
                            break;
                        }
                    }
                }
                for _ in 0..nargs {
                    while c.get(i) == Some(&' ') {
                        i += 1;
                    }
                    match c.get(i) {
                        Some('{') => {
                            let Some(end) = group_end(&c, i) else {
                                break;
                            };
                            out.push('{');
                            out.push_str(&brace_arguments(&collect(&c, i + 1, end), depth + 1));
                            out.push('}');
                            i = end + 1;
                        }
                        Some('\\') => {
                            let inner = letters_at(&c, i + 1);
                            if inner.is_empty() {
                                break;
                            }
                            out.push_str(&format!("{{\\{inner}}}"));
                            i += 1 + inner.len();
                        }
                        Some(&a) => {
                            out.push('{');
                            out.push(a);
                            out.push('}');
                            i += 1;
                        }
                        None => break,
                    }
                }
            }
            '^' | '_' => {
                let single = c.get(i + 2).filter(|x| x.is_ascii_alphanumeric());
                match (c.get(i + 1), single, c.get(i + 3)) {
                    (Some('{'), Some(&x), Some('}')) => {
                        out.push(ch);
                        out.push(x);
                        i += 4;
                    }
                    _ => {
                        out.push(ch);
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}

/// `{5}` -> `5`.
fn strip_outer_braces(mut s: String) -> String {
    loop {
        let c: Vec<char> = s.chars().collect();
        match group_end(&c, 0) {
            Some(end) if end + 1 == c.len() => s = collect(&c, 1, end),
            _ => return s,
        }
    }
}

/// `(c)` and `c)` -> `c` for multiple-choice letters.
fn multiple_choice(s: String) -> String {
    let c: Vec<char> = s.chars().collect();
    match c.as_slice() {
        ['(', x, ')'] | [x, ')'] if x.is_alphabetic() => x.to_string(),
        _ => s,
    }
}

/// `x=5` -> `5` and `x\in[1,2]` -> `[1,2]` for a single variable (`x`, `x_1`, `\theta`).
fn assignment_rhs(s: String) -> String {
    let membership: Vec<usize> = s
        .match_indices("\\in")
        .map(|(p, _)| p)
        .filter(|&p| {
            !s.get(p + 3..)
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_alphabetic()))
        })
        .collect();
    let split = match (s.matches('=').count(), membership.as_slice()) {
        (1, []) => s.split_once('='),
        (0, &[p]) => s.get(..p).zip(s.get(p + 3..)),
        _ => None,
    };
    let Some((lhs, rhs)) = split else {
        return s;
    };
    let (base, sub) = match lhs.split_once('_') {
        Some((b, sub)) => (b, Some(sub)),
        None => (lhs, None),
    };
    let base_ok = {
        let mut it = base.chars();
        match (it.next(), base.strip_prefix('\\')) {
            (_, Some(name)) => !name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic()),
            (Some(x), None) => x.is_alphabetic() && it.next().is_none(),
            (None, None) => false,
        }
    };
    let sub_ok = sub.is_none_or(|t| {
        let t = t.trim_start_matches('{').trim_end_matches('}');
        !t.is_empty() && t.chars().all(|c| c.is_alphanumeric())
    });
    let rhs = rhs.trim();
    if base_ok && sub_ok && !rhs.is_empty() {
        rhs.to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------
// Structure: tuples, intervals, lists, matrices
// ---------------------------------------------------------------------------

/// A bracketed tuple/interval/set or a bare comma list, split at top-level commas.
struct List<'a> {
    open: &'a str,
    close: &'a str,
    items: Vec<&'a str>,
    ordered: bool,
}

fn split_list(s: &str) -> Option<List<'_>> {
    if let Some(inner) = s.strip_prefix("\\{").and_then(|r| r.strip_suffix("\\}")) {
        return Some(List {
            open: "\\{",
            close: "\\}",
            items: split_top_commas(inner)?,
            ordered: false,
        });
    }
    let first = s.chars().next()?;
    let last = s.chars().next_back()?;
    if matches!(first, '(' | '[') && matches!(last, ')' | ']') && closes_at_end(s) {
        let inner = s.get(1..s.len().saturating_sub(1))?;
        let items = split_top_commas(inner)?;
        if items.len() >= 2 {
            let (open, close) = (s.get(..1)?, s.get(s.len().saturating_sub(1)..)?);
            return Some(List {
                open,
                close,
                items,
                ordered: true,
            });
        }
        return None;
    }
    let items = split_top_commas(s)?;
    (items.len() >= 2).then_some(List {
        open: "",
        close: "",
        items,
        ordered: false,
    })
}

/// True when the bracket opening `s` is closed by its last character.
fn closes_at_end(s: &str) -> bool {
    let mut depth = 0i32;
    let n = s.chars().count();
    for (k, ch) in s.chars().enumerate() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return k + 1 == n;
                }
            }
            _ => {}
        }
    }
    false
}

/// Split at commas outside any brackets; None when the brackets do not balance.
fn split_top_commas(s: &str) -> Option<Vec<&str>> {
    let mut items = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, ch) in s.char_indices() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(s.get(start..i)?);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    if depth != 0 {
        return None;
    }
    items.push(s.get(start..)?);
    Some(items)
}

/// Rows and cells of `\begin{pmatrix} .. \end{pmatrix}` (any `*matrix` environment).
fn matrix_cells(s: &str) -> Option<Vec<Vec<&str>>> {
    let rest = s.strip_prefix("\\begin{")?;
    let (env, body) = rest.split_once('}')?;
    if !env.ends_with("matrix") && env != "array" {
        return None;
    }
    let body = body.strip_suffix(&format!("\\end{{{env}}}"))?;
    let rows: Vec<Vec<&str>> = body
        .split("\\\\")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.split('&').map(str::trim).collect())
        .collect();
    (!rows.is_empty()).then_some(rows)
}

/// Equivalence of two normalised strings.
fn equivalent_normalized(a: &str, b: &str, depth: usize) -> bool {
    if a == b {
        return true;
    }
    if let (Some(x), Some(y)) = (eval(a), eval(b)) {
        return close(x.value(), y.value());
    }
    same_structure(a, b, depth + 1)
}

fn same_structure(a: &str, b: &str, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    if let (Some(ma), Some(mb)) = (matrix_cells(a), matrix_cells(b)) {
        return ma.len() == mb.len()
            && ma.iter().zip(&mb).all(|(ra, rb)| {
                ra.len() == rb.len()
                    && ra
                        .iter()
                        .zip(rb)
                        .all(|(x, y)| equivalent_normalized(x, y, depth))
            });
    }
    let (Some(la), Some(lb)) = (split_list(a), split_list(b)) else {
        return false;
    };
    if la.open != lb.open
        || la.close != lb.close
        || la.ordered != lb.ordered
        || la.items.len() != lb.items.len()
    {
        return false;
    }
    if la.ordered {
        return la
            .items
            .iter()
            .zip(&lb.items)
            .all(|(x, y)| equivalent_normalized(x, y, depth));
    }
    let mut used = vec![false; lb.items.len()];
    la.items.iter().all(|x| {
        let found = lb
            .items
            .iter()
            .zip(used.iter_mut())
            .find(|(y, u)| !**u && equivalent_normalized(x, y, depth));
        match found {
            Some((_, u)) => {
                *u = true;
                true
            }
            None => false,
        }
    })
}

fn key_of(s: &str, depth: usize) -> String {
    if let Some(v) = eval(s) {
        return v.key();
    }
    if depth > MAX_DEPTH {
        return s.to_string();
    }
    if let Some(rows) = matrix_cells(s) {
        let rows: Vec<String> = rows
            .iter()
            .map(|r| {
                r.iter()
                    .map(|x| key_of(x, depth + 1))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        return format!("matrix[{}]", rows.join(";"));
    }
    if let Some(list) = split_list(s) {
        let mut keys: Vec<String> = list.items.iter().map(|x| key_of(x, depth + 1)).collect();
        if !list.ordered {
            keys.sort();
        }
        return format!("{}{}{}", list.open, keys.join(","), list.close);
    }
    s.to_string()
}

fn close(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= REL_TOL * x.abs().max(y.abs())
}

// ---------------------------------------------------------------------------
// Numbers: exact rationals where possible, floats otherwise
// ---------------------------------------------------------------------------

/// A numeric value: an exact reduced fraction (denominator > 0) or a finite float.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Rat(i128, i128),
    Real(f64),
}

fn gcd(a: i128, b: i128) -> u128 {
    let (mut a, mut b) = (a.unsigned_abs(), b.unsigned_abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Exact `k`-th root of a non-negative integer, if it is a perfect power.
fn exact_root(n: i128, k: u32) -> Option<i128> {
    if n < 0 || k == 0 {
        return None;
    }
    let guess = (n as f64).powf(1.0 / f64::from(k)).round() as i128;
    [guess.saturating_sub(1), guess, guess.saturating_add(1)]
        .into_iter()
        .find(|&r| r >= 0 && r.checked_pow(k) == Some(n))
}

impl Num {
    fn ratio(n: i128, d: i128) -> Option<Num> {
        if d == 0 {
            return None;
        }
        let g = i128::try_from(gcd(n, d)).ok()?;
        let (mut n, mut d) = (n / g, d / g);
        if d < 0 {
            n = n.checked_neg()?;
            d = d.checked_neg()?;
        }
        Some(Num::Rat(n, d))
    }

    fn real(x: f64) -> Option<Num> {
        x.is_finite().then_some(Num::Real(x))
    }

    fn value(self) -> f64 {
        match self {
            Num::Rat(n, d) => n as f64 / d as f64,
            Num::Real(x) => x,
        }
    }

    fn key(self) -> String {
        match self {
            Num::Rat(n, 1) => n.to_string(),
            Num::Rat(n, d) => format!("{n}/{d}"),
            Num::Real(0.0) => "0".to_string(),
            Num::Real(x) => format!("{x:.9e}"),
        }
    }

    fn add(self, o: Num) -> Option<Num> {
        if let (Num::Rat(a, b), Num::Rat(c, d)) = (self, o) {
            let exact = a
                .checked_mul(d)
                .zip(c.checked_mul(b))
                .and_then(|(x, y)| x.checked_add(y))
                .zip(b.checked_mul(d))
                .and_then(|(n, den)| Num::ratio(n, den));
            if exact.is_some() {
                return exact;
            }
        }
        Num::real(self.value() + o.value())
    }

    fn neg(self) -> Option<Num> {
        match self {
            Num::Rat(n, d) => match n.checked_neg() {
                Some(m) => Some(Num::Rat(m, d)),
                None => Num::real(-self.value()),
            },
            Num::Real(x) => Some(Num::Real(-x)),
        }
    }

    fn sub(self, o: Num) -> Option<Num> {
        self.add(o.neg()?)
    }

    fn mul(self, o: Num) -> Option<Num> {
        if let (Num::Rat(a, b), Num::Rat(c, d)) = (self, o) {
            let exact = a
                .checked_mul(c)
                .zip(b.checked_mul(d))
                .and_then(|(n, den)| Num::ratio(n, den));
            if exact.is_some() {
                return exact;
            }
        }
        Num::real(self.value() * o.value())
    }

    fn div(self, o: Num) -> Option<Num> {
        if o.value() == 0.0 {
            return None;
        }
        if let (Num::Rat(a, b), Num::Rat(c, d)) = (self, o) {
            let exact = a
                .checked_mul(d)
                .zip(b.checked_mul(c))
                .and_then(|(n, den)| Num::ratio(n, den));
            if exact.is_some() {
                return exact;
            }
        }
        Num::real(self.value() / o.value())
    }

    fn pow(self, e: Num) -> Option<Num> {
        if let (Num::Rat(n, d), Num::Rat(k, 1)) = (self, e) {
            if let Ok(u) = u32::try_from(k.unsigned_abs()) {
                let exact = n.checked_pow(u).zip(d.checked_pow(u)).and_then(|(pn, pd)| {
                    if k >= 0 {
                        Num::ratio(pn, pd)
                    } else {
                        Num::ratio(pd, pn)
                    }
                });
                if exact.is_some() {
                    return exact;
                }
            }
        }
        Num::real(self.value().powf(e.value()))
    }

    fn root(self, k: Num) -> Option<Num> {
        if let (Num::Rat(n, d), Num::Rat(k, 1)) = (self, k) {
            if let Ok(k) = u32::try_from(k) {
                let odd = k % 2 == 1;
                let (sign, m) = if n < 0 && odd {
                    (-1, n.checked_neg()?)
                } else {
                    (1, n)
                };
                if let (Some(a), Some(b)) = (exact_root(m, k), exact_root(d, k)) {
                    return Num::ratio(sign * a, b);
                }
            }
        }
        let (x, k) = (self.value(), k.value());
        if k == 0.0 {
            return None;
        }
        if x < 0.0 {
            // Odd roots of negatives are real.
            let odd = k.fract() == 0.0 && k.rem_euclid(2.0) == 1.0;
            return if odd {
                Num::real(-(-x).powf(1.0 / k))
            } else {
                None
            };
        }
        Num::real(x.powf(1.0 / k))
    }
}

/// Evaluate a normalised string as a number: digits, `+ - * /`, `^`, parentheses,
/// braces, `\frac`, `\sqrt`, `\sqrt[n]`, `\pi`, `\cdot`, `\times`, `\div` and implicit
/// multiplication. Anything else (variables, `\infty`, commas) gives None.
fn eval(s: &str) -> Option<Num> {
    let chars: Vec<char> = s.chars().collect();
    let mut p = Parser { c: &chars, i: 0 };
    p.ws();
    p.peek()?;
    let v = p.expr(0)?;
    p.ws();
    (p.i == chars.len()).then_some(v)
}

struct Parser<'a> {
    c: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, ch: char) -> bool {
        self.ws();
        if self.peek() == Some(ch) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// The command name at the cursor (after `\`), without consuming it.
    fn command(&self) -> Option<String> {
        if self.peek() != Some('\\') {
            return None;
        }
        let name = letters_at(self.c, self.i + 1);
        (!name.is_empty()).then_some(name)
    }

    fn eat_command(&mut self, names: &[&str]) -> bool {
        self.ws();
        match self.command() {
            Some(name) if names.contains(&name.as_str()) => {
                self.i += 1 + name.len();
                true
            }
            _ => false,
        }
    }

    fn starts_atom(&mut self) -> bool {
        self.ws();
        match self.peek() {
            Some(c) if c.is_ascii_digit() || matches!(c, '.' | '(' | '{') => true,
            Some('\\') => self
                .command()
                .is_some_and(|n| matches!(n.as_str(), "frac" | "sqrt" | "pi")),
            _ => false,
        }
    }

    fn expr(&mut self, depth: usize) -> Option<Num> {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut acc = self.term(depth)?;
        loop {
            if self.eat('+') {
                acc = acc.add(self.term(depth)?)?;
            } else if self.eat('-') {
                acc = acc.sub(self.term(depth)?)?;
            } else {
                return Some(acc);
            }
        }
    }

    fn term(&mut self, depth: usize) -> Option<Num> {
        let mut acc = self.unary(depth)?;
        loop {
            if self.eat('*') || self.eat_command(&["cdot", "times"]) {
                acc = acc.mul(self.unary(depth)?)?;
            } else if self.eat('/') || self.eat_command(&["div"]) {
                acc = acc.div(self.unary(depth)?)?;
            } else if self.starts_atom() {
                acc = acc.mul(self.power(depth)?)?;
            } else {
                return Some(acc);
            }
        }
    }

    fn unary(&mut self, depth: usize) -> Option<Num> {
        if depth > MAX_DEPTH {
            return None;
        }
        if self.eat('-') {
            return self.unary(depth + 1)?.neg();
        }
        if self.eat('+') {
            return self.unary(depth + 1);
        }
        self.power(depth)
    }

    fn power(&mut self, depth: usize) -> Option<Num> {
        let base = self.atom(depth)?;
        if self.eat('^') {
            self.ws();
            let exponent = if self.eat('-') {
                self.atom(depth + 1)?.neg()?
            } else {
                self.atom(depth + 1)?
            };
            return base.pow(exponent);
        }
        Some(base)
    }

    fn atom(&mut self, depth: usize) -> Option<Num> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            c if c.is_ascii_digit() || c == '.' => self.number(),
            '(' => {
                self.i += 1;
                let v = self.expr(depth + 1)?;
                self.eat(')').then_some(v)
            }
            '{' => {
                self.i += 1;
                let v = self.expr(depth + 1)?;
                self.eat('}').then_some(v)
            }
            '\\' => {
                let name = self.command()?;
                self.i += 1 + name.len();
                match name.as_str() {
                    "frac" => {
                        let a = self.argument(depth + 1)?;
                        let b = self.argument(depth + 1)?;
                        a.div(b)
                    }
                    "sqrt" => {
                        if self.eat('[') {
                            let k = self.expr(depth + 1)?;
                            if !self.eat(']') {
                                return None;
                            }
                            self.argument(depth + 1)?.root(k)
                        } else {
                            self.argument(depth + 1)?.root(Num::Rat(2, 1))
                        }
                    }
                    "pi" => Some(Num::Real(PI)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// A command argument: `{expr}`, a single digit, or a command such as `\pi`.
    fn argument(&mut self, depth: usize) -> Option<Num> {
        self.ws();
        match self.peek()? {
            '{' | '\\' => self.atom(depth),
            c => {
                let d = c.to_digit(10)?;
                self.i += 1;
                Some(Num::Rat(i128::from(d), 1))
            }
        }
    }

    fn number(&mut self) -> Option<Num> {
        let start = self.i;
        let int_len = digit_run(self.c, self.i);
        self.i += int_len;
        let mut frac_len = 0;
        if self.peek() == Some('.') && is_digit_at(self.c, self.i + 1) {
            frac_len = digit_run(self.c, self.i + 1);
            self.i += 1 + frac_len;
        }
        if int_len + frac_len == 0 {
            return None;
        }
        let literal = collect(self.c, start, self.i);
        let digits = literal.replace('.', "");
        let scale = u32::try_from(frac_len)
            .ok()
            .and_then(|f| 10i128.checked_pow(f));
        let mantissa = match (digits.parse::<i128>().ok(), scale) {
            (Some(n), Some(d)) => Num::ratio(n, d)?,
            _ => Num::real(literal.parse::<f64>().ok()?)?,
        };
        match self.exponent_suffix() {
            Some(e) => mantissa.mul(Num::Rat(10, 1).pow(Num::Rat(e, 1))?),
            None => Some(mantissa),
        }
    }

    /// Scientific notation: `e5`, `e-05`, `e+3` right after a number literal.
    fn exponent_suffix(&mut self) -> Option<i128> {
        if self.peek() != Some('e') {
            return None;
        }
        let sign_len = usize::from(matches!(self.c.get(self.i + 1), Some('+' | '-')));
        let len = digit_run(self.c, self.i + 1 + sign_len);
        if len == 0 || len > 4 {
            return None;
        }
        let text = collect(self.c, self.i + 1, self.i + 1 + sign_len + len);
        let e = text.parse::<i128>().ok()?;
        self.i += 1 + sign_len + len;
        Some(e)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Option<String> {
        extract_answer(s)
    }

    #[test]
    fn extracts_boxed_last_and_nested() {
        assert_eq!(
            ex("a \\boxed{1} then \\boxed{\\frac{1}{2}}.").unwrap(),
            "\\frac{1}{2}"
        );
        assert_eq!(ex("\\fbox{7}").unwrap(), "7");
        assert_eq!(ex("so \\boxed 5.").unwrap(), "5");
        assert_eq!(ex("\\boxed{\\{1,2\\}}").unwrap(), "\\{1,2\\}");
        // Unbalanced last box falls back to the previous one.
        assert_eq!(ex("\\boxed{3} and \\boxed{4").unwrap(), "3");
        // Boxed wins over a later cue.
        assert_eq!(ex("\\boxed{9}. Final Answer: 8").unwrap(), "9");
    }

    #[test]
    fn extracts_after_cues() {
        assert_eq!(ex("Final Answer: The answer is $18.").unwrap(), "18");
        assert_eq!(ex("Final Answer: \\frac{1}{2}").unwrap(), "\\frac{1}{2}");
        let minerva = "Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.";
        assert_eq!(ex(minerva).unwrap(), "\\frac{3}{4}");
        assert_eq!(ex("work 1 2 3\n#### 1,234").unwrap(), "1,234");
        assert_eq!(ex("#### Step 1\nwe get 5 apples").unwrap(), "5");
        assert_eq!(ex("**Final Answer:** **42**").unwrap(), "42");
        assert_eq!(ex("so the answer is 9 * 2 = 18.").unwrap(), "18");
        assert_eq!(ex("The answer is 3 + 4 = 7 apples.").unwrap(), "7");
        assert_eq!(ex("FINAL ANSWER:\n\nEvelyn").unwrap(), "Evelyn");
        assert_eq!(ex("The answer is (C).").unwrap(), "(C)");
        assert_eq!(ex("The final answer is $x = 5$.").unwrap(), "x = 5");
        assert_eq!(
            ex("She has $18 and $20 left. The answer is $20.").unwrap(),
            "20"
        );
    }

    #[test]
    fn extracts_last_number() {
        assert_eq!(ex("costs 3, then 1,234,567 total").unwrap(), "1234567");
        assert_eq!(ex("it is -5 degrees").unwrap(), "-5");
        assert_eq!(ex("16-3-4 = 9 then 2.50").unwrap(), "2.50");
        assert_eq!(ex("ratio 3/4.").unwrap(), "3/4");
        assert_eq!(ex("so $\\frac{1}{2}$").unwrap(), "\\frac{1}{2}");
        assert_eq!(ex("about .5 of it").unwrap(), "0.5");
        assert_eq!(ex("no numbers here"), None);
        assert_eq!(ex(""), None);
        assert_eq!(ex("\\boxed{}"), None);
    }

    #[test]
    fn numeric_forms() {
        for (a, b) in [
            ("1,000", "1000"),
            ("5.0", "5"),
            ("0.50", "0.5"),
            ("$18", "18"),
            ("\\$18.00", "18"),
            ("18 dollars", "18"),
            ("18 cm", "18"),
            ("18cm", "18"),
            ("10\\text{ inches}", "10"),
            ("5 \\mbox{cm}", "5"),
            ("12 \\text{sq units}", "12"),
            ("4 m^2", "4"),
            ("25%", "25"),
            ("25\\%", "25"),
            ("25%", "0.25"),
            ("90^\\circ", "90"),
            ("90^{\\circ}", "90"),
            ("90°", "90"),
            ("\\frac{1}{2}", "1/2"),
            ("\\dfrac{1}{2}", "0.5"),
            ("\\tfrac12", "\\frac12"),
            ("\\frac 59", "5/9"),
            ("-\\frac{35}{9}", "-35/9"),
            ("$\\frac{1}{2}$", "\\(0.5\\)"),
            ("10,\\!080", "10080"),
            ("\\$32,\\!348", "32348"),
            ("11,\\! 111,\\! 111,\\! 100", "11111111100"),
            ("x = 5", "5"),
            ("x=5", "5"),
            ("\\theta = 3", "3"),
            ("5.", "5"),
            ("0.3333333333", "\\frac13"),
            ("\\sqrt{2}", "\\sqrt2"),
            ("11\\sqrt2", "11 \\sqrt{2}"),
            ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt3}"),
            ("\\pi", "3.14159265"),
            ("288 \\pi", "288\\pi"),
            ("\\sqrt[3]{8}", "2"),
            ("2^{10}", "1024"),
            ("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"),
            (".0000672", "6.72 \\times 10^{-5}"),
            ("{5}", "5"),
            ("$\\boxed{5}$", "5"),
            ("1e3", "1000"),
            ("6.72e-05", "0.0000672"),
        ] {
            assert!(equivalent(a, b), "{a} vs {b}");
            assert!(equivalent(b, a), "{b} vs {a}");
        }
    }

    #[test]
    fn structural_and_text_forms() {
        for (a, b) in [
            ("(1, 2)", "(1,2)"),
            ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
            ("\\left( \\frac{3}{2}, -13 \\right)", "(1.5,-13)"),
            ("(3,4]", "(3, 4]"),
            ("(2,\\infty)", "(2, \\infty)"),
            ("1,-2", "-2, 1"),
            ("3, 5, 7", "7,5,3"),
            ("\\{1,2\\}", "\\{2, 1\\}"),
            ("\\text{(C)}", "C"),
            ("(c)", "\\textbf{C}"),
            ("C)", "c"),
            ("x \\in [1, 2)", "[1,2)"),
            ("\\text{Evelyn}", "evelyn"),
            ("East.", "\\text{east}"),
            ("-2 + 7i", "-2+7i"),
            ("p - q", "p-q"),
            ("204_5", "204_{5}"),
            ("x^{3}+3x-6", "x^3 + 3x - 6"),
            ("\\cot x", "\\cot  x"),
            (
                "\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}",
                "\\begin{pmatrix}-\\frac13\\\\ \\frac{2}{3}\\end{pmatrix}",
            ),
        ] {
            assert!(equivalent(a, b), "{a} vs {b}");
            assert!(equivalent(b, a), "{b} vs {a}");
        }
    }

    #[test]
    fn negatives() {
        for (a, b) in [
            ("12", "13"),
            ("1/2", "2"),
            ("\\frac{1}{2}", "\\frac{2}{1}"),
            ("0.0000672", "0.0000673"),
            ("1,000", "100"),
            ("100, 200", "100200"),
            ("(1,2)", "(2,1)"),
            ("(1,2)", "[1,2]"),
            ("(3,4]", "(3,4)"),
            ("1,2", "1,2,3"),
            ("\\sqrt{2}", "\\sqrt{3}"),
            ("\\pi", "3.14"),
            ("x", "y"),
            ("(a)", "(b)"),
            ("5x - 7y + 11z + 4 = 0", "0"),
            ("\\cot x", "\\cotx"),
            ("2\\pi", "2"),
            ("25%", "2.5"),
            ("", ""),
            ("5", ""),
        ] {
            assert!(!equivalent(a, b), "{a} vs {b}");
            assert!(!equivalent(b, a), "{b} vs {a}");
        }
    }

    #[test]
    fn keys_group_equivalent_answers() {
        let groups: &[&[&str]] = &[
            &[
                "\\frac{1}{2}",
                "\\dfrac12",
                "1/2",
                "0.5",
                "0.50",
                "$\\frac 12$",
            ],
            &[
                "1000",
                "1,000",
                "1000.0",
                "\\$1,000",
                "1000 dollars",
                "x = 1000",
            ],
            &["(1, 2)", "\\left(1,2\\right)", "(1.0, 2)"],
            &["1,-2", "-2, 1"],
            &["\\text{(C)}", "C", "(c)"],
            &["\\sqrt2", "\\sqrt{2}"],
            &["90^\\circ", "90", "90 degrees"],
        ];
        for group in groups {
            let k = canonical_key(group[0]);
            for a in *group {
                assert_eq!(canonical_key(a), k, "{a}");
            }
        }
        assert_ne!(canonical_key("12"), canonical_key("13"));
        assert_ne!(canonical_key("1/2"), canonical_key("2"));
    }

    #[test]
    fn survives_hostile_input() {
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        let _ = (canonical_key(&deep), equivalent(&deep, "1"));
        let frac = format!("{}1{}", "\\frac{".repeat(2000), "}{2}".repeat(2000));
        let _ = (
            canonical_key(&frac),
            equivalent(&frac, "0"),
            extract_answer(&frac),
        );
        let _ = (
            equivalent("99999999999999999999999999999999999999999", "1e40"),
            canonical_key("2^{99999}"),
        );
        for s in [
            "\\",
            "{",
            "}",
            "$",
            "\\boxed{",
            "^",
            "_{",
            "\\frac",
            "(,)",
            "\u{e9}\u{2212}1",
            "\\sqrt[0]{4}",
        ] {
            let _ = (extract_answer(s), canonical_key(s), equivalent(s, s));
        }
    }

    fn rows(rel: &str) -> Option<Vec<serde_json::Value>> {
        let path = format!("{}/../../shared/datasets/{rel}", env!("CARGO_MANIFEST_DIR"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            eprintln!("skipping: {path} not found");
            return None;
        };
        Some(
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
        )
    }

    fn field<'a>(row: &'a serde_json::Value, name: &str) -> Option<&'a str> {
        row.get(name).and_then(serde_json::Value::as_str)
    }

    #[test]
    fn gsm8k_references() {
        let Some(rows) = rows("gsm8k/test.jsonl") else {
            return;
        };
        let answers: Vec<&str> = rows.iter().map(|r| field(r, "answer").unwrap()).collect();
        for (row, answer) in rows.iter().zip(&answers) {
            assert!(equivalent(answer, answer), "{answer}");
            if let Some(solution) = field(row, "solution") {
                let got = extract_answer(solution).unwrap();
                assert!(equivalent(&got, answer), "{got} vs {answer}");
            }
            let got = extract_answer(&format!("... so the total is {answer}.")).unwrap();
            assert!(equivalent(&got, answer), "{got} vs {answer}");
            assert_eq!(canonical_key(&got), canonical_key(answer));
        }
        let mut distinct = 0;
        for pair in answers.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.parse::<f64>().unwrap() != b.parse::<f64>().unwrap() {
                distinct += 1;
                assert!(!equivalent(a, b), "{a} vs {b}");
                assert_ne!(canonical_key(a), canonical_key(b));
            }
        }
        assert!(distinct > answers.len() / 2);
    }

    #[test]
    fn math500_references() {
        let Some(rows) = rows("math500/test.jsonl") else {
            return;
        };
        let mut failures = Vec::new();
        for row in &rows {
            let answer = field(row, "answer").unwrap();
            assert!(equivalent(answer, answer), "{answer}");
            let boxed = extract_answer(&format!("so \\boxed{{{answer}}}.")).unwrap();
            assert_eq!(canonical_key(&boxed), canonical_key(answer), "{answer}");
            let got = field(row, "solution").and_then(extract_answer);
            if !got.as_deref().is_some_and(|g| equivalent(g, answer)) {
                failures.push(format!("{answer:?} <- {got:?}"));
            }
        }
        let rate = 1.0 - failures.len() as f64 / rows.len() as f64;
        eprintln!(
            "math500: {:.1}% of {} rows; failures: {failures:#?}",
            rate * 100.0,
            rows.len()
        );
        assert!(rate >= 0.97, "{failures:#?}");
    }
}
