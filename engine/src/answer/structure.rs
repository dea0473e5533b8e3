//! Structured answers (tuples, intervals, sets, lists, matrices): splitting them,
//! element-wise equivalence and canonical keys, and the numeric tolerance.

use super::num::{complex, eval, eval_at, variables, Num};
use super::MAX_DEPTH;

/// Relative tolerance for numeric comparison.
const REL_TOL: f64 = 1e-6;

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

/// Rows and cells of `\begin{pmatrix} .. \end{pmatrix}` (any `*matrix` environment, also
/// inside brackets: `[\begin{matrix} .. \end{matrix}]`).
fn matrix_cells(s: &str) -> Option<Vec<Vec<&str>>> {
    let bare = [("(", ")"), ("[", "]")]
        .into_iter()
        .find_map(|(open, close)| s.strip_prefix(open)?.strip_suffix(close))
        .filter(|inner| inner.starts_with("\\begin{"))
        .unwrap_or(s);
    let rest = bare.strip_prefix("\\begin{")?;
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
        // An item written as a rounded decimal agrees to its last place, as a whole answer
        // does (`(3, 1.5708)` is `(3, \frac{\pi}{2})`).
        return x.same(y) || super::same_when_rounded(a, b, x.value(), y.value());
    }
    same_structure(a, b, depth + 1) || same_function(a, b)
}

/// Points at which [`same_function`] compares two expressions: values no answer's constants
/// are likely to make coincide.
const PROBES: [(i128, i128); 4] = [(7, 5), (-3, 7), (11, 3), (5, 13)];

/// Whether two expressions in the same single-letter variables (at most four) take the same
/// value at several points: `p - q` and `-q + p`, `x^2 + 1` and `1 + x^2`, `2(k+1)` and
/// `2k + 2`. Points where either is undefined are skipped; three must agree.
pub(super) fn same_function(a: &str, b: &str) -> bool {
    let (Some((vars_a, runs_a)), Some((vars_b, runs_b))) = (variables(a), variables(b)) else {
        return false;
    };
    // A run of letters is a product (`2ab`) only of letters that stand alone as variables
    // somewhere too (`a^2 + 2ab + b^2`); else it is a word (`1 and 6`, `4 to 1`, `2 lb 5 oz`),
    // and text is not compared as a function.
    let mut vars = vars_a.clone();
    vars.extend(&vars_b);
    vars.sort_unstable();
    vars.dedup();
    let products = runs_a
        .iter()
        .chain(&runs_b)
        .all(|run| run.chars().all(|c| vars.contains(&c)));
    let letters = |vars: &[char], runs: &[String]| {
        let mut all: Vec<char> = vars
            .iter()
            .copied()
            .chain(runs.iter().flat_map(|r| r.chars()))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    if !products
        || vars.is_empty()
        || vars.len() > 4
        || letters(&vars_a, &runs_a) != letters(&vars_b, &runs_b)
    {
        return false;
    }
    let mut agreed = 0;
    for shift in 0..PROBES.len() {
        let point: Option<Vec<(char, Num)>> = vars
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let (n, d) = PROBES[(shift + k) % PROBES.len()];
                Num::ratio(n + k as i128, d).map(|x| (v, x))
            })
            .collect();
        let Some(point) = point else {
            continue;
        };
        match (eval_at(a, &point), eval_at(b, &point)) {
            // Exact values exactly (`10^7x + 1` is not `10^7x + 2`).
            (Some(Num::Rat(p, q)), Some(Num::Rat(r, s))) if (p, q) == (r, s) => agreed += 1,
            (Some(Num::Rat(..)), Some(Num::Rat(..))) => return false,
            (Some(x), Some(y)) if x.same(y) => agreed += 1,
            (Some(_), Some(_)) => return false,
            _ => {}
        }
    }
    agreed >= 3
}

pub(super) fn same_structure(a: &str, b: &str, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    if let (Some((ra, ia)), Some((rb, ib))) = (complex(a), complex(b)) {
        return ra.same(rb) && ia.same(ib);
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
    // A set and a bare list (`\{-2,1\}`, `1,-2`) are both unordered: the same answer.
    let brackets_differ = la.open != lb.open || la.close != lb.close;
    if (brackets_differ && (la.ordered || lb.ordered))
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

pub(super) fn key_of(s: &str, depth: usize) -> String {
    // A whole answer, or an item of a tuple or list: `equivalent` reads both as rounded.
    if let Some(key) = rounded_decimal_key(s) {
        return key;
    }
    if let Some(v) = eval(s) {
        return v.key();
    }
    if let Some((re, im)) = complex(s) {
        let im = im.key();
        return match im.strip_prefix('-') {
            Some(magnitude) => format!("{}-{magnitude}i", re.key()),
            None => format!("{}+{im}i", re.key()),
        };
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
            if keys.len() >= 2 {
                // A set and a bare list of the same items are the same answer (a one-item set
                // is not its item: no bare list has one item).
                return keys.join(",");
            }
        }
        return format!("{}{}{}", list.open, keys.join(","), list.close);
    }
    s.to_string()
}

pub(super) fn close(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= REL_TOL * x.abs().max(y.abs())
}

/// The key of a decimal that [`super::equivalent`] reads as rounded (four or more places and
/// significant digits: `0.6667`, `3.33333`): the simplest fraction it could be a rounding of
/// (denominator up to 1000), so that it votes with that fraction and its other roundings
/// (`2/3`, `0.6666666666666666`). None for other text, or where no such fraction is near.
fn rounded_decimal_key(s: &str) -> Option<String> {
    // Trailing zeros say nothing of the rounding: `1.2340` is `1.234`, exact.
    let s = if s.contains('.') {
        s.trim_end_matches('0')
    } else {
        s
    };
    let places = super::decimal_places(s).filter(|&k| k >= 4)?;
    if super::significant_digits(s) < 4 {
        return None;
    }
    let x: f64 = s.parse().ok()?;
    // Past what a float holds exactly, or a fraction of it could: keyed as written.
    if x.abs() > 1e12 {
        return None;
    }
    let half_place = 0.5 * 10f64.powi(i32::try_from(places).ok()?.checked_neg()?);
    (1..=1000i128).find_map(|q| {
        let p = (x * q as f64).round();
        // Strictly inside: a fraction on the edge (5/32 between 0.1562 and 0.1563) would join
        // two decimals `equivalent` tells apart.
        if (x - p / q as f64).abs() >= half_place * (1.0 - 1e-9) {
            return None;
        }
        let p = p as i128;
        let g = gcd(p.unsigned_abs() as i128, q);
        Some(match (p / g, q / g) {
            (p, 1) => p.to_string(),
            (p, q) => format!("{p}/{q}"),
        })
    })
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 {
        a.max(1)
    } else {
        gcd(b, a % b)
    }
}
