//! What a results file's lines were produced with, kept beside it as `<out>.config.json`, so a
//! resumed run with another strategy, model or budget is an error naming what changed instead
//! of silently mixing two experiments in one file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// The side file of `out`: `<out>.config.json`.
pub(super) fn path_of(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".config.json");
    out.with_file_name(name)
}

/// Checks `identity` against the side file of `out` when `out` already holds results, or its
/// spend ledger calls (`has_calls`: a run killed before its first line, whose spend counts
/// against this one's budget), and (re)writes the side file otherwise or when it is missing
/// beside results. A ledger without results or a record is refused: left over from results
/// deleted to start over, it would spend this run's budget on calls of another. Without
/// `record`, only checks (the side file is written under the results file's lock, by the run).
pub(super) fn check_or_record(
    out: &Path,
    identity: &Value,
    has_results: bool,
    has_calls: bool,
    record: bool,
) -> Result<()> {
    let side = path_of(out);
    if has_results || has_calls {
        match std::fs::read(&side) {
            Ok(bytes) => {
                let mut recorded: Value =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                        path: side.clone(),
                        message: format!("not the JSON a run writes here: {e}"),
                    })?;
                // Records written before a scorer's or judge's model table was recorded by
                // its identity alone held the whole table (its URLs, timeouts...): read as
                // their identity, they resume as they were.
                let raw = recorded.clone();
                crate::model_config::model_identities(&mut recorded);
                majority_self_consistency(&mut recorded);
                let changes = differences(&recorded, identity);
                if changes.is_empty() {
                    // Written again as read, where it held more (a login in a URL, a
                    // scorer's whole table): by the run, under its lock.
                    if record && recorded != raw {
                        write_atomically(&side, &recorded)?;
                    }
                    return Ok(());
                }
                return Err(Error::Config {
                    path: out.to_path_buf(),
                    message: format!(
                        "holds results of another configuration ({} records it); changed: {}. \
                         Write to another --out, or delete it and its side files (.config.json, \
                         .spend.jsonl, .triage.jsonl) to start over",
                        side.display(),
                        changes.join("; ")
                    ),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !has_results => {
                let ledger = super::ledger::path_of(out);
                return Err(Error::Config {
                    path: ledger.clone(),
                    message: format!(
                        "records the calls of an earlier run, but neither results nor a record \
                         of their configuration ({}) are beside it: left from results deleted \
                         to start over, it would count against this run's budget. Delete it \
                         too, or write to another --out",
                        side.display()
                    ),
                });
            }
            // Said once, by the run that records it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if record {
                    tracing::warn!(
                        path = %out.display(),
                        "results without a record of their configuration; assuming this run's"
                    );
                }
            }
            Err(e) => return Err(Error::io(&side, e)),
        }
    }
    if !record {
        return Ok(());
    }
    write_atomically(&side, identity)
}

/// Records written before a `self_consistency` table read without `select` got `majority` held
/// best-of-N's default there (`weighted`), unused: self-consistency always voted. Read as
/// `majority`, they resume as they were.
fn majority_self_consistency(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("kind").and_then(Value::as_str) == Some("self_consistency") {
                if let Some(select) = map.get_mut("select") {
                    *select = Value::from("majority");
                }
            }
            map.values_mut().for_each(majority_self_consistency);
        }
        Value::Array(items) => items.iter_mut().for_each(majority_self_consistency),
        _ => {}
    }
}

/// The key of the side file that records how many problems the runs over `out` were given
/// (the most any run was given, counting the problems the file answered before it; not part of
/// the identity: a resumed run may take more or fewer), so a report can count the problems a
/// budget left unanswered, which have no line.
pub const PROBLEMS_IN_SET: &str = "problems_in_set";

/// Records `problems` as the set's size in the side file of `out`, if it has one, unless it
/// records a larger one.
pub(super) fn record_set(out: &Path, problems: usize) -> Result<()> {
    let side = path_of(out);
    let Ok(bytes) = std::fs::read(&side) else {
        return Ok(());
    };
    let Ok(Value::Object(mut recorded)) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(());
    };
    // Never fewer than before: a resumed run given part of the set (`--limit`) leaves the
    // problems it was not given unanswered still.
    let before = recorded.get(PROBLEMS_IN_SET).and_then(Value::as_u64);
    let problems = before.map_or(problems as u64, |b| b.max(problems as u64));
    if before == Some(problems) {
        return Ok(());
    }
    recorded.insert(PROBLEMS_IN_SET.into(), Value::from(problems));
    write_atomically(&side, &Value::Object(recorded))
}

fn write_atomically(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| Error::Serialize {
        what: "the run's configuration",
        source,
    })?;
    text.push('\n');
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // On disk before the rename makes it the record: a crash after a rename of unwritten data
    // leaves an empty record, which the next run refuses to read.
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    // The rename itself, in its directory.
    super::files::sync_dir(path);
    Ok(())
}

/// `key.path: old -> new` for every leaf that differs (a missing side shows as `(none)`).
fn differences(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(prefix: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                if prefix.is_empty() && key == PROBLEMS_IN_SET {
                    continue;
                }
                // `{"even": {"max_run_tokens": N}}`, absent for first come: said as chosen.
                if prefix.is_empty() && key == "allocation" {
                    let (old, new) = (a.get(key), b.get(key));
                    if old != new {
                        out.push(format!(
                            "allocation: {} -> {}",
                            allocation(old),
                            allocation(new)
                        ));
                    }
                    continue;
                }
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                walk(
                    &path,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if old == new => {}
        _ => {
            let show = |v: &Value| match v {
                Value::Null => "(none)".to_string(),
                v => v.to_string(),
            };
            out.push(format!("{prefix}: {} -> {}", show(old), show(new)));
        }
    }
}

/// A recorded allocation as `--allocate` names it, with its run budget.
fn allocation(recorded: Option<&Value>) -> String {
    match recorded
        .and_then(Value::as_object)
        .and_then(|m| m.iter().next())
    {
        Some((name, how)) => {
            let name = name.replace('_', "-");
            match how.get("max_run_tokens") {
                Some(tokens) => format!("{name} (--max-run-tokens {tokens})"),
                None => name,
            }
        }
        None => "first-come".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_old_record_of_self_consistency_resumes() {
        // Written before self-consistency's `select` was recorded as the vote it is.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let old = json!({"strategy": {"kind": "best_of_n", "select": "weighted",
            "inner": {"kind": "self_consistency", "n": 4, "select": "weighted"}}});
        check_or_record(&out, &old, false, false, true).unwrap();
        let now = json!({"strategy": {"kind": "best_of_n", "select": "weighted",
            "inner": {"kind": "self_consistency", "n": 4, "select": "majority"}}});
        check_or_record(&out, &now, true, false, true).unwrap();
        // Best-of-N's own `select` is still its own.
        let other = json!({"strategy": {"kind": "best_of_n", "select": "majority",
            "inner": {"kind": "self_consistency", "n": 4, "select": "majority"}}});
        let err = check_or_record(&out, &other, true, false, true).unwrap_err();
        assert!(err.to_string().contains("strategy.select"), "{err}");
    }

    #[test]
    fn a_changed_config_is_an_error_naming_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        let first = json!({"strategy": {"kind": "beam_search", "n": 4}, "budget": {}});
        check_or_record(&out, &first, false, false, true).unwrap();
        assert!(dir.path().join("r.jsonl.config.json").exists());
        check_or_record(&out, &first, true, false, true).unwrap();

        let second =
            json!({"strategy": {"kind": "beam_search", "n": 8}, "budget": {"max_tokens": 9}});
        let err = check_or_record(&out, &second, true, false, true)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&out.display().to_string()), "{err}");
        assert!(err.contains("strategy.n: 4 -> 8"), "{err}");
        assert!(err.contains("budget.max_tokens: (none) -> 9"), "{err}");
        // An allocation is said as `--allocate` names it; first come is recorded as none.
        let shared = json!({"strategy": {"kind": "beam_search", "n": 4}, "budget": {},
                            "allocation": {"even": {"max_run_tokens": 900}}});
        let err = check_or_record(&out, &shared, true, false, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("changed: allocation: first-come -> even (--max-run-tokens 900)"),
            "{err}"
        );

        // Without results there is nothing to mix: the new configuration is recorded, by a
        // run (under the results file's lock); a check alone (`ponder run` before it loads
        // its model, while another run may be writing to the file) leaves the record.
        check_or_record(&out, &second, false, false, false).unwrap();
        let side: Value = serde_json::from_slice(&std::fs::read(path_of(&out)).unwrap()).unwrap();
        assert_eq!(side["strategy"]["n"], 4);
        check_or_record(&out, &second, false, false, true).unwrap();
        check_or_record(&out, &second, true, false, true).unwrap();

        // The set size is recorded beside it, and is no part of the identity.
        record_set(&out, 30).unwrap();
        record_set(&out, 50).unwrap();
        // A later run given part of the set (--limit) does not shrink it.
        record_set(&out, 20).unwrap();
        let side: Value = serde_json::from_slice(&std::fs::read(path_of(&out)).unwrap()).unwrap();
        assert_eq!(side[PROBLEMS_IN_SET], 50);
        assert_eq!(side["strategy"]["n"], 8);
        check_or_record(&out, &second, true, false, true).unwrap();
    }

    #[test]
    fn a_login_in_a_server_url_is_no_part_of_the_identity() {
        let table =
            json!({"backend": "openai", "base_url": ["http://u:secret@a:1/v1", "http://b:2"]});
        let identity = crate::model_config::model_identity(&table);
        assert_eq!(identity["base_url"], json!(["http://a:1/v1", "http://b:2"]));
        let one = json!({"backend": "openai", "base_url": "https://u@a"});
        assert_eq!(
            crate::model_config::model_identity(&one)["base_url"],
            json!(["https://a"])
        );
        // A record written with it resumes as the identity without it.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        std::fs::write(path_of(&out), json!({"model": table}).to_string()).unwrap();
        let now = json!({"model": identity});
        check_or_record(&out, &now, false, false, false).unwrap();
        check_or_record(&out, &now, true, false, false).unwrap();
        // A check alone leaves the record; the run writes it again without the login.
        let side = std::fs::read_to_string(path_of(&out)).unwrap();
        assert!(side.contains("secret"), "{side}");
        check_or_record(&out, &now, true, false, true).unwrap();
        let side = std::fs::read_to_string(path_of(&out)).unwrap();
        assert!(
            !side.contains("secret") && side.contains("http://a:1/v1"),
            "{side}"
        );
    }

    #[test]
    fn a_record_holding_a_whole_model_table_resumes_as_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r.jsonl");
        // As runs recorded a PRM's table before: every key, its server and timeout included.
        let whole = json!({"backend": "openai", "base_url": "http://a/v1", "model": "prm",
                           "timeout_secs": 30, "device": "cpu"});
        let identity = |prm: Value| {
            json!({"model": {"backend": "mistralrs", "source": "smollm2-135m"},
                   "strategy": {"kind": "best_of_n", "scorer": {"kind": "prm", "model": prm}}})
        };
        check_or_record(&out, &identity(whole), false, false, true).unwrap();
        let now = identity(json!({"backend": "openai", "model": "prm"}));
        check_or_record(&out, &now, true, false, true).unwrap();
        let err = check_or_record(
            &out,
            &identity(json!({"backend": "openai", "model": "other"})),
            true,
            false,
            true,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("strategy.scorer.model.model: \"prm\" -> \"other\""),
            "{err}"
        );
    }
}
