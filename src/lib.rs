//! ponder: a test-time scaling orchestration engine.
//!
//! It makes a language model answer better by spending inference compute where it pays:
//! strategies ([`strategies`]) over backends ([`engine`]) with scorers ([`prm`]), metered against
//! budgets, run one problem at a time or as resumable batch jobs.
//!
//! This crate re-exports the three parts and wires a config file ([`Config`]) to a strategy and
//! a backend. The `ponder` binary is its command-line front end.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use ponder::{Config, Problem};
//!
//! let config = Config::load(std::path::Path::new("examples/strategies/direct.toml"))?;
//! let backend = config.model.load().await?;
//! let strategy = config.strategy.build()?;
//! let problem = Problem::new("q1", "What is 12 * 7?");
//! // The config's budget, and its seed where it has one, as `ponder solve` and `ponder run` do.
//! let cx = config.context(backend, &problem);
//! let solution = ponder::engine::solve_in(strategy.as_ref(), &problem, &cx).await?;
//! println!("{:?} ({} tokens)", solution.answer, solution.usage.total_tokens());
//! # Ok(()) }
//! ```
//!
//! A config in hand rather than in a file is read the same way, validated:
//! `"[strategy]\nkind = \"self_consistency\"".parse::<Config>()`, or [`Config::parse`] for
//! YAML and JSON.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub mod report;

/// The README's Rust code, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use ponder_engine as engine;
pub use ponder_prm as prm;
pub use ponder_strategies as strategies;

/// The attribute the async traits are implemented with ([`Strategy`], [`Staged`], [`Scorer`],
/// [`Grader`], [`Backend`]: `#[ponder::async_trait]`), so that an
/// implementation needs no `async-trait` of its own.
pub use async_trait::async_trait;
pub use ponder_engine::{
    solve, solve_in, solve_in_stages, Backend, Budget, Candidate, Capabilities, Choice, Context,
    Error, Event, EventKind, EventSink, Events, FinishReason, Generation, GenerationRequest,
    Grader, Message, ModelConfig, Pending, Problem, Prompt, Result, Runner, Scorer, Solution,
    Stage, Staged, StopReason, Strategy, TokenizeInput, Usage,
};
pub use ponder_strategies::StrategyConfig;

/// A whole config file: `[model]`, `[strategy]`, the per-problem `[budget]` and a `seed`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which model, where. Default: the built-in `smollm2-135m` on CPU.
    #[serde(default)]
    pub model: ModelConfig,
    /// Which strategy. Default: `direct`, step by step.
    #[serde(default)]
    pub strategy: StrategyConfig,
    /// What one problem may spend. Default unlimited.
    #[serde(default)]
    pub budget: Budget,
    /// Seeds the sampler: each problem's sampled requests get seeds from it and the problem's
    /// id ([`ponder_engine::Seeded`]), so a run repeats its draws where the backend takes a
    /// per-request seed (OpenAI-compatible servers; in process ponder draws the tokens). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Config {
    /// Reads a TOML, YAML or JSON config file and validates it; errors name the file and key.
    pub fn load(path: &Path) -> Result<Self> {
        ponder_engine::config::load_checked(path, Config::validate)
    }

    /// Reads config text in `format` (`Format::Toml`, `Yaml`, `Json`) and validates it, as
    /// [`Config::load`] does a file: a config a program builds or receives rather than one on
    /// disk. Errors name the key and its line; their `path` says which format was read
    /// (`(TOML text)`). `"...".parse::<Config>()` reads TOML.
    pub fn parse(text: &str, format: ponder_engine::config::Format) -> Result<Self> {
        use ponder_engine::config::Format;
        ponder_engine::config::parse_checked(text, format, Config::validate).map_err(|message| {
            let name = match format {
                Format::Toml => "(TOML text)",
                Format::Yaml => "(YAML text)",
                Format::Json => "(JSON text)",
            };
            Error::Config {
                path: name.into(),
                message,
            }
        })
    }

    /// The context to solve `problem` in as the command line does: the config's per-problem
    /// budget, and where it has a `seed`, every sampled call (the policy's, a judge's) seeded
    /// from it and the problem's id ([`ponder_engine::seed_for`]).
    pub fn context(&self, backend: std::sync::Arc<dyn Backend>, problem: &Problem) -> Context {
        self.context_with(backend, problem, ponder_engine::Events::off())
    }

    /// [`Config::context`], reporting to `events` ([`Context::with_events`]).
    pub fn context_with(
        &self,
        backend: std::sync::Arc<dyn Backend>,
        problem: &Problem,
        events: Events,
    ) -> Context {
        let cx = Context::with_events(backend, self.budget, events);
        match self.seed {
            Some(seed) => cx.seeded(ponder_engine::seed_for(seed, &problem.id)),
            None => cx,
        }
    }

    /// What changes results: the strategy, the per-problem budget and which model (not where
    /// or how fast it runs), for the policy and every model table of the strategy's own (a
    /// PRM's, a judge's) alike ([`ponder_engine::model_identity`]). `ponder run` records it
    /// beside a results file and checks it when resuming ([`Runner::with_identity`]).
    pub fn identity(&self) -> serde_json::Value {
        let mut identity = serde_json::json!({
            "model": self.model,
            "strategy": self.strategy,
            "budget": self.budget,
        });
        ponder_engine::model_identities(&mut identity);
        // Only when given: files recorded before seeds existed resume as they were.
        if let Some(seed) = self.seed {
            identity["seed"] = serde_json::json!(seed);
        }
        identity
    }

    /// Checks every model table (`[model]`, a PRM's, an S* judge's) as far as it can without
    /// loading ([`ModelConfig::preflight`]): a missing model file or API key variable is found
    /// before a batch job starts, not at its first problem, and so is a model on a GPU in a build
    /// without the `cuda` feature ([`ModelConfig::check_build`]). The error's path is the table
    /// (`[model]`, `strategy.scorer.model`).
    pub fn preflight(&self) -> Result<()> {
        let mut shares: Vec<(String, ponder_engine::DeviceSpec, f32)> = Vec::new();
        let mut dequantized: Option<(String, ponder_engine::Dequantize)> = None;
        let mut on_gpu: Option<String> = None;
        for (table, model) in self.tables() {
            model.preflight().map_err(|message| Error::Config {
                path: table.clone().into(),
                message,
            })?;
            // candle's switch is process-wide: one way for every GGUF model in process.
            match (&dequantized, model.dequantize) {
                (Some((first, theirs)), Some(mine)) if *theirs != mine => {
                    return Err(Error::Config {
                        path: table.into(),
                        message: format!(
                            "dequantize = \"{mine}\", but {first} has \"{theirs}\": it is \
                             process-wide, so every model in process loads one way; give one"
                        ),
                    })
                }
                (None, Some(mine)) => dequantized = Some((table.clone(), mine)),
                _ => {}
            }
            if model.backend == ponder_engine::BackendKind::Mistralrs
                && matches!(model.device, ponder_engine::DeviceSpec::Cuda(_))
            {
                on_gpu.get_or_insert(table.clone());
            }
            // Named at the later of the two tables (one table with both was refused above);
            // the message names the other.
            if let (Some((asks, way)), Some(gpu)) = (&dequantized, &on_gpu) {
                let other = match asks == &table {
                    true => format!("{gpu} runs on a GPU"),
                    false => format!("{asks} asks for it"),
                };
                return Err(Error::Config {
                    path: table.into(),
                    message: format!("{}; {other}", way.on_cuda()),
                });
            }
            if let (ponder_engine::DeviceSpec::Cuda(_), ponder_engine::DeviceSpec::Cpu) =
                (self.model.device, model.device)
            {
                if model.backend == ponder_engine::BackendKind::Mistralrs && table != "[model]" {
                    tracing::warn!(
                        table = %table,
                        "runs on the CPU while [model] runs on {}: give the table its own \
                         device (a model named by a string alone loads on the CPU)",
                        self.model.device
                    );
                }
            }
            // mistral.rs sizes a pool by share as `total * share - used`, the memory in use
            // when the model loads, so a model loaded after one whose pool took a share as
            // large as its own finds nothing left: it would fail to load at the first problem
            // that needs it. Tables load in this order ([model] first).
            let by_share = model.backend == ponder_engine::BackendKind::Mistralrs
                && matches!(model.device, ponder_engine::DeviceSpec::Cuda(_))
                && model.paged_attention_tokens.is_none();
            if by_share {
                let share = model
                    .gpu_memory_utilization
                    .unwrap_or(ponder_engine::DEFAULT_GPU_MEMORY_UTILIZATION);
                if let Some((first, device, taken)) = shares
                    .iter()
                    .find(|(_, device, taken)| *device == model.device && share <= *taken)
                {
                    return Err(Error::Config {
                        path: table.into(),
                        message: format!(
                            "runs on {device} after {first}, whose KV pool fills the GPU to \
                             gpu_memory_utilization = {taken}; this one's share ({share}) counts \
                             from the memory in use when it loads, so it would find none left. \
                             Give it paged_attention_tokens, or {first} a smaller share"
                        ),
                    });
                }
                shares.push((table, model.device, share));
            }
        }
        // Last: what the configuration itself gets wrong is said first, whatever the build.
        for (table, model) in self.tables() {
            model.check_build().map_err(|message| Error::Config {
                path: table.into(),
                message,
            })?;
        }
        Ok(())
    }

    /// The model tables in the order they load: `[model]`, then the strategy's
    /// (`strategy.scorer.model`, `strategy.judge`).
    fn tables(&self) -> impl Iterator<Item = (String, ponder_engine::ModelConfig)> {
        std::iter::once(("[model]".to_string(), self.model.clone())).chain(
            self.strategy
                .models()
                .into_iter()
                .map(|(key, model)| (format!("strategy.{key}"), model)),
        )
    }

    /// How the models run in process are dequantized ([`ponder_engine::Dequantize`]): the
    /// first table that says. Process-wide, so the `ponder` CLI sets candle's variable from it
    /// before it starts; [`Config::preflight`] refuses tables that disagree.
    pub fn dequantize(&self) -> Option<ponder_engine::Dequantize> {
        self.tables()
            .filter(|(_, model)| model.backend == ponder_engine::BackendKind::Mistralrs)
            .find_map(|(_, model)| model.dequantize)
    }

    /// Checks the rules that serde cannot. A value's error is a [`Error::ConfigValue`] naming
    /// its key from the top (`strategy.inner.temperature`, `budget.max_tokens`).
    pub fn validate(&self) -> Result<()> {
        self.model.load_options()?;
        check_budget(&self.budget)?;
        self.strategy.validate().map_err(|e| e.under("strategy"))?;
        if self.model.backend == ponder_engine::BackendKind::Openai {
            if let Some(key) = self.strategy.needs_logits_processors() {
                return Err(Error::ConfigValue {
                    key: format!("strategy.{key}"),
                    reason: "works only in process, through logits processors, which an \
                             inference server (backend = \"openai\") does not take: leave it \
                             out, or run the model in process"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

/// TOML config text, read and validated ([`Config::parse`]).
impl std::str::FromStr for Config {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Config::parse(text, ponder_engine::config::Format::Toml)
    }
}

/// A limit of zero leaves no room for a single call: a mistake, never a useful budget.
fn check_budget(budget: &Budget) -> Result<()> {
    let limits = [
        ("max_tokens", budget.max_tokens),
        ("max_completion_tokens", budget.max_completion_tokens),
        ("max_calls", budget.max_calls),
        ("max_wall_ms", budget.max_wall_ms),
    ];
    match limits.iter().find(|(_, limit)| *limit == Some(0)) {
        Some((key, _)) => Err(Error::config_value(
            format!("budget.{key}"),
            format!(
                "{key} = 0 leaves no room for anything: give at least 1, or leave it out for \
                 no limit"
            ),
        )),
        None => Ok(()),
    }
}

/// How the `ponder` binary tells an error: `error: <message>`, then each cause on its own line,
/// leaving out a cause whose text is already shown (an I/O error that the message quotes after
/// its path, say). No backtrace: those are for bugs, and these are the user's to fix.
pub fn error_report<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut chain = chain.into_iter().map(|e| e.to_string());
    let mut report = format!("error: {}", chain.next().unwrap_or_default());
    let mut shown = vec![report.clone()];
    for cause in chain {
        let cause = cause.trim().to_string();
        if cause.is_empty() || shown.iter().any(|text| text.contains(&cause)) {
            continue;
        }
        report.push_str("\n  caused by: ");
        report.push_str(&cause);
        shown.push(cause);
    }
    report
}

#[cfg(test)]
mod tests {
    use ponder_engine::config::{parse_str, Format};
    use ponder_engine::Dequantize;

    use super::*;

    #[test]
    fn a_full_config_parses_in_every_format() {
        let toml = "[model]\nsource = \"smollm2-135m\"\ndevice = \"cpu\"\n\n[strategy]\nkind = \"direct\"\nstyle = \"direct\"\n\n[budget]\nmax_tokens = 1000\n";
        let config: Config = parse_str(toml, Format::Toml).unwrap();
        assert_eq!(config.budget.max_tokens, Some(1000));
        let yaml = "model:\n  source: smollm2-135m\nstrategy:\n  kind: direct\n";
        assert_eq!(
            parse_str::<Config>(yaml, Format::Yaml)
                .unwrap()
                .model
                .source,
            "smollm2-135m"
        );
        let json = "{\"model\": {\"device\": \"cuda:1\"}}";
        let config: Config = parse_str(json, Format::Json).unwrap();
        assert_eq!(config.model.device, ponder_engine::DeviceSpec::Cuda(1));
    }

    #[test]
    fn config_text_is_validated_as_a_file_is() {
        let config: Config = "[strategy]\nkind = \"self_consistency\"\nn = 4\n"
            .parse()
            .unwrap();
        assert_eq!(config.strategy.kind(), "self_consistency");
        // A value serde takes but the rules do not: named with its line, and the format read.
        let err = "[strategy]\nkind = \"direct\"\ntemperature = -1.0\n"
            .parse::<Config>()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("(TOML text): at `strategy.temperature` (line 3):"),
            "{err}"
        );
        let err = Config::parse("budget:\n  max_calls: 0\n", Format::Yaml)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("(YAML text): at `budget.max_calls` (line 2):"),
            "{err}"
        );
        let err = Config::parse("{\"strategy\": {\"kind\": \"nope\"}}", Format::Json)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("(JSON text): "), "{err}");
        assert!(err.contains("nope"), "{err}");
        let err = "# nothing\n".parse::<Config>().unwrap_err().to_string();
        assert!(err.contains("nothing in it"), "{err}");
    }

    #[test]
    fn a_server_asked_for_its_default_model_is_known_by_its_address() {
        let at = |url: &str, model: &str| {
            let toml = format!(
                "[model]\nbackend = \"openai\"\nbase_url = \"{url}\"\n{model}\n[strategy]\nkind = \"direct\"\n"
            );
            parse_str::<Config>(&toml, Format::Toml).unwrap().identity()
        };
        assert_ne!(at("http://a:8000", ""), at("http://b:8000", ""));
        // A named model is the same model wherever it is served.
        let named = "model = \"qwen\"";
        assert_eq!(at("http://a:8000", named), at("http://b:8000", named));
    }

    #[test]
    fn a_chat_template_or_the_servers_own_sampling_is_part_of_the_identity() {
        let with = |model: &str| {
            parse_str::<Config>(
                &format!("{model}\n[strategy]\nkind = \"direct\"\n"),
                Format::Toml,
            )
            .unwrap()
            .identity()
        };
        let plain = with("[model]\nsource = \"smollm2-135m\"");
        let templated = with("[model]\nsource = \"smollm2-135m\"\nchat_template = \"r1.jinja\"");
        assert_ne!(plain, templated);
        assert_eq!(templated["model"]["chat_template"], "r1.jinja");
        assert!(plain["model"].get("chat_template").is_none());
        let server = |extra: &str| {
            with(&format!(
                "[model]\nbackend = \"openai\"\nbase_url = \"http://localhost:8080/v1\"\nmodel = \"m\"{extra}"
            ))
        };
        assert_ne!(server(""), server("\nneutral_sampling = false"));
        assert_eq!(server(""), server("\nneutral_sampling = true"));
    }

    #[test]
    fn a_scorers_model_table_is_known_by_its_identity_like_the_policys() {
        let with = |prm: &str| {
            parse_str::<Config>(
                &format!(
                    "[strategy]\nkind = \"best_of_n\"\nn = 2\nscorer = {{ kind = \"prm\", \
                     model = {{ backend = \"openai\", {prm} }} }}\n"
                ),
                Format::Toml,
            )
            .unwrap()
            .identity()
        };
        let at_a = with("base_url = \"http://a:8000/v1\", model = \"prm\"");
        // Another server, timeout or concurrency for the same named model: the same run.
        let elsewhere = with(
            "base_url = [\"http://b:8000/v1\"], model = \"prm\", timeout_secs = 9, concurrency = 2",
        );
        assert_eq!(at_a, elsewhere);
        assert_eq!(
            at_a["strategy"]["scorer"]["model"],
            serde_json::json!({"backend": "openai", "model": "prm"})
        );
        // Another model, or fewer tokens to read labels among, is another run.
        assert_ne!(
            at_a,
            with("base_url = \"http://a:8000/v1\", model = \"other\"")
        );
        assert_ne!(
            at_a,
            with("base_url = \"http://a:8000/v1\", model = \"prm\", max_top_logprobs = 5")
        );
        // A server's default model is known by where it is, one URL or a list of one.
        assert_eq!(
            with("base_url = \"http://a:8000/v1\""),
            with("base_url = [\"http://a:8000/v1\"]")
        );
    }

    #[test]
    fn a_seed_is_part_of_the_identity_only_when_given() {
        let with = |seed: &str| {
            let toml = format!("{seed}\n[strategy]\nkind = \"direct\"\n");
            parse_str::<Config>(&toml, Format::Toml).unwrap()
        };
        let seeded = with("seed = 3");
        assert_eq!(seeded.seed, Some(3));
        assert_eq!(seeded.identity()["seed"], 3);
        // Files recorded before seeds existed have no key: an unseeded config matches them.
        assert!(with("").identity().get("seed").is_none());
        assert_ne!(with("seed = 4").identity(), seeded.identity());
    }

    #[test]
    fn the_design_example_parses() {
        // The config example of the design notes, spelt as search-and-learn spells selection.
        let toml = r#"
[model]
source = "smollm2-135m"
device = "cpu"

[strategy]
kind = "best_of_n"
n = 8
select = "weighted_vote"
scorer = { kind = "llm_judge" }
inner = { kind = "budget_forcing", min_thinking_tokens = 128, max_thinking_tokens = 512, wait = "Wait", max_waits = 2 }
"#;
        let config: Config = parse_str(toml, Format::Toml).unwrap();
        config.validate().unwrap();
        let strategy = serde_json::to_value(&config.strategy).unwrap();
        assert_eq!(strategy["select"], "weighted", "{strategy}");
        assert_eq!(strategy["inner"]["kind"], "budget_forcing", "{strategy}");
        // Eight samples, not one greedy completion eight times.
        assert_eq!(strategy["inner"]["temperature"], 0.8, "{strategy}");
        for (spelling, select) in [("majority_vote", "majority"), ("naive", "naive")] {
            let toml = format!("[strategy]\nkind = \"best_of_n\"\nselect = \"{spelling}\"\n");
            let config: Config = parse_str(&toml, Format::Toml).unwrap();
            assert_eq!(
                serde_json::to_value(&config.strategy).unwrap()["select"],
                select
            );
        }
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse_str::<Config>("[model]\nsorce = \"x\"\n", Format::Toml).unwrap_err();
        assert!(err.contains("sorce") && err.contains("model"), "{err}");
        let err = parse_str::<Config>("[model]\ndevice = \"gpu\"\n", Format::Toml).unwrap_err();
        assert!(err.contains("model.device") && err.contains("cpu"), "{err}");
        let err = parse_str::<Config>("[model]\nmax_num_seqs = 0\n", Format::Toml).unwrap_err();
        assert!(err.contains("max_num_seqs"), "{err}");
        // Checks made after the keys read name the key's line, not the table's.
        let err = parse_str::<Config>(
            "[model]\nsource = \"smollm2-135m\"\nchat_template = \"t.txt\"\n",
            Format::Toml,
        )
        .unwrap_err();
        assert!(
            err.starts_with("at `model.chat_template` (line 3): "),
            "{err}"
        );
        let err = parse_str::<Config>(
            "[model]\ndevice = \"cuda:0\"\npaged_attention_tokens = 4096\ngpu_memory_utilization = 0.5\n",
            Format::Toml,
        )
        .unwrap_err();
        assert!(
            err.starts_with("at `model.gpu_memory_utilization` (line 4): "),
            "{err}"
        );
        let err = parse_str::<Config>("[budget]\nmax_tokns = 5\n", Format::Toml).unwrap_err();
        assert!(err.contains("max_tokns"), "{err}");
        // An array of tables is no budget (serde would read a list positionally).
        let err = parse_str::<Config>("[[budget]]\nmax_tokens = 5\n", Format::Toml).unwrap_err();
        assert_eq!(
            err,
            "at `budget` (line 1): invalid type: sequence, expected a table of limits \
             (`[budget]` in TOML, not `[[budget]]`)"
        );
        // Budgets still read and write as before (results lines record them).
        let budget = Budget::unlimited().with_max_tokens(5);
        let json = serde_json::to_string(&budget).unwrap();
        assert_eq!(serde_json::from_str::<Budget>(&json).unwrap(), budget);
        let err = parse_str::<Config>(
            "{\"strategy\": {\"kind\": \"direct\", \"n\": 3}}",
            Format::Json,
        )
        .unwrap_err();
        assert!(err.contains("`n`"), "{err}");
        let err = parse_str::<Config>(
            "[strategy]\nkind = \"best_of_n\"\nn = \"8\"\n",
            Format::Toml,
        )
        .unwrap_err();
        assert!(
            err.starts_with("at `strategy.n` (line 3): invalid type"),
            "{err}"
        );
        let err = parse_str::<Config>(
            "[strategy]\nkind = \"best_of_n\"\nscorer = { kind = \"prm\", good_id = \"plus\" }\n",
            Format::Toml,
        )
        .unwrap_err();
        assert!(
            err.starts_with("at `strategy.scorer.good_id` (line 3): "),
            "{err}"
        );
        // Inside tagged tables, YAML and JSON errors name the key's line too (serde_yaml gives
        // none there, serde_json the end of the table).
        let err = parse_str::<Config>(
            "model:\n  source: smollm2-135m\nstrategy:\n  kind: best_of_n\n  inner:\n    kind: budget_forcing\n    max_waits: -1\n",
            Format::Yaml,
        )
        .unwrap_err();
        assert!(
            err.starts_with("at `strategy.inner.max_waits` (line 7): invalid value"),
            "{err}"
        );
        let err = parse_str::<Config>(
            "{\"strategy\": {\"kind\": \"best_of_n\",\n  \"n\": \"8\",\n  \"select\": \"naive\"}}",
            Format::Json,
        )
        .unwrap_err();
        assert!(
            err.starts_with("at `strategy.n` (line 2): invalid type"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_budget_limit_is_an_error_naming_it() {
        for key in [
            "max_tokens",
            "max_completion_tokens",
            "max_calls",
            "max_wall_ms",
        ] {
            let toml = format!("[strategy]\nkind = \"direct\"\n[budget]\n{key} = 0\n");
            let config: Config = parse_str(&toml, Format::Toml).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("at `budget.{key}`: {key} = 0")),
                "{err}"
            );
            let toml = format!("[strategy]\nkind = \"direct\"\n[budget]\n{key} = 1\n");
            let config: Config = parse_str(&toml, Format::Toml).unwrap();
            config.validate().unwrap();
        }
    }

    #[test]
    fn an_error_report_leaves_out_causes_already_told() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = anyhow::Error::from(Error::io(Path::new("/x/o.jsonl"), io));
        assert_eq!(
            error_report(err.chain()),
            "error: /x/o.jsonl: No such file or directory"
        );
        let err = anyhow::anyhow!("disk on fire").context("writing /x/o.jsonl");
        assert_eq!(
            error_report(err.chain()),
            "error: writing /x/o.jsonl\n  caused by: disk on fire"
        );
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[strategy]\nkind = \"direct\"\ntemperature = -2.0\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&path.display().to_string()) && err.contains("temperature"),
            "{err}"
        );
        let err = Config::load(&dir.path().join("config.ini"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(".toml"), "{err}");
    }

    #[test]
    fn a_value_out_of_range_is_named_with_its_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let load = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = Config::load(&path).unwrap_err().to_string();
            let prefix = format!("{}: ", path.display());
            assert!(err.starts_with(&prefix), "{err}");
            err[prefix.len()..].to_string()
        };
        // Nested two deep, in an inline table.
        let err = load(
            "nested.toml",
            "[model]
source = \"smollm2-135m\"
\n[strategy]\nkind = \"best_of_n\"\nn = 4\nselect = \"majority\"\n\
             inner = { kind = \"router\", think = { kind = \"direct\", temperature = -1.0 } }\n",
        );
        assert_eq!(
            err,
            "at `strategy.inner.think.temperature` (line 8): temperature must be a number >= 0, \
             got -1"
        );
        // YAML and JSON, and a cross-field rule (its key is the one the message starts with).
        let err = load(
            "beam.yaml",
            "strategy:\n  kind: beam_search\n  beam_width: 4\n  n: 6\n",
        );
        assert_eq!(
            err,
            "at `strategy.n` (line 4): n (6) must be a multiple of beam_width (4)"
        );
        let err = load(
            "router.json",
            "{\"strategy\": {\"kind\": \"router\",\n  \"min_confidence\": 1.5}}",
        );
        assert_eq!(
            err,
            "at `strategy.min_confidence` (line 2): min_confidence must be in [0, 1], got 1.5"
        );
        // A key left at its default is not in the file: the line of its table.
        let err = load(
            "select.toml",
            "[budget]\nmax_tokens = 100\n\n[strategy]\nkind = \"best_of_n\"\n",
        );
        assert!(
            err.starts_with("at `strategy.select` (line 4): select = \"weighted\" needs a scorer"),
            "{err}"
        );
        let err = load("budget.toml", "[budget]\nmax_calls = 0\n");
        assert!(
            err.starts_with("at `budget.max_calls` (line 2): max_calls = 0"),
            "{err}"
        );
        let err = load(
            "penalty.toml",
            "[strategy]\nkind = \"budget_forcing\"\n\n[strategy.switch_penalty]\nwords = [\"Wait\"]\nalpha = 0.0\n",
        );
        assert!(
            err.starts_with("at `strategy.switch_penalty.alpha` (line 6): "),
            "{err}"
        );
        // What needs logits processors, nested, where the model is an inference server: an
        // error before anything loads, not one failing every problem of a batch.
        let err = load(
            "server.toml",
            "[model]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:1\"\n\n\
             [strategy]\nkind = \"best_of_n\"\nn = 2\nselect = \"majority\"\n\n\
             [strategy.inner]\nkind = \"budget_forcing\"\n\
             switch_penalty = { words = [\"Alternatively\"], alpha = 3.0 }\n",
        );
        assert!(
            err.starts_with("at `strategy.inner.switch_penalty` (line 12): works only in process"),
            "{err}"
        );
        let err = load(
            "mode.toml",
            "[model]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:1\"\n\n\
             [strategy]\nkind = \"mode_token\"\nthink_threshold = 0.5\n",
        );
        assert!(
            err.starts_with("at `strategy.think_threshold` (line 7): works only in process"),
            "{err}"
        );
        // In process both load.
        for text in [
            "[strategy]\nkind = \"budget_forcing\"\nswitch_penalty = { words = [\"Alternatively\"], alpha = 3.0 }\n",
            "[strategy]\nkind = \"mode_token\"\nthink_threshold = 0.5\n",
        ] {
            let path = dir.path().join("in_process.toml");
            std::fs::write(&path, text).unwrap();
            Config::load(&path).unwrap();
        }
    }

    #[test]
    fn models_in_process_are_dequantized_one_way_or_the_config_is_refused() {
        let config = |policy: &str, scorer: &str| {
            parse_str::<Config>(
                &format!(
                    "[model]\nsource = \"smollm2-135m\"\n{policy}\n\
                     [strategy]\nkind = \"best_of_n\"\nn = 2\n\
                     scorer = {{ kind = \"prm\", model = {{ source = \"smollm2-135m\"{scorer} }} }}\n"
                ),
                Format::Toml,
            )
            .unwrap()
        };
        let err = config("dequantize = \"f16\"", ", dequantize = \"f32\"")
            .preflight()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "strategy.scorer.model: dequantize = \"f32\", but [model] has \"f16\": it is \
                 process-wide"
            ),
            "{err}"
        );
        // Not with a model on a GPU, in the same table or another; the error is at the later
        // table and names the other.
        for (policy, scorer, at, names) in [
            (
                "dequantize = \"f16\"\ndevice = \"cuda:0\"",
                "",
                "[model]",
                "",
            ),
            (
                "device = \"cuda:0\"",
                ", dequantize = \"f16\"",
                "strategy.scorer.model",
                "; [model] runs on a GPU",
            ),
            (
                "dequantize = \"f16\"",
                ", device = \"cuda:0\"",
                "strategy.scorer.model",
                "; [model] asks for it",
            ),
        ] {
            let err = config(policy, scorer).preflight().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{at}: dequantize = \"f16\" is for the CPU")),
                "{err}"
            );
            assert!(
                err.ends_with(&format!("share a process with it){names}")),
                "{err}"
            );
        }
        // One table saying is the process's way; agreeing tables are fine.
        for (policy, scorer, way) in [
            ("", ", dequantize = \"f32\"", Some(Dequantize::F32)),
            (
                "dequantize = \"f16\"",
                ", dequantize = \"f16\"",
                Some(Dequantize::F16),
            ),
            ("", "", None),
        ] {
            let config = config(policy, scorer);
            config.preflight().unwrap();
            assert_eq!(config.dequantize(), way, "{policy} {scorer}");
        }
        // A safetensors model has nothing to dequantize; over HTTP it is no key at all.
        let dir = std::env::temp_dir().join(format!("ponder-dequantize-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let toml = format!(
            "[model]\nsource = {:?}\ndequantize = \"f16\"\n[strategy]\nkind = \"direct\"\n",
            dir.display().to_string()
        );
        let err = parse_str::<Config>(&toml, Format::Toml)
            .unwrap()
            .preflight()
            .unwrap_err()
            .to_string();
        assert!(err.contains("is for GGUF models"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = parse_str::<Config>(
            "[model]\nbackend = \"openai\"\nbase_url = \"http://127.0.0.1:8080\"\n\
             dequantize = \"f16\"\n[strategy]\nkind = \"direct\"\n",
            Format::Toml,
        )
        .unwrap_err();
        assert!(
            err.contains("`dequantize` is a key of the mistralrs backend"),
            "{err}"
        );
    }

    #[test]
    fn a_second_model_whose_kv_share_the_first_took_is_refused_before_loading() {
        let config = |scorer_model: &str| {
            parse_str::<Config>(
                &format!(
                    "[model]\nsource = \"smollm2-135m\"\ndevice = \"cuda:0\"\n\n\
                     [strategy]\nkind = \"best_of_n\"\nn = 2\n\
                     scorer = {{ kind = \"prm\", model = {scorer_model} }}\n"
                ),
                Format::Toml,
            )
            .unwrap()
        };
        // The second to load would size its pool from what the first left: nothing.
        let err = config("{ source = \"smollm2-135m\", device = \"cuda:0\" }")
            .preflight()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "strategy.scorer.model: runs on cuda:0 after [model], whose KV pool fills the GPU \
                 to gpu_memory_utilization = 0.9; this one's share (0.9)"
            ),
            "{err}"
        );
        // So does a smaller share of its own: it counts from what the first left.
        let err = config(
            "{ source = \"smollm2-135m\", device = \"cuda:0\", gpu_memory_utilization = 0.5 }",
        )
        .preflight()
        .unwrap_err()
        .to_string();
        assert!(err.contains("this one's share (0.5)"), "{err}");
        // A pool of its own, another GPU, or the CPU: nothing to refuse.
        for model in [
            "{ source = \"smollm2-135m\", device = \"cuda:0\", paged_attention_tokens = 65536 }",
            "{ source = \"smollm2-135m\", device = \"cuda:1\" }",
            "{ source = \"smollm2-135m\", device = \"cuda:0\", gpu_memory_utilization = 0.95 }",
            "\"smollm2-135m\"",
        ] {
            // Only what this build cannot run: a model on a GPU without the `cuda` feature,
            // said before anything loads.
            let cuda = cfg!(feature = "cuda");
            match config(model).preflight() {
                Ok(()) => assert!(cuda, "{model}"),
                Err(e) => {
                    let err = e.to_string();
                    assert!(!cuda, "{err}");
                    assert!(
                        err.starts_with("[model]: device = \"cuda:0\" needs ponder built with the `cuda` feature"),
                        "{err}"
                    );
                }
            }
        }
        // A scorer's table on a GPU under a policy on the CPU: named, before the policy's
        // samples are drawn and the scorer fails at every problem.
        let toml = "[strategy]\nkind = \"best_of_n\"\nscorer = { kind = \"prm\", model = { source = \"smollm2-135m\", device = \"cuda:0\" } }\n";
        let outcome = parse_str::<Config>(toml, Format::Toml).unwrap().preflight();
        if !cfg!(feature = "cuda") {
            let err = outcome.unwrap_err().to_string();
            assert!(
                err.starts_with("strategy.scorer.model: device = \"cuda:0\" needs"),
                "{err}"
            );
        }
    }
}
