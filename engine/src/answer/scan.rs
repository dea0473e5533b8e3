//! Character-level scanning helpers shared by extraction, normalisation and the
//! number parser.

/// Count of consecutive ASCII digits starting at `i`.
pub(super) fn digit_run(c: &[char], i: usize) -> usize {
    c.iter()
        .skip(i)
        .take_while(|ch| ch.is_ascii_digit())
        .count()
}

pub(super) fn is_digit_at(c: &[char], i: usize) -> bool {
    c.get(i).is_some_and(|ch| ch.is_ascii_digit())
}

pub(super) fn collect(c: &[char], from: usize, to: usize) -> String {
    c.get(from..to).unwrap_or(&[]).iter().collect()
}

/// The ASCII letters starting at `i` (a command name after a backslash).
pub(super) fn letters_at(c: &[char], i: usize) -> String {
    c.iter()
        .skip(i)
        .take_while(|ch| ch.is_ascii_alphabetic())
        .collect()
}

/// Index of the `}` matching the `{` at `open`; backslash escapes are skipped.
pub(super) fn group_end(c: &[char], open: usize) -> Option<usize> {
    bracket_end(c, open, ('{', '}'))
}

/// Index of the `)` matching the `(` at `open`; backslash escapes are skipped.
pub(super) fn paren_end(c: &[char], open: usize) -> Option<usize> {
    bracket_end(c, open, ('(', ')'))
}

fn bracket_end(c: &[char], open: usize, (left, right): (char, char)) -> Option<usize> {
    if c.get(open) != Some(&left) {
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
            ch if ch == left => depth += 1,
            ch if ch == right => {
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
