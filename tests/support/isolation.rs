//! Whether the code sandbox can isolate programs on this machine, for tests that run code.

use std::process::Command;

/// Whether `unshare` gives the namespaces the sandbox needs to run anything by default here:
/// network, IPC, mount and PID namespaces (`UNSHARE_FULL`), as root directly, otherwise in a
/// user namespace (a level without the mount namespace needs `Sandbox::allow_unisolated`, as
/// root too). Some containers refuse them; there the tests opt in to unisolated runs
/// (`Sandbox::allow_unisolated`) and say so, and the strict default is checked on its own
/// (`prm/tests/sandbox.rs`, with a missing `unshare`).
pub fn namespaces_here() -> bool {
    let works = |args: &[&str]| {
        Command::new("unshare")
            .args(args)
            .arg("true")
            .status()
            .is_ok_and(|s| s.success())
    };
    // Only the full level runs without an opt-in (see `Sandbox::allow_unisolated`); not as
    // root it takes a user namespace, where the first fails.
    let user_full: Vec<&str> = ponder_prm::UNSHARE_USER
        .into_iter()
        .chain(ponder_prm::UNSHARE_FULL)
        .collect();
    let here = works(&ponder_prm::UNSHARE_FULL) || works(&user_full);
    if !here {
        eprintln!(
            "unshare gives no network, mount and PID namespaces here: running untrusted code unisolated"
        );
    }
    here
}
