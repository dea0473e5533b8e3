//! A program's helpers written in fenced blocks of their own: a model that writes `helper` in
//! one block and `def f(x): return helper(x)` in the next means one program. Read from the text
//! alone, so conservatively: only a name the chosen block uses bare (not after a `.`, not in a
//! string or comment) and binds nowhere (not as a parameter, a variable, an import, a builtin,
//! nor a name the prompt defines) is looked for, among the top-level `def`s, `class`es and
//! imports of the other blocks (the nearest block before the chosen one first, then the
//! nearest after), leaving out blocks of tests (pytest, unittest, imports from the solution's
//! own module); a statement taken brings what it needs in turn.

use std::collections::{HashMap, HashSet};

/// Block `at` of `blocks`, after the statements of the other blocks that define what it needs
/// and does not bind itself (nor are `known`: the prompt's names): imports first, then in the
/// order written.
pub(super) fn with_helpers(blocks: &[String], at: usize, known: &HashSet<String>) -> String {
    let Some(chosen) = blocks.get(at) else {
        return String::new();
    };
    let hidden = masked(chosen);
    // A `*` import binds names that cannot be told: a name the program may have from it is
    // taken from no import (one that fails to load would fail the program); a def it also
    // binds is overridden by it, as it runs after, and brings imports only for what its
    // definition needs (decorators, defaults, annotations, bases), not its body.
    let star = hidden
        .lines()
        .any(|l| l.trim_start().starts_with("from ") && l.trim_end().ends_with("import *"));
    let mut own: HashSet<String> = bound(&hidden);
    own.extend(known.iter().cloned());
    // What it needs: names it uses (not under `if __name__ == "__main__":`, which does not run
    // in the program under test), each with whether the `*` import may give it.
    let needed: Vec<(String, bool)> = bare_uses(&without_main_guard(chosen, &hidden))
        .into_iter()
        .filter(|n| !own.contains(n) && !is_builtin(n))
        .map(|n| (n, star))
        .collect();
    if needed.is_empty() {
        return chosen.clone();
    }
    // Who binds each name: the nearest block before the chosen one, then the nearest after.
    let order = (0..at).rev().chain(at + 1..blocks.len());
    let mut statements: Vec<TopLevel> = Vec::new();
    let mut provider: HashMap<String, usize> = HashMap::new();
    for i in order {
        let block = &blocks[i];
        let hidden = masked(block);
        if is_tests(&hidden) {
            continue;
        }
        for mut statement in top_level(block, &hidden) {
            statement.block = i;
            let index = statements.len();
            for name in &statement.names {
                provider.entry(name.clone()).or_insert(index);
            }
            statements.push(statement);
        }
    }
    let mut taken = vec![false; statements.len()];
    let mut wanted = needed;
    let mut seen: HashSet<(String, bool)> = HashSet::new();
    // The program's own names the helpers taken use.
    let mut uses_own: HashSet<String> = HashSet::new();
    while let Some((name, from_star)) = wanted.pop() {
        if !seen.insert((name.clone(), from_star)) {
            continue;
        }
        let Some(&index) = provider.get(&name) else {
            continue;
        };
        let statement = &statements[index];
        if from_star && statement.import && !statement.future {
            continue;
        }
        // For a name the `*` may give, a def whose definition needs an import is not taken
        // (the import might not load; the `*`, run after, would override the def anyway).
        if from_star
            && definition_needs(statement, &own).iter().any(|n| {
                provider
                    .get(n)
                    .is_some_and(|&k| statements[k].import && !statements[k].future)
            })
        {
            continue;
        }
        if std::mem::replace(&mut taken[index], true) {
            continue;
        }
        // Its block's `from __future__` imports come with it (annotations it holds may need
        // them).
        for (k, other) in statements.iter().enumerate() {
            if other.block == statement.block && other.future {
                taken[k] = true;
            }
        }
        let inner = &statement.hidden;
        let binds = bound(inner);
        let at_definition: HashSet<String> = bare_uses(&statement.header).into_iter().collect();
        for n in bare_uses(inner) {
            if is_builtin(&n) || binds.contains(&n) {
                continue;
            }
            if own.contains(&n) {
                uses_own.insert(n);
                continue;
            }
            // What the body needs may come from the `*` import as the program's own needs
            // may; what the definition needs must be there before it.
            let star_may_give = from_star && !at_definition.contains(&n);
            wanted.push((n, star_may_give));
        }
    }
    let mut helpers: Vec<&TopLevel> = statements
        .iter()
        .zip(&taken)
        .filter(|(_, &t)| t)
        .map(|(s, _)| s)
        .collect();
    if helpers.is_empty() {
        return chosen.clone();
    }
    helpers.sort_by_key(|s| (!s.import, s.block, s.line));
    // Of the program's own imports, those the helpers use go first as well (and stay where
    // they are): a helper's annotations, defaults or decorators may need them when it is
    // defined. Only imports that stand before any other statement of the program (one after
    // `sys.path.insert(...)` may need it) and share no line with another (`import sys; x = 1`).
    let hidden_lines: Vec<&str> = hidden.split('\n').collect();
    let first_other = statement_starts(&hidden_lines)
        .into_iter()
        .find(|&i| {
            !["def ", "async def ", "class ", "import ", "from ", "@"]
                .iter()
                .any(|k| hidden_lines[i].starts_with(k))
        })
        .unwrap_or(usize::MAX);
    let own_imports: Vec<TopLevel> = top_level(chosen, &hidden)
        .into_iter()
        .filter(|s| {
            s.import
                && !s.future
                && s.line < first_other
                && !s.header.contains(';')
                && s.names.iter().any(|n| uses_own.contains(n))
        })
        .collect();
    // Nothing goes first that would fail when it is defined for want of a name not yet bound
    // (the program alone would have loaded): then the program stands alone.
    let mut defined: HashSet<String> = known.clone();
    for statement in own_imports.iter().chain(helpers.iter().copied()) {
        let wants = definition_needs(statement, &HashSet::new());
        if wants.iter().any(|n| !defined.contains(n)) {
            return chosen.clone();
        }
        defined.extend(statement.names.iter().cloned());
    }
    let mut code: String = own_imports
        .iter()
        .map(|s| s.text.clone())
        .chain(helpers.iter().map(|s| s.text.clone()))
        .map(|text| format!("{}\n", text.trim_end()))
        .collect();
    code.push('\n');
    code.push_str(chosen);
    hoist_future(&code)
}

/// The names `statement` needs when it is defined and does not bind itself, less builtins and
/// `skip`.
fn definition_needs(statement: &TopLevel, skip: &HashSet<String>) -> Vec<String> {
    if statement.import {
        return Vec::new();
    }
    let binds = bound(&statement.header);
    bare_uses(&statement.header)
        .into_iter()
        .filter(|n| {
            !is_builtin(n)
                && !binds.contains(n)
                && !skip.contains(n)
                && !statement.names.contains(n)
        })
        .collect()
}

/// `hidden` ([`masked`] `code`) with the body of a top-level `if __name__ == "__main__":`
/// blanked (not that of another test of `__name__`: the program under test runs as another
/// module, so `if __name__ != "__main__":` runs).
fn without_main_guard(code: &str, hidden: &str) -> String {
    let mut inside = false;
    code.split('\n')
        .zip(hidden.split('\n'))
        .map(|(line, hidden)| {
            if !hidden.trim().is_empty() && !hidden.starts_with([' ', '\t']) {
                let compact: String = line.split_whitespace().collect();
                inside = compact.starts_with("if__name__==")
                    && (compact.contains("'__main__'") || compact.contains("\"__main__\""));
                inside |= compact.starts_with("if'__main__'==__name__")
                    || compact.starts_with("if\"__main__\"==__name__");
            }
            if inside {
                " ".repeat(hidden.len())
            } else {
                hidden.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `code` with its `from __future__` imports moved to the top, where Python requires them
/// (helpers or a prompt's preamble put before a program that has one).
pub(super) fn hoist_future(code: &str) -> String {
    let hidden = masked(code);
    let is_future = |l: &str| l.starts_with("from __future__ import");
    if !hidden.lines().any(is_future) {
        return code.to_string();
    }
    let (mut future, mut rest) = (String::new(), String::new());
    // Inside a future import still open (brackets, a backslash): its lines go with it.
    let mut open = false;
    let mut depth = 0i32;
    for (line, hidden) in code.split('\n').zip(hidden.split('\n')) {
        let moved = open || is_future(hidden);
        let to = if moved { &mut future } else { &mut rest };
        to.push_str(line);
        to.push('\n');
        if moved {
            depth += hidden.chars().map(nesting).sum::<i32>();
            open = depth > 0 || hidden.trim_end().ends_with('\\');
        }
    }
    rest.pop();
    future + &rest
}

/// The names `code` binds (anywhere: a prompt's helpers' own locals too, which only keeps
/// helpers of those names out, the safe side): what a prompt's preamble gives the program.
pub(super) fn top_level_names(code: &str) -> HashSet<String> {
    bound(&masked(code))
}

/// A top-level statement that binds names: a `def` or a `class` (with the decorators before
/// it), or an import.
#[derive(Debug)]
struct TopLevel {
    text: String,
    /// Its text [`masked`].
    hidden: String,
    names: Vec<String>,
    import: bool,
    /// A `from __future__` import.
    future: bool,
    /// What runs when it is defined ([`masked`]): a def's decorators and signature; all of
    /// an import or a class.
    header: String,
    /// Where it was written: its block, and its first line there.
    block: usize,
    line: usize,
}

/// The `def`s, `class`es and imports at the top level of `code` (`hidden`: [`masked`]).
fn top_level(code: &str, hidden: &str) -> Vec<TopLevel> {
    let lines: Vec<&str> = code.split('\n').collect();
    let hidden_lines: Vec<&str> = hidden.split('\n').collect();
    let starts = statement_starts(&hidden_lines);
    let mut statements = Vec::new();
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(lines.len());
        let Some(head) = (start..end).find(|&i| {
            hidden_lines
                .get(i)
                .is_some_and(|l| opens_statement(l) && !l.starts_with('@'))
        }) else {
            continue;
        };
        let head_text = hidden_lines[head].trim_start_matches("async ");
        let hidden = hidden_lines[start..end].join("\n");
        let (names, import) = if let Some(rest) = head_text
            .strip_prefix("def ")
            .or_else(|| head_text.strip_prefix("class "))
        {
            (identifier(rest).into_iter().collect::<Vec<_>>(), false)
        } else if head_text.starts_with("import ") || head_text.starts_with("from ") {
            (imported(&hidden), true)
        } else {
            continue;
        };
        if names.is_empty() {
            continue;
        }
        // What runs at definition ([`masked`]): an import or a class whole (its body runs
        // when it is defined); of a def, its decorators and its signature, to the `:` that
        // ends it (on its own line or before a body on the same line).
        let header = if import || head_text.starts_with("class ") {
            hidden.clone()
        } else {
            let head_at: usize = hidden_lines[start..head].iter().map(|l| l.len() + 1).sum();
            let mut depth = 0i32;
            let cut = hidden[head_at..]
                .char_indices()
                .find(|&(_, c)| {
                    depth += nesting(c);
                    c == ':' && depth <= 0
                })
                .map_or(hidden.len(), |(at, _)| head_at + at);
            hidden[..cut].to_string()
        };
        statements.push(TopLevel {
            text: lines[start..end].join("\n"),
            hidden,
            header,
            names,
            import,
            future: head_text.starts_with("from __future__ "),
            block: 0,
            line: start,
        });
    }
    statements
}

/// The first line of each top-level statement of `hidden_lines` ([`masked`]): unindented,
/// outside brackets and continuations, after no decorator.
fn statement_starts(hidden_lines: &[&str]) -> Vec<usize> {
    let mut starts = Vec::new();
    let (mut depth, mut continued, mut after_decorator) = (0i32, false, false);
    for (i, line) in hidden_lines.iter().enumerate() {
        if depth == 0 && !continued && opens_statement(line) {
            if !after_decorator {
                starts.push(i);
            }
            after_decorator = line.starts_with('@');
        }
        depth = (depth + line.chars().map(nesting).sum::<i32>()).max(0);
        continued = line.trim_end().ends_with('\\');
    }
    starts
}

/// How `c` changes the depth of brackets.
fn nesting(c: char) -> i32 {
    match c {
        '(' | '[' | '{' => 1,
        ')' | ']' | '}' => -1,
        _ => 0,
    }
}

/// Whether a line ([`masked`]) could open a top-level statement: unindented, not blank, not
/// closing a bracket.
fn opens_statement(line: &str) -> bool {
    !line.trim().is_empty() && !line.starts_with([' ', '\t', ')', ']', '}'])
}

/// The names an import statement (`hidden`, comments gone) binds: `import a.b as c, d` binds
/// `c` and `a`... `d`; `from m import (x as y, z)` binds `y` and `z`; a `*` import binds none
/// that can be told.
fn imported(hidden: &str) -> Vec<String> {
    let text: String = hidden
        .chars()
        .map(|c| if "()\\\n".contains(c) { ' ' } else { c })
        .collect();
    let text = text.trim();
    let (list, dotted) = match text.strip_prefix("import ") {
        Some(list) => (list, true),
        None => match text.split_once(" import ") {
            Some((_, list)) => (list, false),
            None => return Vec::new(),
        },
    };
    list.split(',')
        .filter_map(|item| {
            let item = item.trim();
            match item.split_once(" as ") {
                Some((_, alias)) => identifier(alias),
                None if dotted => identifier(item.split('.').next().unwrap_or_default()),
                None => identifier(item),
            }
        })
        .collect()
}

/// The identifier `text` starts with (after spaces), if any.
fn identifier(text: &str) -> Option<String> {
    let text = text.trim_start();
    let name: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
}

/// Whether a block (`hidden`: [`masked`]) is tests of the program rather than part of it.
fn is_tests(hidden: &str) -> bool {
    hidden.lines().any(|line| {
        let line = line.trim_start();
        [
            "import pytest",
            "import unittest",
            "from pytest",
            "from unittest",
        ]
        .iter()
        .any(|s| line.starts_with(s))
            || (line.starts_with("from ") && {
                let module = line["from ".len()..].split_whitespace().next();
                matches!(module, Some("solution" | "main" | "__main__"))
            })
            || line.starts_with("def test_")
            || line.starts_with("class Test")
            || line.starts_with("@pytest")
    })
}

/// `code` with its strings and comments blanked to spaces (newlines kept), so that what is
/// left is names, operators and brackets, on the lines they had.
fn masked(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
            continue;
        }
        if c != '\'' && c != '"' {
            out.push(c);
            i += 1;
            continue;
        }
        // A string prefix (`f`, `rb`, ...) glued to the quote is part of the string.
        let mut prefix = 0;
        while prefix < 2 && out.len() > prefix && "rRbBfFuU".contains(out[out.len() - 1 - prefix]) {
            prefix += 1;
        }
        let glued = out.len() == prefix || {
            let before = out[out.len() - 1 - prefix];
            !(before.is_alphanumeric() || before == '_')
        };
        if glued {
            for k in out.len() - prefix..out.len() {
                out[k] = ' ';
            }
        }
        let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
        let quote_len = if triple { 3 } else { 1 };
        out.extend(std::iter::repeat_n(' ', quote_len));
        i += quote_len;
        while i < chars.len() {
            let d = chars[i];
            if d == '\\' {
                out.push(' ');
                if let Some(&next) = chars.get(i + 1) {
                    out.push(blank(next));
                }
                i += 2;
                continue;
            }
            if !triple && d == '\n' {
                // An unclosed one-line string ends with its line.
                break;
            }
            if d == c && (!triple || (chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c)))
            {
                out.extend(std::iter::repeat_n(' ', quote_len));
                i += quote_len;
                break;
            }
            out.push(blank(d));
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// The identifiers of `hidden` ([`masked`]) with whether each follows a `.` (an attribute).
fn identifiers(hidden: &str) -> Vec<(&str, bool)> {
    words(hidden)
        .into_iter()
        .map(|w| (w.name, w.dotted))
        .collect()
}

/// An identifier as it stands in code.
struct Word<'a> {
    name: &'a str,
    /// After a `.`: an attribute.
    dotted: bool,
    /// Inside brackets before a lone `=`: a keyword argument's name (or a parameter's).
    keyword: bool,
}

fn words(hidden: &str) -> Vec<Word<'_>> {
    let mut found = Vec::new();
    let mut previous = ' ';
    let mut start: Option<usize> = None;
    let mut dotted = false;
    let mut depth = 0i32;
    // The last character before the word that is not whitespace, and whether it opens an
    // argument (`(` or `,`): a keyword argument's name stands right after one.
    let mut last = ' ';
    let mut leads = false;
    for (at, c) in hidden
        .char_indices()
        .chain(std::iter::once((hidden.len(), ' ')))
    {
        let word = c.is_alphanumeric() || c == '_';
        match (start, word) {
            (None, true) => {
                start = Some(at);
                dotted = previous == '.';
                leads = matches!(last, '(' | ',');
            }
            (Some(from), false) => {
                let name = &hidden[from..at];
                if !name.starts_with(|c: char| c.is_ascii_digit()) {
                    let after = hidden[at..].trim_start_matches([' ', '\t']);
                    let keyword =
                        depth > 0 && leads && after.starts_with('=') && !after.starts_with("==");
                    found.push(Word {
                        name,
                        dotted,
                        keyword,
                    });
                }
                start = None;
            }
            _ => {}
        }
        depth = (depth + nesting(c)).max(0);
        if !c.is_whitespace() || c == '\n' {
            previous = c;
        }
        // (A backslash continues the line: what stands before it counts.)
        if !c.is_whitespace() && c != '\\' {
            last = c;
        }
    }
    found
}

/// The names `hidden` ([`masked`]) uses bare: not after a `.`, not keyword arguments' names,
/// not keywords.
fn bare_uses(hidden: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for w in words(hidden) {
        let new = !names.iter().any(|n| n == w.name);
        if !w.dotted && !w.keyword && !KEYWORDS.contains(&w.name) && new {
            names.push(w.name.to_string());
        }
    }
    names
}

/// `hidden` ([`masked`]) in logical lines: a line continued inside brackets or after a
/// backslash is joined to the next; statements after a `;` are lines of their own.
fn logical_lines(hidden: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut depth = 0i32;
    for c in hidden.chars() {
        depth = (depth + nesting(c)).max(0);
        let continued = current.trim_end().ends_with('\\');
        match c {
            '\n' if depth > 0 || continued => {
                if continued {
                    current.truncate(current.trim_end().len() - 1);
                }
                current.push(' ');
            }
            '\n' => lines.push(std::mem::take(&mut current)),
            ';' if depth == 0 => {
                // The next statement stands where this one did.
                let indent = current.len() - current.trim_start().len();
                lines.push(std::mem::take(&mut current));
                current.push_str(&" ".repeat(indent));
            }
            c => current.push(c),
        }
    }
    lines.push(current);
    lines
}

/// The names `hidden` ([`masked`]) binds anywhere: `def` and `class` names and parameters,
/// assignment, `for`, `with ... as`, `except ... as`, `:=` and lambda targets, imports.
fn bound(hidden: &str) -> HashSet<String> {
    let mut names = HashSet::new();
    // Keyword-led bindings: the word after `def`, `class`, `as`, `import` lists, `for` targets,
    // `lambda` parameters.
    for line in logical_lines(hidden) {
        let line = line.as_str();
        let trimmed = line.trim_start();
        let head = trimmed.strip_prefix("async ").unwrap_or(trimmed);
        if let Some(rest) = head.strip_prefix("def ") {
            names.extend(identifier(rest));
            if let Some(open) = rest.find('(') {
                names.extend(parameters(&rest[open + 1..]));
            }
        } else if let Some(rest) = head.strip_prefix("class ") {
            names.extend(identifier(rest));
        } else if head.starts_with("import ") || head.starts_with("from ") {
            names.extend(imported(head));
        }
        for (at, _) in line.match_indices(" as ") {
            names.extend(identifier(&line[at + 4..]));
        }
        for (at, _) in line.match_indices("for ") {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &line[at + 4..];
            let targets = rest.split(" in ").next().unwrap_or_default();
            names.extend(
                identifiers(targets)
                    .into_iter()
                    .filter(|(_, dotted)| !dotted)
                    .map(|(n, _)| n.to_string()),
            );
        }
        for (at, _) in line.match_indices("lambda") {
            let rest = &line[at + "lambda".len()..];
            if let Some(colon) = rest.find(':') {
                names.extend(parameters(&format!("{})", &rest[..colon])));
            }
        }
        // `x = ...`, `a, b = ...`, `x += 1`: the names before the first `=` that is not part
        // of a comparison, outside brackets.
        let mut depth = 0i32;
        let chars: Vec<(usize, char)> = line.char_indices().collect();
        for (k, &(at, c)) in chars.iter().enumerate() {
            depth += nesting(c);
            match c {
                '=' if depth == 0 => {
                    let next = chars.get(k + 1).map(|&(_, c)| c);
                    let prev = k.checked_sub(1).and_then(|p| chars.get(p)).map(|&(_, c)| c);
                    if next == Some('=') || matches!(prev, Some('=' | '!' | '<' | '>')) {
                        break;
                    }
                    names.extend(targets(&line[..at]));
                    break;
                }
                _ => {}
            }
        }
    }
    // `name := value`.
    for (at, _) in hidden.match_indices(":=") {
        let before = hidden[..at].trim_end();
        let start = before
            .char_indices()
            .rev()
            .take_while(|&(_, c)| c.is_alphanumeric() || c == '_')
            .last()
            .map_or(before.len(), |(i, _)| i);
        names.extend(identifier(&before[start..]));
    }
    names
}

/// The names an assignment's `target` ([`masked`]) binds: `a`, `a, (b, [c])`, not the object
/// of a subscript or attribute (`q[r] = `, `o.x = `), which is used.
fn targets(target: &str) -> Vec<String> {
    // Subscripts and calls (a bracket right after a name or a closing bracket) become a `#`
    // mark, so the name before one reads as used.
    let mut kept = String::new();
    let mut skipping = 0i32;
    let mut last = ' ';
    for c in target.chars() {
        if skipping > 0 {
            skipping += nesting(c);
            continue;
        }
        let opens = matches!(c, '(' | '[' | '{');
        if opens && (last.is_alphanumeric() || matches!(last, '_' | ')' | ']' | '}' | '#')) {
            kept.push('#');
            last = '#';
            skipping = 1;
            continue;
        }
        kept.push(c);
        if !c.is_whitespace() {
            last = c;
        }
    }
    let words = identifiers(&kept);
    let mut names = Vec::new();
    let mut rest = kept.as_str();
    for (name, dotted) in words {
        let Some(at) = rest.find(name) else { continue };
        let after = rest[at + name.len()..].trim_start();
        rest = &rest[at + name.len()..];
        if !dotted && !KEYWORDS.contains(&name) && !after.starts_with(['.', '#']) {
            names.push(name.to_string());
        }
    }
    names
}

/// The parameter names of a `def` or `lambda` whose list starts `list` (after the opening
/// parenthesis, through the closing one).
fn parameters(list: &str) -> Vec<String> {
    let mut depth = 0i32;
    let mut current = String::new();
    let mut items = Vec::new();
    for c in list.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                current.push(c);
            }
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => {
                depth -= 1;
                current.push(c);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    items.push(current);
    items
        .iter()
        .filter_map(|item| identifier(item.trim_start().trim_start_matches('*')))
        .collect()
}

fn is_builtin(name: &str) -> bool {
    BUILTINS.binary_search(&name).is_ok()
}

const KEYWORDS: [&str; 37] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "case", "class",
    "continue", "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if",
    "import", "in", "is", "lambda", "match", "nonlocal", "not", "or", "pass", "raise", "return",
    "try", "while", "with", "yield",
];

/// Python's builtins (sorted): a name one of them gives is never looked for elsewhere (a
/// `from math import pow` in another block would replace the three-argument `pow`).
const BUILTINS: [&str; 151] = [
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "BaseException",
    "BaseExceptionGroup",
    "BlockingIOError",
    "BrokenPipeError",
    "BufferError",
    "BytesWarning",
    "ChildProcessError",
    "ConnectionAbortedError",
    "ConnectionError",
    "ConnectionRefusedError",
    "ConnectionResetError",
    "DeprecationWarning",
    "EOFError",
    "Ellipsis",
    "EncodingWarning",
    "EnvironmentError",
    "Exception",
    "ExceptionGroup",
    "False",
    "FileExistsError",
    "FileNotFoundError",
    "FloatingPointError",
    "FutureWarning",
    "GeneratorExit",
    "IOError",
    "ImportError",
    "ImportWarning",
    "IndentationError",
    "IndexError",
    "InterruptedError",
    "IsADirectoryError",
    "KeyError",
    "KeyboardInterrupt",
    "LookupError",
    "MemoryError",
    "ModuleNotFoundError",
    "NameError",
    "None",
    "NotADirectoryError",
    "NotImplemented",
    "NotImplementedError",
    "OSError",
    "OverflowError",
    "PendingDeprecationWarning",
    "PermissionError",
    "ProcessLookupError",
    "RecursionError",
    "ReferenceError",
    "ResourceWarning",
    "RuntimeError",
    "RuntimeWarning",
    "StopAsyncIteration",
    "StopIteration",
    "SyntaxError",
    "SyntaxWarning",
    "SystemError",
    "SystemExit",
    "TabError",
    "TimeoutError",
    "True",
    "TypeError",
    "UnboundLocalError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "UnicodeTranslateError",
    "UnicodeWarning",
    "UserWarning",
    "ValueError",
    "Warning",
    "ZeroDivisionError",
    "__import__",
    "__name__",
    "abs",
    "aiter",
    "all",
    "anext",
    "any",
    "ascii",
    "bin",
    "bool",
    "breakpoint",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "compile",
    "complex",
    "copyright",
    "credits",
    "delattr",
    "dict",
    "dir",
    "divmod",
    "enumerate",
    "eval",
    "exec",
    "exit",
    "filter",
    "float",
    "format",
    "frozenset",
    "getattr",
    "globals",
    "hasattr",
    "hash",
    "help",
    "hex",
    "id",
    "input",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "license",
    "list",
    "locals",
    "map",
    "max",
    "memoryview",
    "min",
    "next",
    "object",
    "oct",
    "open",
    "ord",
    "pow",
    "print",
    "property",
    "quit",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "setattr",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "tuple",
    "type",
    "vars",
    "zip",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{assemble, extract_code};

    /// The program `blocks` (fenced, in order) make for entry point `f`.
    fn program(blocks: &[&str]) -> String {
        let text: String = blocks
            .iter()
            .map(|b| format!("Next:\n```python\n{b}```\n"))
            .collect();
        extract_code(&text, Some("f"))
    }

    #[test]
    fn a_helper_comes_with_what_it_uses_and_nothing_else() {
        let helpers = "import functools, math\nfrom typing import (List,  # lists\n    Tuple as T)\n\n@functools.lru_cache(\n    maxsize=None,\n)\ndef root(x):\n    \"\"\"The root.\nSee below.\n\"\"\"\n    return math.sqrt(x)\n\ndef unused():\n    pass\n\nprint(root(4))\n";
        let draft = "def f(xs):\n    return 0\n";
        let chosen = "def f(xs: List[int]) -> int:\n    return sum(root(x) for x in xs)\n";
        assert_eq!(
            program(&[helpers, draft, chosen]),
            format!(
                "import functools, math\nfrom typing import (List,  # lists\n    Tuple as T)\n@functools.lru_cache(\n    maxsize=None,\n)\ndef root(x):\n    \"\"\"The root.\nSee below.\n\"\"\"\n    return math.sqrt(x)\n\n{chosen}"
            )
        );
    }

    #[test]
    fn names_the_program_binds_or_reads_as_attributes_are_not_looked_for() {
        // Parameters, locals, loop targets, builtins, attributes, and words in strings and
        // comments: none is taken from the other block.
        let other = "from numpy import sqrt\nfrom math import pow\ndef numbers():\n    pass\ndef total():\n    pass\ndef x():\n    pass\ndef note():\n    pass\n";
        let chosen = "import math\ndef f(numbers, m=3):\n    total = 0  # note\n    for i, x in enumerate(numbers):\n        total += pow(x, 2, m) + math.sqrt(i)\n    s = f\"{note}\"\n    return total, 'note', s\n";
        assert_eq!(program(&[other, chosen]), chosen);
    }

    #[test]
    fn tests_are_not_part_of_the_program_and_the_nearest_helper_before_wins() {
        let right = "def f(numbers):\n    return helper(numbers)\n";
        let tests = "import pytest\nfrom solution import f\n\n@pytest.fixture\ndef helper():\n    return [1]\n\ndef test_f(numbers):\n    assert f(numbers)\n";
        let old = "def helper(x):\n    return 1\n";
        let new = "def helper(x):\n    return 2 * x\n";
        assert_eq!(
            program(&[old, new, right, tests]),
            format!("{new}\n{right}")
        );
        // Only after it: the nearest after.
        assert_eq!(
            program(&[right, tests, new, old]),
            format!("{new}\n{right}")
        );
    }

    #[test]
    fn a_name_the_prompt_defines_is_the_prompts() {
        let prompt = "import math\n\n\ndef poly(xs: list, x: float):\n    return sum(c * math.pow(x, i) for i, c in enumerate(xs))\n\n\ndef find_zero(xs: list):\n    \"\"\"Finds a zero.\"\"\"\n";
        let task = ponder_engine::CodeTask {
            prompt: prompt.into(),
            entry_point: "find_zero".into(),
            test: String::new(),
        };
        let completion = "```python\ndef poly(xs, x):\n    ...\n```\n```python\ndef find_zero(xs):\n    return poly(xs, 0.5)\n```\n";
        let program = assemble(&task, completion);
        assert!(!program.contains("    ...\n"), "{program}");
        assert!(program.contains("return sum(c * math.pow"), "{program}");
    }

    #[test]
    fn what_the_program_binds_over_lines_and_by_keyword_is_its_own() {
        // Keyword arguments' names, a signature and an import over several lines, two
        // statements on a line, a `:=`: none is looked for in the numpy draft.
        let draft = "import numpy as np\ndef key(p):\n    return np.hypot(*p)\ndef window(x):\n    return np\ndef Counter():\n    pass\ndef hi():\n    pass\ndef m():\n    pass\n";
        let chosen = "from collections import (\n    deque,\n    Counter)\ndef f(\n    xs,\n    window,\n):\n    lo = 0; hi = len(xs)\n    if (m := max(xs)) > 0:\n        pass\n    return sorted(xs, key=lambda p: p), Counter(xs), window, lo, hi, m\n";
        assert_eq!(program(&[draft, chosen]), chosen);
        // A `*` import may bind anything: no import is looked for; a def still is (the
        // import, after it, would override it).
        let star = "from math import *\ndef f(x):\n    return gcd(x, 4) + helper(x)\n";
        let helper = "def helper(x):\n    return x\n";
        assert_eq!(
            program(&["from fractions import gcd\n", helper, star]),
            format!("{helper}\n{star}")
        );
        // Under it, a def whose definition needs an import is not taken for a name the `*` may
        // give (the import might not load, and the `*` would override the def).
        let cached = "from functools import lru_cache\n\n@lru_cache(maxsize=None)\ndef gcd2(a, b):\n    return a\n";
        let star2 = "from math import *\n\ndef f(a, b):\n    return gcd2(a, b)\n";
        assert_eq!(program(&[cached, star2]), star2);
        // Under it a def's body needs no import (the `*` may give it): only its definition.
        let np_gcd = "import numpyzz as np\ndef gcd(a, b):\n    return int(np.gcd(a, b))\n";
        let star3 = "from math import *\ndef f(a, b):\n    return gcd(a, b)\n";
        assert_eq!(
            program(&[np_gcd, star3]),
            format!("def gcd(a, b):\n    return int(np.gcd(a, b))\n\n{star3}")
        );
        // A class's body runs when it is defined; a one-line def's body does not.
        let fraction = "import math\nclass Fraction:\n    PI = math.pi\n";
        let star4 = "from fractions import *\ndef f():\n    return Fraction(1, 2)\n";
        assert_eq!(program(&[fraction, star4]), star4);
        let one_line = "import numpyzz as np\ndef gcd(a, b): return int(np.gcd(a, b))\n";
        assert_eq!(
            program(&[one_line, star3]),
            format!("def gcd(a, b): return int(np.gcd(a, b))\n\n{star3}")
        );
        // A helper that needs at definition a name the program binds only later: the program
        // stands alone.
        let cached =
            "from functools import lru_cache\n@lru_cache(None)\ndef helper(n):\n    return n\n";
        let late = "import sys\ninput = sys.stdin.readline\nfrom functools import lru_cache\ndef main():\n    print(helper(3))\ndef f(n):\n    return n\n";
        assert_eq!(program(&[cached, late]), late);
        // Another test of `__name__` runs in the program under test: its uses count.
        let other = "def f(x):\n    return x\n\nif __name__ != '__main__':\n    setup()\n";
        let setup = "def setup():\n    pass\n";
        assert_eq!(program(&[setup, other]), format!("{setup}\n{other}"));
        // A name used only under the main guard is not looked for.
        let guarded = "def f(x):\n    return x\n\nif __name__ == \"__main__\":\n    demo()\n";
        assert_eq!(
            program(&["import numpyz\ndef demo():\n    pass\n", guarded]),
            guarded
        );
        // A helper's annotation that the program's own import gives: that import goes first.
        let prefix =
            "from typing import List\n\ndef prefix(xs: List[int]) -> List[int]:\n    return xs\n";
        let uses =
            "from typing import List\n\ndef f(xs: List[int]) -> int:\n    return prefix(xs)[-1]\n";
        assert!(
            program(&[prefix, uses]).starts_with("from typing import List\ndef prefix"),
            "{}",
            program(&[prefix, uses])
        );
        // The program's own imports go first only where nothing of it must run before them,
        // and alone on their line: `import sys` does, not `mymodx` after the path is set, nor
        // `import sys; x = 1`; a helper whose definition then lacks one is not taken at all.
        let helper = "def helper(v=sys.maxsize):\n    return v\n";
        let first = "import sys\ndef f(v):\n    return helper(v)\n";
        assert_eq!(
            program(&[helper, first]),
            format!("import sys\n{helper}\n{first}")
        );
        for (helper, chosen) in [
            (
                "def helper(v=mymodx.V + sys.maxsize):\n    return v\n",
                "import sys\nsys.path.insert(0, 'lib')\nimport mymodx\ndef f(x):\n    return helper(x)\n",
            ),
            (
                "def helper(v=sys.maxsize):\n    return v\n",
                "import sys; x = 1\ndef f(v):\n    return helper(v)\n",
            ),
        ] {
            assert_eq!(program(&[helper, chosen]), chosen);
        }
        // An annotated parameter's default: the annotation is a use.
        let node = "class TreeNode:\n    pass\n";
        let chosen = "def f(root: TreeNode = None, *, depth=0) -> int:\n    return depth\n";
        assert_eq!(program(&[node, chosen]), format!("{node}\n{chosen}"));
    }

    #[test]
    fn future_imports_stay_first() {
        let node = "class TreeNode:\n    pass\n";
        let chosen =
            "from __future__ import annotations\ndef f(root: TreeNode) -> int:\n    return 0\n";
        assert_eq!(
            program(&[node, chosen]),
            "from __future__ import annotations\nclass TreeNode:\n    pass\n\ndef f(root: TreeNode) -> int:\n    return 0\n"
        );
        // One over several lines moves whole; a helper's own block's comes with it.
        let split = "from __future__ import (annotations,\n    division)\ndef f(x):\n    return helper(x)\n";
        let node = "from __future__ import annotations\nclass Node:\n    def add(self, o: Node) -> Node:\n        return o\ndef helper(x):\n    return Node()\n";
        let got = program(&[node, split]);
        assert!(
            got.starts_with("from __future__ import annotations\nfrom __future__ import (annotations,\n    division)\nclass Node:"),
            "{got}"
        );
        // After a prompt's preamble too.
        let task = ponder_engine::CodeTask {
            prompt: "from typing import List\n\n\ndef f(root) -> int:\n".into(),
            entry_point: "f".into(),
            test: String::new(),
        };
        let program = assemble(&task, &format!("```python\n{chosen}```\n"));
        assert!(
            program.starts_with("from __future__ import annotations\nfrom typing import List\n"),
            "{program}"
        );
    }

    #[test]
    fn strings_and_comments_are_blanked_in_place() {
        let code = "a = f'{b}' + rb\"c\\\"d\" # e\nx = '''g\nh'''\ny = 'unclosed\nz";
        let hidden = masked(code);
        assert_eq!(hidden.lines().count(), code.lines().count());
        assert_eq!(bare_uses(&hidden), ["a", "x", "y", "z"]);
        assert_eq!(
            imported(&masked("import os.path as p, sys  # a, b\n")),
            ["p", "sys"]
        );
        assert_eq!(
            imported(&masked("from a.b import (c as d,\n    e)\n")),
            ["d", "e"]
        );
        assert!(imported(&masked("from m import *\n")).is_empty());
        let names = bound(&masked(
            "def g(a, *b, c: int = 1, **d):\n    e, [f] = 1, 2\n    if (h := 3) == 3: pass\n    k = lambda m, n: m\n    with o as p:\n        q[r] = 1\n        u.v = 2\n    return s == t\n",
        ));
        for name in ["g", "a", "b", "c", "d", "e", "f", "h", "k", "m", "n", "p"] {
            assert!(names.contains(name), "{name} in {names:?}");
        }
        for name in ["q", "r", "s", "t", "o", "u"] {
            assert!(!names.contains(name), "{name} in {names:?}");
        }
    }
}
