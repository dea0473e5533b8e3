//! Extraction: pulling the final answer out of a completion (boxed, after a cue, or
//! the last number).

use super::num::scaled_at;
use super::scan::{collect, digit_run, group_end, is_digit_at, letters_at};
use super::{eval, is_listed, normalize, MATH_WORDS};

/// Cues that introduce *the* answer, the form prompts ask for, searched case-insensitively.
/// The last one that is followed by an answer wins, whatever weaker cue comes after it. A bare
/// `final answer` ([`BARE_CUE`]) counts only where it [`introduces`] what follows.
const STRONG_CUES: &[&str] = &["final answer:", "final answer is"];

/// `final answer` with no colon or verb: a heading (`**Final Answer**`, `Final Answer\n18`) or
/// the words in a sentence (`I rounded the final answer to 2 places`).
const BARE_CUE: &str = "final answer";

/// First words after a cue ending in `is` that make the sentence one about the answer,
/// whatever numbers it holds (`The final answer is based on 9 eggs`, `the answer is not 5`):
/// no answer there.
const ABOUT_THE_ANSWER: &str = "based rounded obtained derived not correct incorrect wrong below \
    above follows following";

/// Cues that may introduce an answer but also turn up in passing ("I hope this answer is
/// correct", a made-up follow-up question's "Answer: 7"): used only where no strong cue is.
const WEAK_CUES: &[&str] = &["the answer is", "answer is", "answer:", "answer**:"];

/// First words of a text after a cue that say something about the answer instead of giving it
/// ("the answer is correct", "the final answer below").
const NOT_AN_ANSWER: &str = "correct incorrect right wrong not as that this these below above \
    follows following after before then therefore so in on at to for of by with from clear \
    unclear simple obvious straightforward given we it is be was will should would can could \
    may might must still also final";

/// Content of the last well-formed `\boxed`/`\fbox` in `text`.
pub(super) fn last_boxed(text: &str) -> Option<String> {
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

/// The answer after the last strong cue that is followed by one.
pub(super) fn after_strong_cue(text: &str) -> Option<String> {
    // ASCII lower-casing keeps byte offsets identical to `text`.
    let lower = text.to_ascii_lowercase();
    let mut strong = cue_ends(&lower, STRONG_CUES);
    strong.extend(
        cue_ends(&lower, &[BARE_CUE])
            .into_iter()
            .filter(|&end| introduces(&lower, end)),
    );
    // `#### 42` (GSM8K), but not a markdown heading such as `#### Step 3`.
    for (p, m) in lower.match_indices("####") {
        let after = lower.get(p + m.len()..).unwrap_or("");
        let after = after.trim_start_matches(['#', ' ', '\t']);
        if after
            .starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '\u{2212}' | '$' | '.'))
            && !numbered_heading(after)
        {
            strong.push(p + m.len());
        }
    }
    strong.sort_unstable();
    strong
        .into_iter()
        .rev()
        .filter(|&end| !in_passing(text, end))
        .find_map(|end| answer_at(text, end))
}

/// The answer after the last weak cue that is followed by one.
pub(super) fn after_weak_cue(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    cue_ends(&lower, WEAK_CUES)
        .into_iter()
        .rev()
        .filter(|&end| !in_passing(text, end))
        .find_map(|end| answer_at(text, end))
}

/// Where each of `cues` ends in `lower` (lower-cased), in order.
fn cue_ends(lower: &str, cues: &[&str]) -> Vec<usize> {
    let mut ends: Vec<usize> = cues
        .iter()
        .flat_map(|cue| lower.match_indices(cue).map(|(p, m)| p + m.len()))
        .collect();
    ends.sort_unstable();
    ends.dedup();
    ends
}

/// Whether the bare cue ending at `end` of `lower` (lower-cased) introduces what follows: after
/// spaces, bold or a closing brace, a colon, `=`, a line break, math, a number, a bracket or
/// nothing; not words (`the final answer to 2 places`, `find the final answer by multiplying`;
/// `final answer is` is a cue of its own).
fn introduces(lower: &str, end: usize) -> bool {
    let rest = lower
        .get(end..)
        .unwrap_or_default()
        .trim_start_matches([' ', '\t', '*', '_', '}', '#']);
    rest.is_empty()
        || rest.starts_with(|c: char| {
            c.is_ascii_digit()
                || matches!(
                    c,
                    ':' | '=' | '\n' | '\r' | '$' | '\\' | '(' | '[' | '-' | '\u{2212}'
                )
        })
}

/// Whether `line` opens with the number of a numbered heading, `1. Compute the eggs`,
/// `2) Total`, `3: Add`: a number, `.`, `)` or `:`, then words.
fn numbered_heading(line: &str) -> bool {
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    line.get(digits..).is_some_and(|rest| {
        digits > 0
            && rest.starts_with(['.', ')', ':'])
            && rest.get(1..).is_some_and(|r| {
                r.starts_with(' ') && r.trim_start().starts_with(char::is_alphabetic)
            })
    })
}

/// Whether the cue that ends at `end` is named in passing, a comma after it ("To find the
/// final answer, we add 5 and 3: 8."; "In the final answer, I show..."): what follows is
/// working, not the answer.
fn in_passing(text: &str, end: usize) -> bool {
    text.get(end..)
        .unwrap_or_default()
        .trim_start_matches([' ', '\t', '*'])
        .starts_with(',')
}

/// The answer on the first non-empty line at `end` (just after a cue), unless it is a text
/// answer that talks about the answer rather than giving it ("correct", "below").
fn answer_at(text: &str, end: usize) -> Option<String> {
    let tail = text.get(end..)?;
    // The answer on a line of its own below the cue may be a list item (`- 18`, `1. 18`):
    // its marker is no sign, nor the answer.
    let below = tail
        .trim_start_matches([' ', '\t', ':', '*'])
        .starts_with(['\n', '\r']);
    // A `}` closes the `\text{` the cue sat in; `=` joins cue and answer (`Final Answer = 42`).
    let tail = tail.trim_start_matches(|c: char| {
        c.is_whitespace() || matches!(c, ':' | '*' | '#' | '}' | '=')
    });
    let tail = if below { past_list_marker(tail) } else { tail };
    // A cue repeated inside the answer (`Final Answer: The answer is (C).`): read after it.
    let inner = WEAK_CUES.iter().find(|cue| {
        tail.get(..cue.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(cue))
    });
    let tail = inner.map_or(tail, |cue| {
        tail.get(cue.len()..)
            .unwrap_or_default()
            .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, ':' | '*'))
    });
    // After a verb (`the answer is`, the cue's or one repeated inside), not a label (`Final
    // Answer:`, whose sentence may open "Based on the calculations, ...").
    let ends_in_is = |before: &str| {
        before
            .len()
            .checked_sub(3)
            .and_then(|at| before.as_bytes().get(at..))
            .is_some_and(|last| last.eq_ignore_ascii_case(b" is"))
    };
    let after_verb =
        text.get(..end).is_some_and(ends_in_is) || inner.is_some_and(|c| ends_in_is(c));
    let first_word = tail
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    if after_verb && is_listed(ABOUT_THE_ANSWER, &first_word.to_ascii_lowercase()) {
        return None;
    }
    let candidate = match display_block(tail) {
        Some(block) => cue_candidate(&block)?,
        // Display math opened and not closed on its line or within reach (a completion cut
        // inside it: `\[\boxed{-1`): nothing to read here.
        None if opens_unclosed_display(tail) => return None,
        None => cue_candidate(tail.lines().next()?)?,
    };
    let remark = is_prose(&candidate)
        && !candidate.chars().any(|c| c.is_ascii_digit())
        && candidate
            .split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| !w.is_empty())
            .is_some_and(|w| is_listed(NOT_AN_ANSWER, &w.to_ascii_lowercase()));
    (!remark).then_some(candidate)
}

/// `line` past a list item's marker, `- `, `• `, or a first item's `1. ` before an answer.
fn past_list_marker(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix(['-', '\u{2022}']) {
        if rest.starts_with([' ', '\t']) {
            return rest.trim_start();
        }
    }
    // A first item, `1. 18`, `1) $18$`: an answer after it, not a sentence (`1. That is all`;
    // `12. There were 3 groups` is the answer 12).
    match line
        .strip_prefix("1. ")
        .or_else(|| line.strip_prefix("1) "))
    {
        Some(rest)
            if rest
                .trim_start()
                .starts_with(|c: char| c.is_ascii_digit() || matches!(c, '$' | '\\' | '-')) =>
        {
            rest.trim_start()
        }
        _ => line,
    }
}

/// True when `tail` opens display math that its first line does not close.
fn opens_unclosed_display(tail: &str) -> bool {
    let first = tail.lines().next().unwrap_or_default();
    [("\\[", "\\]"), ("$$", "$$")].iter().any(|(open, close)| {
        first
            .strip_prefix(open)
            .is_some_and(|rest| !rest.contains(close))
    })
}

/// Display math opened at the start of `tail` and closed on a later line (`\[` on its own line,
/// the answer below it), as one line; None when it closes on its first line or not at all.
fn display_block(tail: &str) -> Option<String> {
    let close = if tail.starts_with("\\[") {
        "\\]"
    } else if tail.starts_with("$$") {
        "$$"
    } else {
        return None;
    };
    let first = tail.lines().next()?;
    if first.get(2..)?.contains(close) {
        return None;
    }
    // A short block only: the answer, not a page of working.
    let end = tail.get(2..)?.find(close)? + 2 + close.len();
    if end > 400 {
        return None;
    }
    Some(
        tail.get(..end)?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Turn the line after a cue into an answer.
fn cue_candidate(line: &str) -> Option<String> {
    // Two or more values joined by words (`1 and -2`, `$x=1$ or $x=-2$`): the list, not its
    // first value or math span. Each value may be in bold or in `\( \)` of its own.
    let plain = cut_sentence(line)
        .replace("**", "")
        .replace("\\(", "$")
        .replace("\\)", "$");
    // The list may be the sentence's object (`The roots are 1 and -2`).
    let sentence = plain.as_str();
    for part in std::iter::once(sentence).chain(after_link(sentence)) {
        let cleaned = clean_candidate(part);
        if lists_in_words(&cleaned) {
            // Its math spans whole (`$x=1$ or $x=-2$`, not `x=1$ or $x=-2`).
            if cleaned.contains('$') {
                let whole = part
                    .trim()
                    .trim_matches('*')
                    .trim_end_matches(['.', ',', ';', '!']);
                if whole.matches('$').count().is_multiple_of(2) {
                    return Some(whole.to_string());
                }
            }
            return Some(cleaned);
        }
    }
    let raw = match answer_span(line) {
        Some(m) if !m.trim().is_empty() => m,
        _ => cut_sentence(line),
    };
    let cand = clean_candidate(raw);
    // A hedge before the value (`approx. 18`, `e.g. 5`): the value.
    let cand = past_hedge(&cand).map(str::to_string).unwrap_or(cand);
    // Punctuation alone (`=`, `-`) says nothing; nor does the prompt's placeholder echoed
    // (`Final Answer: <answer>`), nor a label whose value would follow it (`Output:`).
    if !cand.chars().any(char::is_alphanumeric) || is_placeholder(&cand) || is_label(&cand) {
        return None;
    }
    // A number, then its working in brackets (`18 (9 + 9)`): the number, not their product.
    let cand = without_trailing_working(&cand).unwrap_or(cand);
    if is_prose(&cand) {
        if cand.chars().any(|c| c.is_ascii_digit()) {
            return pick_number(&cand);
        }
        // A short text answer ("Evelyn", "east") is kept; long prose is not an answer.
        return (cand.split_whitespace().count() <= 4).then_some(cand);
    }
    Some(arithmetic_rhs(&cand))
}

/// What follows the first word of `sentence` that links a subject to its value (`is`, `are`,
/// `equal`, a colon): `1 and -2` of `The roots are 1 and -2`.
fn after_link(sentence: &str) -> Option<&str> {
    const LINKS: [&str; 8] = [
        " is ", " are ", " was ", " were ", " be ", " equal ", " equals ", ": ",
    ];
    LINKS
        .iter()
        .filter_map(|l| sentence.find(l).map(|at| at + l.len()))
        .min()
        .and_then(|at| sentence.get(at..))
}

/// A list of values written with words (`1 and -2`, `3, 5, and 7`, `$x=1$ or $x=-2$`): `and`
/// or `or` between values, and nothing else but values (or one variable's values) once
/// normalised. A sentence around them (`The roots are 1 and -2`) is not one.
fn lists_in_words(cand: &str) -> bool {
    let lower = cand.to_ascii_lowercase();
    let words = lower
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| w == "and" || w == "or");
    let norm = normalize(cand).text;
    words && norm.contains(',') && norm.split(',').all(|item| eval(item).is_some())
}

/// `cand` less a bracket at its end that follows a whole number (`18 (9 + 9)`, `0.5 (1/2)`,
/// `25% (0.25)`): the number alone. None where what comes before the bracket is not a number.
fn without_trailing_working(cand: &str) -> Option<String> {
    let body = cand.trim_end().strip_suffix(')')?;
    let open = body.rfind(" (")?;
    let (before, inside) = (body[..open].trim(), &body[open + 2..]);
    // The bracket is one: nothing closes before its end.
    if inside.contains(['(', ')']) {
        return None;
    }
    let number = before
        .trim_start_matches(['$', '\\'])
        .trim_start_matches('$');
    let (number, percent) = match number.strip_suffix('%') {
        Some(number) => (number, true),
        None => (number, false),
    };
    let unsigned = number.strip_prefix(['-', '\u{2212}']).unwrap_or(number);
    let plain = !unsigned.is_empty()
        && unsigned.chars().next().is_some_and(|c| c.is_ascii_digit())
        && unsigned
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | '.' | '/'));
    if !plain {
        return None;
    }
    // A remark opened by an abbreviation (`18 (i.e. 9 x 2)`): the number, whatever it says.
    if past_hedge(inside).is_some() {
        return Some(before.to_string());
    }
    // Only working that comes to the number (`18 (9 + 9)`, `25% (0.25)`): `3 (x + 2)` and
    // `2 (\sqrt{3} - 1)` are products.
    let value = eval(&normalize(number).text)?;
    let working = eval(&normalize(inside).text)?;
    let same = working.same(value) || (percent && value.percent().is_some_and(|v| working.same(v)));
    same.then(|| before.to_string())
}

/// The math span on the line that gives the answer: the first, unless it names what the
/// answer is (the line opens with words, `The value of $x$ is $5$`, `The length of $DE$ is
/// $\sqrt{51}$`; or the span is a bare name, `\( n \) equals \( 23 \)`) and a later span
/// follows it in the same sentence after `is`, `are`, `equals` or `=`, the spans between joined
/// by `and`, `or` or commas (`The sum of $a$ and $b$ is $12$`): then that one. Where the line
/// opens with words and every span of its first sentence is an equation, none linked (`With
/// $m = 8$ and $n = 9$, $m+n = 17$`), the last of them. A first span that is the answer keeps it whatever the sentence says
/// after (`$18$. The number left is $9$`).
fn answer_span(line: &str) -> Option<&str> {
    let spans = math_spans(line);
    let &(first_at, first) = spans.first()?;
    if spans.len() == 1 {
        return Some(first);
    }
    const LINKS: [&str; 6] = [" is ", " are ", " was ", " equals ", " be ", "="];
    // Words before it that do not already link to it (`The area is $18$ and the perimeter is
    // $20$`: the first is the answer).
    let before = line
        .get(..first_at)
        .unwrap_or_default()
        .trim_end_matches(['$', '\\', '(', '['])
        .trim_end()
        .to_ascii_lowercase();
    let links_to_first = ["is", "are", "was", "equals", "be", "=", ":"]
        .iter()
        .any(|l| before.ends_with(l));
    let opens_with_words = before.chars().any(|c| c.is_ascii_alphabetic()) && !links_to_first;
    let bare_name = {
        let name = first.trim();
        let name = name.strip_prefix('\\').unwrap_or(name);
        !name.is_empty() && name.len() <= 6 && name.chars().all(|c| c.is_ascii_alphabetic())
    };
    if !(opens_with_words || bare_name) {
        return Some(first);
    }
    // The spans of the first sentence, as far as the names joined reach.
    let between = |i: usize| {
        let (at, body) = spans[i];
        line.get(at + body.len()..spans[i + 1].0)
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    // The spans of the first sentence.
    let reach = (0..spans.len() - 1)
        .find(|&i| {
            let gap = between(i);
            gap.contains(". ") || gap.contains(';')
        })
        .map_or(spans.len(), |i| i + 1);
    for i in 0..reach.saturating_sub(1) {
        let gap = between(i);
        if LINKS.iter().any(|l| gap.contains(l)) {
            return Some(spans[i + 1].1);
        }
        // Names joined (`$a$ and $b$`, `$x$, $y$`) may go on to the link.
        let joined = gap
            .trim_matches(|c: char| {
                c.is_whitespace() || matches!(c, '$' | '\\' | '(' | ')' | '[' | ']')
            })
            .trim_end_matches(',');
        if !matches!(joined, "" | "and" | "or" | ", and" | ", or") {
            break;
        }
    }
    let sentence = spans.get(..reach).unwrap_or_default();
    let last = sentence.last().map_or(first, |&(_, body)| body);
    Some(
        if opens_with_words && sentence.iter().all(|(_, body)| body.contains('=')) {
            last
        } else {
            first
        },
    )
}

/// The most math spans [`math_spans`] reads on a line: each search reads the rest of the line,
/// so a line of many spans (a model repeating itself) would take time by the square of its
/// length.
const MOST_SPANS: usize = 8;

/// The math spans on the line, each as where its body starts and its body ([`math_span_at`]),
/// the first [`MOST_SPANS`].
fn math_spans(line: &str) -> Vec<(usize, &str)> {
    let mut spans = Vec::new();
    let mut from = 0;
    while spans.len() < MOST_SPANS {
        let Some((start, end, after)) = line.get(from..).and_then(math_span_at) else {
            break;
        };
        if let Some(body) = line.get(from + start..from + end) {
            spans.push((from + start, body));
        }
        from += after;
    }
    spans
}

/// The first math span on the line, `\(..\)`, `\[..\]`, `$$..$$` or `$..$` (using pandoc's
/// rule for single dollars so that currency, `$18 and $20`, is not math): where its body
/// starts and ends, and where its closing delimiter ends.
fn math_span_at(line: &str) -> Option<(usize, usize, usize)> {
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
                    return Some((i + 2, i + 2 + e, i + 2 + e + close.len()));
                }
            }
            k += 2;
            continue;
        }
        if c == '$' {
            if next == Some('$') {
                let body = line.get(i + 2..)?;
                if let Some(e) = body.find("$$") {
                    return Some((i + 2, i + 2 + e, i + 4 + e));
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
                            return Some((i + 1, jp, jp + 1));
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

/// Abbreviations whose `.` ends no sentence (`Mr. Smith has 18 apples`, `18 (i.e. 9 x 2)`),
/// lower-case, without their last `.`.
const ABBREVIATIONS: &str = "approx i.e e.g cf vs etc mr mrs dr st";

/// Abbreviations that hedge or explain the value they come before (`approx. 18`, `e.g. 5`).
const HEDGES: &str = "approx i.e e.g";

/// The line up to its first sentence end (". ", "! ", "? " or a final '.'). A `.` after an
/// abbreviation ([`ABBREVIATIONS`]) ends none: the sentence, and the answer in it, goes on.
/// (Not a `.` before a word in lower case or a number: `Final Answer: 3. x = 1 is
/// excluded.` is 3.)
fn cut_sentence(line: &str) -> &str {
    let mut it = line.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if matches!(c, '.' | '!' | '?') && it.peek().is_none_or(|&(_, n)| n.is_whitespace()) {
            let before = line.get(..i).unwrap_or_default();
            let goes_on = c == '.' && ends_in_abbreviation(before);
            if !goes_on {
                return line.get(..i).unwrap_or(line);
            }
        }
    }
    line
}

/// Whether the last word of `before` (letters, and the dots inside `e.g`) is one of
/// [`ABBREVIATIONS`], a word of its own (not the `st` of `1st`).
fn ends_in_abbreviation(before: &str) -> bool {
    let start = before.trim_end_matches(|c: char| c.is_ascii_alphabetic() || c == '.');
    let word = before
        .get(start.len()..)
        .unwrap_or_default()
        .trim_start_matches('.');
    !start.ends_with(char::is_alphanumeric) && is_listed(ABBREVIATIONS, &word.to_ascii_lowercase())
}

/// `s` past a hedge that opens it ([`HEDGES`], with its `.`) and the spaces after; None where it
/// opens with none or nothing follows it.
fn past_hedge(s: &str) -> Option<&str> {
    let (word, rest) = s.trim_start().split_once(char::is_whitespace)?;
    let stem = word.strip_suffix('.')?;
    let rest = rest.trim_start();
    (is_listed(HEDGES, &stem.to_ascii_lowercase()) && !rest.is_empty()).then_some(rest)
}

/// Strip whitespace, markdown bold, stray dollars and trailing punctuation.
fn clean_candidate(raw: &str) -> String {
    let mut s = raw.trim();
    loop {
        let before = s;
        s = s.trim();
        // Markdown emphasis (`**18**`, `***18***`), not a conjugate's star (`a^*`).
        s = s.trim_start_matches('*');
        if !s.trim_end_matches('*').ends_with('^') {
            s = s.trim_end_matches('*');
        }
        s = s.trim_end_matches(['.', ',', ';', '!']);
        s = s.trim_matches('$');
        // Quotes and code spans around it (`"Evelyn"`, `` `42` ``), or a stray one after it
        // (`84"`: SmolLM2 closes the quotes of `"Final Answer: <answer>"`).
        s = s.trim_matches(['"', '`', '\u{201C}', '\u{201D}']);
        // The close of display math the cue sat inside (`\[ \text{The answer is } 63 \]`).
        for (open, close) in [("\\[", "\\]"), ("\\(", "\\)")] {
            if !s.contains(open) {
                s = s.strip_suffix(close).unwrap_or(s);
            }
        }
        // A bracket the cue sat inside (`(Final Answer: 18)`): closed, never opened (an
        // interval opens with either, `(3,4]`).
        if !s.contains(['(', '[']) {
            s = s.trim_end_matches([')', ']']);
        }
        // The prompt's `<answer>` with the answer put inside it (`<18>`), or a number in square
        // brackets (`[18]`): a list or interval has a comma, text is a placeholder.
        for (open, close) in [('<', '>'), ('[', ']')] {
            if let Some(inner) = s.strip_prefix(open).and_then(|r| r.strip_suffix(close)) {
                if inner.chars().any(|c| c.is_ascii_digit())
                    && !inner.contains([',', open, close, ';'])
                {
                    s = inner;
                }
            }
        }
        if s == before {
            break;
        }
    }
    s.to_string()
}

/// A placeholder in angle brackets: `<answer>`, `<your answer>`, `<final_answer>`.
fn is_placeholder(s: &str) -> bool {
    s.strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .is_some_and(|inner| {
            inner.chars().any(char::is_alphabetic)
                && inner
                    .chars()
                    .all(|c| c.is_alphabetic() || matches!(c, ' ' | '_' | '-'))
        })
}

/// Words ending in a colon, no digit among them: `Output:`, `Answer in words:`.
fn is_label(s: &str) -> bool {
    s.ends_with(':') && !s.chars().any(|c| c.is_ascii_digit())
}

/// Plain text (no LaTeX) containing a word of two or more letters.
fn is_prose(s: &str) -> bool {
    if s.contains('\\') {
        return false;
    }
    s.split(|c: char| !c.is_ascii_alphabetic())
        .any(|w| w.len() >= 2 && !is_listed(MATH_WORDS, &w.to_ascii_lowercase()))
}

/// The answer number inside a prose sentence: after the last '=', the number it opens with
/// (`12 apples, 3 more than Tom`: 12); else the first number after the first verb that states a
/// quantity and is followed by one (`The total cost of 3 shirts is $45`: 45; `For 5 shirts, he
/// pays $100`: 100); else the first number past an opening clause that sets the scene.
fn pick_number(cand: &str) -> Option<String> {
    let after_eq = cand.rsplit('=').next().unwrap_or(cand);
    // The number first (`15 cookies are left, since 5 were eaten`): the answer, whatever the
    // rest says.
    let opening = after_eq
        .trim_start()
        .trim_start_matches(['$', '-', '\u{2212}']);
    if opening.starts_with(|c: char| c.is_ascii_digit()) {
        if let Some(first) = numbers(after_eq).into_iter().next() {
            return Some(first);
        }
    }
    after_stating_verb(after_eq)
        .or_else(|| numbers(past_opening_clause(after_eq)).into_iter().next())
        .or_else(|| numbers(cand).into_iter().next())
}

/// The first number after the first verb of `s` that states a quantity (`is`, `has`, `costs`,
/// `makes`) and has a number after it.
fn after_stating_verb(s: &str) -> Option<String> {
    const STATING: &str = "is are was were be been has have had gets got makes made making \
        costs equals totals needs needed pays paid earns earned spends spent comes remains \
        weighs";
    let mut at = 0;
    for word in s.split(|c: char| !c.is_ascii_alphabetic()) {
        let end = at + word.len();
        if !word.is_empty() && is_listed(STATING, &word.to_ascii_lowercase()) {
            if let Some(first) = numbers(s.get(end..).unwrap_or_default()).into_iter().next() {
                return Some(first);
            }
        }
        // Past the word and the one-byte separator after it (a non-ASCII separator is more
        // than a byte: `get` below then finds no boundary and reads nothing, as it should not).
        at = end
            + s.get(end..)
                .and_then(|r| r.chars().next())
                .map_or(1, char::len_utf8);
    }
    None
}

/// `s` after its first `, ` where what comes before is an opening clause that sets the scene
/// (it starts with a preposition or connective, `After 3 days`, `In 2 hours`, `Altogether`)
/// and what follows holds a number; otherwise `s` (`Approximately 12, since 3 boxes were lost`
/// and `She has 12 apples, 3 more than Tom` keep their 12).
fn past_opening_clause(s: &str) -> &str {
    const OPENERS: &[&str] = &[
        "after",
        "before",
        "in",
        "on",
        "at",
        "by",
        "within",
        "over",
        "during",
        "since",
        "from",
        "altogether",
        "overall",
        "therefore",
        "thus",
        "hence",
        "so",
        "then",
        "finally",
        "now",
        "yes",
        "no",
        "initially",
        "originally",
        "together",
        "combined",
    ];
    const VERBS: &[&str] = &[
        "is", "are", "was", "were", "be", "been", "has", "have", "had", "gets", "got", "makes",
        "made", "costs", "cost", "equals", "equal", "totals", "needs", "needed", "pays", "paid",
        "earns", "earned", "spends", "spent", "will", "would", "can", "could", "does", "did",
    ];
    let Some((clause, rest)) = s.split_once(", ") else {
        return s;
    };
    let mut words = clause
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase);
    let opens = clause.trim_start().starts_with(char::is_alphabetic)
        && words
            .next()
            .is_some_and(|first| OPENERS.contains(&first.as_str()));
    let has_verb = words.any(|w| VERBS.contains(&w.as_str()));
    if opens && !has_verb && !numbers(rest).is_empty() {
        rest
    } else {
        s
    }
}

/// `9 * 2 = 18` -> `18`: the right side of an equation whose left side is arithmetic (`16 x 3`
/// and `16 × 3` multiply; `2x + 3`, an unknown, is not arithmetic).
fn arithmetic_rhs(cand: &str) -> String {
    if let Some((written, rhs)) = cand.rsplit_once('=') {
        let lhs = written
            .replace("\\times", "")
            .replace("\\cdot", "")
            .replace("\\div", "")
            .replace(['×', '÷'], "")
            .replace(" x ", " ");
        let arithmetic = lhs
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_whitespace() || "+-*/().,^{}".contains(c));
        let rhs = rhs.trim();
        // `10/3 = 3.33`: the value and its rounding, left whole for normalisation to keep the
        // value (as `\frac{10}{3} = 3.33` is).
        let rounding = super::decimal_places(rhs).is_some_and(|k| {
            let (Some(x), Some(y)) = (super::eval(written.trim()), super::eval(rhs)) else {
                return false;
            };
            super::within_last_place(x.value(), y.value(), k)
        });
        if arithmetic && !rhs.is_empty() && !rounding {
            return rhs.to_string();
        }
        // `84 + 0 =`, the result not written: the arithmetic itself.
        if arithmetic && rhs.is_empty() && lhs.chars().any(|c| c.is_ascii_digit()) {
            return written.trim().to_string();
        }
    }
    cand.to_string()
}

/// The last number in `text` that is not the marker of a list item (`1. First, we ...`, `2)`),
/// a step (`Step 2:`, `### Step 3`) or an exponent (`24 m^2`): the answer of a text that marks none, e.g. a chain of thought cut off by
/// its length.
pub(super) fn last_number(text: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        // A heading's marks (`### Total: $18`), then a step's number (`Step 2: ...`).
        let trimmed = line
            .trim_start()
            .trim_start_matches(['#', '*'])
            .trim_start();
        let stepless = strip_step(trimmed);
        let stripped = without_exponents(stepless);
        let line = stripped.as_str();
        let trimmed = line.trim_start();
        let digits = trimmed.len()
            - trimmed
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .len();
        let rest = trimmed.get(digits..).unwrap_or_default();
        let marker = digits > 0
            && digits <= 3
            && (rest.starts_with(". ") || rest.starts_with(") "))
            && rest
                .get(2..)
                .is_some_and(|r| r.trim_start().starts_with(|c: char| c.is_alphabetic()));
        let body = if marker {
            rest.get(2..).unwrap_or_default()
        } else {
            line
        };
        numbers(body).pop()
    })
}

/// `line` past a leading `Step 2:` (`Step 2.`, `Step 2 -`, `Step 2`), where it has one.
fn strip_step(line: &str) -> &str {
    let Some(head) = line.get(..4).filter(|h| h.eq_ignore_ascii_case("step")) else {
        return line;
    };
    let rest = line.get(head.len()..).unwrap_or_default().trim_start();
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return line;
    }
    rest.get(digits..)
        .unwrap_or_default()
        .trim_start_matches(['*', ':', '.', ')', '-', ' '])
}

/// `line` without exponents (`^2`, `^{10}`).
fn without_exponents(line: &str) -> String {
    let c: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        if ch == '^' {
            let digits = digit_run(&c, i + 1);
            if digits > 0 {
                i += 1 + digits;
                continue;
            }
            if c.get(i + 1) == Some(&'{') {
                if let Some(end) = group_end(&c, i + 1) {
                    i = end + 1;
                    continue;
                }
            }
        }
        out.push(ch);
        i += 1;
    }
    out
}

/// Every number in `s`, in order, thousands separators removed and a scale word after it
/// multiplied in (`3 million` is `3000000`).
pub(super) fn numbers(s: &str) -> Vec<String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        let prev = i.checked_sub(1).and_then(|p| c.get(p)).copied();
        // ASCII or Unicode minus (U+2212, as some models write it).
        let signed = matches!(ch, '-' | '\u{2212}')
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
            if let Some((mut text, mut end)) = number_at(&c, body) {
                // A mixed number, `1 1/4` (hours): one number, not 1 then 1/4.
                if text.bytes().all(|b| b.is_ascii_digit()) && c.get(end) == Some(&' ') {
                    if let Some((fraction, after)) = number_at(&c, end + 1) {
                        let proper = fraction.split_once('/').is_some_and(|(n, d)| {
                            matches!((n.parse::<u64>(), d.parse::<u64>()), (Ok(n), Ok(d)) if n > 0 && n < d)
                        });
                        if proper {
                            text = format!("{text} {fraction}");
                            end = after;
                        }
                    }
                }
                // A scale word after it (`3 million`): the number they make.
                if let Some((value, after)) = scaled_at(&c, end, &text) {
                    text = value;
                    end = after;
                }
                out.push(format!("{sign}{text}"));
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
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
