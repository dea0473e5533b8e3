//! The `ponder` command line: `solve`, `run`, `report`, `models`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{CommandFactory, Parser, Subcommand};
use comfy_table::Table;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use ponder::engine::models::{self, BUILTIN_MODELS};
use ponder::engine::{
    runner, Allocation, BackendKind, Budget, Dequantize, DeviceSpec, Event, EventKind, EventLog,
    EventSink, Events, Problem, ResultLine, Runner, Strategy,
};
use ponder::report::{Comparison, References, RunReport};
use ponder::Config;

#[derive(Debug, Parser)]
#[command(
    name = "ponder",
    version,
    about = "Test-time scaling over mistral.rs models"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Solve one question and print the answer and a usage line.
    Solve {
        /// The question.
        question: String,
        /// Strategy config file (TOML, YAML or JSON). Default: direct, step by step.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Model, overriding the config's: its source in process (built-in name, .gguf,
        /// directory, hub id), the model name sent with `backend = "openai"`.
        #[arg(long)]
        model: Option<String>,
        /// Device, overriding the config's: `cpu` or `cuda:N` (in process).
        #[arg(long)]
        device: Option<DeviceSpec>,
        /// Dequantize a GGUF model's weights at load, overriding the config's: `f16` or `f32`
        /// (CPU, in process; prompts several times faster for more memory).
        #[arg(long, value_name = "f16|f32")]
        dequantize: Option<Dequantize>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Write the search tree (searching strategies) to DIR/question.{json,dot,svg}.
        #[arg(long, value_name = "DIR")]
        trace_dir: Option<PathBuf>,
        /// Report what the strategy does as it happens (each call, route, round, beam step,
        /// test run, selection): `-` prints them to stderr, a path appends them to that file
        /// as JSON lines.
        #[arg(long, value_name = "PATH")]
        events: Option<PathBuf>,
    },
    /// Run a strategy over a problem set (JSON Lines), appending graded results; resumable.
    Run {
        /// Strategy config file.
        #[arg(long)]
        config: PathBuf,
        /// Problem set (JSON Lines: id/question/answer, or HumanEval's fields).
        #[arg(long)]
        problems: PathBuf,
        /// Results file (JSON Lines); an existing one is resumed.
        #[arg(long)]
        out: PathBuf,
        /// Only the first N problems.
        #[arg(long)]
        limit: Option<usize>,
        /// Problems solved at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Model, overriding the config's (as for `solve`).
        #[arg(long)]
        model: Option<String>,
        /// Device, overriding the config's: `cpu` or `cuda:N` (in process).
        #[arg(long)]
        device: Option<DeviceSpec>,
        /// Dequantize a GGUF model's weights at load, overriding the config's: `f16` or `f32`
        /// (CPU, in process; prompts several times faster for more memory).
        #[arg(long, value_name = "f16|f32")]
        dequantize: Option<Dequantize>,
        /// Most tokens (prompt and completion) the whole run may spend, counting those its
        /// results file records from earlier invocations.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_run_tokens: Option<u64>,
        /// How --max-run-tokens is shared: `first-come` (a problem may spend all that is
        /// left), `even` (each problem, as it starts, gets what is left divided by the
        /// problems not yet started; what it leaves unspent goes to those after it) or `triage`
        /// (strategies with a cheap first stage, the router or adaptive best-of-N: every
        /// problem's short answer or first round first, then thinking or more samples for the
        /// least sure first, as far as the budget goes; the rest keep their first answer).
        #[arg(long, value_enum, default_value_t = Allocate::FirstCome)]
        allocate: Allocate,
        /// Write each search tree to DIR/<problem id>.{json,dot,svg}.
        #[arg(long, value_name = "DIR")]
        trace_dir: Option<PathBuf>,
        /// Report what each problem's strategy does as it happens (its start, each call, route,
        /// round, beam step, test run, selection, its end), timed from the run's start: `-`
        /// prints them to stderr, a path appends them to that file as JSON lines.
        #[arg(long, value_name = "PATH")]
        events: Option<PathBuf>,
        /// Grade code problems even where the sandbox cannot cut off the network or make the
        /// filesystem read-only (no usable `unshare`); without it such a machine is an error.
        /// Model-written programs then run with the network and, not as root, as you: your
        /// files and your other processes (their environments, API keys) are in their reach.
        #[arg(long)]
        allow_unisolated_sandbox: bool,
    },
    /// Summarise results files side by side: accuracy (95% interval), tokens, calls, time
    /// and stop reasons per run; accuracy on the problems every run graded; a plot.
    Report {
        /// Results files (JSON Lines, as `run` writes them).
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Names for the runs, in order, comma-separated. Default: the file names.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Also draw accuracy against tokens per problem to this SVG file.
        #[arg(long, value_name = "SVG")]
        plot: Option<PathBuf>,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
        /// Grade the math answers again with this ponder's grader (results written by an
        /// older ponder); the files are not changed, and code problems keep their test results.
        #[arg(long)]
        regrade: bool,
        /// With --regrade: grade against this problem file's reference answers (a corrected
        /// set) instead of those the results record.
        #[arg(long, value_name = "JSONL", requires = "regrade")]
        problems: Option<PathBuf>,
    },
    /// List the built-in models and their cache paths, or fetch one.
    Models {
        #[command(subcommand)]
        action: Option<ModelsAction>,
    },
}

/// Log events written as the CLI writes its own notes: `warning: message field=value`.
struct Plain;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Plain
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warning",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        write!(writer, "{level}: ")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[derive(Debug, Subcommand)]
enum ModelsAction {
    /// Download and verify a built-in model, named as `ponder models` lists them.
    #[command(override_usage = "ponder models fetch <NAME>")]
    Fetch {
        // Optional to clap only, so that its absence is told with the names to choose from;
        // hidden, so that the help shows it once, as the usage line does.
        #[arg(hide = true)]
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    let asked = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    let logs = asked.is_some();
    let log = tracing_subscriber::fmt()
        .with_env_filter(asked.unwrap_or_else(|| {
            // mistral.rs 0.8.1's GGUF pipeline warns on every CPU load of "a mix of GPU and
            // CPU" (it checks for any CPU layer, PagedAttention asked or not); its only other
            // warning is for adapters, which ponder does not load.
            tracing_subscriber::EnvFilter::new("warn,mistralrs_core::pipeline::gguf=error")
        }))
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log kept in a file reads without escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if logs {
        // RUST_LOG asks for a log: times and the modules that wrote it.
        log.init();
    } else {
        // Warnings alone, told like the CLI's own notes (`warning: ...`).
        log.event_format(Plain).init();
    }
    // Usage errors are clap's: its message, exit code 2.
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The message and its causes, never a backtrace (RUST_BACKTRACE is for panics).
        Err(err) => {
            eprintln!("{}", ponder::error_report(err.chain()));
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    dequantize_as_configured(&cli);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Solve {
                question,
                config,
                model,
                device,
                dequantize,
                json,
                trace_dir,
                events,
            } => {
                solve(
                    &question,
                    config.as_deref(),
                    Overrides {
                        model,
                        device,
                        dequantize,
                    },
                    json,
                    trace_dir.as_deref(),
                    events.as_deref(),
                )
                .await
            }
            Command::Run {
                config,
                problems,
                out,
                limit,
                concurrency,
                model,
                device,
                dequantize,
                max_run_tokens,
                allocate,
                trace_dir,
                events,
                allow_unisolated_sandbox,
            } => {
                run(RunArgs {
                    trace_dir,
                    events,
                    allow_unisolated_sandbox,
                    config,
                    problems,
                    out,
                    limit,
                    concurrency,
                    overrides: Overrides {
                        model,
                        device,
                        dequantize,
                    },
                    max_run_tokens,
                    allocate,
                })
                .await
            }
            Command::Report {
                results,
                labels,
                plot,
                json,
                regrade,
                problems,
            } => report(
                &results,
                labels,
                plot.as_deref(),
                json,
                regrade,
                problems.as_deref(),
            ),
            Command::Models { action } => models_command(action),
        }
    })
}

/// Sets candle's switch for dequantized weights (`dequantize` in a model table) in this process's
/// environment: candle reads it once per thread, so it must be there before the runtime's
/// threads start. A config that cannot be read is left to `solve`/`run`, which say why.
fn dequantize_as_configured(cli: &Cli) {
    let (config, flag) = match &cli.command {
        Command::Solve {
            config, dequantize, ..
        } => (config.as_deref(), *dequantize),
        Command::Run {
            config, dequantize, ..
        } => (Some(config.as_path()), *dequantize),
        // They load no model.
        Command::Report { .. } | Command::Models { .. } => return,
    };
    // A config that cannot be read is left alone: `solve`/`run` say why.
    let loaded = match config {
        Some(path) => match Config::load(path) {
            Ok(config) => Some(config),
            Err(_) => return,
        },
        None => None,
    };
    let wanted = flag.or_else(|| loaded.as_ref().and_then(Config::dequantize));
    // No other thread runs yet.
    for way in [Dequantize::F16, Dequantize::F32] {
        let variable = way.variable();
        if Some(way) == wanted {
            std::env::set_var(variable, "1");
        } else if way.is_set() {
            // Inherited, it would dequantize what the config (and the run's record) says is
            // loaded as stored.
            if wanted.is_none() {
                tracing::warn!(
                    "{variable} is set, but the config does not ask for dequantized weights: \
                     they are loaded as stored (ask with `dequantize = \"{way}\"` in the model \
                     table, or --dequantize {way})"
                );
            }
            std::env::remove_var(variable);
        }
    }
}

fn report(
    results: &[PathBuf],
    labels: Vec<String>,
    plot: Option<&Path>,
    json: bool,
    regrade: bool,
    problems: Option<&Path>,
) -> anyhow::Result<()> {
    // A run's other files given with its results (`ponder report runs/*.jsonl`): left out,
    // said so, not read as results files that fail on their first line.
    let given = results.len();
    let results: Vec<PathBuf> = results
        .iter()
        .filter(|path| match not_results(path) {
            Some(what) => {
                eprintln!("left out {}: {what}", path.display());
                false
            }
            None => true,
        })
        .cloned()
        .collect();
    if results.is_empty() {
        bail!("no results files among the {given} given (a results file is what `ponder run --out` writes)");
    }
    let results = results.as_slice();
    if !labels.is_empty() && labels.len() != results.len() {
        bail!(
            "--labels names {} run{} but {} results file{} given",
            labels.len(),
            if labels.len() == 1 { "" } else { "s" },
            results.len(),
            if results.len() == 1 { " is" } else { "s are" }
        );
    }
    // The plot is SVG, whatever the name says.
    if let Some(plot) =
        plot.filter(|p| p.extension().is_none_or(|e| !e.eq_ignore_ascii_case("svg")))
    {
        bail!(
            "--plot {}: the plot is written as SVG; name it FILE.svg",
            plot.display()
        );
    }
    if let Some(plot) = plot {
        check_parent(plot, "--plot")?;
    }
    let references = problems.map(References::load).transpose()?;
    let mut labels = labels.into_iter();
    let runs = results
        .iter()
        .map(|path| {
            if regrade {
                RunReport::load_regraded(path, labels.next(), references.as_ref())
            } else {
                RunReport::load(path, labels.next())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let comparison = Comparison::new(runs);
    if json {
        println!("{}", serde_json::to_string_pretty(&comparison.to_json())?);
    } else {
        println!("{}", comparison.table());
        for note in comparison.notes() {
            println!("{note}");
        }
    }
    // After the table: a plot that cannot be written loses nothing else.
    if let Some(plot) = plot {
        for why in comparison.plot(plot)? {
            eprintln!("{why}");
        }
        eprintln!("plot: {}", plot.display());
    }
    Ok(())
}

/// What a file given to `ponder report` is where it is one of a run's other files, not its
/// results: the record of its configuration, a spend ledger or triage's kept stages (by the
/// name the run gives them, beside their results file), or an events log (by its first line).
fn not_results(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    for (suffix, what) in [
        (".config.json", "the record of the configuration of"),
        (".spend.jsonl", "the spend ledger of"),
        (".triage.jsonl", "triage's kept first stages of"),
    ] {
        if let Some(stem) = name.strip_suffix(suffix) {
            let results = path.with_file_name(stem);
            if results.is_file() {
                return Some(format!("{what} {}, read with it", results.display()));
            }
        }
    }
    use std::io::{BufRead, Read};
    let file = std::fs::File::open(path).ok()?;
    let mut first = String::new();
    std::io::BufReader::new(file)
        .take(64 * 1024)
        .read_line(&mut first)
        .ok()?;
    let line: serde_json::Value = serde_json::from_str(first.trim()).ok()?;
    let event = line.get("event").is_some_and(serde_json::Value::is_string)
        && line.get("problem").is_some()
        && line.get("id").is_none();
    event.then(|| "an events log (`--events`), not a results file".to_string())
}

/// What `--model`, `--device` and `--dequantize` override in the config's `[model]`.
#[derive(Debug, Default)]
struct Overrides {
    model: Option<String>,
    device: Option<DeviceSpec>,
    dequantize: Option<Dequantize>,
}

fn load_config(path: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
    let Overrides {
        model,
        device,
        dequantize,
    } = overrides;
    let mut config = match path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    // The flags that changed [model], which an error of it may be about.
    let mut flags = Vec::new();
    if let Some(model) = &model {
        flags.push(format!("--model {model}"));
    }
    if let Some(device) = &device {
        flags.push(format!("--device {device}"));
    }
    if let Some(dequantize) = &dequantize {
        flags.push(format!("--dequantize {dequantize}"));
    }
    if let Some(model) = model {
        // In process the source names the model; over HTTP the model name sent does.
        match config.model.backend {
            BackendKind::Mistralrs => config.model.source = model,
            BackendKind::Openai => config.model.model = Some(model),
        }
    }
    if let Some(device) = device {
        if config.model.backend == BackendKind::Openai {
            bail!("--device applies to models run in process; this config's backend is \"openai\"");
        }
        config.model.device = device;
    }
    if let Some(dequantize) = dequantize {
        if config.model.backend == BackendKind::Openai {
            bail!(
                "--dequantize applies to models run in process; this config's backend is \"openai\""
            );
        }
        config.model.dequantize = Some(dequantize);
    }
    // The table the error names, within the file.
    config.preflight().map_err(|e| match (e, path) {
        (
            ponder::engine::Error::Config {
                path: table,
                message,
            },
            Some(file),
        ) => ponder::engine::Error::Config {
            path: file.to_path_buf(),
            message: match flags.is_empty() || table != Path::new("[model]") {
                true => format!("{}: {message}", table.display()),
                false => format!("{} (with {}): {message}", table.display(), flags.join(" ")),
            },
        },
        (
            ponder::engine::Error::Config {
                path: table,
                message,
            },
            None,
        ) if !flags.is_empty() && table == Path::new("[model]") => ponder::engine::Error::Config {
            path: flags.join(" ").into(),
            message,
        },
        (e, _) => e,
    })?;
    Ok(config)
}

async fn solve(
    question: &str,
    config: Option<&Path>,
    overrides: Overrides,
    json: bool,
    trace_dir: Option<&Path>,
    events: Option<&Path>,
) -> anyhow::Result<()> {
    if question.trim().is_empty() {
        bail!(
            "the question is empty: give the text to solve, e.g. ponder solve \"What is 3 + 4?\""
        );
    }
    if let Some(events) = events {
        let config = config.map(|c| (c, "--config"));
        check_events(events, config.as_slice())?;
    }
    let config_path = config;
    let config = load_config(config, overrides)?;
    let strategy = config.strategy.build()?;
    let problem = Problem::new("question", question);
    let mut made = MadeBeforeLoad::default();
    // Made once every check passed, before the model loads (its trace would be lost after).
    if let Some(dir) = trace_dir {
        let mut others: Vec<(&Path, &str)> = Vec::new();
        others.extend(config_path.map(|c| (c, "--config")));
        others.extend(events.map(|e| (e, "--events")));
        check_trace_dir(dir, [problem.id.as_str()], &others)?;
        made.trace_dir(dir)?;
    }
    warn_untraced(trace_dir, &config.strategy);
    made.file(events);
    let log = events.map(|path| EventsTo::open(path, None)).transpose()?;
    let backend = load_or_tidy(&config.model, &made).await?;
    let events = log.as_ref().map_or_else(Events::off, |log| {
        Events::new(log.sink(), problem.id.clone())
    });
    // The question's own seeds, for its model and any other one it calls (a judge).
    let cx = config.context_with(backend, &problem, events);
    let mut solution = ponder::engine::solve_in(strategy.as_ref(), &problem, &cx).await?;
    // The answer is printed whatever becomes of the files (a --trace-dir that cannot be made):
    // their errors come after it.
    let finished = log.as_ref().map_or(Ok(()), |log| log.finish());
    let traced = match (trace_dir, &solution.trace) {
        (Some(dir), Some(trace)) => trace.write(dir, &problem.id).map(|paths| {
            for path in paths {
                eprintln!("wrote {}", path.display());
            }
        }),
        _ => Ok(()),
    };
    if json {
        // The tree went to --trace-dir (if asked); keep stdout one readable object.
        solution.trace = None;
        println!("{}", serde_json::to_string_pretty(&solution)?);
    } else {
        println!("{}", solution.completion.trim());
        println!();
        println!("answer: {}", solution.answer.as_deref().unwrap_or("(none)"));
        let u = solution.usage;
        println!(
            "usage: {} prompt + {} completion tokens, {} call{}, {} ms ({}, stop: {})",
            u.prompt_tokens,
            u.completion_tokens,
            u.calls,
            if u.calls == 1 { "" } else { "s" },
            u.elapsed_ms,
            solution.strategy,
            runner::stop_reason_name(solution.stop_reason),
        );
    }
    if let (Err(_), Err(e)) = (&finished, &traced) {
        eprintln!("error: writing the trace: {e}");
    }
    finished?;
    traced?;
    Ok(())
}

struct RunArgs {
    config: PathBuf,
    problems: PathBuf,
    out: PathBuf,
    limit: Option<usize>,
    concurrency: usize,
    overrides: Overrides,
    max_run_tokens: Option<u64>,
    allocate: Allocate,
    trace_dir: Option<PathBuf>,
    events: Option<PathBuf>,
    allow_unisolated_sandbox: bool,
}

/// Where `--events` sends them: stderr as text (`-`, above the progress bar if there is one),
/// or a file as JSON lines.
enum EventsTo {
    Stderr(Option<ProgressBar>),
    File(Arc<EventLog>),
}

impl EventsTo {
    fn open(path: &Path, bar: Option<ProgressBar>) -> anyhow::Result<Self> {
        Ok(if path == Path::new("-") {
            Self::Stderr(bar)
        } else {
            Self::File(Arc::new(EventLog::append(path)?))
        })
    }

    fn sink(&self) -> Arc<dyn EventSink> {
        match self {
            Self::Stderr(bar) => {
                let bar = bar.clone();
                // A closed stderr (`2>&1 | head`) must not stop the solve: errors are dropped.
                let print = |event: &Event| {
                    let _ = writeln!(std::io::stderr().lock(), "{event}");
                };
                Arc::new(move |event: &Event| match &bar {
                    Some(bar) => bar.suspend(|| print(event)),
                    None => print(event),
                })
            }
            Self::File(log) => Arc::clone(log) as Arc<dyn EventSink>,
        }
    }

    /// The first error writing the file, if any.
    fn finish(&self) -> anyhow::Result<()> {
        match self {
            Self::Stderr(_) => Ok(()),
            Self::File(log) => Ok(log.finish()?),
        }
    }
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `kill`, `timeout` and batch schedulers
/// send to stop a job), and returns the exit status a shell gives a process such a signal ends:
/// 128 and the signal's number. A signal whose handler cannot be set up is never awaited.
async fn stop_signal() -> i32 {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        130
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                code = interrupt => code,
                Some(()) = term.recv() => 143,
            };
        }
    }
    interrupt.await
}

/// `--allocate`: how a run's budget is shared among its problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Allocate {
    FirstCome,
    Even,
    Triage,
}

/// Makes the `--trace-dir` before the model loads, so that one that cannot be made is said at
/// once, not after the solves (whose traces would be lost).
fn make_trace_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow::anyhow!(
            "--trace-dir {}: cannot make the directory: {e}",
            dir.display()
        )
    })
}

/// Refuses a `--trace-dir` that is a file another flag names, or in which the trace of one of
/// the problems `ids` would be written over such a file (`DIR/<id>.json`, `.dot`, `.svg`).
fn check_trace_dir<'a>(
    dir: &Path,
    ids: impl IntoIterator<Item = &'a str>,
    others: &[(&Path, &str)],
) -> anyhow::Result<()> {
    check_distinct(dir, "--trace-dir", others)?;
    let here = resolved(dir);
    let inside: Vec<(PathBuf, &str)> = others
        .iter()
        .map(|(path, flag)| (resolved(path), *flag))
        .filter(|(path, _)| path.parent() == Some(here.as_path()))
        .collect();
    if inside.is_empty() {
        return Ok(());
    }
    for id in ids {
        for trace in ponder::engine::Trace::paths(&here, id) {
            if let Some((path, flag)) = inside.iter().find(|(path, _)| *path == trace) {
                bail!(
                    "--trace-dir {}: the trace of problem `{id}` would be written over {flag} \
                     {}: give --trace-dir a directory of its own",
                    dir.display(),
                    path.display()
                );
            }
        }
    }
    Ok(())
}

/// What a command made before its model loaded, taken away again (where still empty) if the
/// model then fails to load: an events log left empty would read as a run with nothing in it.
#[derive(Default)]
struct MadeBeforeLoad {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl MadeBeforeLoad {
    /// Notes `path` as a file about to be made, if nothing is there yet (`-` is stderr).
    fn file(&mut self, path: Option<&Path>) {
        if let Some(path) = path.filter(|p| *p != Path::new("-") && !p.exists()) {
            self.files.push(path.to_path_buf());
        }
    }

    /// Makes the trace directory `dir`, noting it if it was not there.
    fn trace_dir(&mut self, dir: &Path) -> anyhow::Result<()> {
        let new = !dir.exists();
        make_trace_dir(dir)?;
        if new {
            self.dirs.push(dir.to_path_buf());
        }
        Ok(())
    }

    /// Takes away what was made and is still empty (best effort).
    fn tidy(&self) {
        for path in &self.files {
            if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = std::fs::remove_file(path);
            }
        }
        for dir in &self.dirs {
            // Fails, as it should, where something was written in it.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Loads `model`, or takes away what `made` lists and fails.
async fn load_or_tidy(
    model: &ponder::ModelConfig,
    made: &MadeBeforeLoad,
) -> anyhow::Result<Arc<dyn ponder::engine::Backend>> {
    match model.load().await {
        Ok(backend) => Ok(backend),
        Err(e) => {
            made.tidy();
            Err(e.into())
        }
    }
}

/// Says where `--trace-dir` will stay empty: only searches (`beam_search`, `dvts`) write
/// trees, whose solution is the config's (alone, or a router's thinking; not one of best-of-N's
/// samples, whose selection keeps no tree).
fn warn_untraced(dir: Option<&Path>, strategy: &ponder::StrategyConfig) {
    fn searches(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => match map.get("kind").and_then(|k| k.as_str()) {
                Some("beam_search" | "dvts") => true,
                Some("best_of_n" | "self_consistency") => false,
                _ => map.values().any(searches),
            },
            serde_json::Value::Array(items) => items.iter().any(searches),
            _ => false,
        }
    }
    let Some(dir) = dir else {
        return;
    };
    if serde_json::to_value(strategy).is_ok_and(|v| !searches(&v)) {
        tracing::warn!(
            "--trace-dir {}: only beam_search and dvts write search trees, and this config has \
             neither: nothing will be written there",
            dir.display()
        );
    }
}

/// `path` as it will be opened: its directory resolved (links, `..`), where that exists, so that
/// two spellings of one file compare equal.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(path) {
        return path;
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match (std::fs::canonicalize(dir), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Refuses `path` (given to `flag`) where it is one of `others`: a file two flags would both
/// write, or one read and written.
fn check_distinct(path: &Path, flag: &str, others: &[(&Path, &str)]) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let here = resolved(path);
    // A hard link is another name for the same file.
    let inode = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let here_inode = inode(path);
    for (other, other_flag) in others {
        if resolved(other) == here || here_inode.is_some_and(|i| inode(other) == Some(i)) {
            bail!(
                "{flag} {} is also {other_flag}: give {flag} a file of its own",
                path.display()
            );
        }
    }
    Ok(())
}

/// `--events` before anything loads: a file (not a directory) in a directory that exists, and
/// no file another flag names (`-` is stderr).
fn check_events(events: &Path, others: &[(&Path, &str)]) -> anyhow::Result<()> {
    if events == Path::new("-") {
        return Ok(());
    }
    check_parent(events, "--events")?;
    if events.is_dir() {
        bail!("--events {}: a directory, not a file", events.display());
    }
    check_distinct(events, "--events", others)
}

/// Fails when the folder a file is to be written in does not exist: said before any work,
/// not once the model has loaded.
fn check_parent(path: &Path, flag: &str) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => bail!(
            "{flag} {}: directory {} does not exist",
            path.display(),
            dir.display()
        ),
        _ => Ok(()),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    check_parent(&args.out, "--out")?;
    // The results file is read whole to resume and appended to: a device or a pipe (`/dev/full`
    // reads without end, `/dev/stdout` blocks) is no results file.
    if std::fs::metadata(&args.out).is_ok_and(|m| !m.is_file()) {
        bail!(
            "--out {}: not a regular file (the results file is read back to resume a run)",
            args.out.display()
        );
    }
    check_distinct(
        &args.out,
        "--out",
        &[(&args.problems, "--problems"), (&args.config, "--config")],
    )?;
    // The files a run reads and writes (the ones it keeps beside --out are its too: events or
    // a trace written over one would leave the run unable to resume).
    let (config_file, spend, triage) = (
        runner::config_path(&args.out),
        runner::spend_path(&args.out),
        runner::triage_path(&args.out),
    );
    let run_files: [(&Path, &str); 6] = [
        (&args.out, "--out"),
        (&args.problems, "--problems"),
        (&args.config, "--config"),
        (
            &config_file,
            "the run's record of its configuration beside --out",
        ),
        (&spend, "the run's spend ledger beside --out"),
        (&triage, "the run's kept first stages beside --out"),
    ];
    if let Some(events) = args.events.as_deref() {
        check_events(events, &run_files)?;
    }
    if args.limit == Some(0) {
        bail!("--limit 0 leaves nothing to run");
    }
    let config = load_config(Some(&args.config), args.overrides)?;
    let mut problems = Problem::load_jsonl(&args.problems)?;
    // Before anything is written beside --out: an empty set is a mistake, not a run.
    if problems.is_empty() {
        bail!(
            "no problems in {} (expected JSON Lines: one problem per line)",
            args.problems.display()
        );
    }
    // Under `--allocate even` the shares are of the whole file's problems, those past
    // `--limit` included: they share the results file's budget when a later run takes them.
    let set: Vec<String> = problems.iter().map(|p| p.id.clone()).collect();
    let set_size = set.len();
    if let Some(limit) = args.limit {
        problems.truncate(limit);
    }
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let strategy: Arc<dyn Strategy> = Arc::from(config.strategy.build()?);
    let (allocation, name) = match args.allocate {
        Allocate::FirstCome => (Allocation::FirstCome, "first_come"),
        Allocate::Even => (Allocation::Even, "even"),
        Allocate::Triage => (Allocation::Triage, "triage"),
    };
    let mut identity = config.identity();
    if allocation != Allocation::FirstCome {
        let Some(tokens) = args.max_run_tokens else {
            bail!("--allocate {name} shares the run's budget: give --max-run-tokens too");
        };
        // How each problem's budget is decided depends on the run's: one results file, one budget.
        identity["allocation"] = serde_json::json!({ name: { "max_run_tokens": tokens } });
    }
    if allocation == Allocation::Triage && strategy.staged().is_none() {
        bail!(
            "--allocate triage needs a strategy with a cheap first stage (kind = \"router\", or \
             best_of_n with adaptive); \
             {} has kind = \"{}\"",
            args.config.display(),
            strategy.name()
        );
    }
    if allocation == Allocation::Triage && problems.len() < set_size {
        tracing::warn!(
            "--allocate triage orders the problems it is given: with --limit {} of the {} in {}, \
             the problems run now may think with all the budget the results file has left, none \
             kept for the {} after them",
            problems.len(),
            set_size,
            args.problems.display(),
            set_size - problems.len()
        );
    }
    // A damaged results file or another configuration's is an error before the model loads.
    let already = runner::check_resumable(&args.out, &identity, allocation, &problems)?;
    // Made once every check passed, before the model loads.
    let mut made = MadeBeforeLoad::default();
    if let Some(dir) = &args.trace_dir {
        let mut others = run_files.to_vec();
        others.extend(args.events.as_deref().map(|e| (e, "--events")));
        check_trace_dir(dir, problems.iter().map(|p| p.id.as_str()), &others)?;
        made.trace_dir(dir)?;
    }
    warn_untraced(args.trace_dir.as_deref(), &config.strategy);
    // Code problems are graded in the sandbox: one that cannot isolate a program here is an
    // error before the model loads and anything is solved, not a grading error on every line.
    let sandbox = ponder::prm::Sandbox::new().allow_unisolated(args.allow_unisolated_sandbox);
    if problems.iter().any(|p| p.code.is_some()) {
        sandbox
            .self_check()
            .await
            .context("grading code problems needs the sandbox")?;
    }
    let ids: std::collections::HashSet<&str> = problems.iter().map(|p| p.id.as_str()).collect();
    let mut tally = Tally::default();
    let resumed = finished_lines(&already, &ids);
    for line in &resumed {
        tally.add(line);
    }
    // Tokens as they are spent, in-flight problems' calls included: the recorded lines' count
    // only moves when a problem ends (under triage, not until its last stage). From what the
    // files record, failed and cut attempts and kept first stages included, as the run counts
    // it against its budget.
    let spent_before = runner::recorded_spend(&args.out, &already, allocation)?.total_tokens();
    let spent = Arc::new(AtomicU64::new(spent_before));
    let bar = ProgressBar::new(problems.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {spent} | {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("spent", {
            let spent = Arc::clone(&spent);
            let max = args.max_run_tokens;
            move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", spent.load(Ordering::Relaxed));
                if let Some(max) = max {
                    let _ = write!(w, "/{max}");
                }
                let _ = w.write_str(" tokens");
            }
        }),
    );
    // The events log is opened before the model loads: one that cannot be is said at once.
    // A log (or trace directory) this run made is taken away again if the model then fails to
    // load.
    made.file(args.events.as_deref());
    let log = args
        .events
        .as_deref()
        .map(|path| EventsTo::open(path, Some(bar.clone())))
        .transpose()?;
    let log_sink = log.as_ref().map(EventsTo::sink);
    let backend = load_or_tidy(&config.model, &made).await?;
    let mut run_budget = Budget::unlimited();
    run_budget.max_tokens = args.max_run_tokens;
    let mut runner = Runner::new(strategy, backend)
        .with_grader(Arc::new(ponder::prm::StandardGrader::new(sandbox)))
        .with_concurrency(args.concurrency)
        .with_problem_budget(config.budget)
        .with_run_budget(run_budget)
        .with_allocation(allocation)
        .with_set(set)
        .with_identity(identity);
    if let Some(dir) = &args.trace_dir {
        runner = runner.with_trace_dir(dir);
    }
    if let Some(seed) = config.seed {
        runner = runner.with_seed(seed);
    }

    bar.inc(resumed.len() as u64);
    runner = runner.with_events(Arc::new(move |event: &Event| {
        if let EventKind::Call {
            prompt_tokens,
            completion_tokens,
            ..
        } = event.kind
        {
            spent.fetch_add(prompt_tokens + completion_tokens, Ordering::Relaxed);
        }
        if let Some(sink) = &log_sink {
            sink.emit(event);
        }
    }));
    bar.set_message(tally.message());
    bar.enable_steady_tick(Duration::from_millis(500));
    let work = runner.run(&problems, &args.out, |line| {
        tally.add(line);
        if line.error.is_none() {
            bar.inc(1);
        }
        bar.set_message(tally.message());
    });
    // Ctrl-C or SIGTERM: every finished problem's line is already written whole (as after a
    // kill); say so, and how to go on, rather than vanish.
    let summary = tokio::select! {
        summary = work => summary?,
        code = stop_signal() => {
            bar.abandon();
            if let Some(log) = &log {
                let _ = log.finish();
            }
            eprintln!(
                "interrupted: {} of {} problems are finished in {}; run the same command again \
                 to resume (problems in flight are redone)",
                bar.position(),
                problems.len(),
                args.out.display()
            );
            std::process::exit(code);
        }
    };
    bar.finish();
    // An events log that could not be written is said after the summary: the results file
    // holds every finished problem, and the summary is still the run's.
    let events_failed = log.as_ref().and_then(|log| log.finish().err());

    let mut table = Table::new();
    table.set_header(vec![
        "problems",
        "resumed",
        "solved",
        "errors",
        "not started",
        "cut short",
        // Accuracy is over every finished problem, resumed ones included; spend and time are
        // this invocation's (a resumed run's earlier spend is in the report).
        "accuracy (all finished)",
        "tokens (this run)",
        "tokens/problem (this run)",
        "wall (this run)",
    ]);
    let accuracy = summary.accuracy().map_or("-".to_string(), |a| {
        format!("{:.1}% ({}/{})", 100.0 * a, summary.correct, summary.graded)
    });
    let attempted = summary.solved + summary.errors + summary.cut_short;
    // What this invocation's calls cost, from the spend ledger: a resumed triage run's lines
    // also carry first stages an earlier run paid for.
    let spent = summary.spent.total_tokens();
    let per_problem = if attempted > 0 {
        format!("{:.0}", spent as f64 / attempted as f64)
    } else {
        "-".into()
    };
    table.add_row(vec![
        summary.total.to_string(),
        summary.resumed.to_string(),
        summary.solved.to_string(),
        summary.errors.to_string(),
        (summary.not_started + summary.halted.as_ref().map_or(0, |h| h.not_started)).to_string(),
        summary.cut_short.to_string(),
        accuracy,
        spent.to_string(),
        per_problem,
        format!("{:.1}s", summary.wall_ms as f64 / 1000.0),
    ]);
    println!("{table}");
    let reasons: Vec<String> = summary
        .stop_reasons
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    if !reasons.is_empty() {
        println!("stop reasons (this run): {}", reasons.join(", "));
    }
    if summary.regraded > 0 {
        println!(
            "graded again: {} problems whose grading had failed (solved and paid for by an \
             earlier run; in the accuracy, not in this run's solved or tokens)",
            summary.regraded
        );
    }
    if allocation == Allocation::Triage {
        println!(
            "triage: {} went on past their first stage ({} later stages: thinking, more \
             samples), {} kept their first stage's answer (the run's budget, or their own, ran out \
             first)",
            summary.second_stage, summary.later_stages, summary.first_only
        );
    }
    println!("results: {}", args.out.display());
    if summary.not_started + summary.cut_short > 0 {
        // Under even and triage the budget is part of the file's configuration (the shares
        // depend on it): a larger one needs another results file.
        let rerun = match allocation {
            Allocation::FirstCome => "a rerun with a larger --max-run-tokens solves them",
            Allocation::Even | Allocation::Triage => {
                "a run with a larger --max-run-tokens into another --out solves them (the \
                 budget is part of this file's configuration under --allocate even and triage)"
            }
        };
        // The budget counts what the file's earlier runs spent: say so.
        let earlier = match args.max_run_tokens {
            Some(max) if spent_before > 0 => format!(
                " (--max-run-tokens {max} counts what earlier runs into {} spent: \
                 {spent_before} tokens already)",
                args.out.display()
            ),
            _ => String::new(),
        };
        eprintln!(
            "the run's budget stopped {} problems ({} not started, {} cut short: only what they \
             spent is recorded){earlier}; {rerun}",
            summary.not_started + summary.cut_short,
            summary.not_started,
            summary.cut_short
        );
    }
    if let Some(e) = &events_failed {
        eprintln!(
            "error: the events log could not be written ({e}): the events from its first \
             failed write on are lost; the results file holds every finished problem"
        );
    }
    if let Some(halt) = &summary.halted {
        bail!(
            "the run stopped starting problems when the inference engine went away ({}): {} \
             not started; finished problems are recorded, and running the same command again \
             resumes (retrying the {} that failed)",
            halt.error,
            halt.not_started,
            summary.errors
        );
    }
    // A run with failures exits non-zero (after its summary), so a script sees it.
    if summary.errors > 0 {
        bail!(
            "{} failed; their lines carry the error and a rerun retries them",
            match summary.errors {
                1 => "1 problem".to_string(),
                n => format!("{n} problems"),
            }
        );
    }
    if events_failed.is_some() {
        // Said above, with the summary.
        std::process::exit(1);
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    done: usize,
    graded: usize,
    correct: usize,
    errors: usize,
    cut_short: usize,
}

impl Tally {
    fn add(&mut self, line: &ResultLine) {
        if line.cut_short {
            self.cut_short += 1;
            return;
        }
        if line.error.is_some() {
            self.errors += 1;
            return;
        }
        self.done += 1;
        if let Some(correct) = line.correct {
            self.graded += 1;
            self.correct += usize::from(correct);
        }
    }

    fn message(&self) -> String {
        let acc = if self.graded > 0 {
            format!(
                "acc {:.1}% ({}/{})",
                100.0 * self.correct as f64 / self.graded as f64,
                self.correct,
                self.graded
            )
        } else {
            "acc -".into()
        };
        let errors = if self.errors > 0 {
            format!(" | {} errors", self.errors)
        } else {
            String::new()
        };
        let cut = if self.cut_short > 0 {
            format!(" | {} cut short", self.cut_short)
        } else {
            String::new()
        };
        format!("{acc}{errors}{cut}")
    }
}

fn models_command(action: Option<ModelsAction>) -> anyhow::Result<()> {
    match action {
        None => {
            let mut table = Table::new();
            table.set_header(vec!["name", "cached", "path", "about"]);
            for model in BUILTIN_MODELS {
                table.add_row(vec![
                    model.name.to_string(),
                    if model.is_cached() { "yes" } else { "no" }.to_string(),
                    model.path().display().to_string(),
                    model.about.to_string(),
                ]);
            }
            println!("{table}");
            println!(
                "cache directory: {} (set PONDER_CACHE_DIR to move it)",
                models::cache_dir().display()
            );
            Ok(())
        }
        Some(ModelsAction::Fetch { name }) => {
            let names: Vec<&str> = BUILTIN_MODELS.iter().map(|m| m.name).collect();
            let Some(name) = name else {
                // A usage error like clap's own (exit code 2), with the names to choose from.
                let mut cli = Cli::command();
                cli.build();
                let fetch = cli
                    .find_subcommand_mut("models")
                    .and_then(|models| models.find_subcommand_mut("fetch"))
                    .context("the `models fetch` subcommand")?;
                fetch
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        format!(
                            "which model? Give a built-in model's name: one of {}",
                            names.join(", ")
                        ),
                    )
                    .exit();
            };
            let Some(model) = models::builtin(&name) else {
                bail!(
                    "`{name}` is not a built-in model; expected one of: {}",
                    names.join(", ")
                );
            };
            let path = model.ensure()?;
            println!("{}: {}", model.name, path.display());
            Ok(())
        }
    }
}

/// The lines of `already` that finish a problem of `ids`: each problem's last line counts, as
/// the run counts it (one answered then failed is retried, one answered twice is one).
fn finished_lines<'a>(
    already: &'a [ResultLine],
    ids: &std::collections::HashSet<&str>,
) -> Vec<&'a ResultLine> {
    let mut last: std::collections::BTreeMap<&str, &ResultLine> = Default::default();
    for line in already.iter().filter(|l| ids.contains(l.id.as_str())) {
        last.insert(line.id.as_str(), line);
    }
    last.into_values().filter(|l| l.error.is_none()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_problem_counts_once_by_its_last_line() {
        let line = |id: &str, error: Option<&str>| {
            let mut l: ResultLine = serde_json::from_value(serde_json::json!({
                "id": id, "strategy": "direct", "answer": "4", "reference": null,
                "correct": null, "usage": {}, "stop_reason": "completed"
            }))
            .unwrap();
            l.error = error.map(String::from);
            l
        };
        // p1 answered, then failed; p2 answered twice; p3 is not asked for now.
        let already = [
            line("p1", None),
            line("p1", Some("backend gone")),
            line("p2", None),
            line("p2", None),
            line("p3", None),
        ];
        let ids: std::collections::HashSet<&str> = ["p1", "p2"].into_iter().collect();
        let finished: Vec<&str> = finished_lines(&already, &ids)
            .iter()
            .map(|l| l.id.as_str())
            .collect();
        assert_eq!(finished, ["p2"]);
    }
}
