//! Paths in the repository, for tests that read its files.

use std::path::{Path, PathBuf};

/// `path` in the repository. cargo runs tests from the package root, where the relative path is
/// right; the directory the test was compiled in is the fallback for a binary run elsewhere. Not
/// the other way round: a test binary compiled in another clone and found up to date in a shared
/// target directory still names that clone, which may be gone.
pub fn repo(path: &str) -> PathBuf {
    let here = Path::new(path);
    if here.exists() {
        here.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }
}
