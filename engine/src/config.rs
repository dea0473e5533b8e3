//! Reading config files: TOML, YAML or JSON by extension, strict, with errors that name the
//! file, the key, its line and what was expected.
//!
//! The line is that of the key in the document (toml's spans; for YAML and JSON, saphyr's
//! parser events), since the deserializers' own positions are missing or point at the end of
//! the table for an error inside a tagged table (see [`from_tagged`]).

use std::path::Path;

use serde::de::{DeserializeOwned, Error as _};

use crate::error::{Error, Result};

/// The formats a config file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.toml`
    Toml,
    /// `.yaml` or `.yml`
    Yaml,
    /// `.json`
    Json,
}

impl Format {
    /// The format a path's extension names, in any case (`.toml`, `.TOML`).
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Reads and parses a config file. Unknown keys and bad values are errors (the structs say
/// `deny_unknown_fields`); the message names the file, the key path and the problem.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    load_checked(path, |_| Ok(()))
}

/// [`load_file`], then `check` for the rules serde cannot express (ranges, keys that must
/// agree). Its errors name the file too; a [`Error::ConfigValue`] also gets the line of its key
/// (`at `strategy.temperature` (line 5): temperature must be a number >= 0, got -1`), or of the
/// deepest table on its path the file has (a key left at its default is not in the file).
pub fn load_checked<T: DeserializeOwned>(
    path: &Path,
    check: impl FnOnce(&T) -> Result<()>,
) -> Result<T> {
    let format = Format::of(path).ok_or_else(|| Error::Config {
        path: path.to_path_buf(),
        message: "unknown config format: expected a .toml, .yaml, .yml or .json file".into(),
    })?;
    let text = Error::read_text(path)?;
    parse_checked(&text, format, check).map_err(|message| Error::Config {
        path: path.to_path_buf(),
        message,
    })
}

/// [`load_checked`] for config text in hand (a config a program builds or receives, not a
/// file): parsed in `format` and checked; the error is a message naming the key path and its
/// line, as [`parse_str`]'s.
pub fn parse_checked<T: DeserializeOwned>(
    text: &str,
    format: Format,
    check: impl FnOnce(&T) -> Result<()>,
) -> std::result::Result<T, String> {
    // A byte-order mark, as some editors on Windows write: JSON's parser would stop at it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // An empty file would read as every default: a file cut short, or the wrong one.
    if blank(text, format) {
        return Err(
            "nothing in it (blank, or comments only): a config is a table of keys, such as \
             [model] and [strategy] (leave out --config for the defaults)"
                .into(),
        );
    }
    let config = parse_str(text, format)?;
    check(&config).map_err(|e| match &e {
        Error::ConfigValue { key, reason } => match key_line(text, format, key) {
            Some(line) => format!("at `{key}` (line {line}): {reason}"),
            None => e.to_string(),
        },
        _ => e.to_string(),
    })?;
    Ok(config)
}

/// Parses config text in `format`; the error is a message naming the key path and its line
/// (`at `strategy.n` (line 5): invalid type: string "8", expected a whole number above 0`).
pub fn parse_str<T: DeserializeOwned>(
    text: &str,
    format: Format,
) -> std::result::Result<T, String> {
    if let Some((path, value)) = non_finite(text, format) {
        let at = match key_line(text, format, &path) {
            Some(line) => format!("at `{path}` (line {line})"),
            None => format!("at `{path}`"),
        };
        return Err(format!(
            "{at}: {value} is not a usable number: give a finite one"
        ));
    }
    if let Some((path, line)) = given_twice(text, format) {
        let at = match line {
            Some(line) => format!("at `{path}` (line {line})"),
            None => format!("at `{path}`"),
        };
        return Err(format!(
            "{at}: the key is given twice in one table (the last would be kept silently): give \
             it once"
        ));
    }
    if let Some(message) = not_a_table(text, format) {
        return Err(message);
    }
    // The key path, the message, and the position the format's own error gives.
    let (path, message, position) = match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
            match serde_path_to_error::deserialize(de) {
                Ok(value) => return Ok(value),
                Err(e) => (
                    e.path().to_string(),
                    e.inner().message().trim_end().to_string(),
                    // A line alone (column 0): toml's syntax errors are told at the parse above,
                    // so no column is ever shown for these.
                    e.inner().span().map(|span| (line_of(text, span.start), 0)),
                ),
            }
        }
        Format::Yaml => {
            let de = yaml_serde::Deserializer::from_str(text);
            match serde_path_to_error::deserialize(de) {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let path = e.path().to_string();
                    let (message, position) = without_position(&e.inner().to_string());
                    (path.clone(), without_yaml_path(&message, &path), position)
                }
            }
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            match serde_path_to_error::deserialize(&mut de) {
                // One object: what follows it would be dropped silently.
                Ok(value) => {
                    return match de.end() {
                        Ok(()) => Ok(value),
                        Err(e) => Err(format!(
                            "line {}, column {}: text after the config's object (one object a \
                             file)",
                            e.line(),
                            e.column()
                        )),
                    }
                }
                Err(e) => {
                    let (message, position) = without_position(&e.inner().to_string());
                    (e.path().to_string(), message, position)
                }
            }
        }
    };
    // Where the parser stopped before it read a key (a syntax error: a missing comma, a trailing
    // one, a cut-off document), serde_path_to_error writes `?` for it: the parser's own line and
    // column say where, and the path read so far in what.
    if path == "?" || path.contains(".?") {
        let within = path
            .split(".?")
            .next()
            .filter(|p| !p.is_empty() && *p != "?");
        let at = match position {
            // No column: serde_json's at the end of a file that ends with a newline.
            Some((line, 0)) => format!("line {line}"),
            Some((line, column)) => format!("line {line}, column {column}"),
            None => "syntax".to_string(),
        };
        return Err(match within {
            Some(within) => format!("{at} (in `{within}`): {message}"),
            None => format!("{at}: {message}"),
        });
    }
    let line = position.map(|(line, _)| line);
    let message = plain_types(&message);
    let message = if path == "." || path.is_empty() {
        join_paths(&message)
    } else {
        join_paths(&format!("at `{path}`: {message}"))
    };
    // The line of the key the path names, else the format's own: toml's span, and serde_json's
    // position, are those of the whole table for an error inside a tagged table (which goes
    // through JSON), and serde_yaml gives none there.
    let split = split_path(&message);
    let line = split
        .and_then(|(path, _)| key_line(text, format, path))
        .or(line);
    Err(match (line, split) {
        (Some(line), Some((path, rest))) => format!("at `{path}` (line {line}): {rest}"),
        (Some(line), None) => format!("line {line}: {message}"),
        (None, _) => message,
    })
}

/// Whether `text` holds nothing but blank lines and comments (in YAML, or a document that is
/// null: `---` alone, `~`).
fn blank(text: &str, format: Format) -> bool {
    let empty = text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || (format != Format::Json && line.starts_with('#'))
    });
    empty
        || (format == Format::Yaml
            && matches!(
                yaml_serde::from_str::<yaml_serde::Value>(text),
                Ok(yaml_serde::Value::Null)
            ))
}

/// Why `text` is no table of keys: in YAML or JSON, a list or a plain value at the top (a
/// struct would read a list by position).
fn not_a_table(text: &str, format: Format) -> Option<String> {
    // (Nothing at all is left to the caller: an empty table reads as its defaults.)
    let top = match format {
        Format::Toml => return None,
        // Only JSON that parses: a syntax error is the parser's to tell, with its line.
        Format::Json => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Array(_)) => "a list",
            Ok(serde_json::Value::Object(_)) | Err(_) => return None,
            Ok(_) => "a plain value",
        },
        Format::Yaml => match yaml_serde::from_str::<yaml_serde::Value>(text) {
            Ok(yaml_serde::Value::Sequence(_)) => "a list",
            Ok(
                yaml_serde::Value::Mapping(_)
                | yaml_serde::Value::Tagged(_)
                | yaml_serde::Value::Null,
            )
            | Err(_) => return None,
            Ok(_) => "a plain value",
        },
    };
    Some(format!(
        "the top level is {top}, not a table of keys (such as model and strategy)"
    ))
}

/// The key path of the first number that is not finite (TOML's `nan` and `inf`, YAML's `.nan`
/// and `.inf`; JSON has none), and the number. Inside a tagged table, which goes through JSON,
/// such a number turns into null and would read as "invalid type: null"; nowhere is one useful.
fn non_finite(text: &str, format: Format) -> Option<(String, f64)> {
    fn key(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    }
    fn in_toml(value: &toml::Value, path: String) -> Option<(String, f64)> {
        match value {
            toml::Value::Float(x) if !x.is_finite() => Some((path, *x)),
            toml::Value::Table(table) => table.iter().find_map(|(k, v)| in_toml(v, key(&path, k))),
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| in_toml(v, format!("{path}[{i}]"))),
            _ => None,
        }
    }
    fn in_yaml(value: &yaml_serde::Value, path: String) -> Option<(String, f64)> {
        match value {
            yaml_serde::Value::Number(n) => {
                n.as_f64().filter(|x| !x.is_finite()).map(|x| (path, x))
            }
            yaml_serde::Value::Mapping(map) => map.iter().find_map(|(k, v)| {
                let k = k.as_str().map_or_else(|| format!("{k:?}"), str::to_string);
                in_yaml(v, key(&path, &k))
            }),
            yaml_serde::Value::Sequence(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| in_yaml(v, format!("{path}[{i}]"))),
            yaml_serde::Value::Tagged(tagged) => in_yaml(&tagged.value, path),
            _ => None,
        }
    }
    match format {
        Format::Toml => in_toml(
            &toml::Value::Table(toml::from_str(text).ok()?),
            String::new(),
        ),
        Format::Yaml => in_yaml(&yaml_serde::from_str(text).ok()?, String::new()),
        Format::Json => None,
    }
}

/// The key path of the first key given twice in one JSON object or YAML mapping, and the line
/// of its second time (where JSON's parser says; in YAML, from the parser's events). A table
/// read whole (a tagged strategy table, read through a JSON map) keeps the last, so
/// `{"n": 4, ..., "n": 16}` ran with 16; TOML's parser refuses a key given twice itself.
fn given_twice(text: &str, format: Format) -> Option<(String, Option<usize>)> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;
    /// A walk over any value at `path`, which records the first key given twice in `found`.
    struct Walk<'a> {
        path: String,
        found: &'a RefCell<Option<String>>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_i128<E>(self, _: i128) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_u128<E>(self, _: u128) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            let mut i = 0;
            while seq
                .next_element_seed(Walk {
                    path: format!("{}[{i}]", self.path),
                    found: self.found,
                })?
                .is_some()
            {
                i += 1;
            }
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                let path = if self.path.is_empty() {
                    key.clone()
                } else {
                    format!("{}.{key}", self.path)
                };
                if !seen.insert(key) {
                    *self.found.borrow_mut() = Some(path);
                    return Err(A::Error::custom("a key given twice"));
                }
                map.next_value_seed(Walk {
                    path,
                    found: self.found,
                })?;
            }
            Ok(())
        }
    }
    let found = RefCell::new(None);
    let walk = Walk {
        path: String::new(),
        found: &found,
    };
    // Any other error (a syntax error, a YAML tag) is the parse's to tell.
    let line = match format {
        Format::Toml => return None,
        Format::Json => {
            let error = walk
                .deserialize(&mut serde_json::Deserializer::from_str(text))
                .err()?;
            Some(error.line())
        }
        // The error's place is the enclosing mapping's first key, not the key: found from the
        // parser's events instead (below).
        Format::Yaml => {
            walk.deserialize(yaml_serde::Deserializer::from_str(text))
                .err()?;
            None
        }
    };
    let path = found.into_inner()?;
    Some((path.clone(), line.or_else(|| key_line(text, format, &path))))
}

/// An error message's key path and the rest (`at `a.b`: msg` -> (`a.b`, `msg`)).
fn split_path(message: &str) -> Option<(&str, &str)> {
    message.strip_prefix("at `")?.split_once("`: ")
}

/// A message without the ` at line L column C` that serde_yaml and serde_json end theirs with,
/// and (L, C).
fn without_position(message: &str) -> (String, Option<(usize, usize)>) {
    let position = message.rfind(" at line ").and_then(|at| {
        match message[at..].split_whitespace().collect::<Vec<_>>()[..] {
            ["at", "line", line, "column", column] => {
                Some((at, (line.parse().ok()?, column.parse().ok()?)))
            }
            _ => None,
        }
    });
    match position {
        Some((at, position)) => (message[..at].to_string(), Some(position)),
        None => (message.to_string(), None),
    }
}

/// A serde_yaml message without the key path it starts some with (`model: unknown field`),
/// when that is (a prefix of) `path`, which the message will be given with.
fn without_yaml_path(message: &str, path: &str) -> String {
    match message.split_once(": ") {
        Some((own, rest))
            if path == own
                || path.starts_with(&format!("{own}."))
                || path.starts_with(&format!("{own}[")) =>
        {
            rest.to_string()
        }
        _ => message.to_string(),
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// serde's Rust type names in "expected ..." as a config's writer knows them (`expected f64`
/// -> `expected a number`).
fn plain_types(message: &str) -> String {
    const PLAIN: [(&str, &str); 10] = [
        (
            "expected a nonzero usize",
            "expected a whole number above 0",
        ),
        ("expected usize", "expected a whole number, not negative"),
        ("expected u64", "expected a whole number, not negative"),
        ("expected u32", "expected a whole number, not negative"),
        ("expected u16", "expected a whole number, not negative"),
        ("expected u8", "expected a whole number, not negative"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
    ];
    let mut out = message.to_string();
    for (rust, plain) in PLAIN {
        let mut from = 0;
        while let Some(at) = out[from..].find(rust).map(|at| at + from) {
            let end = at + rust.len();
            if out[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                from = end;
                continue;
            }
            out.replace_range(at..end, plain);
            from = at + plain.len();
        }
    }
    out
}

/// One step of a key path.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[0].c` -> key a, key b, index 0, key c.
fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let mut pieces = part.split('[');
        if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
            steps.push(Step::Key(key));
        }
        for index in pieces {
            steps.push(Step::Index(index.trim_end_matches(']').parse().ok()?));
        }
    }
    Some(steps)
}

/// The line in `text` of the key at `path` (`strategy.inner.n`, `runs[2].n`): that of the
/// deepest key or array item on the path the document holds.
fn key_line(text: &str, format: Format, path: &str) -> Option<usize> {
    match format {
        Format::Toml => toml_line(text, path),
        // JSON is YAML (1.2) too.
        Format::Yaml | Format::Json => yaml_line(text, path),
    }
}

/// [`key_line`] for TOML.
fn toml_line(text: &str, path: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeValue::Table(DeTable::parse(text).ok()?.into_inner());
    let mut here = &root;
    let mut found = None;
    for step in steps(path)? {
        let next = match (step, here) {
            (Step::Key(key), DeValue::Table(table)) => table
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == key)
                .map(|(k, v)| (k.span().start, v)),
            (Step::Index(index), DeValue::Array(items)) => {
                items.get(index).map(|v| (v.span().start, v))
            }
            _ => None,
        };
        let Some((at, value)) = next else { break };
        found = Some(at);
        here = value.get_ref();
    }
    found.map(|at| line_of(text, at))
}

/// [`key_line`] for YAML and JSON, from the parser's events (the first document's).
fn yaml_line(text: &str, path: &str) -> Option<usize> {
    use saphyr_parser::{Event, Parser};
    let steps = steps(path)?;
    let mut events = Parser::new_from_str(text)
        .map_while(|event| event.ok())
        .map(|(event, span)| (event, span.start.line()))
        .skip_while(|(event, _)| !matches!(event, Event::DocumentStart(_)))
        .skip(1);
    let mut found = None;
    let (first, _) = events.next()?;
    yaml_walk(&mut events, first, &steps, &mut found)?;
    found
}

/// Reads the node that starts with `first` from `events`, following `steps` into it and
/// recording in `found` the line of each key or item on them; `None` at a cut-off document.
/// A key on them given more than once in its mapping is followed to its second time, the one
/// a key given twice is told at.
fn yaml_walk<'a>(
    events: &mut impl Iterator<Item = (saphyr_parser::Event<'a>, usize)>,
    first: saphyr_parser::Event<'a>,
    steps: &[Step<'_>],
    found: &mut Option<usize>,
) -> Option<()> {
    use saphyr_parser::Event;
    match first {
        Event::MappingStart(..) => {
            // How many times this mapping gave the key on the path so far.
            let mut times = 0;
            loop {
                let (key, line) = events.next()?;
                if key == Event::MappingEnd {
                    return Some(());
                }
                let on_path = times < 2
                    && match (&key, steps.first()) {
                        (Event::Scalar(text, ..), Some(Step::Key(step))) => text == step,
                        _ => false,
                    };
                times += usize::from(on_path);
                yaml_walk(events, key, &[], found)?;
                let (value, _) = events.next()?;
                if on_path {
                    *found = Some(line);
                    yaml_walk(events, value, &steps[1..], found)?;
                } else {
                    yaml_walk(events, value, &[], found)?;
                }
            }
        }
        Event::SequenceStart(..) => {
            for index in 0.. {
                let (item, line) = events.next()?;
                if item == Event::SequenceEnd {
                    break;
                }
                if steps.first() == Some(&Step::Index(index)) {
                    *found = Some(line);
                    yaml_walk(events, item, &steps[1..], found)?;
                } else {
                    yaml_walk(events, item, &[], found)?;
                }
            }
            Some(())
        }
        _ => Some(()),
    }
}

/// `at `a`: at `b`: msg` (a path inside a tagged table, see [`from_tagged`]) -> `at `a.b`: msg`.
fn join_paths(message: &str) -> String {
    let mut path: Vec<&str> = Vec::new();
    let mut rest = message;
    while let Some((key, tail)) = rest.strip_prefix("at `").and_then(|r| r.split_once("`: ")) {
        path.push(key);
        rest = tail;
    }
    if path.len() < 2 {
        return message.to_string();
    }
    format!("at `{}`: {rest}", path.join("."))
}

/// Deserializes a table tagged by `kind` (`{ kind = "best_of_n", n = 8 }`) with `build`, which
/// maps the kind and the table without its tag to a value (with [`from_table`]).
///
/// serde's own internally tagged enums lose the key path of an error inside the table
/// (`invalid type: string "8", expected a nonzero usize`, but which key?); going through this
/// keeps it: `at `strategy.n`: invalid type ...`.
pub fn from_tagged<'de, D, T>(
    deserializer: D,
    kinds: &'static [&'static str],
    build: impl FnOnce(&str, serde_json::Value) -> std::result::Result<T, String>,
) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let mut table: serde_json::Value = serde::Deserialize::deserialize(deserializer)?;
    let Some(map) = table.as_object_mut() else {
        return Err(D::Error::custom(format!(
            "expected a table with a `kind` (one of {})",
            kinds.join(", ")
        )));
    };
    let kind = match map.remove("kind") {
        Some(serde_json::Value::String(kind)) => kind,
        Some(other) => {
            return Err(D::Error::custom(format!(
                "at `kind`: expected a string (one of {}), got {other}",
                kinds.join(", ")
            )))
        }
        None => return Err(D::Error::missing_field("kind")),
    };
    if !kinds.contains(&kind.as_str()) {
        return Err(D::Error::custom(format!(
            "at `kind`: unknown kind `{kind}`, expected one of {}",
            kinds.join(", ")
        )));
    }
    build(&kind, table).map_err(D::Error::custom)
}

/// Deserializes one tagged table's fields (see [`from_tagged`]); the error names the key.
pub fn from_table<T: DeserializeOwned>(table: serde_json::Value) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path.is_empty() {
            e.inner().to_string()
        } else {
            format!("at `{path}`: {}", e.inner())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_error_names_the_line() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct File {
            model: Model,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Model {
            n: usize,
        }
        let err =
            parse_str::<File>("# a comment\n\n[model]\nn = \"8\"\n", Format::Toml).unwrap_err();
        assert!(
            err.starts_with("at `model.n` (line 4): invalid type"),
            "{err}"
        );
        // A missing key: the line of the table it is missing from.
        let err = parse_str::<File>("\n[model]\n", Format::Toml).unwrap_err();
        assert!(
            err.starts_with("at `model` (line 2): missing field `n`"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_file_a_list_or_text_after_the_object_is_no_config() {
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(default)]
        #[allow(dead_code)]
        struct File {
            n: usize,
        }
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("a.toml", ""),
            ("b.toml", "# only a comment\n\n"),
            ("c.yaml", ""),
            ("e.yaml", "---\n"),
            ("d.json", "  \n"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = load_file::<File>(&path).unwrap_err().to_string();
            assert!(
                err.contains("nothing in it (blank, or comments only)"),
                "{err}"
            );
        }
        // A table of its own (a model table given as text) may be empty: every default.
        assert_eq!(parse_str::<File>("", Format::Toml).unwrap().n, 0);
        for (text, format, top) in [
            ("[]", Format::Json, "a list"),
            ("3", Format::Json, "a plain value"),
            ("- n: 1\n", Format::Yaml, "a list"),
            ("hello\n", Format::Yaml, "a plain value"),
        ] {
            let err = parse_str::<File>(text, format).unwrap_err();
            assert_eq!(
                err,
                format!("the top level is {top}, not a table of keys (such as model and strategy)")
            );
        }
        // Not JSON at all (TOML in a .json file): the parser's own error, not "a list".
        let err = parse_str::<File>("[strategy]\nkind = \"direct\"\n", Format::Json).unwrap_err();
        assert!(!err.contains("the top level"), "{err}");
        assert!(err.contains("(line 1): expected value"), "{err}");
        let err = parse_str::<File>("{\"n\": 1}\n{\"n\": 2}\n", Format::Json).unwrap_err();
        assert!(
            err.starts_with("line 2, column 1: text after the config's object"),
            "{err}"
        );
        assert_eq!(
            parse_str::<File>("{\"n\": 1}\n\n", Format::Json).unwrap().n,
            1
        );
    }

    #[test]
    fn the_line_of_a_key_path_is_found_in_tables_inline_tables_and_arrays() {
        let text = "[strategy]\nkind = \"best_of_n\"\ninner = { kind = \"direct\",\n  temperature = 2 }\n\n[strategy.scorer]\nmodel = { source = 3 }\n\n[[runs]]\nn = 1\n[[runs]]\nn = 2\n";
        for (path, line) in [
            ("strategy", Some(1)),
            ("strategy.kind", Some(2)),
            ("strategy.inner.temperature", Some(4)),
            ("strategy.scorer.model.source", Some(7)),
            // Not in the document: the deepest key that is.
            ("strategy.scorer.model.revision", Some(7)),
            ("runs[1].n", Some(12)),
            ("runs[0]", Some(9)),
            ("nothing", None),
        ] {
            assert_eq!(toml_line(text, path), line, "{path}");
        }
    }

    #[test]
    fn yaml_and_json_errors_name_the_line_of_the_key_once() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct File {
            model: Model,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Model {
            n: usize,
        }
        for (text, format, start) in [
            (
                "# a comment\nmodel:\n  n: \"8\"\n",
                Format::Yaml,
                "at `model.n` (line 3): invalid type: string \"8\"",
            ),
            (
                "model:\n  n: 1\n  m: 2\n",
                Format::Yaml,
                "at `model.m` (line 3): unknown field `m`",
            ),
            (
                "{\n  \"model\": {\n    \"n\": \"8\"\n  }\n}\n",
                Format::Json,
                "at `model.n` (line 3): invalid type: string \"8\"",
            ),
            // `model:` is null, which reads as an empty table.
            (
                "model:\n",
                Format::Yaml,
                "at `model` (line 1): missing field `n`",
            ),
        ] {
            let err = parse_str::<File>(text, format).unwrap_err();
            assert!(err.starts_with(start), "{err}");
            // Neither the format's own key path nor its position said again.
            assert!(
                !err.contains(" at line ") && !err.contains("model: "),
                "{err}"
            );
        }
        // A syntax error keeps the parser's own words, with its line.
        let err = parse_str::<File>("model:\n  n: [1\n", Format::Yaml).unwrap_err();
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn rust_type_names_are_told_plainly() {
        assert_eq!(
            plain_types("invalid type: string \"8\", expected a nonzero usize"),
            "invalid type: string \"8\", expected a whole number above 0"
        );
        assert_eq!(
            plain_types("invalid type: string \"hot\", expected f64 or expected u64"),
            "invalid type: string \"hot\", expected a number or expected a whole number, not negative"
        );
        assert_eq!(plain_types("expected u64x"), "expected u64x");
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct File {
            temperature: f64,
        }
        let err = parse_str::<File>("temperature = \"hot\"\n", Format::Toml).unwrap_err();
        assert_eq!(
            err,
            "at `temperature` (line 1): invalid type: string \"hot\", expected a number"
        );
    }

    #[test]
    fn a_syntax_error_names_where_the_parser_stopped_not_the_table_it_was_in() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Strategy {
            kind: String,
            max_tokens: usize,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct File {
            strategy: Strategy,
        }
        let json = |text: &str| parse_str::<File>(text, Format::Json).unwrap_err();
        // A missing comma on line 4, a trailing one on line 3, a missing closing brace.
        let missing =
            "{\n  \"strategy\": {\n    \"kind\": \"direct\",\n    \"max_tokens\": 8 8\n  }\n}\n";
        assert_eq!(
            json(missing),
            "line 4, column 21 (in `strategy`): expected `,` or `}`"
        );
        let trailing = "{\n  \"strategy\": {\n    \"kind\": \"direct\",\n  }\n}\n";
        assert_eq!(
            json(trailing),
            "line 4, column 3 (in `strategy`): trailing comma"
        );
        let cut = "{\n  \"strategy\": {\"kind\": \"direct\", \"max_tokens\": 8}\n";
        assert_eq!(json(cut), "line 3: EOF while parsing an object");
        // YAML: a key indented under a scalar.
        let yaml = "strategy:\n  kind: direct\n    max_tokens: 8\n";
        let err = parse_str::<File>(yaml, Format::Yaml).unwrap_err();
        assert!(
            err.starts_with("line 3, column ") && err.contains("(in `strategy`)"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_starts_with_a_byte_order_mark_reads_as_without() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("c.json", "\u{feff}{\"n\": 3}"),
            ("c.yaml", "\u{feff}n: 3\n"),
            ("c.toml", "\u{feff}n = 3\n"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let value: serde_json::Value = load_file(&path).unwrap();
            assert_eq!(value["n"], 3, "{name}");
        }
    }

    #[test]
    fn a_key_given_twice_in_a_json_object_or_yaml_mapping_is_refused_where_it_is() {
        // A tagged table is read whole into a map, which kept the last `n` silently.
        let text = "{\"strategy\": {\"kind\": \"best_of_n\",\n  \"n\": 4,\n  \"inner\": {\"kind\": \"direct\"},\n  \"n\": 16},\n \"runs\": [{\"n\": 1}, {\"n\": 2}]}";
        let err = parse_str::<serde_json::Value>(text, Format::Json).unwrap_err();
        assert_eq!(
            err,
            "at `strategy.n` (line 4): the key is given twice in one table (the last would be \
             kept silently): give it once"
        );
        let nested = "{\"runs\": [{\"n\": 1},\n {\"n\": 2, \"n\": 2}]}";
        let err = parse_str::<serde_json::Value>(nested, Format::Json).unwrap_err();
        assert!(err.starts_with("at `runs[1].n` (line 2): "), "{err}");
        // The same key in two objects is two keys; a syntax error is still the parser's.
        assert!(parse_str::<serde_json::Value>(
            text.replacen("\"n\": 16", "\"m\": 16", 1).as_str(),
            Format::Json
        )
        .is_ok());
        let err = parse_str::<serde_json::Value>("{\"a\": 1,}", Format::Json).unwrap_err();
        assert!(err.contains("trailing comma"), "{err}");
        // YAML's deserializer keeps the last too, where a table is read whole.
        let yaml = "strategy:\n  kind: best_of_n\n  n: 4\n  inner: { kind: direct }\n  n: 16\n";
        let err = parse_str::<serde_json::Value>(yaml, Format::Yaml).unwrap_err();
        assert!(err.starts_with("at `strategy.n` (line 5): "), "{err}");
        assert!(err.contains("given twice"), "{err}");
        // At its second time, not at the mapping's first key (where the deserializer says);
        // a third time is not the one told.
        let yaml = "# a comment\nmodel:\n  source: smollm2-135m\nstrategy:\n  kind: direct\n  \
                    style: step_by_step\n  max_tokens: 5\n  max_tokens: 6\n  max_tokens: 7\n";
        let err = parse_str::<serde_json::Value>(yaml, Format::Yaml).unwrap_err();
        assert!(
            err.starts_with("at `strategy.max_tokens` (line 8): "),
            "{err}"
        );
        let yaml = "strategy:\n  kind: direct\nrounds: 2\nstrategy:\n  kind: direct\n";
        let err = parse_str::<serde_json::Value>(yaml, Format::Yaml).unwrap_err();
        assert!(err.starts_with("at `strategy` (line 4): "), "{err}");
        let yaml = "runs:\n  - { n: 1 }\n  - { n: 2, n: 3 }\n";
        let err = parse_str::<serde_json::Value>(yaml, Format::Yaml).unwrap_err();
        assert!(err.starts_with("at `runs[1].n` (line 3)"), "{err}");
        // TOML's parser refuses it itself.
        let err = parse_str::<serde_json::Value>("[strategy]\nn = 4\nn = 16\n", Format::Toml)
            .unwrap_err();
        assert!(err.contains("duplicate key"), "{err}");
    }

    #[test]
    fn the_line_of_a_key_path_is_found_in_yaml_and_json() {
        let yaml = "strategy:\n  kind: best_of_n\n  inner: { kind: direct,\n    temperature: 2 }\n  scorer:\n    model:\n      source: 3\nruns:\n  - n: 1\n  -\n    n: 2\n";
        for (path, line) in [
            ("strategy", Some(1)),
            ("strategy.kind", Some(2)),
            ("strategy.inner.temperature", Some(4)),
            ("strategy.scorer.model.source", Some(7)),
            // Not in the document: the deepest key that is.
            ("strategy.scorer.model.revision", Some(6)),
            ("runs[1].n", Some(11)),
            ("runs[0]", Some(9)),
            ("nothing", None),
        ] {
            assert_eq!(yaml_line(yaml, path), line, "{path}");
        }
        let json = "{\"strategy\": {\"kind\": \"best_of_n\",\n  \"n\": 8},\n \"runs\": [{\"n\": 1},\n   {\"n\": 2}]}";
        for (path, line) in [
            ("strategy.kind", Some(1)),
            ("strategy.n", Some(2)),
            ("runs[1].n", Some(4)),
            ("runs[0].n", Some(3)),
        ] {
            assert_eq!(yaml_line(json, path), line, "{path}");
        }
        // A document the parser cannot read finds nothing.
        assert_eq!(yaml_line("a: [1\n", "a"), None);
    }

    #[test]
    fn a_number_that_is_not_finite_is_named_with_its_key_and_line() {
        let toml = "[model]\nsource = \"x\"\n\n[strategy]\nkind = \"direct\"\ntemperature = nan\n";
        let err = parse_str::<serde_json::Value>(toml, Format::Toml).unwrap_err();
        assert_eq!(
            err,
            "at `strategy.temperature` (line 6): NaN is not a usable number: give a finite one"
        );
        let yaml = "strategy:\n  kind: best_of_n\n  inner:\n    kind: direct\n    top_p: -.inf\n";
        let err = parse_str::<serde_json::Value>(yaml, Format::Yaml).unwrap_err();
        assert_eq!(
            err,
            "at `strategy.inner.top_p` (line 5): -inf is not a usable number: give a finite one"
        );
        let fine = "[strategy]\nkind = \"direct\"\ntemperature = 0.7\n";
        assert!(parse_str::<serde_json::Value>(fine, Format::Toml).is_ok());
    }

    #[test]
    fn the_extension_names_the_format_in_any_case() {
        for (name, format) in [
            ("strategy.toml", Some(Format::Toml)),
            ("strategy.TOML", Some(Format::Toml)),
            ("strategy.Yml", Some(Format::Yaml)),
            ("strategy.YAML", Some(Format::Yaml)),
            ("strategy.Json", Some(Format::Json)),
            ("strategy.ini", None),
            ("strategy", None),
        ] {
            assert_eq!(Format::of(Path::new(name)), format, "{name}");
        }
    }
}
