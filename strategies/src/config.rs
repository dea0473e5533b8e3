//! [`StrategyConfig`]: the `[strategy]` table of a config file, and building strategies from it.

use ponder_engine::config::{from_table, from_tagged};
use ponder_engine::{Error, Result, Strategy};
use serde::{Deserialize, Deserializer, Serialize};

use crate::beam_search::{BeamSearch, BeamSearchConfig, SearchKind};
use crate::best_of_n::{BestOfN, BestOfNConfig};
use crate::budget_forcing::{BudgetForcing, BudgetForcingConfig};
use crate::direct::{Direct, DirectConfig};
use crate::router::{ModeRouter, ModeRouterConfig, Router, RouterConfig};
use crate::s_star::{SStar, SStarConfig};

/// A strategy as a config file describes it; `kind` picks the strategy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StrategyConfig {
    /// One sample in a prompt style.
    Direct(DirectConfig),
    /// s1 budget forcing: cap or extend the thinking with "Wait".
    BudgetForcing(BudgetForcingConfig),
    /// Best-of-N with a scorer and a selection rule.
    BestOfN(BestOfNConfig),
    /// Best-of-N with a majority vote and no scorer: its `select` is `majority` (a table read
    /// without one gets it; [`StrategyConfig::validate`] refuses another, and a scorer).
    SelfConsistency(BestOfNConfig),
    /// Step-level beam search guided by a process reward.
    BeamSearch(BeamSearchConfig),
    /// Diverse verifier tree search: independent subtrees, each greedy on the reward.
    Dvts(BeamSearchConfig),
    /// S* for code: debugging against public tests, selection by synthesised inputs.
    SStar(SStarConfig),
    /// Adaptive thinking: answer short first, think only when cheap signals say it is hard.
    Router(RouterConfig),
    /// Adaptive thinking for models that emit their own mode token (`<short>` / `<think>`).
    ModeToken(ModeRouterConfig),
}

/// The `kind`s, as [`StrategyConfig::kind`] names them.
const KINDS: &[&str] = &[
    "direct",
    "budget_forcing",
    "best_of_n",
    "self_consistency",
    "beam_search",
    "dvts",
    "s_star",
    "router",
    "mode_token",
];

impl<'de> Deserialize<'de> for StrategyConfig {
    // By hand rather than serde's tagged enum, so errors inside name their key.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        from_tagged(deserializer, KINDS, |kind, table| {
            Ok(match kind {
                "direct" => Self::Direct(from_table(table)?),
                "budget_forcing" => Self::BudgetForcing(from_table(table)?),
                "best_of_n" => Self::BestOfN(from_table(table)?),
                "self_consistency" => Self::SelfConsistency(self_consistency(table)?),
                "beam_search" => Self::BeamSearch(from_table(search_table(table))?),
                "dvts" => Self::Dvts(from_table(search_table(table))?),
                "s_star" => Self::SStar(from_table(table)?),
                "router" => Self::Router(from_table(table)?),
                "mode_token" => Self::ModeToken(from_table(table)?),
                other => return Err(format!("unknown kind `{other}`")),
            })
        })
    }
}

/// A `beam_search` or `dvts` table, its `llm_judge` scorer judging steps unless it says
/// otherwise: a search scores partial paths, as its default scorer does, and `scorer = { kind =
/// "llm_judge" }` would otherwise get the judge's own default, `outcome`, asking whether a
/// partial solution is a correct one (helper-124).
fn search_table(mut table: serde_json::Value) -> serde_json::Value {
    if let Some(scorer) = table.get_mut("scorer").and_then(|s| s.as_object_mut()) {
        if scorer.get("kind").and_then(|k| k.as_str()) == Some("llm_judge")
            && !scorer.contains_key("mode")
        {
            scorer.insert("mode".into(), "steps".into());
        }
    }
    table
}

/// A `self_consistency` table: best-of-N's keys, but it selects by majority vote, so a `select`
/// it would ignore is an error rather than a silent change of rule; without one, `majority`
/// (not best-of-N's default), so that the config written back reads the same again.
fn self_consistency(table: serde_json::Value) -> std::result::Result<BestOfNConfig, String> {
    let said = table
        .get("select")
        .map(|select| select.as_str().map_or(select.to_string(), str::to_string));
    let mut config: BestOfNConfig = from_table(table)?;
    if said.is_none() {
        config.select = ponder_prm::Select::Majority;
    }
    match said {
        Some(select) if config.select != ponder_prm::Select::Majority => Err(format!(
            "at `select`: kind = \"self_consistency\" always selects by majority vote, so \
             select = \"{select}\" would be ignored: remove it, or use kind = \"best_of_n\" to \
             select by a scorer's rewards"
        )),
        _ => Ok(()),
    }?;
    if config.scorer.is_some() {
        return Err(
            "at `scorer`: kind = \"self_consistency\" is a plain majority vote, with no \
             scorer to pay for: remove it, or use kind = \"best_of_n\" with select = \
             \"majority\" (a scorer's rewards break ties) or \"weighted\" (they weigh the \
             votes)"
                .into(),
        );
    }
    Ok(config)
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self::Direct(DirectConfig::default())
    }
}

impl StrategyConfig {
    /// The strategy's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Direct(_) => "direct",
            Self::BudgetForcing(_) => "budget_forcing",
            Self::BestOfN(_) => "best_of_n",
            Self::SelfConsistency(_) => "self_consistency",
            Self::BeamSearch(_) => "beam_search",
            Self::Dvts(_) => "dvts",
            Self::SStar(_) => "s_star",
            Self::Router(_) => "router",
            Self::ModeToken(_) => "mode_token",
        }
    }

    /// Whether every draw of a solve is greedy (temperature 0), so that solving the problem
    /// again gives the same solution: n samples of it would be one sample n times over.
    pub fn greedy(&self) -> bool {
        match self {
            Self::Direct(config) => config.temperature == 0.0,
            Self::BudgetForcing(config) => config.temperature == 0.0,
            Self::BestOfN(config) | Self::SelfConsistency(config) => config.inner.greedy(),
            Self::BeamSearch(config) | Self::Dvts(config) => config.temperature == 0.0,
            Self::SStar(config) => config.temperature == 0.0,
            // The probe's draw, then the thinking strategy's where it thinks.
            Self::Router(config) => config.temperature() == 0.0 && config.think.greedy(),
            Self::ModeToken(config) => config.temperature == 0.0,
        }
    }

    /// Every model table of its own it loads (a PRM's, an S* judge's), each with its key path
    /// under `[strategy]` (`scorer.model`, `inner.scorer.model`, `judge`), recursively.
    pub fn models(&self) -> Vec<(String, ponder_engine::ModelConfig)> {
        let scorer = |scorer: Option<&ponder_prm::ScorerConfig>| {
            scorer
                .and_then(ponder_prm::ScorerConfig::model)
                .map(|model| ("scorer.model".to_string(), model))
        };
        let nested = |key: &str, inner: &StrategyConfig| {
            inner
                .models()
                .into_iter()
                .map(|(path, model)| (format!("{key}.{path}"), model))
                .collect::<Vec<_>>()
        };
        match self {
            Self::Direct(_) | Self::BudgetForcing(_) | Self::ModeToken(_) => Vec::new(),
            Self::BestOfN(config) | Self::SelfConsistency(config) => nested("inner", &config.inner)
                .into_iter()
                .chain(scorer(config.scorer.as_ref()))
                .collect(),
            Self::BeamSearch(config) | Self::Dvts(config) => {
                scorer(Some(&config.scorer)).into_iter().collect()
            }
            Self::SStar(config) => config
                .judge
                .iter()
                .map(|model| ("judge".to_string(), model.clone()))
                .collect(),
            Self::Router(config) => nested("think", &config.think),
        }
    }

    /// The first setting that works only with logits processors (the in-process backend;
    /// over HTTP it fails every problem), as its key path in this table
    /// (`inner.switch_penalty`, `think_threshold`), recursively.
    pub fn needs_logits_processors(&self) -> Option<String> {
        let nested = |key: &str, inner: &StrategyConfig| {
            inner
                .needs_logits_processors()
                .map(|path| format!("{key}.{path}"))
        };
        match self {
            Self::BudgetForcing(config) => config
                .switch_penalty
                .as_ref()
                .map(|_| "switch_penalty".to_string()),
            Self::ModeToken(config) => config
                .think_threshold
                .map(|_| "think_threshold".to_string()),
            Self::BestOfN(config) | Self::SelfConsistency(config) => nested("inner", &config.inner),
            Self::Router(config) => nested("think", &config.think),
            Self::Direct(_) | Self::BeamSearch(_) | Self::Dvts(_) | Self::SStar(_) => None,
        }
    }

    /// Checks the values serde cannot and cross-field rules, recursively. A value's error is a
    /// [`Error::ConfigValue`] whose key is its path in this table (`inner.temperature`).
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Direct(config) => config.validate(),
            Self::BudgetForcing(config) => config.validate(),
            Self::BestOfN(config) => config.validate(),
            Self::SelfConsistency(config) => {
                BestOfN::self_consistency_config(config)?;
                config.validate()
            }
            Self::BeamSearch(config) => config.validate(),
            Self::Dvts(config) => config.validate(),
            Self::SStar(config) => config.validate(),
            Self::Router(config) => config.validate(),
            Self::ModeToken(config) => config.validate(),
        }
    }

    /// Builds the strategy (validating first).
    pub fn build(&self) -> Result<Box<dyn Strategy>> {
        self.validate()?;
        Ok(match self {
            Self::Direct(config) => Box::new(Direct::new(config.clone())?),
            Self::BudgetForcing(config) => Box::new(BudgetForcing::new(config.clone())?),
            Self::BestOfN(config) => Box::new(BestOfN::new(config.clone())?),
            Self::SelfConsistency(config) => Box::new(BestOfN::self_consistency(config.clone())?),
            Self::BeamSearch(config) => {
                Box::new(BeamSearch::new(config.clone(), SearchKind::Beam)?)
            }
            Self::Dvts(config) => Box::new(BeamSearch::new(config.clone(), SearchKind::Dvts)?),
            Self::SStar(config) => Box::new(SStar::new(config.clone())?),
            Self::Router(config) => Box::new(Router::new(config.clone())?),
            Self::ModeToken(config) => Box::new(ModeRouter::new(config.clone())?),
        })
    }
}

/// Checks a temperature and top-p pair (keys `temperature` and `top_p`).
pub(crate) fn check_sampling(temperature: f64, top_p: Option<f64>) -> Result<()> {
    if !temperature.is_finite() || temperature < 0.0 {
        return Err(Error::config_value(
            "temperature",
            format!("temperature must be a number >= 0, got {temperature}"),
        ));
    }
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(Error::config_value(
                "top_p",
                format!("top_p must be in (0, 1], got {p}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ponder_engine::config::{parse_str, Format};

    use super::*;

    /// The error validating a config parsed from `toml` gives, if any.
    fn invalid(toml: &str) -> Option<String> {
        parse_str::<StrategyConfig>(toml, Format::Toml)
            .unwrap()
            .validate()
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn direct_parses_with_defaults() {
        let config: StrategyConfig = parse_str("kind = \"direct\"", Format::Toml).unwrap();
        assert_eq!(config, StrategyConfig::Direct(DirectConfig::default()));
        let config: StrategyConfig = parse_str(
            "{\"kind\": \"direct\", \"style\": \"direct\", \"max_tokens\": 8}",
            Format::Json,
        )
        .unwrap();
        let StrategyConfig::Direct(direct) = config else {
            panic!("not direct")
        };
        assert_eq!(direct.max_tokens.get(), 8);
    }

    #[test]
    fn a_search_judge_without_a_mode_judges_steps() {
        use ponder_prm::{JudgeMode, ScorerConfig};
        let judge_mode = |toml: &str| match parse_str::<StrategyConfig>(toml, Format::Toml) {
            Ok(StrategyConfig::BeamSearch(c) | StrategyConfig::Dvts(c)) => match c.scorer {
                ScorerConfig::LlmJudge(judge) => judge.mode,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        for kind in ["beam_search", "dvts"] {
            let toml = format!("kind = \"{kind}\"\nscorer = {{ kind = \"llm_judge\" }}");
            assert_eq!(judge_mode(&toml), JudgeMode::Steps, "{kind}");
            let toml = format!(
                "kind = \"{kind}\"\nscorer = {{ kind = \"llm_judge\", mode = \"outcome\" }}"
            );
            assert_eq!(judge_mode(&toml), JudgeMode::Outcome, "{kind}");
        }
        // Best-of-N judges outcomes, as the judge's own default says.
        let config: StrategyConfig = parse_str(
            "kind = \"best_of_n\"\nscorer = { kind = \"llm_judge\" }",
            Format::Toml,
        )
        .unwrap();
        let StrategyConfig::BestOfN(bon) = config else {
            panic!("{config:?}")
        };
        assert!(matches!(
            bon.scorer,
            Some(ScorerConfig::LlmJudge(ref j)) if j.mode == JudgeMode::Outcome
        ));
    }

    #[test]
    fn nested_inner_strategies_and_scorers_parse() {
        let toml = "kind = \"best_of_n\"\nn = 4\nselect = \"weighted\"\nscorer = { kind = \"llm_judge\" }\ninner = { kind = \"budget_forcing\", max_thinking_tokens = 64, wait = \"Hmm\", temperature = 0.7 }\n";
        let config: StrategyConfig = parse_str(toml, Format::Toml).unwrap();
        assert!(config.build().is_ok());
        // An inner strategy without a temperature samples at best-of-N's default, 0.8.
        let unsaid =
            parse_str::<StrategyConfig>(&toml.replace(", temperature = 0.7", ""), Format::Toml)
                .unwrap();
        let StrategyConfig::BestOfN(b) = &unsaid else {
            panic!("not best_of_n")
        };
        assert!(matches!(*b.inner, StrategyConfig::BudgetForcing(ref bf) if bf.temperature == 0.8));
        // Greedy inner samples, said outright, would all be one completion: an error that says
        // what to set.
        let greedy = toml.replace("temperature = 0.7", "temperature = 0");
        let err = parse_str::<StrategyConfig>(&greedy, Format::Toml)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("n = 4") && err.contains("`budget_forcing` at temperature 0"),
            "{err}"
        );
        assert!(
            err.contains("give the inner strategy a temperature"),
            "{err}"
        );
        // So would samples of any other strategy whose draws are all greedy: a router whose
        // probe and thinking are both at temperature 0 (their defaults), S* and beam search
        // at temperature 0; a router that samples its probe but thinks greedily thinks the
        // same way in every sample that thinks.
        let err = invalid(
            "kind = \"best_of_n\"\nn = 8\nselect = \"majority\"\ninner = { kind = \"router\" }",
        )
        .unwrap();
        assert!(
            err.contains("`router` at temperature 0") && err.contains("`think`"),
            "{err}"
        );
        let err = invalid(
            "kind = \"best_of_n\"\nn = 8\nselect = \"majority\"\ninner = { kind = \"router\", temperature = 0.7 }",
        )
        .unwrap();
        assert!(
            err.contains("`think` strategy (`direct`) is greedy")
                && err.contains("give `think` a temperature"),
            "{err}"
        );
        assert_eq!(
            invalid(
                "kind = \"best_of_n\"\nn = 8\nselect = \"majority\"\ninner = { kind = \"router\", temperature = 0.7, think = { kind = \"direct\", temperature = 0.7 } }"
            ),
            None
        );
        let err = invalid("kind = \"s_star\"\nn = 4\ntemperature = 0").unwrap();
        assert!(err.contains("same program"), "{err}");
        assert_eq!(invalid("kind = \"s_star\"\nn = 1\ntemperature = 0"), None);
        let err =
            invalid("kind = \"beam_search\"\nn = 4\nbeam_width = 2\ntemperature = 0").unwrap();
        assert!(err.contains("same step"), "{err}");
        let StrategyConfig::BestOfN(b) = config else {
            panic!("not best_of_n")
        };
        assert!(
            matches!(*b.inner, StrategyConfig::BudgetForcing(ref bf) if bf.max_thinking_tokens == 64)
        );
        let err = parse_str::<StrategyConfig>(
            "kind = \"best_of_n\"\ninner = { kind = \"direct\", temprature = 1.0 }",
            Format::Toml,
        )
        .unwrap_err();
        assert!(err.contains("temprature"), "{err}");
        let err =
            parse_str::<StrategyConfig>("kind = \"best_of_n\"\nn = 0", Format::Toml).unwrap_err();
        assert!(err.starts_with("at `n` (line 2): "), "{err}");
        let err = parse_str::<StrategyConfig>("kind = \"best_of_n\"\nn = \"8\"", Format::Toml)
            .unwrap_err();
        assert!(
            err.starts_with("at `n` (line 2): invalid type: string \"8\""),
            "{err}"
        );
        // Inside a nested strategy the path goes all the way down.
        let err = parse_str::<StrategyConfig>(
            "kind = \"best_of_n\"\ninner = { kind = \"budget_forcing\", max_waits = -1 }",
            Format::Toml,
        )
        .unwrap_err();
        assert!(err.starts_with("at `inner.max_waits` (line 2): "), "{err}");
        let err = parse_str::<StrategyConfig>("kind = \"best_of_m\"", Format::Toml).unwrap_err();
        assert!(
            err.contains("unknown kind `best_of_m`") && err.contains("best_of_n"),
            "{err}"
        );
        let err = parse_str::<StrategyConfig>("n = 3", Format::Toml).unwrap_err();
        assert!(err.contains("missing field `kind`"), "{err}");
        let err = parse_str::<StrategyConfig>(
            "kind = \"best_of_n\"\nscorer = { kind = \"prm\", fromat = \"rlhflow\" }",
            Format::Toml,
        )
        .unwrap_err();
        assert!(err.contains("fromat"), "{err}");
        let config: StrategyConfig =
            parse_str("kind = \"self_consistency\"\nn = 5", Format::Toml).unwrap();
        assert_eq!(config.build().unwrap().name(), "self_consistency");
    }

    #[test]
    fn delimiters_that_could_not_be_told_apart_are_refused() {
        let refused = |toml: &str| {
            parse_str::<StrategyConfig>(toml, Format::Toml)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string()
        };
        let err = refused("kind = \"budget_forcing\"\nthink_open = \"<t>\"\nthink_close = \"<t>\"");
        assert!(
            err.contains("think_close \"<t>\" is think_open too"),
            "{err}"
        );
        let err = refused("kind = \"mode_token\"\nthink_end = \" \"");
        assert!(err.contains("think_end must not be empty"), "{err}");
    }

    #[test]
    fn a_value_of_neither_form_says_which_forms_are_taken() {
        let err = parse_str::<StrategyConfig>("kind = \"budget_forcing\"\nwait = 5", Format::Toml)
            .unwrap_err();
        assert!(
            err.contains("`wait`") && err.contains("a string or a list of strings"),
            "{err}"
        );
        assert!(!err.contains("untagged"), "{err}");
    }

    #[test]
    fn self_consistency_takes_no_select_it_would_ignore() {
        for select in ["weighted", "weighted_vote", "naive"] {
            let toml = format!(
                "kind = \"self_consistency\"\nselect = \"{select}\"\nscorer = {{ kind = \"llm_judge\" }}"
            );
            let err = parse_str::<StrategyConfig>(&toml, Format::Toml).unwrap_err();
            assert!(
                err.starts_with("at `select` (line 2): ")
                    && err.contains(&format!("select = \"{select}\" would be ignored"))
                    && err.contains("kind = \"best_of_n\""),
                "{err}"
            );
        }
        // Nested, the path goes down to it.
        let err = parse_str::<StrategyConfig>(
            "kind = \"best_of_n\"\ninner = { kind = \"self_consistency\", select = \"naive\" }",
            Format::Toml,
        )
        .unwrap_err();
        assert!(err.starts_with("at `inner.select` (line 2): "), "{err}");
        for select in ["select = \"majority\"", "select = \"majority_vote\"", ""] {
            let toml = format!("kind = \"self_consistency\"\nn = 4\n{select}");
            let config = parse_str::<StrategyConfig>(&toml, Format::Toml).unwrap();
            assert_eq!(config.build().unwrap().name(), "self_consistency", "{toml}");
        }
    }

    #[test]
    fn self_consistency_written_back_reads_the_same() {
        // As a run records it (`<out>.config.json`), alone and as best-of-N's inner strategy.
        for toml in [
            "kind = \"self_consistency\"\nn = 4",
            "kind = \"best_of_n\"\nselect = \"majority\"\ninner = { kind = \"self_consistency\", n = 2 }",
        ] {
            let config = parse_str::<StrategyConfig>(toml, Format::Toml).unwrap();
            let written = serde_json::to_string(&config).unwrap();
            let read = parse_str::<StrategyConfig>(&written, Format::Json)
                .unwrap_or_else(|e| panic!("{written}: {e}"));
            assert_eq!(read, config, "{written}");
        }
    }

    #[test]
    fn self_consistency_built_in_code_is_held_to_the_tables_rules() {
        let n = std::num::NonZeroUsize::new(4).unwrap();
        let scored = BestOfNConfig {
            scorer: Some(serde_json::from_value(serde_json::json!({"kind": "llm_judge"})).unwrap()),
            ..BestOfNConfig::self_consistency(n)
        };
        for err in [
            StrategyConfig::SelfConsistency(scored.clone())
                .build()
                .err()
                .map(|e| e.to_string()),
            BestOfN::self_consistency(scored)
                .err()
                .map(|e| e.to_string()),
        ] {
            assert!(
                err.as_deref()
                    .is_some_and(|e| e.contains("no scorer to pay for")),
                "{err:?}"
            );
        }
        let weighted = BestOfNConfig {
            select: ponder_prm::Select::Weighted,
            ..BestOfNConfig::self_consistency(n)
        };
        let err = StrategyConfig::SelfConsistency(weighted)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("majority vote"), "{err}");
    }

    #[test]
    fn scorers_that_could_not_tell_candidates_apart_are_refused() {
        let err = parse_str::<StrategyConfig>(
            "kind = \"self_consistency\"\nn = 4\nscorer = { kind = \"llm_judge\" }",
            Format::Toml,
        )
        .unwrap_err();
        assert!(
            err.starts_with("at `scorer` (line 3): ") && err.contains("plain majority vote"),
            "{err}"
        );
        let err = invalid(
            "kind = \"best_of_n\"\nscorer = { kind = \"llm_judge\", prompt = \"Is {answer} right?\" }",
        )
        .unwrap();
        assert!(
            err.contains("scorer.prompt") && err.contains("`{solution}`"),
            "{err}"
        );
        assert_eq!(
            invalid("kind = \"best_of_n\"\nscorer = { kind = \"llm_judge\", prompt = \"{question} {solution} Yes?\" }"),
            None
        );
        let err =
            invalid("kind = \"beam_search\"\nscorer = { kind = \"prm\", good = \"-\" }").unwrap();
        assert!(
            err.contains("scorer.bad") && err.contains("same token"),
            "{err}"
        );
        let err =
            invalid("kind = \"beam_search\"\nscorer = { kind = \"prm\", good_id = 7, bad_id = 7 }")
                .unwrap();
        assert!(err.contains("scorer.bad_id"), "{err}");
        let err = invalid("kind = \"beam_search\"\nscorer = { kind = \"prm\", step_tag = \"\" }")
            .unwrap();
        assert!(err.contains("scorer.step_tag"), "{err}");
        assert_eq!(
            invalid("kind = \"beam_search\"\nscorer = { kind = \"prm\", format = \"rlhflow\", step_tag = \"\" }"),
            None
        );
    }

    #[test]
    fn misspelt_keys_zeros_and_bad_values_are_rejected() {
        let err = parse_str::<StrategyConfig>("kind = \"direct\"\nmax_tokenz = 3", Format::Toml)
            .unwrap_err();
        assert!(err.contains("max_tokenz"), "{err}");
        let err = parse_str::<StrategyConfig>("kind = \"direct\"\nmax_tokens = 0", Format::Toml)
            .unwrap_err();
        assert!(
            err.contains("max_tokens") || err.contains("nonzero"),
            "{err}"
        );
        let err = parse_str::<StrategyConfig>("kind: direct\nstyle: verbose\n", Format::Yaml)
            .unwrap_err();
        assert!(err.contains("verbose"), "{err}");
        let err = parse_str::<StrategyConfig>("kind = \"magic\"", Format::Toml).unwrap_err();
        assert!(err.contains("magic"), "{err}");
        let config: StrategyConfig =
            parse_str("kind = \"direct\"\ntemperature = -1.0", Format::Toml).unwrap();
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
    }

    #[test]
    fn router_mode_token_and_adaptive_tables_reject_misspelt_keys_and_zeros() {
        for (toml, key) in [
            ("kind = \"router\"\nprobs = 2", "probs"),
            ("kind = \"router\"\nmin_confidance = 0.3", "min_confidance"),
            (
                "kind = \"mode_token\"\nthink_treshold = 0.5",
                "think_treshold",
            ),
            (
                "kind = \"self_consistency\"\nadaptive = { rond = 2 }",
                "rond",
            ),
        ] {
            let err = parse_str::<StrategyConfig>(toml, Format::Toml).unwrap_err();
            assert!(
                err.contains(&format!("unknown field `{key}`")),
                "{toml}: {err}"
            );
        }
        // Counts that cannot be zero are `NonZeroUsize`: refused as the file is read, by key.
        for (toml, path) in [
            ("kind = \"router\"\nprobes = 0", "probes"),
            ("kind = \"router\"\nmax_tokens = 0", "max_tokens"),
            ("kind = \"mode_token\"\nmax_tokens = 0", "max_tokens"),
            (
                "kind = \"self_consistency\"\nadaptive = { round = 0 }",
                "adaptive.round",
            ),
        ] {
            let err = parse_str::<StrategyConfig>(toml, Format::Toml).unwrap_err();
            assert!(
                err.starts_with(&format!("at `{path}` (line 2): "))
                    && err.contains("expected a whole number above 0"),
                "{toml}: {err}"
            );
        }
        // Zeros that serde reads are refused by `validate`, by key; the zeros that mean
        // something (min_confidence: the signal off; think_threshold: always think; a
        // temperature: greedy) are kept.
        for (toml, says) in [
            (
                "kind = \"router\"\nmin_agreement = 0.0",
                "min_agreement must be in (0, 1]",
            ),
            (
                "kind = \"mode_token\"\ntop_p = 0.0",
                "top_p must be in (0, 1]",
            ),
            (
                "kind = \"self_consistency\"\nadaptive = { agreement = 0.0 }",
                "adaptive.agreement must be in (0, 1]",
            ),
        ] {
            let err = invalid(toml);
            assert!(
                err.as_deref().is_some_and(|e| e.contains(says)),
                "{toml}: {err:?}"
            );
        }
        for toml in [
            "kind = \"router\"\nmin_confidence = 0.0\ntemperature = 0.0",
            "kind = \"mode_token\"\nthink_threshold = 0.0\ntemperature = 0.0",
        ] {
            assert_eq!(invalid(toml), None, "{toml}");
        }
    }
}
