//! Normalisation: rewriting an answer into a plain canonical string (units, currency,
//! percent and degree signs, LaTeX spacing and commands, assignments, choice letters).

use super::extract::last_boxed;
use super::num::{eval, scaled_at, Num};
use super::scan::{collect, digit_run, group_end, is_digit_at, letters_at, paren_end};
use super::{is_listed, MATH_WORDS, MAX_DEPTH};

/// Unit words stripped after a value (compared lower-case).
const UNITS: &str = "mm cm m km meter meters metre metres centimeter centimeters millimeter \
     millimeters kilometer kilometers inch inches ft foot feet yd yard yards mile \
     miles mph kph g kg gram grams kilogram kilograms lb lbs pound pounds oz ounce \
     ounces ml liter liters litre litres gallon gallons sec secs second seconds min \
     mins minute minutes hr hrs hour hours day days week weeks month months year \
     years dollar dollars cent cents euro euros usd unit units sq square cubic \
     degree degrees deg percent rad radians";

/// Functions applied by juxtaposition in LaTeX (`\cot x`), also written with their argument
/// bracketed (`\cot(x)`, `\cot{x}`) or in plain text (`cot(x)`).
const FUNCTIONS: &str = "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp";

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
    ("\u{00b1}", "\\pm "),
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

/// A normalised answer and whether it carried a percent sign.
#[derive(Debug, Clone)]
pub(super) struct Normalized {
    pub(super) text: String,
    pub(super) percent: bool,
}

pub(super) fn normalize(raw: &str) -> Normalized {
    let mut s = raw.replace("\\$", "");
    s = strip_math_delimiters(&s);
    s = s.replace('$', "");
    if s.starts_with("\\boxed") || s.starts_with("\\fbox") {
        if let Some(inner) = last_boxed(&s) {
            s = strip_math_delimiters(&inner);
        }
    }
    s = without_approx_sign(&s);
    s = join_latex_thousands(&s);
    s = latex_spacing(&s);
    let lower = s.to_ascii_lowercase();
    let percent = lower.contains('%') || lower.contains("percent");
    // Before the degree signs go: `-5°C` would leave `-5c`.
    s = strip_temperature_scale(&s);
    for (from, to) in REWRITES {
        s = s.replace(from, to);
    }
    s = unwrap_text(&s, 0);
    if let Some(value) = point_name_rhs(&s) {
        s = value;
    }
    s = number_words(&s);
    s = join_plain_thousands(&s);
    s = scale_words(&s);
    // Units first: `3 1/2 hours` is the mixed number 3 1/2.
    s = strip_units(&s);
    s = plain_mixed_number(s);
    s = collapse_whitespace(&s).to_lowercase();
    s = plain_math(&s, 0);
    s = strip_left_right(&s);
    s = function_arguments(&s);
    s = brace_arguments(&s, 0);
    s = juxtapose_products(&s);
    s = s.trim_end_matches('.').to_string();
    s = strip_outer_braces(s);
    s = multiple_choice(s);
    s = word_list(s, percent);
    s = value_chain(s);
    s = assignment_rhs(s);
    s = strip_base_subscript(s);
    s = expand_plus_minus(s);
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

/// An answer less a leading "about" sign (`≈18.85`, `\approx 18.85`, `\sim 5`): the value it
/// gives. (Between two values, `\frac{1}{3} \approx 0.33`, [`value_chain`] reads it.)
fn without_approx_sign(s: &str) -> String {
    let t = s.trim_start();
    for sign in ["\\approx", "\\sim", "\u{2248}", "\u{223c}"] {
        if let Some(rest) = t.strip_prefix(sign) {
            // Not another command that starts alike (`\simeq`).
            if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) && !rest.trim().is_empty() {
                return rest.trim_start().to_string();
            }
        }
    }
    s.to_string()
}

/// How a degree is written (longest first, so `^{\circ}` goes whole). Not a bare `\circ`, which
/// is also composition (`g \circ f`).
const DEGREE_SIGNS: &[&str] = &[
    "{}^{\\circ}",
    "{}^\\circ",
    "^{\\circ}",
    "^\\circ",
    "^\\degree",
    "\\degree",
    "\u{00b0}",
];

/// A temperature's degree sign and scale together (`-5°C`, `25 °F`, `10^\circ \text{C}`,
/// `300^{\circ}K`, `20℃`) removed, leaving the value: removing the degree sign alone would leave
/// `-5c`, which is not `-5`. A letter after a number with no degree sign (`5c`) stays.
fn strip_temperature_scale(s: &str) -> String {
    let s = s.replace(['\u{2103}', '\u{2109}'], "");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    'scan: while let Some(ch) = rest.chars().next() {
        for &sign in DEGREE_SIGNS {
            if let Some(tail) = rest.strip_prefix(sign).and_then(past_scale) {
                rest = tail;
                continue 'scan;
            }
        }
        out.push(ch);
        rest = rest.get(ch.len_utf8()..).unwrap_or_default();
    }
    out
}

/// `s` (just after a degree sign) past the letter of a temperature scale, `C`, `F` or `K`, bare
/// or in `\text{..}` (`\mathrm`, `\textrm`, `\mbox`, or braces alone), and spaces before it;
/// None where no scale's letter comes next as a word of its own.
fn past_scale(s: &str) -> Option<&str> {
    const SCALES: [char; 3] = ['C', 'F', 'K'];
    let s = s.trim_start();
    for wrapper in ["\\text{", "\\mathrm{", "\\textrm{", "\\mbox{", "{"] {
        if let Some(inner) = s.strip_prefix(wrapper) {
            let tail = inner.trim_start().strip_prefix(SCALES)?;
            return tail.trim_start().strip_prefix('}');
        }
    }
    let tail = s.strip_prefix(SCALES)?;
    (!tail.starts_with(|c: char| c.is_alphanumeric())).then_some(tail)
}

/// A number followed by a scale word, `3 million`, `7.5 thousand`, as the number they make
/// (`3000000`, `7500`; [`scaled_at`]); `three million` in words is [`number_words`]'s. Not a
/// number that is part of another (`x2`, `10^3`, `1/2`).
fn scale_words(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        let prev = i.checked_sub(1).and_then(|p| c.get(p)).copied();
        let starts = ch.is_ascii_digit()
            && !prev.is_some_and(|p| p.is_alphanumeric() || matches!(p, '.' | '/' | '^' | '_'));
        if !starts {
            out.push(ch);
            i += 1;
            continue;
        }
        let mut end = i + digit_run(&c, i);
        if c.get(end) == Some(&'.') && is_digit_at(&c, end + 1) {
            end += 1 + digit_run(&c, end + 1);
        }
        let number = collect(&c, i, end);
        match scaled_at(&c, end, &number) {
            Some((value, after)) => {
                out.push_str(&value);
                i = after;
            }
            None => {
                out.push_str(&number);
                i = end;
            }
        }
    }
    out
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

/// A whole answer `3 1/2` (a whole number, a space, a proper fraction) is the mixed number
/// `(3+1/2)`; without this, removing the space would read it as 31/2.
fn plain_mixed_number(s: String) -> String {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [whole, fraction] = parts[..] else {
        return s;
    };
    let (sign, digits) = match whole.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", whole),
    };
    let is_int = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let Some((n, d)) = fraction.split_once('/') else {
        return s;
    };
    let proper = is_int(n)
        && is_int(d)
        && matches!((n.parse::<u64>(), d.parse::<u64>()), (Ok(n), Ok(d)) if n > 0 && n < d);
    if is_int(digits) && proper {
        format!("{sign}({digits}+{n}/{d})")
    } else {
        s
    }
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

/// Most words one cardinal number in words may take (`one hundred and twenty-three thousand
/// four hundred and fifty-six` is twelve).
const MAX_NUMBER_WORDS: usize = 16;

/// A cardinal written in words that opens the answer, as digits: `seven` is `7`, `Twenty-one
/// apples` is `21 apples` (its unit stripped after), `negative seven` is `-7`, `three point
/// one four` is `3.14`. The longest run
/// of opening words that reads as one cardinal; ordinals (`first`) and numbers inside text are
/// left alone.
fn number_words(s: &str) -> String {
    let trimmed = s.trim();
    if !trimmed.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return s.to_string();
    }
    // ASCII lower-casing keeps byte offsets, so ends found in `lower` cut `trimmed` too.
    let lower = trimmed.to_ascii_lowercase();
    let (sign, start) = ["negative ", "minus "]
        .iter()
        .find_map(|p| lower.strip_prefix(p).map(|_| ("-", p.len())))
        .unwrap_or(("", 0));
    // Ends of the opening words (letters and hyphens; a word may end in `.` or `,`).
    let mut ends = Vec::new();
    let mut at = start;
    for word in lower[start..].split(' ') {
        let bare = word.trim_end_matches(['.', ',']);
        if bare.is_empty()
            || !bare.chars().all(|c| c.is_ascii_alphabetic() || c == '-')
            || ends.len() == MAX_NUMBER_WORDS
        {
            break;
        }
        ends.push(at + bare.len());
        at += word.len() + 1;
    }
    let english = text2num::Language::english();
    for &end in ends.iter().rev() {
        let phrase = &lower[start..end];
        // `text2digits` reads no decimals; a phrase replaced whole by one number is one.
        let digits = text2num::replace_numbers_in_text(phrase, &english, 0.0);
        // `3.14` from `three point one four`; not `1st`.
        let (whole, fraction) = digits.split_once('.').unwrap_or((&digits, "0"));
        let digit_run = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if digit_run(whole) && digit_run(fraction) {
            // The number must be the whole quantity: not `two` of `two thirds`, `one half`,
            // `two dozen`, nor of `seven seven`.
            let next = lower[end..]
                .split_whitespace()
                .next()
                .map(|w| w.trim_end_matches(['.', ',']))
                .unwrap_or_default();
            if scales_the_number(next) {
                return s.to_string();
            }
            return format!("{sign}{digits}{}", &trimmed[end..]);
        }
    }
    s.to_string()
}

/// Words that after a number make it part of another quantity: a fraction's denominator
/// (`thirds`, `half`, `hundredths`), a multiplier (`dozen`), or another number.
fn scales_the_number(word: &str) -> bool {
    const SCALES: &str =
        "half halves third thirds quarter quarters dozen dozens score scores gross";
    let word = word.split('-').next_back().unwrap_or(word);
    // A unit (`second`, `months`) is what the number counts.
    if word.is_empty() || is_listed(UNITS, word) {
        return false;
    }
    // Another number, or an ordinal as a denominator (`hundredths`, `fifths`).
    is_listed(SCALES, word)
        || text2num::replace_numbers_in_text(word, &text2num::Language::english(), 0.0) != word
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
                    // `2 thirds`, `3 million` are not 2 and 3.
                    && !scales_the_number(&w)
                    && eval(prefix).is_some())
        } else {
            known && w.len() >= 2 && prefix.ends_with(|c: char| c.is_ascii_digit())
        };
        if !ok {
            break;
        }
        cur = prefix.to_string();
    }
    value_before_words(&cur).unwrap_or(cur).trim().to_string()
}

/// Most words a value's trailing phrase may have (`18 dollars per day`, `26 years old`,
/// `322 more crayons`, `3 pieces of candy left`).
const MAX_TRAILING_WORDS: usize = 6;

/// A value followed by words alone, `18 dollars per day`, `26 years old`, `3 more crayons`:
/// the value. Not where the first word scales the number (`2 thirds`, `3 million`) or is
/// mathematics (`2 pi`, `3 sqrt`), nor a single letter (`3 x` is a product).
fn value_before_words(s: &str) -> Option<String> {
    let tokens: Vec<&str> = s.split_whitespace().collect();
    (tokens.len().saturating_sub(MAX_TRAILING_WORDS).max(1)..tokens.len()).find_map(|k| {
        let (value, words) = tokens.split_at(k);
        let first = words.first()?.to_ascii_lowercase();
        let word = |w: &&str| {
            let w = w.trim_end_matches(['.', ',']);
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '\'' | '/'))
                && w.starts_with(|c: char| c.is_ascii_alphabetic())
        };
        let plain = words.len() <= MAX_TRAILING_WORDS
            && words.iter().all(word)
            && first.chars().filter(char::is_ascii_alphabetic).count() >= 2
            && !is_listed(MATH_WORDS, &first)
            && !is_listed(NOT_A_UNIT, &first)
            && !scales_the_number(&first)
            && !words
                .iter()
                .any(|w| is_listed(CONNECTIVES, &w.to_ascii_lowercase()));
        let value = value.join(" ");
        (plain && eval(&value).is_some()).then_some(value)
    })
}

/// Words that, first after a number, make it something other than a quantity of what follows
/// (`one of them`, `3 out of 4`, `2 in a row`).
const NOT_A_UNIT: &str = "of out in on at to for from by over with than into per";

/// Words that join one value to another (`1 and -2`, `3 or 4`, `5 to 7`), compare it (`3
/// more than x`) or deny it (`18 is not possible`): a phrase with one is not a value's unit.
const CONNECTIVES: &str = "and or to by times plus minus over than not no";

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

/// Whether `out` ends with a command's name (`\pi`, `\theta`).
fn ends_with_command(out: &str) -> bool {
    let t = out.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    t.len() < out.len() && t.ends_with('\\')
}

/// Plain-text mathematics as code models write it, in LaTeX: `sqrt(13)`, `\sqrt(13)` and
/// `√13` -> `\sqrt{13}`, `pi` -> `\pi`, `x**2` -> `x^2`.
fn plain_math(s: &str, depth: usize) -> String {
    let s = s.replace("**", "^");
    if depth > MAX_DEPTH {
        return s;
    }
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        if ch == '\u{221a}' {
            // √13 or √(13): the digits or the bracket after the sign.
            let run = digit_run(&c, i + 1);
            let (inner, next) = match paren_end(&c, i + 1) {
                _ if run > 0 => (Some(collect(&c, i + 1, i + 1 + run)), i + 1 + run),
                Some(close) => (Some(collect(&c, i + 2, close)), close + 1),
                None => (None, i + 1),
            };
            out.push_str("\\sqrt");
            if let Some(inner) = inner {
                out.push('{');
                out.push_str(&plain_math(&inner, depth + 1));
                out.push('}');
            }
            i = next;
            continue;
        }
        if !ch.is_ascii_alphabetic() {
            out.push(ch);
            i += 1;
            continue;
        }
        let word = letters_at(&c, i);
        let command = out.ends_with('\\');
        let end = i + word.len();
        match word.as_str() {
            "pi" if !command => out.push_str("\\pi"),
            w if !command && is_listed(FUNCTIONS, w) && c.get(end) == Some(&'(') => {
                out.push('\\');
                out.push_str(w);
            }
            "sqrt" => match paren_end(&c, end) {
                Some(close) => {
                    if !command {
                        out.push('\\');
                    }
                    out.push_str("sqrt{");
                    out.push_str(&plain_math(&collect(&c, end + 1, close), depth + 1));
                    out.push('}');
                    i = close + 1;
                    continue;
                }
                None if !command => out.push_str("\\sqrt"),
                None => out.push_str(&word),
            },
            _ => out.push_str(&word),
        }
        i = end;
    }
    out
}

/// A function's simple argument (letters and digits) written bracketed, as juxtaposition:
/// `\cot(x)`, `\cot{x}` and `\cot{(x)}` -> `\cot x`, `\sin(2x)` -> `\sin2x` (as `\sin 2x`
/// normalises).
fn function_arguments(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        out.push(ch);
        i += 1;
        if ch != '\\' {
            continue;
        }
        let name = letters_at(&c, i);
        out.push_str(&name);
        i += name.len();
        if !is_listed(FUNCTIONS, &name) {
            continue;
        }
        let end = match c.get(i) {
            Some('(') => paren_end(&c, i),
            Some('{') => group_end(&c, i),
            _ => None,
        };
        let Some(end) = end else {
            continue;
        };
        let inner = collect(&c, i + 1, end);
        let inner = inner
            .strip_prefix('(')
            .and_then(|x| x.strip_suffix(')'))
            .unwrap_or(&inner);
        if inner.is_empty() || !inner.chars().all(|x| x.is_ascii_alphanumeric()) {
            continue;
        }
        if inner.starts_with(|x: char| x.is_ascii_alphabetic()) {
            out.push(' ');
        }
        out.push_str(inner);
        i = end + 1;
    }
    out
}

/// Explicit products written as juxtaposition, as MATH writes them: `2*k` -> `2k`,
/// `(a+5)*(b+2)` -> `(a+5)(b+2)`, `3\cdot\sqrt{13}` -> `3\sqrt{13}`. Kept before a digit
/// (`2*3`) and before a fraction (`2\frac{1}{2}` would read as a mixed number).
fn juxtapose_products(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while let Some(&ch) = c.get(i) {
        let len = match ch {
            '*' => 1,
            '\\' if letters_at(&c, i + 1) == "cdot" => 5,
            _ => 0,
        };
        let after = i + len;
        let joins = len > 0
            && out.ends_with(|p: char| p.is_ascii_alphanumeric() || p == ')' || p == '}')
            && match c.get(after) {
                Some(&n) if n.is_ascii_alphabetic() || n == '(' => true,
                Some('\\') => {
                    let name = letters_at(&c, after + 1);
                    !name.is_empty() && name != "frac"
                }
                _ => false,
            };
        if joins {
            // A command before a letter keeps a space: `\pi*r` is `\pi r`, not `\pir`.
            if ends_with_command(&out) && c.get(after).is_some_and(char::is_ascii_alphabetic) {
                out.push(' ');
            }
            i = after;
            continue;
        }
        out.push(ch);
        i += 1;
    }
    out
}

/// `52_8`, `4210_{5}` and `(52)_8` -> `52`: a numeral with its base as a subscript is read as
/// its digits (the question asked for that base), when every digit fits the base.
fn strip_base_subscript(s: String) -> String {
    let Some((numeral, base)) = s.rsplit_once('_') else {
        return s;
    };
    let base = base
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or(base);
    let numeral = numeral
        .strip_prefix('(')
        .and_then(|n| n.strip_suffix(')'))
        .unwrap_or(numeral);
    let Ok(base) = base.parse::<u32>() else {
        return s;
    };
    let fits = (2..=36).contains(&base)
        && numeral.chars().any(|d| d.is_ascii_digit())
        && numeral.chars().all(|d| d.is_digit(base));
    if fits {
        numeral.to_string()
    } else {
        s
    }
}

/// `1\pm\sqrt{19}` -> `1+\sqrt{19},1-\sqrt{19}` (an unordered list): one `\pm` in an answer
/// that is not itself a list.
fn expand_plus_minus(s: String) -> String {
    let at: Vec<usize> = s
        .match_indices("\\pm")
        .map(|(p, _)| p)
        .filter(|&p| {
            !s.get(p + 3..)
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_alphabetic()))
        })
        .collect();
    let &[p] = at.as_slice() else {
        return s;
    };
    if s.contains(',') {
        return s;
    }
    let (before, after) = (&s[..p], &s[p + 3..]);
    format!("{before}+{after},{before}-{after}")
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

/// `x=5` -> `5` and `x\in[1,2]` -> `[1,2]` where the left side names what the right gives
/// ([`names_a_value`]).
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
    let rhs = rhs.trim();
    // `x + y + z = 0` is a plane, not the value 0 (one variable equal to 0 is its value).
    let locus = rhs == "0" && !is_variable(lhs.trim());
    if names_a_value(lhs) && !rhs.is_empty() && !locus {
        rhs.to_string()
    } else {
        s
    }
}

/// A left side that names the value on the right: a single variable ([`is_variable`]); a
/// tuple of them, `(x,y)`, `(r,\theta)`; a sum of them, `a+b+c`; a function at its argument,
/// `f(2015,2)`, `h(x)`, `p(a)`. Not one with a number of its own (`2x`, `x^2`): `2x=6` is not
/// 6. (A name of points, `DE = 3`, is read before case is lost: [`point_name_rhs`].)
fn names_a_value(s: &str) -> bool {
    let s = s.trim();
    if is_variable(s) {
        return true;
    }
    if let Some(items) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        return !items.contains(['(', ')']) && items.split(',').all(is_variable);
    }
    if let Some((name, args)) = s.split_once('(') {
        // A function's name (not `x(x+1)`, a product), one bracket closing at the end.
        return is_listed(FUNCTION_NAMES, name)
            && args
                .strip_suffix(')')
                .is_some_and(|a| !a.is_empty() && !a.contains(['(', ')']));
    }
    // A sum, not a difference (`a - b = 5` is not `b - a = 5`).
    let terms: Vec<&str> = s.split('+').collect();
    terms.len() >= 2 && terms.iter().all(|t| is_variable(t))
}

/// Names of functions a left side may give (`P` of a probability, lower-cased by then).
const FUNCTION_NAMES: &str = "f g h p q r s gcd lcm";

/// `DE = \sqrt{51}`, `ABC = 12`: the value a name of points (two or three capitals) is given.
fn point_name_rhs(s: &str) -> Option<String> {
    let (lhs, rhs) = s.split_once('=')?;
    let lhs = lhs.trim();
    let rhs = rhs.trim();
    ((2..=3).contains(&lhs.len())
        && lhs.chars().all(|c| c.is_ascii_uppercase())
        && !rhs.is_empty()
        && !rhs.contains('='))
    .then(|| rhs.to_string())
}

/// A list written with words, `1 and -2`, `3, 5, and 7`, `x=1 \text{ or } x=-2`, as the
/// comma list it is (`1,-2`): two solutions are a list, not their first. Also a comma list
/// naming one variable in every item (`x=1, x=-2`), its values. Runs where spaces are gone
/// (`1and-2`, `3,5,and7`, `x=1orx=-2`); the words are split at wherever they stand outside
/// brackets, and the list is kept only when every item is a value ([`eval`]) or the same
/// variable's value, so words in an expression (`\lfloor`) or prose are left as they were.
/// One value said twice (`0.5 or 1/2`, `12 and 12`, `1/3 or 0.33` to the places written;
/// where the answer has a percent, `3/4 or 75%`) is that value, its first form.
fn word_list(s: String, percent: bool) -> String {
    if !s.contains("and") && !s.contains("or") && !s.contains('=') {
        return s;
    }
    let mut items: Vec<&str> = Vec::new();
    let (mut depth, mut start, mut at) = (0i32, 0, 0);
    let mut words = false;
    // After a comma, `and`/`or` opens the last item (`3,5,and7`), with no item before it.
    let mut after_comma = false;
    while let Some(rest) = s.get(at..) {
        let Some(c) = rest.chars().next() else { break };
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        let word = ["and", "or"]
            .into_iter()
            .find(|w| depth == 0 && rest.starts_with(w));
        if depth == 0 && c == ',' {
            items.push(s.get(start..at).unwrap_or_default());
            at += 1;
            start = at;
            after_comma = true;
            continue;
        }
        if let Some(word) = word {
            if !(after_comma && start == at) {
                items.push(s.get(start..at).unwrap_or_default());
            }
            words = true;
            at += word.len();
            start = at;
            after_comma = false;
            continue;
        }
        after_comma = false;
        at += c.len_utf8();
    }
    items.push(s.get(start..).unwrap_or_default());
    if items.len() < 2 || depth != 0 {
        return s;
    }
    // Each item a value, or `name=value` with one name throughout.
    let mut name = None;
    let mut named = 0;
    let mut values = Vec::with_capacity(items.len());
    let mut nums = Vec::with_capacity(items.len());
    for item in &items {
        let value = match item.split_once('=') {
            Some((lhs, rhs)) if is_variable(lhs) && name.is_none_or(|n| n == lhs) => {
                name = Some(lhs);
                named += 1;
                rhs
            }
            Some(_) => return s,
            None => item,
        };
        let Some(num) = eval(value).filter(|_| !value.is_empty()) else {
            return s;
        };
        values.push(value);
        nums.push(num);
    }
    // A comma list of bare values is a list already; one naming a variable in only some of its
    // items is left to the rules after (`x=1,2` is `x` equal to the list `1,2`).
    if (!words && named == 0) || (named > 0 && named < items.len()) {
        return s;
    }
    let same = |x: Num, y: Num| {
        x.same(y)
            || (percent
                && (x.percent().is_some_and(|x| x.same(y))
                    || y.percent().is_some_and(|y| y.same(x))))
    };
    if let (Some(&first), Some(&value)) = (nums.first(), values.first()) {
        // A decimal may be the first value rounded to the places it is written to.
        let rounded = |x: Num, text: &str| {
            super::decimal_places(text)
                .is_some_and(|places| super::within_last_place(first.value(), x.value(), places))
        };
        if nums
            .iter()
            .zip(&values)
            .all(|(&x, text)| same(first, x) || rounded(x, text))
        {
            return value.to_string();
        }
    }
    values.join(",")
}

/// A single variable: `x`, `x_1`, `x_{ab}`, `\theta`.
fn is_variable(s: &str) -> bool {
    let (base, sub) = match s.split_once('_') {
        Some((b, sub)) => (b, Some(sub)),
        None => (s, None),
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
    base_ok && sub_ok
}

/// `\frac{1}{2}=0.5` -> `\frac{1}{2}` and `\frac{\sqrt{3}}{3}\approx0.577` ->
/// `\frac{\sqrt{3}}{3}`: a value followed by its decimal value, as models write a final answer
/// (`x=` before them dropped). When every side of the chain (split at `=`, `\approx` and `≈`
/// outside brackets) is a number, the first is kept if the last agrees with it to the last
/// place it is written to (or exactly, written without a decimal point); else the last, the
/// result stated (`2+2=5` -> `5`). Anything else is left as it is.
fn value_chain(s: String) -> String {
    let mut sides: Vec<&str> = Vec::new();
    let (mut depth, mut start, mut at) = (0i32, 0, 0);
    // Whether the chain says "about": an integer after it is rounded too (`100/3 ≈ 33`).
    let mut approx = false;
    while let Some(rest) = s.get(at..) {
        let Some(c) = rest.chars().next() else { break };
        let relation = if depth == 0 && (c == '=' || c == '≈') {
            c.len_utf8()
        } else if depth == 0 && rest.starts_with("\\approx") {
            "\\approx".len()
        } else {
            0
        };
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if relation > 0 {
            approx |= c != '=';
            sides.push(s.get(start..at).unwrap_or_default());
            start = at + relation;
        }
        at += if relation > 0 { relation } else { c.len_utf8() };
    }
    if sides.is_empty() {
        return s;
    }
    sides.push(s.get(start..).unwrap_or_default());
    // `x=` before the chain (`\pi` is a variable's name too, but a value first).
    if sides
        .first()
        .is_some_and(|v| is_variable(v) && eval(v).is_none())
    {
        sides.remove(0);
    }
    let values: Option<Vec<f64>> = sides.iter().map(|v| Some(eval(v)?.value())).collect();
    let (Some(values), [first, .., last]) = (values, sides.as_slice()) else {
        return s;
    };
    let (Some(&x), Some(&y)) = (values.first(), values.last()) else {
        return s;
    };
    let agrees = match super::decimal_places(last).or(approx.then_some(0)) {
        Some(places) => super::within_last_place(x, y, places),
        None => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
    };
    if agrees { first } else { last }.to_string()
}
