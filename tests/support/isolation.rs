//! Whether the code sandbox can isolate programs on this machine, for tests that run code.

use std::process::Command;

/// Whether `unshare` gives a network namespace here (as root, or inside a user namespace), as the
/// sandbox needs to run anything by default. Some containers refuse it; there the tests opt in to
/// unisolated runs (`Sandbox::allow_unisolated`) and say so, and the strict default is checked on
/// its own (`prm/tests/sandbox.rs`, with a missing `unshare`).
pub fn namespaces_here() -> bool {
    let works = |args: &[&str]| {
        Command::new("unshare")
            .args(args)
            .arg("true")
            .status()
            .is_ok_and(|s| s.success())
    };
    let here = works(&["--net"]) || works(&["--user", "--map-root-user", "--net"]);
    if !here {
        eprintln!("unshare gives no network namespace here: running untrusted code unisolated");
    }
    here
}
