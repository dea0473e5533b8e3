//! The append-only JSON Lines files of a run: where the results file's side files are, reading
//! a file's finished lines back, and mending what a run killed mid-write left at its end.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{identity, ledger, triage, ResultLine};
use crate::error::{Error, Result};

/// Appends `value` to `file` (at `path`) as one JSON line, written whole and flushed.
pub(super) fn append_line(
    file: &mut std::fs::File,
    path: &Path,
    value: &impl Serialize,
    what: &'static str,
) -> Result<()> {
    let mut text =
        serde_json::to_string(value).map_err(|source| Error::Serialize { what, source })?;
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.flush())
        .map_err(|e| Error::io(path, e))
}

/// How often at most a run syncs its files to disk as it writes them: a machine that goes down
/// loses at most the lines of the last interval (a kill loses none: every line is written
/// whole), and a run of many quick problems is not held up by a sync per line.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// When a file a run appends to was last synced to disk: it is due again [`SYNC_EVERY`] after
/// (at once, before the first sync).
#[derive(Debug, Default)]
pub(super) struct SyncClock(Option<std::time::Instant>);

impl SyncClock {
    /// Whether the file is due a sync.
    pub(super) fn due(&self) -> bool {
        self.0.is_none_or(|at| at.elapsed() >= SYNC_EVERY)
    }

    /// The file was synced now.
    pub(super) fn synced(&mut self) {
        self.0 = Some(std::time::Instant::now());
    }
}

/// Syncs the directory holding `path` (best effort: not every file system opens one), so that
/// a file just created there survives a crash of the machine.
pub(super) fn sync_dir(path: &Path) {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Ok(dir) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
        let _ = dir.sync_all();
    }
}

/// The side file recording what the results file `out` was written with: `<out>.config.json`.
pub fn config_path(out: &Path) -> PathBuf {
    identity::path_of(out)
}

/// The side file where a triage run keeps the first stages that asked for a second:
/// `<out>.triage.jsonl`.
pub fn triage_path(out: &Path) -> PathBuf {
    triage::path_of(out)
}

/// The side file where a run records each call as it comes back (the problem, the attempt at
/// it, what the call cost), so that a resumed run counts what attempts killed or failed in
/// flight spent: `<out>.spend.jsonl`.
pub fn spend_path(out: &Path) -> PathBuf {
    ledger::path_of(out)
}

/// What a half-written results line loses.
pub(super) const RESULT_LOST: &str = "its problem will be redone";

/// Reads the finished lines of a results file (a whole last line without its newline
/// included), leaving out a last line half-written by a killed run, or by a run writing it now.
/// The file is not changed: the run that resumes it mends it, under its lock. A missing file is
/// an empty one.
pub fn read_results(path: &Path) -> Result<Vec<ResultLine>> {
    Ok(scan_results(path)?.0)
}

/// Reads the finished lines of a results file without changing it: the lines (a whole last line
/// without its newline included), and whether a half-written last line (a killed run's) was
/// left out. A missing file is an empty one.
pub fn peek_results(path: &Path) -> Result<(Vec<ResultLine>, bool)> {
    let (lines, tail) = scan_results(path)?;
    Ok((lines, matches!(tail, Some(Tail::Half { .. }))))
}

/// The finished lines, and what follows the last newline.
pub(super) fn scan_results(path: &Path) -> Result<(Vec<ResultLine>, Option<Tail>)> {
    scan_lines(path)
}

/// What follows the last newline of an append-only JSON Lines file, when anything does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tail {
    /// A whole line without its newline (the file edited by hand, written by `jq`, or
    /// concatenated): read with the others; its newline is to be added before appending.
    Unended,
    /// Half a line, left by a run killed while writing it: the file is to be cut to `len`.
    Half { len: u64 },
}

/// The finished JSON lines of an append-only file, and what follows its last newline: a line
/// there that reads whole is among the lines (and the tail [`Tail::Unended`]); one that does
/// not is taken for half a line (a kill's) and left out.
pub(super) fn scan_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<(Vec<T>, Option<Tail>)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(Error::io(path, e)),
    };
    // A compressed file is named as such, not shown as the bytes of a line that does not read.
    if let Some(what) = crate::error::packed(&bytes) {
        return Err(Error::ResultsFile {
            path: path.to_path_buf(),
            line: 1,
            message: format!("the file is {what}"),
        });
    }
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    let body = bytes.get(..complete).unwrap_or_default();
    // Byte slices, so offsets stay exact whatever the line endings (`\r\n`) or a stray invalid
    // byte (lossy decoding would change lengths).
    // Every line is written whole with its newline in one write: only what follows the last
    // newline can have been cut short by a kill. A whole line that does not read is damage.
    let mut debris = 0;
    for (index, raw) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        // A NUL byte is never in a line a run writes (JSON escapes it): a line that starts with
        // a run of them (nothing after, or the end of a line whose start was lost) is what a
        // machine that went down with data not yet on disk leaves, its file system having
        // filled the gap with zeros. What was there is lost; the rest reads. (NULs anywhere
        // else, UTF-16 text say, are damage as any line that does not read.)
        let zeros = raw.iter().take_while(|&&b| b == 0).count();
        if zeros > 0 && !raw[zeros..].contains(&0) {
            debris += 1;
            continue;
        }
        let text = String::from_utf8_lossy(raw);
        // A byte-order mark an editor wrote at the start is no part of the line (offsets are
        // the bytes', so what is cut or appended stays exact).
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            continue;
        }
        let line = serde_json::from_str::<T>(text).map_err(|e| Error::ResultsFile {
            path: path.to_path_buf(),
            line: index + 1,
            message: crate::error::json_line_message(&e),
        })?;
        lines.push(line);
    }
    if debris > 0 {
        tracing::warn!(
            path = %path.display(),
            "{debris} line(s) start with zeros a crash of the machine left: skipped (a problem \
             whose result line it was is redone; a call the spend ledger recorded there is not \
             counted)"
        );
    }
    let rest = bytes.get(complete..).unwrap_or_default();
    if rest.is_empty() {
        return Ok((lines, None));
    }
    // Half a line never reads whole (an object's closing brace is the last byte before its
    // newline): a tail that reads is a whole line that only lacks its newline, and is kept.
    let tail = String::from_utf8_lossy(rest);
    let tail = tail.trim_start_matches('\u{feff}').trim();
    match serde_json::from_str::<T>(tail) {
        Ok(line) => {
            lines.push(line);
            Ok((lines, Some(Tail::Unended)))
        }
        // Whole JSON that is not a line of this file (an edit, a tool's output without its
        // last newline) is damage, not a kill's: an error naming it, the file left alone.
        Err(e) if serde_json::from_str::<serde::de::IgnoredAny>(tail).is_ok() => {
            Err(Error::ResultsFile {
                path: path.to_path_buf(),
                line: body.split_inclusive(|&b| b == b'\n').count() + 1,
                message: crate::error::json_line_message(&e),
            })
        }
        // Every line a run writes is a JSON object: a tail that does not start like one was
        // not cut short by a kill (text after the last line, a file that is not a run's).
        // Cutting it would delete what someone wrote: an error naming it.
        // (NUL bytes first: a machine that crashed, not a kill, can leave them where an append
        // never reached the disk; cut like half a line.)
        Err(_)
            if !tail.trim_matches('\0').is_empty()
                && !tail.trim_start_matches('\0').starts_with('{') =>
        {
            Err(Error::ResultsFile {
                path: path.to_path_buf(),
                line: body.split_inclusive(|&b| b == b'\n').count() + 1,
                message: format!(
                "`{}` is not JSON, nor the start of a line a run wrote cut short (a wrong --out, \
                 or text added to the file?)",
                preview(tail)
            ),
            })
        }
        Err(_) => Ok((
            lines,
            Some(Tail::Half {
                len: complete as u64,
            }),
        )),
    }
}

/// The first 40 characters of `text`, marked where cut.
fn preview(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// Makes the file at `path` end where its last whole line does: adds the newline a whole last
/// line lacks, or cuts off half a line.
pub(super) fn repair(path: &Path, tail: Option<Tail>, lost: &str) -> Result<()> {
    match tail {
        None => Ok(()),
        Some(Tail::Unended) => {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            file.write_all(b"\n")
                .and_then(|()| file.flush())
                .map_err(|e| Error::io(path, e))?;
            tracing::info!(path = %path.display(), "added the newline its whole last line lacked");
            Ok(())
        }
        Some(Tail::Half { len }) => truncate(path, len, lost),
    }
}

/// Cuts `path` to `len` bytes, saying what was `lost` with the half-written line.
fn truncate(path: &Path, len: u64, lost: &str) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.set_len(len).map_err(|e| Error::io(path, e))?;
    tracing::warn!(path = %path.display(), "cut off a half-written last line: {lost}");
    Ok(())
}

/// The default output path for a problem file: `<stem>.results.jsonl` beside it.
pub fn default_out_path(problems: &Path) -> PathBuf {
    let stem = problems
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "problems".into());
    problems.with_file_name(format!("{stem}.results.jsonl"))
}
