//! Numbers: exact rationals where possible, floats otherwise, and the expression
//! evaluator that turns a normalised answer into one.

use std::f64::consts::PI;

use super::scan::{collect, digit_run, is_digit_at, letters_at};
use super::{is_listed, MATH_WORDS, MAX_DEPTH};

/// A numeric value: an exact reduced fraction (denominator > 0) or a finite float.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Num {
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
    pub(super) fn ratio(n: i128, d: i128) -> Option<Num> {
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

    pub(super) fn value(self) -> f64 {
        match self {
            Num::Rat(n, d) => n as f64 / d as f64,
            Num::Real(x) => x,
        }
    }

    /// Whether two values are the same number: two exact ones exactly (999999 is not 1000000,
    /// 70000.01 is not 70000), anything else within the relative tolerance (`\sqrt{2}/2` and
    /// 0.70710678118). A decimal rounded to its last place (0.3333333333 for 1/3) is
    /// [`super::same_when_rounded`]'s to judge.
    pub(super) fn same(self, o: Num) -> bool {
        match (self, o) {
            (Num::Rat(..), Num::Rat(..)) => self == o,
            _ => super::structure::close(self.value(), o.value()),
        }
    }

    /// The value divided by 100 (what `x%` denotes).
    pub(super) fn percent(self) -> Option<Num> {
        self.div(Num::Rat(100, 1))
    }

    pub(super) fn key(self) -> String {
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
pub(super) fn eval(s: &str) -> Option<Num> {
    eval_at(s, &[])
}

/// [`eval`], with the single-letter variables `vars` bound to values.
pub(super) fn eval_at(s: &str, vars: &[(char, Num)]) -> Option<Num> {
    let chars: Vec<char> = s.chars().collect();
    let atoms = std::cell::Cell::new(MAX_ATOMS);
    let mut p = Parser {
        c: &chars,
        i: 0,
        vars,
        atoms: &atoms,
    };
    p.ws();
    p.peek()?;
    let v = p.expr(0)?;
    p.ws();
    (p.i == chars.len()).then_some(v)
}

/// Words that after a number multiply it (`3 million`), with the power of ten each stands for.
const SCALE_WORDS: [(&str, usize); 4] = [
    ("thousand", 3),
    ("million", 6),
    ("billion", 9),
    ("trillion", 12),
];

/// A plain decimal `number` (`7.5`, `3`) times the scale `word` names (`million`), written
/// out (`7500000`), exactly; None where `word` is no scale or `number` no plain decimal.
pub(super) fn scaled(number: &str, word: &str) -> Option<String> {
    let &(_, zeros) = SCALE_WORDS
        .iter()
        .find(|(scale, _)| word.eq_ignore_ascii_case(scale))?;
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{int}{frac}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // The decimal point moved `zeros` places to the right.
    let moved = match zeros.checked_sub(frac.len()) {
        Some(pad) => format!("{digits}{}", "0".repeat(pad)),
        None => {
            let point = int.len() + zeros;
            format!("{}.{}", digits.get(..point)?, digits.get(point..)?)
        }
    };
    let value = moved.trim_start_matches('0');
    Some(if value.is_empty() || value.starts_with('.') {
        format!("0{value}")
    } else {
        value.to_string()
    })
}

/// The number `number`, which ends at `end` of `c`, times a scale word that follows it after a
/// space (`3 million`): their value ([`scaled`]) and where the word ends. None where no scale
/// word follows.
pub(super) fn scaled_at(c: &[char], end: usize, number: &str) -> Option<(String, usize)> {
    let spaces = c.iter().skip(end).take_while(|&&x| x == ' ').count();
    if spaces == 0 {
        return None;
    }
    let word = letters_at(c, end + spaces);
    let after = end + spaces + word.len();
    // A whole word: not `million` of `millionths` (letters_at takes every ASCII letter), nor
    // the first word of a compound (`12 thousand-year-old trees`, `3 million-dollar homes`).
    if c.get(after).is_some_and(|x| x.is_alphabetic() || *x == '-') {
        return None;
    }
    Some((scaled(number, &word)?, after))
}

/// Most atoms one evaluation reads, trial parses included: a few per character of any answer,
/// while nesting the parser must try two ways at each level (a mixed number's fraction, then
/// a product, past the depth limit) gives up here, not after minutes.
const MAX_ATOMS: usize = 100_000;

struct Parser<'a> {
    c: &'a [char],
    i: usize,
    vars: &'a [(char, Num)],
    /// Atoms still to be read ([`MAX_ATOMS`]), shared with trial parses.
    atoms: &'a std::cell::Cell<usize>,
}

/// The single-letter variables of a normalised expression (`x`, `k`; not `\pi`'s letters),
/// sorted, and its runs of letters (`ab` in `2ab`, a product as normalisation writes one; or a
/// word: `and` in `1and6`, which [`super::structure::same_function`] tells apart); None where
/// it has none, a word that is a function or constant (`sin`, `pi`, `ln`), `i` or `e`
/// (numbers), or no digit nor operator at all (`no` is text, not `n*o`).
pub(super) fn variables(s: &str) -> Option<(Vec<char>, Vec<String>)> {
    let c: Vec<char> = s.chars().collect();
    let mut vars = Vec::new();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let word = letters_at(&c, i);
        if word.is_empty() {
            i += 1;
            continue;
        }
        let command = i > 0 && c.get(i - 1) == Some(&'\\');
        if !command {
            // A letter right before a digit is a unit between numbers (`5m2` of `5 m 2 cm`,
            // `3h20`) or a dimension (`2x6`): mathematics writes `2x`, never `x2`.
            let before_digit = c
                .get(i + word.chars().count())
                .is_some_and(char::is_ascii_digit);
            if before_digit
                || word.contains(['i', 'e'])
                || is_listed(MATH_WORDS, &word.to_ascii_lowercase())
            {
                return None;
            }
            match word.chars().count() {
                1 => vars.extend(word.chars()),
                _ => runs.push(word.clone()),
            }
        }
        i += word.chars().count();
    }
    let arithmetic = c
        .iter()
        .any(|ch| ch.is_ascii_digit() || matches!(ch, '+' | '-' | '*' | '/' | '^'));
    vars.sort_unstable();
    vars.dedup();
    (arithmetic && !(vars.is_empty() && runs.is_empty())).then_some((vars, runs))
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
            Some(c) if self.value_of(c).is_some() => true,
            Some('\\') => self
                .command()
                .is_some_and(|n| matches!(n.as_str(), "frac" | "sqrt" | "pi")),
            _ => false,
        }
    }

    /// The value a variable at the cursor is bound to.
    fn value_of(&self, c: char) -> Option<Num> {
        self.vars.iter().find(|(v, _)| *v == c).map(|(_, x)| *x)
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
        self.ws();
        let start = self.i;
        let mut acc = self.unary(depth)?;
        // A mixed number as MATH writes them: `3\frac{1}{2}` is 7/2 (a whole number directly
        // followed by a proper fraction), not 3 * 1/2. Not a fraction of variables:
        // `2\frac{x}{3}` is 2x/3 whatever x is.
        let literal: String = self.c[start..self.i]
            .iter()
            .filter(|c| !c.is_whitespace())
            .collect();
        let whole = literal.strip_prefix('-').unwrap_or(&literal);
        if !whole.is_empty() && whole.chars().all(|c| c.is_ascii_digit()) {
            self.ws();
            // A fraction of numbers only (`x + 2\frac{1}{2}` is x + 5/2), parsed once (a
            // trial parse before the real one would double the work at each level of a nested
            // `1\frac{1\frac{..}{2}}{2}`).
            let mut alone = Parser {
                c: self.c,
                i: self.i,
                vars: &[],
                atoms: self.atoms,
            };
            let constant = if self.command().as_deref() == Some("frac") {
                alone.power(depth)
            } else {
                None
            };
            if let Some(fraction) = constant {
                self.i = alone.i;
                acc = match fraction {
                    Num::Rat(n, d) if n > 0 && n < d => {
                        if literal.starts_with('-') {
                            acc.sub(fraction)?
                        } else {
                            acc.add(fraction)?
                        }
                    }
                    _ => acc.mul(fraction)?,
                };
            }
        }
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
        if depth > MAX_DEPTH || self.atoms.get() == 0 {
            return None;
        }
        self.atoms.set(self.atoms.get() - 1);
        self.ws();
        match self.peek()? {
            c if c.is_ascii_digit() || c == '.' => self.number(),
            c if self.value_of(c).is_some() => {
                let value = self.value_of(c);
                self.i += 1;
                value
            }
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

/// A complex number written as a sum of real and imaginary terms in any order (`6-5i`,
/// `-5i+6`, `3i`, `-i`, `\frac{1}{2}i`): its real and imaginary parts. None unless some term is
/// a real value times a standalone `i` and every other term is a real value.
pub(super) fn complex(s: &str) -> Option<(Num, Num)> {
    let c: Vec<char> = s.chars().collect();
    let mut terms = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (k, &ch) in c.iter().enumerate() {
        match ch {
            '(' | '{' | '[' => depth += 1,
            ')' | '}' | ']' => depth -= 1,
            '+' | '-' if depth == 0 && k > start => {
                // Not the sign of an exponent (`2^-1`, `1e-5`).
                let prev = c.get(k - 1).copied();
                let exponent =
                    prev == Some('^') || (prev == Some('e') && k >= 2 && is_digit_at(&c, k - 2));
                if !exponent {
                    terms.push(collect(&c, start, k));
                    start = k;
                }
            }
            _ => {}
        }
    }
    terms.push(collect(&c, start, c.len()));
    let (mut re, mut im) = (Num::Rat(0, 1), Num::Rat(0, 1));
    let mut imaginary = false;
    for term in &terms {
        let (negative, body) = match term.trim().strip_prefix('-') {
            Some(rest) => (true, rest.trim()),
            None => (false, term.trim().trim_start_matches('+').trim()),
        };
        let unit = body
            .strip_suffix('i')
            .filter(|coef| !coef.ends_with(|p: char| p.is_ascii_alphabetic() || p == '\\'));
        let value = match unit {
            Some("") => Num::Rat(1, 1),
            Some(coef) => eval(coef)?,
            None => eval(body)?,
        };
        let value = if negative { value.neg()? } else { value };
        if unit.is_some() {
            imaginary = true;
            im = im.add(value)?;
        } else {
            re = re.add(value)?;
        }
    }
    imaginary.then_some((re, im))
}
