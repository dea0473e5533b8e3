//! Every shipped strategy config loads, validates and builds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/repo.rs"]
mod repo;

#[test]
fn every_example_config_builds() {
    let dir = repo::repo("examples/strategies");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let config = ponder::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let strategy = config
            .strategy
            .build()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!strategy.name().is_empty());
        count += 1;
    }
    assert!(count >= 9, "{count} configs");
}
