//! Every shipped strategy config loads, validates and builds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/repo.rs"]
mod repo;

#[test]
fn every_example_config_builds() {
    let dir = repo::repo("examples/strategies");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        let config = ponder::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let strategy = config
            .strategy
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!strategy.name().is_empty());
    }
    // Every one the README lists is there (and was built above), and none it does not.
    names.sort();
    let readme = std::fs::read_to_string(repo::repo("README.md")).unwrap();
    let list = readme
        .split("More in\n`examples/strategies/` (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the README's list of example configs");
    let listed: Vec<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|name| format!("{name}.toml"))
        .collect();
    let missing: Vec<&String> = listed.iter().filter(|l| !names.contains(l)).collect();
    assert!(
        missing.is_empty(),
        "the README lists {missing:?}; there are {names:?}"
    );
    let unlisted: Vec<&String> = names
        .iter()
        .filter(|n| n.ends_with(".toml") && !listed.contains(n))
        .collect();
    assert!(unlisted.is_empty(), "the README does not list {unlisted:?}");
    assert_eq!(names.len(), 15, "{names:?}");
}
