//! Command-line arguments. Only clap types live here; commands resolve them into library settings.

use crate::cli_values::{
    ArchArg, CompareFormat, DtypeArg, EngineArg, FormatOrFile, GateFormat, JournalFormat,
    ReportFormatArg, TableFormat, TextFormat, VerdictArg,
};
use bakeoff::engines::http::{Timeouts, DEFAULT_CONNECT_S, DEFAULT_FIRST_BYTE_S, DEFAULT_IDLE_S};
use bakeoff::measure::shard::{self, Shard};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "bakeoff",
    version,
    about = "Find the fastest faithful way to run an LLM on your hardware, and keep the evidence.",
    after_help = "Examples:\n  bakeoff doctor\n  bakeoff serve --model ~/.cache/bakeoff/models/SmolLM2-135M-Instruct.Q4_1.gguf -- -c 4096\n  bakeoff runs list"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Result database (default: ~/.local/share/bakeoff/bakeoff.db).
    // The value is hidden from --help: a PostgreSQL URL may hold a password.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "BAKEOFF_DB",
        hide_env_values = true
    )]
    pub db: Option<PathBuf>,
    /// Print only results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// `--engine-path` before the subcommand, as older scripts spell it (hidden: only commands
    /// that start engines offer it). `commands::run` puts the command's own value here, which wins.
    #[arg(long, hide = true, value_name = "PATH")]
    pub engine_path: Option<PathBuf>,
}

/// `-o/--format text|json`, with `--json` as the shorthand older scripts use.
#[derive(Args, Debug, Clone, Default)]
pub struct TextOrJson {
    /// Output format [default: text].
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub format: Option<TextFormat>,
    /// Short for -o json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

impl TextOrJson {
    pub fn wants_json(&self) -> bool {
        self.json || self.format == Some(TextFormat::Json)
    }
}

/// `--no-telemetry`, for the commands that measure trials.
#[derive(Args, Debug, Clone, Default)]
pub struct TelemetryArgs {
    /// Do not sample power, energy, clocks and temperatures during trials (on by default where
    /// the machine has the counters: NVML, RAPL, amdgpu hwmon).
    #[arg(long)]
    pub no_telemetry: bool,
}

/// `--shard K/N`, for the commands that sweep several cells (one experiment on many hosts).
#[derive(Args, Debug, Clone, Default)]
pub struct ShardArgs {
    /// Measure only shard K of N (1 <= K <= N), for a Slurm job array or a Kubernetes indexed
    /// Job; give every shard the same --tag and --db so they are found together.
    ///
    /// Shard K takes the cells whose index i in the full expansion order has i % N = K - 1, so N
    /// tasks measure every cell once. `auto` takes K/N from SLURM_ARRAY_TASK_ID, _MIN and _COUNT,
    /// or from JOB_COMPLETION_INDEX (0-based) with BAKEOFF_SHARDS=N. Without the flag,
    /// BAKEOFF_SHARD=K/N (or auto) sets it. A shard with no cells (an array larger than the
    /// matrix) says so and exits 0 without storing a run.
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,
}

impl ShardArgs {
    /// The flag over `BAKEOFF_SHARD`, with `auto` read from the scheduler's environment.
    pub fn resolve(&self) -> bakeoff::Result<Option<Shard>> {
        shard::resolve(self.shard.as_deref(), &|name| std::env::var(name).ok())
    }
}

/// `--queue`, for the commands a team store's workers can run (bench, load, gate, tune).
#[derive(Args, Debug, Clone, Default)]
pub struct QueueArgs {
    /// Enqueue the experiment in the team store (`--db postgres://...`) instead of running it;
    /// `bakeoff worker` on each host runs it. Bench and load split their cells across the
    /// workers (one sweep finished sooner on identical hosts); gate and tune are one item.
    #[arg(long)]
    pub queue: bool,
    /// With --queue: run the whole experiment on every host whose worker matches (machines
    /// compared), instead of splitting it.
    #[arg(long, requires = "queue")]
    pub each: bool,
    /// With --queue: only workers started with this `--host-tag` take it.
    #[arg(long, requires = "queue", value_name = "TAG")]
    pub host_tag: Option<String>,
    /// With --queue: each worker runs its own default llama.cpp build (machines with different
    /// builds compared as they are), instead of only workers with this host's build (by build
    /// number and commit). `--build NAME=PATH` builds are matched either way.
    #[arg(long, requires = "queue")]
    pub any_build: bool,
}

/// Where the llama.cpp tools are, for the commands that start one.
#[derive(Args, Debug, Clone, Default)]
pub struct EngineArgs {
    /// A llama.cpp build to use: a directory of its tools or the path of one tool.
    #[arg(long, value_name = "PATH")]
    pub engine_path: Option<PathBuf>,
}

/// Which models and engine builds a measuring command sweeps (bench, load, gate): each model is
/// a matrix dimension, each build another.
#[derive(Args, Debug, Clone, Default)]
pub struct SubjectArgs {
    /// GGUF model(s): a file, a comma list, a glob (`'~/models/*Q4*.gguf'`), a directory, or
    /// names from the model catalog (a bare file name is looked up in the model cache).
    #[arg(long = "model", short = 'm', value_name = "MODELS")]
    pub model: Option<String>,
    /// A llama.cpp build to sweep, NAME=PATH (a directory of its tools or one binary); repeat it
    /// to compare builds.
    #[arg(long = "build", value_name = "NAME=PATH")]
    pub builds: Vec<String>,
    /// Catalog models carrying this tag (smoke, dense, moe, coder...).
    #[arg(long, value_name = "TAG")]
    pub category: Option<String>,
    /// Only models no larger than this (e.g. 20G).
    #[arg(long, value_name = "SIZE", value_parser = byte_size)]
    pub max_size: Option<u64>,
    /// The model catalog (default ~/.config/bakeoff/models.toml).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
}

impl SubjectArgs {
    /// The model selection as the library takes it.
    pub fn query(&self) -> bakeoff::model::select::ModelQuery {
        bakeoff::model::select::ModelQuery {
            spec: self.model.clone(),
            category: self.category.clone(),
            max_size: self.max_size,
            catalog: self.catalog.clone(),
            models_dir: Some(bakeoff::system::paths::models_dir()),
        }
    }

    /// The `--build` entries, parsed.
    pub fn builds(&self) -> bakeoff::Result<Vec<bakeoff::engines::build::BuildRef>> {
        self.builds
            .iter()
            .map(|b| bakeoff::engines::build::BuildRef::parse(b))
            .collect()
    }
}

fn byte_size(text: &str) -> Result<u64, String> {
    bakeoff::domain::units::parse_bytes(text)
        .ok_or_else(|| format!("'{text}' is not a size such as 20G or 512M"))
}

/// Bounds on every request to an engine, shared by the commands that make requests (bench, load,
/// gate, tools, serve). A stalled stream or a frozen engine fails the request with its reason.
#[derive(Args, Debug, Clone)]
pub struct TimeoutArgs {
    /// Seconds to wait for a connection to the engine.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds, default_value_t = DEFAULT_CONNECT_S as f64)]
    pub connect_timeout: f64,
    /// Seconds from sending a request to its first streamed token (or a whole non-streamed answer).
    #[arg(long, value_name = "SECS", value_parser = positive_seconds, default_value_t = DEFAULT_FIRST_BYTE_S as f64)]
    pub first_byte_timeout: f64,
    /// Seconds without data in the middle of a stream before the request fails as stalled.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds, default_value_t = DEFAULT_IDLE_S as f64)]
    pub idle_timeout: f64,
}

impl Default for TimeoutArgs {
    fn default() -> Self {
        TimeoutArgs {
            connect_timeout: DEFAULT_CONNECT_S as f64,
            first_byte_timeout: DEFAULT_FIRST_BYTE_S as f64,
            idle_timeout: DEFAULT_IDLE_S as f64,
        }
    }
}

impl TimeoutArgs {
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs_f64(self.connect_timeout),
            first_byte: Duration::from_secs_f64(self.first_byte_timeout),
            idle: Duration::from_secs_f64(self.idle_timeout),
        }
    }
}

/// A timeout flag's value: seconds above 0 (fractions allowed), at most a day.
fn positive_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if seconds > 0.0 && seconds <= 86_400.0 {
        Ok(seconds)
    } else {
        Err(format!("{text}: must be above 0 and at most 86400 seconds"))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check engines, models and the machine; print the fingerprint stored with every run.
    #[command(
        after_help = "Examples:\n  bakeoff doctor\n  bakeoff doctor --json\n  bakeoff doctor --engine-path ~/src/llama.cpp/build/bin\n  bakeoff doctor --audit             # governor, THP, swappiness, GPU clocks/power/PCIe, ... and readiness\n  bakeoff doctor --audit --json --port 8081"
    )]
    Doctor(DoctorArgs),
    /// Start llama-server supervised (or attach to a running server) and keep it up until Ctrl-C.
    #[command(
        after_help = "Examples:\n  bakeoff serve --model SmolLM2-135M-Instruct.Q4_1.gguf\n  bakeoff serve daily --port 8080   # a saved profile, behind its readiness gate\n  bakeoff serve fast-q4 --fallback daily   # start `daily` if `fast-q4` fails readiness\n  bakeoff serve --model m.gguf --port 8080 -- -c 8192 -fa on -ctk q8_0 -ctv q8_0\n  bakeoff serve --url http://127.0.0.1:11434   # attach: detect the server, manage nothing"
    )]
    Serve(ServeArgs),
    /// Sweep engine settings and measure pp/tg through a real server (or llama-bench) with honest statistics.
    #[command(after_help = BENCH_EXAMPLES)]
    Bench(Box<BenchArgs>),
    /// Load-test a server: concurrency and open-loop rates, TTFT/ITL/TPOT/E2E percentiles, goodput, saturation.
    #[command(after_help = LOAD_EXAMPLES)]
    Load(Box<LoadArgs>),
    /// Compare two runs: ratio with bootstrap CI, Mann-Whitney U, verdict, and what differs.
    #[command(
        after_help = "Examples:\n  bakeoff compare 3 4\n  bakeoff compare baseline candidate -o json\n  bakeoff compare last~llama-bench last   # in-process vs through-server"
    )]
    Compare(CompareArgs),
    /// Read a GGUF model, synthesise random-weight shapes, extract a vocabulary.
    #[command(
        subcommand,
        after_help = "Examples:\n  bakeoff model inspect gemma-3-270m-q4_k_m.gguf\n  bakeoff model synth --like SmolLM2-135M-Instruct.Q4_1.gguf --out synth.gguf\n  bakeoff model vocab SmolLM2-135M-Instruct.Q4_1.gguf --out vocab.gguf"
    )]
    Model(ModelCommand),
    /// Plan KV cache and memory from the GGUF alone: bytes per token, fit, largest context, roofline.
    #[command(
        after_help = "Examples:\n  bakeoff plan gemma-3-270m-q4_k_m.gguf --ctx 32768\n  bakeoff plan model.gguf --ctx 131072 --parallel 4 --ctk q8_0 --ctv q8_0 --mem 24G\n  bakeoff plan model.gguf --ctx 8192 --bandwidth 80 --depth 4096 --json\n  bakeoff plan model.gguf --ctx 32768 --gpus 24G,12G -sm layer -ts 2/1   # each GPU's share"
    )]
    Plan(PlanArgs),
    /// Gate candidates against a baseline: canaries, hygiene, greedy agreement, KL-divergence,
    /// speculative losslessness; prints the readiness table.
    #[command(after_help = GATE_EXAMPLES)]
    Gate(GateArgs),
    /// The optimisation log: each change with its before/after evidence and a verdict.
    #[command(subcommand, after_help = JOURNAL_EXAMPLES)]
    Journal(JournalCommand),
    /// Saved serving profiles: a run's winning configuration, started by `serve NAME` or exported.
    #[command(subcommand, after_help = PROFILE_EXAMPLES)]
    Profile(ProfileCommand),
    /// Copy runs from this host's store (--db) to the team's (--to): each run once, by its uuid,
    /// with its trials, samples, logs, fidelity checks, journal entries and profiles.
    #[command(after_help = PUSH_EXAMPLES)]
    Push(PushArgs),
    /// Copy runs from the team's store (--from) into this host's (--db); see `push`.
    #[command(after_help = PULL_EXAMPLES)]
    Pull(PullArgs),
    /// Write a report of stored runs: one self-contained HTML file with charts, or Markdown tables.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// List and show stored runs.
    #[command(
        subcommand,
        after_help = "Examples:\n  bakeoff runs list\n  bakeoff runs show last -o json"
    )]
    Runs(RunsCommand),
    /// Tool-call bakeoff: the engine's JSON tools API vs the model's native format, on agentic tasks and a single-turn set.
    #[command(subcommand, after_help = crate::cli_tools::TOOLS_EXAMPLES)]
    Tools(crate::cli_tools::ToolsCommand),
    /// The model catalog and model selection: size, architecture, params, quant, sha256, fit.
    #[command(subcommand, after_help = MODELS_EXAMPLES)]
    Models(ModelsCommand),
    /// Find the fastest faithful configuration: build the space from the build's --help, the
    /// model and this machine, prune it, race the rest on real engines under the fidelity gate,
    /// and print the winner with its evidence (--dry-run: the space, the pruning and the cost).
    #[command(after_help = TUNE_EXAMPLES)]
    Tune(Box<TuneArgs>),
    /// Log power, energy, clocks, temperatures and GPU memory (RAPL, amdgpu, NVML, cpufreq):
    /// one row per sample on stdout, a summary on stderr at the end or on Ctrl-C.
    #[command(
        after_help = "Examples:\n  bakeoff monitor                      # CSV every second until Ctrl-C\n  bakeoff monitor -o jsonl --interval 200ms --duration 30s\n  bakeoff monitor --duration 2m > power.csv"
    )]
    Monitor(MonitorArgs),
    /// Run the team store's queued experiments on this host: claim an item, measure it with
    /// exclusive use of the machine, commit as it goes, repeat (`--queue` enqueues them).
    #[command(after_help = WORKER_EXAMPLES)]
    Worker(WorkerArgs),
    /// The team store's queue: each item, its shard, status, worker, host and run.
    #[command(
        after_help = "Examples:\n  bakeoff queue --db postgres://me@db.lan/bakeoff\n  bakeoff queue --json"
    )]
    Queue(QueueListArgs),
    /// The result store itself: its schema version, and upgrading a shared one.
    #[command(
        subcommand,
        after_help = "Examples:\n  bakeoff db status --db postgres://me@db.lan/bakeoff\n  bakeoff db migrate --db postgres://me@db.lan/bakeoff   # once every host runs this bakeoff"
    )]
    Db(DbCommand),
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Which store, which backend, and its schema version against this bakeoff's.
    Status,
    /// Upgrade the store's schema to this bakeoff's (a SQLite file upgrades by itself on open; a
    /// shared PostgreSQL store only through this, so an older bakeoff elsewhere is not cut off
    /// by surprise).
    Migrate,
}

const WORKER_EXAMPLES: &str = "Examples:
  # on the machine that plans the sweep: enqueue its 6 cells
  bakeoff bench --db postgres://me@db.lan/bakeoff -m model.gguf --kv f16,q8_0,q4_0 -ub 256,512 --queue --tag kv
  # on each GPU host (one worker per host; the lock keeps one measurement per machine)
  bakeoff worker --db postgres://me@db.lan/bakeoff --host-tag gpu-h200
  # the same tune on every host, to compare the machines
  bakeoff tune --db postgres://me@db.lan/bakeoff -m model.gguf --budget 20m --queue --each
  bakeoff worker --once --idle-exit 60   # one item, or give up after a minute of an empty queue";

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Take the experiments enqueued with this `--host-tag` (repeatable), besides untagged ones.
    #[arg(long = "host-tag", value_name = "TAG")]
    pub host_tags: Vec<String>,
    /// The host this worker stands for (default: the hostname); runs record it, and `--each`
    /// runs an experiment once per host.
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// This worker's name in the queue (default HOST:PID).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Seconds a claimed item stays this worker's without renewal (renewed every third of it);
    /// after a worker dies its item is claimed again once this runs out.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub lease: f64,
    /// The longest an idle worker waits before looking at the queue again; new work wakes it
    /// at once (PostgreSQL LISTEN/NOTIFY), so this only bounds how late it finds an item whose
    /// worker died.
    #[arg(long, value_name = "SPAN", value_parser = span, default_value = "10s")]
    pub poll: Duration,
    /// Run one item, then exit.
    #[arg(long)]
    pub once: bool,
    /// Exit once the queue has offered nothing for this long (default: keep waiting).
    #[arg(long, value_name = "SPAN", value_parser = span)]
    pub idle_exit: Option<Duration>,
    /// Also look for required models here (by file name, checked by SHA-256); the model cache
    /// and each model's enqueued path are always looked at.
    #[arg(long = "models", value_name = "DIR")]
    pub model_dirs: Vec<PathBuf>,
    /// One JSON line per event instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct QueueListArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Row format.
    #[arg(short = 'o', long, value_enum, default_value_t = MonitorFormat::Csv)]
    pub output: MonitorFormat,
    /// Time between samples (`200ms`, `1s`, `1.5` seconds).
    #[arg(long, value_name = "SPAN", value_parser = span, default_value = "1s")]
    pub interval: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_name = "SPAN", value_parser = span)]
    pub duration: Option<Duration>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum MonitorFormat {
    Csv,
    Jsonl,
}

/// `200ms`, `1s`, `2m`, `1h` or bare seconds; above 0, at most a day.
fn span(text: &str) -> Result<Duration, String> {
    let (number, scale) = [("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)]
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1.0));
    let seconds = number
        .trim()
        .parse::<f64>()
        .map(|n| n * scale)
        .map_err(|_| format!("'{text}' is not a time span (200ms, 1s, 2m)"))?;
    if seconds > 0.0 && seconds <= 86_400.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!("{text}: must be above 0 and at most a day"))
    }
}

impl Command {
    /// `--engine-path` of the commands that offer it.
    pub fn engine_path(&self) -> Option<PathBuf> {
        let build = match self {
            Command::Doctor(args) => &args.build,
            Command::Serve(args) => &args.build,
            Command::Bench(args) => &args.build,
            Command::Load(args) => &args.build,
            Command::Gate(args) => &args.build,
            Command::Model(ModelCommand::Synth(args)) => &args.build,
            Command::Profile(ProfileCommand::Export { build, .. }) => build,
            Command::Tools(command) => command.build()?,
            _ => return None,
        };
        build.engine_path.clone()
    }
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Also measure memory bandwidth with an in-process copy benchmark (for the roofline).
    #[arg(long)]
    pub bandwidth: bool,
    /// Instead: a scored checklist of the settings that change inference speed (current,
    /// recommended, why, the command to set it; none is run), then deployment readiness (saved
    /// profiles' model hashes, the port, other GPU/CPU users, the measurement lock). Exit 0.
    #[arg(long, conflicts_with = "bandwidth")]
    pub audit: bool,
    /// With --audit: the port to check (profiles carry none; `profile export` writes 8080).
    #[arg(long, requires = "audit", default_value_t = bakeoff::serve::deployment::DEFAULT_PORT)]
    pub port: u16,
    #[command(flatten)]
    pub build: EngineArgs,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// A saved profile to serve (`bakeoff profile list`); it must pass its readiness gate (model
    /// hash, start, health, a completion, the canaries it passed before) before it is reported ready.
    #[arg(value_name = "PROFILE", conflicts_with_all = ["model", "url"])]
    pub profile: Option<String>,
    /// Profile to start when PROFILE fails readiness (default: the one saved with PROFILE).
    #[arg(long, value_name = "PROFILE", requires = "profile")]
    pub fallback: Option<String>,
    /// Canary suite (TOML) for the readiness gate instead of the built-in one.
    #[arg(long, value_name = "FILE", requires = "profile")]
    pub canaries: Option<PathBuf>,
    /// GGUF model file to serve (a file name alone is looked up in the model cache).
    #[arg(
        long,
        short = 'm',
        value_name = "FILE",
        required_unless_present_any = ["url", "profile"]
    )]
    pub model: Option<PathBuf>,
    /// Attach to an already-running server instead of launching one.
    #[arg(long, value_name = "URL", conflicts_with = "model")]
    pub url: Option<String>,
    /// Port to listen on (default: a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Seconds to wait for /health to answer 200.
    #[arg(long, default_value_t = 120, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub health_timeout: u64,
    /// Print the ready line as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    /// Tag for the run.
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub build: EngineArgs,
    /// Flags passed to llama-server as they are (after `--`).
    #[arg(last = true, value_name = "ENGINE FLAGS")]
    pub engine_args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// List the newest runs.
    #[command(
        after_help = "Examples:\n  bakeoff runs list\n  bakeoff runs list --limit 5 -o json\n  bakeoff runs list --host            # the machines the store holds runs of\n  bakeoff runs list --host gpu-h200-1  # that machine's runs"
    )]
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only the runs of this machine (its recorded host name); bare `--host`: the machines
        /// the store holds runs of, with how many each.
        #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
        host: Option<String>,
        #[command(flatten)]
        output: TextOrJson,
    },
    /// Show one run: its trials, samples, engine logs and system fingerprint.
    #[command(
        after_help = "Examples:\n  bakeoff runs show 3\n  bakeoff runs show last -o json\n  bakeoff runs show baseline   # newest run tagged 'baseline'"
    )]
    Show {
        /// Run id, `last`, or a tag.
        run: String,
        #[command(flatten)]
        output: TextOrJson,
    },
}

const BENCH_EXAMPLES: &str = "Examples:
  bakeoff bench -m SmolLM2-135M-Instruct.Q4_1.gguf -p 64 -n 32 -r 5
  bakeoff bench -m model.gguf -ctk f16,q8_0,q4_0 -ctv f16,q8_0,q4_0 -fa on -n 64 -d 0,2048
  bakeoff bench -m model.gguf --spec-type none,ngram-mod --prompts natural,code -n 128
  bakeoff bench -m model.gguf -t 1-2 -b 128-512*2 --dry-run
  bakeoff bench -m model.gguf -sm layer,row -ts 1/1,3/1 -n 128   # two GPUs: split mode x ratio
  bakeoff bench -m model.gguf -ctk f16,q8_0 --engine llama-bench -p 64 -n 32
  bakeoff bench -m a.gguf,b.gguf --build new=DIR --build old=DIR -n 64 --dry-run
  bakeoff bench --config experiment.toml --ci-target 2 --max-reps 20 -o csv > sweep.csv
  bakeoff bench --resume 12
  bakeoff bench --config experiment.toml --shard 2/4 --tag kv-sweep  # task 2 of 4

Every parameter takes a comma list or a llama-bench range (first-last, first-last+step, first-last*mult).
Several models (-m a,b, a glob, a directory) and builds (--build NAME=PATH, repeated) are measured
in one run: for each build, each model, each configuration, one engine start.
An experiment file (--config) holds the same settings: model (a string or an array), category,
max-size, catalog, reps, warmup, max-reps, ci-target, engine, tag, a [matrix] table keyed kv ctk ctv
fa b ub t ngl np c md spec-type spec-draft-n-max sm ts mg p n d prompts, [server-flags], and [builds]
(NAME = \"PATH\"); the command line wins over it, and an unknown key is an error naming its line.
A cell is one configuration on one build and model (one engine start); --shard K/N splits the
cells among N hosts (examples/cluster/ has a Slurm array script and a Kubernetes indexed Job).";

#[derive(Args, Debug, Default)]
pub struct BenchArgs {
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// TOML experiment file; command-line values override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// KV type(s) for both caches at once (-ctk T -ctv T).
    #[arg(long = "kv", value_name = "TYPES", conflicts_with_all = ["cache_type_k", "cache_type_v"])]
    pub kv: Option<String>,
    /// K cache type(s) (-ctk).
    #[arg(long = "ctk", value_name = "TYPES")]
    pub cache_type_k: Option<String>,
    /// V cache type(s) (-ctv).
    #[arg(long = "ctv", value_name = "TYPES")]
    pub cache_type_v: Option<String>,
    /// Flash attention: on, off, auto (-fa).
    #[arg(long = "fa", value_name = "on|off|auto")]
    pub flash_attn: Option<String>,
    /// Logical batch size(s).
    #[arg(short = 'b', long = "batch-size", value_name = "N")]
    pub batch: Option<String>,
    /// Physical batch size(s) (-ub).
    #[arg(long = "ub", value_name = "N")]
    pub ubatch: Option<String>,
    /// Threads.
    #[arg(short = 't', long = "threads", value_name = "N")]
    pub threads: Option<String>,
    /// GPU layers (-ngl).
    #[arg(long = "ngl", value_name = "N")]
    pub gpu_layers: Option<String>,
    /// Parallel slots (-np; server only; default 1).
    #[arg(long = "np", value_name = "N")]
    pub parallel: Option<String>,
    /// Context size (server only; default: what the tests need).
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx: Option<String>,
    /// Draft model(s) for speculative decoding (-md; server only).
    #[arg(long = "md", value_name = "FILE")]
    pub draft_model: Option<String>,
    /// Speculative decoding type(s): none, ngram-simple, ngram-map-k, ngram-map-k4v, ngram-mod, ngram-cache, draft-*.
    #[arg(long = "spec-type", value_name = "TYPES")]
    pub spec_type: Option<String>,
    /// Maximum draft tokens.
    #[arg(long = "spec-draft-n-max", value_name = "N")]
    pub spec_draft_n_max: Option<String>,
    /// How the model is spread over several GPUs (-sm): none, layer, row, tensor (experimental; needs -fa).
    #[arg(long = "sm", value_name = "MODES")]
    pub split_mode: Option<String>,
    /// Proportion of the model per GPU (-ts), written 3/1 or 3:1; a comma separates sweep values (-ts 1/1,3/1).
    #[arg(long = "ts", value_name = "RATIOS")]
    pub tensor_split: Option<String>,
    /// Main GPU (-mg): the one -sm none puts the model on (llama.cpp b11434 reads it only then).
    #[arg(long = "mg", value_name = "INDEX")]
    pub main_gpu: Option<String>,
    /// Any other llama-server flag to sweep, as FLAG=VALUES (e.g. --spec-ngram-mod-n-min=2,4). Repeatable.
    #[arg(long = "server-flag", value_name = "FLAG=VALUES")]
    pub server_flags: Vec<String>,
    /// Prompt tokens for pp tests.
    #[arg(short = 'p', long = "n-prompt", value_name = "N")]
    pub prompt: Option<String>,
    /// Generated tokens for tg tests.
    #[arg(short = 'n', long = "n-gen", value_name = "N")]
    pub gen: Option<String>,
    /// Context depth(s) before each test.
    #[arg(short = 'd', long = "n-depth", value_name = "N")]
    pub depth: Option<String>,
    /// Prompt set(s): random, natural, code, or a text file.
    #[arg(long, value_name = "SETS")]
    pub prompts: Option<String>,
    /// Repetitions per test (the minimum with --ci-target).
    #[arg(short = 'r', long = "repetitions", value_name = "N")]
    pub reps: Option<u32>,
    /// Unmeasured warmup runs per test.
    #[arg(long, value_name = "N")]
    pub warmup: Option<u32>,
    /// Repeat until the 95% CI of the median is within this many percent (e.g. 2 or 2%).
    #[arg(long, value_name = "PCT")]
    pub ci_target: Option<String>,
    /// Upper bound on repetitions with --ci-target.
    #[arg(long, value_name = "N")]
    pub max_reps: Option<u32>,
    /// llama-server (through the server) or llama-bench (in-process) [default: llama-server].
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<EngineArg>,
    /// Print the plan (configs, tests, engine restarts) and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Finish an interrupted run without repeating stored trials.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<String>,
    /// Wait (up to SECS, default 60) for a quiet machine before each trial; fail naming what is busy.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "60")]
    pub require_clean: Option<u64>,
    /// Output format of the final table.
    #[arg(
        short = 'o',
        long,
        alias = "output",
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    pub format: TableFormat,
    /// Tag for the run (usable wherever a run id is); the shards of one experiment share it.
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Seconds to wait for each server to become healthy.
    #[arg(long, default_value_t = 120, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub health_timeout: u64,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    /// Memory bandwidth in GB/s for the "% of roofline" column (default: the last `bakeoff doctor --bandwidth` on this machine).
    #[arg(long, value_name = "GB/S")]
    pub bandwidth: Option<f64>,
    #[command(flatten)]
    pub build: EngineArgs,
    /// Flags passed to every engine start as they are (after `--`).
    #[arg(last = true, value_name = "ENGINE FLAGS")]
    pub engine_args: Vec<String>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
}

const REPORT_EXAMPLES: &str = "Examples:
  bakeoff report last --out report.html
  bakeoff report 3 4 --out kv-sweep.md             # several runs side by side
  bakeoff report baseline candidate -o html > report.html
  bakeoff report last -o json                      # the gathered data, for other tools
  bakeoff report last --shootout --reference Q8_0  # one row per model/build, ratios against Q8_0

The format is -o/--format, else the --out file's extension, else Markdown on stdout. An -o value
that is not a format name is taken as the file to write (the older spelling: -o report.html).

Sections: runs, configurations, speed against depth, KV cache types, latency against
concurrency, speculative decoding, fidelity gates, speed/memory/fidelity pareto, environment.
The HTML file needs no network: charts are inline SVG and it runs no script.";

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Runs to report on (id, `last`, or tag).
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<String>,
    /// html, md or json [default: from the --out extension; Markdown on stdout]. A value that is
    /// not a format name is the file to write, as --out (the older spelling `-o report.html`).
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = crate::cli_values::format_or_file)]
    pub format: Option<FormatOrFile>,
    /// File to write (its extension picks the format when -o does not); `-` writes to stdout.
    #[arg(long, alias = "output", value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// One row per model or build (per model and build when both vary): file size, params, quant,
    /// pp/tg with 95% CIs, KV memory, % of roofline, gate verdict and a recommendation with its
    /// rule. As md, csv or json the shootout table alone; as html a section of the report.
    #[arg(long)]
    pub shootout: bool,
    /// The shootout row the ratio columns divide by: a build name, or part of a model name (Q8_0).
    #[arg(long, value_name = "NAME", requires = "shootout")]
    pub reference: Option<String>,
    /// The best-quality rule looks at rows within PCT % of the fastest tg [default: 10].
    #[arg(long, value_name = "PCT", requires = "shootout")]
    pub within: Option<f64>,
}

impl ReportArgs {
    /// The format given by name, and the file to write (`-`: stdout), whichever way they were spelled.
    pub fn format_and_out(&self) -> (Option<ReportFormatArg>, PathBuf) {
        let (format, old_out) = match &self.format {
            Some(FormatOrFile::Format(format)) => (Some(*format), None),
            Some(FormatOrFile::File(path)) => (None, Some(path.clone())),
            None => (None, None),
        };
        let out = self.out.clone().or(old_out).unwrap_or_else(|| "-".into());
        (format, out)
    }
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Baseline run (id, `last`, or tag); with --across, the run to compare within.
    pub a: String,
    /// Candidate run (id, `last`, or tag).
    #[arg(required_unless_present = "across", conflicts_with = "across")]
    pub b: Option<String>,
    /// Within run A: pair each cell with the same config and test on every other build (or model).
    #[arg(long, value_enum, value_name = "DIMENSION")]
    pub across: Option<AcrossArg>,
    /// With --across: the build name, or part of the model name, to compare against [default: the first measured].
    #[arg(long, value_name = "NAME", requires = "across")]
    pub reference: Option<String>,
    /// Output format [default: md].
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub format: Option<CompareFormat>,
    /// Short for -o json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// What `compare --across` varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AcrossArg {
    Build,
    Model,
}

impl CompareArgs {
    pub fn wants_json(&self) -> bool {
        self.json || self.format == Some(CompareFormat::Json)
    }
}

const GATE_EXAMPLES: &str = "Examples:
  bakeoff gate candidates.toml
  bakeoff gate candidates.toml --gate strict.toml -o json
  bakeoff gate --show last --format md > readiness.md

A candidates file:
  model = \"SmolLM2-135M-Instruct.Q4_1.gguf\"   # a path, or a file name in the model cache
  ctx = 4096                                     # the context to serve (server -c, KV column)
  [baseline]
  name = \"f16\"
  flags = \"-fa on\"
  [[candidate]]
  name = \"q8_0 KV\"
  flags = \"-fa on -ctk q8_0 -ctv q8_0\"
  [[candidate]]
  name = \"ngram\"
  flags = [\"-fa\", \"on\", \"--spec-type\", \"ngram-mod\"]
  [checks]                                       # all optional
  kld = \"perplexity\"                            # perplexity | http | both | off
  suite = \"my-canaries.toml\"                    # instead of the built-in canaries
  [gate.mean_kld]                                # thresholds (defaults: a KV-cache-only change)
  pass = 0.01
  warn = 0.03";

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The candidates file (TOML).
    #[arg(required_unless_present = "show")]
    pub file: Option<PathBuf>,
    /// Gate thresholds (TOML) overriding the file's [gate] table and the defaults.
    #[arg(long)]
    pub gate: Option<PathBuf>,
    /// Print a stored gate run's readiness table instead of running one.
    #[arg(long, value_name = "RUN", conflicts_with = "file")]
    pub show: Option<String>,
    /// Output: md (the readiness table) or json (every figure).
    #[arg(
        short = 'o',
        long,
        alias = "output",
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    pub format: GateFormat,
    /// A tag for the stored run.
    #[arg(long)]
    pub tag: Option<String>,
    /// Exit with status 1 when any candidate's gate is FAIL (for scripts that deploy on success).
    #[arg(long)]
    pub strict: bool,
    /// A llama.cpp build to gate with, NAME=PATH; repeat it: each (build, model) gets its own
    /// baseline and candidates in the one run.
    #[arg(long = "build", value_name = "NAME=PATH")]
    pub builds: Vec<String>,
    /// The model catalog that names in the file's `model` come from (default
    /// ~/.config/bakeoff/models.toml).
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    #[command(flatten)]
    pub build: EngineArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
}

/// llama-bench spells some flags with one dash and several letters (`-ctk`); clap wants `--ctk`.
pub fn normalize_args(args: impl Iterator<Item = String>) -> Vec<String> {
    const MULTI_LETTER: [&str; 10] = [
        "-ctk", "-ctv", "-fa", "-ub", "-ngl", "-np", "-md", "-sm", "-ts", "-mg",
    ];
    let mut passthrough = false;
    args.map(|arg| {
        if arg == "--" {
            passthrough = true;
        }
        if !passthrough && MULTI_LETTER.contains(&arg.as_str()) {
            format!("-{arg}")
        } else {
            arg
        }
    })
    .collect()
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Architecture, parameters (active per token for MoE), tensor bytes by type and role,
    /// context length, attention layout, tokenizer, chat template, split files.
    #[command(
        after_help = "Examples:\n  bakeoff model inspect SmolLM2-135M-Instruct.Q4_1.gguf\n  bakeoff model inspect ~/models/big.gguf --json"
    )]
    Inspect {
        /// GGUF file (a bare file name is looked up in the model cache).
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Write a random-weight GGUF of a real shape (to measure shapes whose weights you lack).
    #[command(
        after_help = "Examples:\n  bakeoff model synth --like SmolLM2-135M-Instruct.Q4_1.gguf --out synth.gguf\n  bakeoff model synth --arch llama --layers 16 --embd 2048 --heads 32 --kv-heads 8 --ff 8192 \\\n      --vocab-from SmolLM2-135M-Instruct.Q4_1.gguf --out llama-1b.gguf --quantize Q4_K_M\n  bakeoff model synth --arch llama --layers 80 --embd 8192 --heads 64 --kv-heads 8 --ff 28672 \\\n      --vocab-from vocab.gguf --out llama-70b.gguf --dtype q4_k"
    )]
    Synth(Box<SynthArgs>),
    /// Extract a model's tokenizer into a small tensor-less GGUF (to use with `synth --vocab-from`).
    #[command(
        after_help = "Examples:\n  bakeoff model vocab SmolLM2-135M-Instruct.Q4_1.gguf --out smollm2-vocab.gguf"
    )]
    Vocab {
        file: PathBuf,
        /// Output file (`-o FILE` still works).
        #[arg(long, short_alias = 'o', value_name = "FILE")]
        out: PathBuf,
    },
    /// Render the model's chat template as transformers would and print the prompt.
    #[command(
        after_help = "Messages are OpenAI-style: [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\",\n\"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {}}}]}, ...].\n\nExamples:\n  bakeoff model template SmolLM2-135M-Instruct.Q4_1.gguf\n  bakeoff model template model.gguf --messages msgs.json --tools tools.json\n  bakeoff model template model.gguf --template qwen3.jinja --var enable_thinking=false --json"
    )]
    Template(TemplateArgs),
}

#[derive(Args, Debug)]
pub struct TemplateArgs {
    /// GGUF file whose tokenizer.chat_template and BOS/EOS tokens are used.
    pub file: PathBuf,
    /// JSON file with the messages (default: one user message, "Hello!").
    #[arg(long, value_name = "FILE")]
    pub messages: Option<PathBuf>,
    /// JSON file with OpenAI-style tool definitions.
    #[arg(long, value_name = "FILE")]
    pub tools: Option<PathBuf>,
    /// Render this Jinja file instead of the model's own template.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Leave out the assistant header that invites the next turn.
    #[arg(long)]
    pub no_generation_prompt: bool,
    /// Template variable as NAME=JSON (repeatable), e.g. enable_thinking=false.
    #[arg(long = "var", value_name = "NAME=JSON")]
    pub vars: Vec<String>,
    /// Print {"prompt", "tool_call_format", "bos_token", "eos_token"} as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Copy architecture, hyper-parameters, tensor shapes and vocabulary from this GGUF.
    #[arg(long, value_name = "FILE", conflicts_with = "arch")]
    pub like: Option<PathBuf>,
    /// Build a shape from explicit dimensions.
    #[arg(long, value_enum, value_name = "ARCH", requires_all = ["layers", "embd", "heads", "ff", "vocab_from"])]
    pub arch: Option<ArchArg>,
    #[arg(long)]
    pub layers: Option<u64>,
    #[arg(long)]
    pub embd: Option<u64>,
    #[arg(long)]
    pub heads: Option<u64>,
    /// KV heads (default: --heads).
    #[arg(long)]
    pub kv_heads: Option<u64>,
    #[arg(long)]
    pub ff: Option<u64>,
    /// Take the tokenizer (vocabulary) from this GGUF.
    #[arg(long, value_name = "FILE")]
    pub vocab_from: Option<PathBuf>,
    /// Trained context length to record.
    #[arg(long, default_value_t = 8192)]
    pub ctx: u64,
    /// Output file (`-o FILE` still works).
    #[arg(long, short_alias = 'o', value_name = "FILE")]
    pub out: PathBuf,
    /// Tensor type written: f16, f32, or random q8_0 / q4_k blocks straight away (no F16 file
    /// first; rows that are not whole blocks stay f16). Others: --quantize.
    #[arg(long, value_enum, default_value_t)]
    pub dtype: DtypeArg,
    /// Then quantize with llama-quantize (e.g. Q8_0, Q4_K_M); the unquantized file is removed.
    #[arg(long, value_name = "TYPE")]
    pub quantize: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub build: EngineArgs,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// GGUF file (a bare file name is looked up in the model cache).
    pub file: PathBuf,
    /// Context size in tokens (default: the model's trained context).
    #[arg(long, short = 'c')]
    pub ctx: Option<u64>,
    /// Parallel sequences (llama-server --parallel).
    #[arg(long, short = 'p', default_value_t = 1)]
    pub parallel: u64,
    /// K cache type.
    #[arg(long, default_value = "f16")]
    pub ctk: String,
    /// V cache type.
    #[arg(long, default_value = "f16")]
    pub ctv: String,
    /// Physical batch size (sizes the sliding-window cache and compute buffer).
    #[arg(long, default_value_t = 512)]
    pub ubatch: u64,
    /// One unified KV cache shared by all sequences (llama-server --kv-unified).
    #[arg(long)]
    pub unified: bool,
    /// Full-size cache for sliding-window layers (--swa-full).
    #[arg(long)]
    pub swa_full: bool,
    /// Flash attention off (compute buffer then holds attention scores).
    #[arg(long)]
    pub no_flash_attn: bool,
    /// Memory budget, e.g. 24G or 512MiB: report fit and the largest context.
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// Memory bandwidth in GB/s for the roofline (measure it with `bakeoff doctor --bandwidth`).
    #[arg(long, value_name = "GB/S")]
    pub bandwidth: Option<f64>,
    /// Each GPU's memory, e.g. 24G,12G: plan every GPU's share (all layers offloaded).
    #[arg(long, value_name = "SIZES")]
    pub gpus: Option<String>,
    /// Split mode with --gpus (-sm): none, layer, row, tensor [default: layer].
    #[arg(long = "sm", value_name = "MODE", requires = "gpus")]
    pub split_mode: Option<String>,
    /// Proportion per GPU with --gpus (-ts), e.g. 3/1 [default: by memory].
    #[arg(long = "ts", value_name = "RATIO", requires = "gpus")]
    pub tensor_split: Option<String>,
    /// Main GPU with --gpus (-mg; the one -sm none uses) [default: 0].
    #[arg(long = "mg", value_name = "INDEX", requires = "gpus")]
    pub main_gpu: Option<String>,
    /// Context depth at which to evaluate the roofline.
    #[arg(long, default_value_t = 0)]
    pub depth: u64,
    #[arg(long)]
    pub json: bool,
}

const LOAD_EXAMPLES: &str = "Examples:
  bakeoff load -m SmolLM2-135M-Instruct.Q4_1.gguf --concurrency 1,2,4 --requests 32
  bakeoff load -m model.gguf --rate 1,2,4 --burstiness 1 --duration 30s --slo ttft=500ms,tpot=50ms
  bakeoff load -m model.gguf --sweep 5 --duration 20s --input normal:256,64 --output-len 64-128
  bakeoff load -m a.gguf,b.gguf --build new=~/llama.cpp/build --build old=~/b11000 --concurrency 1,8
  bakeoff load --url http://127.0.0.1:8080 --dataset chats.jsonl --concurrency 8 -o csv
  bakeoff load -m model.gguf --turns 4 --shared-prefix 512 --input 64 --concurrency 4
  bakeoff load -m a.gguf,b.gguf,c.gguf --shard auto --tag load-3 # one model per array task
  bakeoff load --self-test                       # the client's own ceiling on loopback
  bakeoff load --serve-scripted --port 8999      # the same scripted endpoint, for other tools";

#[derive(Args, Debug, Default)]
pub struct LoadArgs {
    /// The model(s) to serve with a supervised llama-server, and the builds to serve them with;
    /// the whole plan runs once per (build, model). Not with --url.
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// Attach to a running server instead.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Closed-loop concurrency levels (comma list or range).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<String>,
    /// Open-loop request rates per second (comma list).
    #[arg(long, value_name = "R")]
    pub rate: Option<String>,
    /// Gamma shape of inter-arrival times for --rate (1 = Poisson; omit for a constant pace).
    #[arg(long, value_name = "K")]
    pub burstiness: Option<f64>,
    /// Send every request at once (bounded by --requests) to find the maximum throughput.
    #[arg(long)]
    pub max_throughput: bool,
    /// Sweep: synchronous, max throughput, then N constant rates between (default 5).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "5")]
    pub sweep: Option<usize>,
    /// Length of each step, e.g. 30s.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Requests per step (default 32 when no --duration).
    #[arg(long, value_name = "N", value_parser = crate::cli_values::at_least_one())]
    pub requests: Option<usize>,
    /// Leading window excluded from statistics.
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub warmup: String,
    /// Trailing window excluded from statistics.
    #[arg(long, default_value = "0s", value_name = "DURATION")]
    pub cooldown: String,
    /// Prompt length distribution: N, LO-HI, or normal:MEAN,SD (tokens, exact).
    #[arg(long, default_value = "128", value_name = "DIST")]
    pub input: String,
    /// Output length distribution (tokens; generation ignores EOS). `--output` still works.
    #[arg(long, alias = "output", default_value = "64", value_name = "DIST")]
    pub output_len: String,
    /// JSONL file of chat conversations ({"messages": [...]} per line) sent to /v1/chat/completions.
    #[arg(long, value_name = "FILE")]
    pub dataset: Option<PathBuf>,
    /// Multi-turn conversations of this many turns sharing a prefix.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub turns: Option<u32>,
    /// Tokens of the prefix every conversation shares (with --turns).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub shared_prefix: u32,
    /// Seed for the workload and the send schedule.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Service-level objectives for goodput, e.g. ttft=500ms,tpot=50ms.
    #[arg(long, value_name = "SPEC")]
    pub slo: Option<String>,
    /// Most requests in flight for open-loop shapes.
    #[arg(long, default_value_t = 256, value_name = "N", value_parser = crate::cli_values::at_least_one())]
    pub max_inflight: usize,
    /// Keep going when the server saturates (default: end that step early).
    #[arg(long)]
    pub no_stop_on_saturation: bool,
    /// Measure the client's own ceiling against a scripted endpoint on loopback, then exit.
    #[arg(long)]
    pub self_test: bool,
    /// Serve the scripted streaming endpoint (OpenAI chat/completions and llama.cpp /completion) on
    /// 127.0.0.1 until Ctrl-C, to measure other load generators' ceilings against the same thing.
    #[arg(long, conflicts_with = "self_test")]
    pub serve_scripted: bool,
    /// Pace of --serve-scripted tokens in microseconds (0: as fast as possible).
    #[arg(long, default_value_t = 0, value_name = "US")]
    pub pace_us: u64,
    /// Port for --serve-scripted (default: a free one).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Output format of the step table (`--output-format` still works).
    #[arg(
        short = 'o',
        long,
        alias = "output-format",
        value_enum,
        default_value_t,
        value_name = "FORMAT"
    )]
    pub format: TableFormat,
    /// Tag for the run; the shards of one experiment share it.
    #[arg(long)]
    pub tag: Option<String>,
    // With several (build, model) pairs each is a cell; `commands::load` shards those.
    #[command(flatten)]
    pub shard: ShardArgs,
    /// Seconds to wait for the server to become healthy.
    #[arg(long, default_value_t = 120, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub health_timeout: u64,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    /// A fault for --serve-scripted to inject into its completions (hang, stall, truncate, 500,
    /// bad-json, empty-piece), for fault-injection tests.
    #[arg(long, value_name = "FAULT", requires = "serve_scripted", hide = true)]
    pub scripted_fault: Option<String>,
    #[command(flatten)]
    pub build: EngineArgs,
    /// Flags passed to llama-server as they are (after `--`).
    #[arg(last = true, value_name = "ENGINE FLAGS")]
    pub engine_args: Vec<String>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
}

const JOURNAL_EXAMPLES: &str = "Examples:
  bakeoff journal add \"KV cache q8_0\" --change \"-ctk q8_0 -ctv q8_0\" --before base --after q8
  bakeoff journal add \"batch 256\" --change \"-b 256 vs 2048\" --before last~1 --after last
  bakeoff journal add \"KV q4_0\" --before base --after q4 --gate kv-gate:q4_0
  bakeoff journal add \"rocWMMA flash attention\" --change \"rebuild with GGML_HIP_ROCWMMA_FATTN\" --verdict PENDING
  bakeoff journal set 4 --verdict BLOCKED --note \"needs upstream PR #20075\"
  bakeoff journal show -o md > optimization-log.md
  bakeoff journal show 2 -o json

Proposed verdicts: REVERTED when a fidelity gate failed (the after-run's, or a --gate run's) or
the headline metric (tg t/s; load runs: output tok/s; else pp t/s) is significantly slower in any
cell; KEEP when it is significantly faster in some cell and slower in none; NO IMPACT when every
cell is within noise. Significance is `bakeoff compare`'s: the ratio's 95% bootstrap CI excludes 1
and Mann-Whitney p < 0.05 (with too few repetitions for the test, the CI alone). Runs that measured
one config each, with different flags, are compared test by test. --verdict overrides the proposal
(recorded as set by hand); PENDING and BLOCKED are only ever set by hand.";

#[derive(Subcommand, Debug)]
pub enum JournalCommand {
    /// Compare two runs, propose a verdict, and store the entry with its evidence.
    #[command(after_help = JOURNAL_EXAMPLES)]
    Add {
        /// What was tried, e.g. "KV cache q8_0" (one starting with `-` goes after `--`).
        title: String,
        /// The exact change (command, flags, setting); may start with `-`.
        #[arg(long, default_value = "", allow_hyphen_values = true)]
        change: String,
        /// Run before the change (id, `last`, `last~N`, or tag).
        #[arg(long, value_name = "RUN", requires = "after")]
        before: Option<String>,
        /// Run after the change (id, `last`, `last~N`, or tag).
        #[arg(long, value_name = "RUN", requires = "before")]
        after: Option<String>,
        /// Fidelity gate checks from a `bakeoff gate` run (optionally one candidate) also judge the
        /// after-run; a FAIL proposes REVERTED. Repeatable.
        #[arg(long, value_name = "RUN[:CANDIDATE]", requires = "after")]
        gate: Vec<String>,
        /// Set the verdict by hand (any case; `NO IMPACT` also works).
        #[arg(long, value_enum, ignore_case = true, value_name = "VERDICT")]
        verdict: Option<VerdictArg>,
        #[arg(long, allow_hyphen_values = true)]
        note: Option<String>,
        #[command(flatten)]
        output: TextOrJson,
    },
    /// Render the log (all entries, or the ones named).
    #[command(
        after_help = "Examples:\n  bakeoff journal show\n  bakeoff journal show -o md > optimization-log.md\n  bakeoff journal show 3 -o json"
    )]
    Show {
        /// Entry ids (default: all).
        ids: Vec<i64>,
        /// Output format [default: text]; md is in the shape of a hand-kept optimisation log.
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        format: Option<JournalFormat>,
        /// Short for -o md.
        #[arg(long, conflicts_with_all = ["json", "format"])]
        md: bool,
        /// Short for -o json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Change an entry: its verdict, its note, or its runs (re-judged).
    #[command(
        after_help = "Examples:\n  bakeoff journal set 3 --verdict REVERTED --note \"breaks tool calls\"\n  bakeoff journal set 5 --before base --after last   # a PENDING entry, now measured"
    )]
    Set {
        id: i64,
        /// Set the verdict by hand (any case; `NO IMPACT` also works).
        #[arg(long, value_enum, ignore_case = true, value_name = "VERDICT")]
        verdict: Option<VerdictArg>,
        #[arg(long, allow_hyphen_values = true)]
        note: Option<String>,
        #[arg(long, value_name = "RUN", requires = "after")]
        before: Option<String>,
        #[arg(long, value_name = "RUN", requires = "before")]
        after: Option<String>,
        /// Fidelity gate checks from a `bakeoff gate` run (optionally one candidate) also judge the
        /// after-run; a FAIL proposes REVERTED. Repeatable.
        #[arg(long, value_name = "RUN[:CANDIDATE]", requires = "after")]
        gate: Vec<String>,
        #[command(flatten)]
        output: TextOrJson,
    },
}

const PROFILE_EXAMPLES: &str = "Examples:
  bakeoff profile save daily --from last               # the run's fastest config by tg median
  bakeoff profile save q8 --from kv:3 -- -c 8192 -np 2  # config 3 of run 'kv', + serving flags
  bakeoff profile save fast --from 12:a1b2 --fallback daily
  bakeoff profile list
  bakeoff profile show daily --json
  bakeoff profile export daily --command
  bakeoff profile export daily --systemd --port 8080 --out ~/.config/systemd/user/llama-daily.service
  bakeoff serve daily";

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// Store a run's configuration (model path and hash, engine, flags) under a name.
    #[command(after_help = PROFILE_EXAMPLES)]
    Save {
        name: String,
        /// RUN (id, `last`, `last~N`, tag) or RUN:CONFIG (config id or hash prefix); default: the
        /// run's fastest config by tg median.
        #[arg(long, value_name = "RUN[:CONFIG]")]
        from: String,
        /// Profile `serve` starts when this one fails its readiness gate.
        #[arg(long, value_name = "PROFILE")]
        fallback: Option<String>,
        /// Replace a profile of the same name.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
        /// More llama-server flags for serving (after `--`), e.g. -c 8192 -np 2.
        #[arg(last = true, value_name = "ENGINE FLAGS")]
        engine_args: Vec<String>,
    },
    /// List saved profiles.
    #[command(after_help = "Examples:\n  bakeoff profile list\n  bakeoff profile list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one profile: where it came from and what it runs.
    #[command(
        after_help = "Examples:\n  bakeoff profile show daily\n  bakeoff profile show daily --json"
    )]
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a profile.
    #[command(after_help = "Examples:\n  bakeoff profile delete old-q4")]
    Delete { name: String },
    /// Print the llama-server command line, or write a systemd unit.
    #[command(
        group = clap::ArgGroup::new("format").required(true).args(["systemd", "command"]),
        after_help = "Examples:\n  bakeoff profile export daily --command\n  bakeoff profile export daily --systemd --out llama-daily.service\n  bakeoff profile export daily --systemd --host 0.0.0.0 --port 8080"
    )]
    Export {
        name: String,
        /// A systemd service unit (ExecStart, Restart=on-failure).
        #[arg(long)]
        systemd: bool,
        /// The llama-server command line, shell-quoted.
        #[arg(long)]
        command: bool,
        /// Write to FILE instead of stdout (`-o`/`--output` still work).
        #[arg(long = "out", short_alias = 'o', alias = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[command(flatten)]
        build: EngineArgs,
    },
}

const PUSH_EXAMPLES: &str = "Examples:
  bakeoff push --to postgres://me@db.lab/bakeoff          # every run not there yet
  BAKEOFF_TEAM_DB=postgres://me@db.lab/bakeoff bakeoff push last baseline
  bakeoff push --dry-run                                  # what would be copied
  bakeoff push 12 --to ~/shared/team.db --json

A run already there with the same content is left alone (pushing twice adds nothing); one that
differs there (status, end, error, trial or sample counts) is reported as a conflict and nothing
is overwritten. Exit status: 0, 1 when anything conflicts, 2 for bad input.
The password of a URL is never printed (~/.pgpass, PGPASSWORD and PGPASSFILE are read).";

const PULL_EXAMPLES: &str = "Examples:
  bakeoff pull --from postgres://me@db.lab/bakeoff        # every team run this store lacks
  bakeoff pull baseline --db ./mine.db                    # the newest team run tagged baseline
  bakeoff pull --dry-run -o json

Exit status: 0, 1 when anything conflicts (nothing is overwritten), 2 for bad input.";

/// What `push` and `pull` copy and how they report it.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Runs to copy, as the source store names them (id, `last`, `last~N`, tag); default: all.
    #[arg(value_name = "RUN")]
    pub runs: Vec<String>,
    /// Say what would be copied; change neither store.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: TextOrJson,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The team's store: postgres://USER@HOST[:PORT]/DB, or a SQLite path.
    #[arg(
        long,
        value_name = "URL",
        env = "BAKEOFF_TEAM_DB",
        hide_env_values = true
    )]
    pub to: PathBuf,
    #[command(flatten)]
    pub sync: SyncArgs,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// The team's store: postgres://USER@HOST[:PORT]/DB, or a SQLite path.
    #[arg(
        long,
        value_name = "URL",
        env = "BAKEOFF_TEAM_DB",
        hide_env_values = true
    )]
    pub from: PathBuf,
    #[command(flatten)]
    pub sync: SyncArgs,
}

const MODELS_EXAMPLES: &str = "Examples:\n  bakeoff models list   # every entry of ~/.config/bakeoff/models.toml (else the model cache)\n  bakeoff models list --category moe --max-size 20G --ctx 32768\n  bakeoff models list -m '~/models/*Q4*.gguf' -o csv\n  bakeoff models list --catalog examples/models.toml -m 'smol*,gemma' -o json";

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// One row per catalog entry (or per file of -m): size, architecture, params, quant, sha256,
    /// tags and whether it fits this machine's memory at --ctx.
    #[command(after_help = MODELS_EXAMPLES)]
    List(ModelsListArgs),
}

#[derive(Args, Debug)]
pub struct ModelsListArgs {
    /// The models to list (default: every catalog entry); the same syntax as bench's -m.
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// Context (tokens) at which to check the fit (f16 KV cache, flash attention on).
    #[arg(long, default_value_t = 8192, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ctx: u64,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t, value_name = "FORMAT")]
    pub format: TableFormat,
}

const TUNE_EXAMPLES: &str = "Examples:\n  bakeoff tune -m SmolLM2-135M-Instruct.Q4_1.gguf --ctx 4096 --goal tg --dry-run\n  bakeoff tune -m SmolLM2-135M-Instruct.Q4_1.gguf --ctx 2048 --goal tg --budget 10m --save daily\n  bakeoff tune -m model.gguf --ctx 32768 --goal tg --mem 8G --pin -fa=on --only -t=1,2\n  bakeoff tune --config examples/tune.toml -o json\n  bakeoff tune --resume 12      # after kill -9 or Ctrl-C: nothing measured is measured again\n\nExit status: 0 with a faithful winner, 1 when no configuration passed the fidelity gate,\n2 for bad input, 130 when interrupted (the best so far is printed).";

/// `bakeoff tune`: the search for the fastest faithful configuration.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The model file(s) to tune over (each one a value of the `model` knob) and the build.
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// The context (tokens) the configuration must serve.
    #[arg(long, value_name = "TOKENS", value_parser = clap::value_parser!(u64).range(1..))]
    pub ctx: Option<u64>,
    /// Concurrent users (goal load: the slots knob goes up to this).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub parallel: Option<u64>,
    /// What to maximise: tg, pp, balanced, load or tokens-per-joule (decode tokens per joule
    /// from the energy counters: NVML, RAPL, amdgpu).
    #[arg(long, value_name = "GOAL", value_parser = tune_goal)]
    pub goal: Option<bakeoff::search::space::Goal>,
    /// Wall-clock budget of the search (30m, 1h, 90s; default 30m).
    #[arg(long, value_name = "DURATION", conflicts_with = "max_trials")]
    pub budget: Option<String>,
    /// At most this many trials.
    #[arg(long, value_name = "N")]
    pub max_trials: Option<u64>,
    /// Memory budget (default: the largest GPU's memory, else this machine's).
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// Save the winner as this serving profile (with the context and slots it was measured at).
    #[arg(long, value_name = "NAME")]
    pub save: Option<String>,
    /// Replace the --save profile if one of that name exists.
    #[arg(long)]
    pub force: bool,
    /// TOML tune file; command-line values override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Pin a knob to one value: KNOB=VALUE (`-ctk=q8_0`); repeatable.
    #[arg(long, value_name = "KNOB=VALUE", allow_hyphen_values = true)]
    pub pin: Vec<String>,
    /// Narrow a knob to these of its values: KNOB=V1,V2 (`-t=1,2`); repeatable.
    #[arg(long, value_name = "KNOB=VALUES", allow_hyphen_values = true)]
    pub only: Vec<String>,
    /// Add values to a knob: KNOB=V1,V2 (`-ub=1024`); repeatable.
    #[arg(long, value_name = "KNOB=VALUES", allow_hyphen_values = true)]
    pub extend: Vec<String>,
    /// Print the space, what is pruned and why, and the planned cost; measure nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Depths (tokens already in the context) the goal is measured at: 0,2048 (default 0 and
    /// half of --ctx; balanced: 0).
    #[arg(short = 'd', long, value_name = "LIST")]
    pub depth: Option<String>,
    /// Generated tokens per tg test (default 64).
    #[arg(short = 'n', long = "gen", value_name = "TOKENS")]
    pub gen: Option<u32>,
    /// Prompt tokens per pp test (default 512, at most a quarter of --ctx).
    #[arg(short = 'p', long = "prompt", value_name = "TOKENS")]
    pub prompt: Option<u32>,
    /// Prompt set: random, natural, code or a file (speculation needs real text to draft from).
    #[arg(long, value_name = "SET")]
    pub prompts: Option<String>,
    /// Goal load: requests per load step (default twice --parallel, at least 10).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Goal load: score goodput (requests/s meeting every limit) instead of output tok/s:
    /// ttft=500ms,tpot=50ms,e2e=10s.
    #[arg(long, value_name = "LIMITS")]
    pub slo: Option<String>,
    /// Continue the tune run RUN after a kill or Ctrl-C: its stored trials answer the race's
    /// first requests, so nothing is measured twice.
    #[arg(long, value_name = "RUN", conflicts_with_all = ["dry_run", "config"])]
    pub resume: Option<String>,
    /// Seconds to wait for each engine's /health.
    #[arg(long, default_value_t = 180, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub health_timeout: u64,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    /// Tag for the run.
    #[arg(long)]
    pub tag: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t, value_name = "FORMAT")]
    pub format: TableFormat,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
}

fn tune_goal(text: &str) -> Result<bakeoff::search::space::Goal, String> {
    bakeoff::search::space::Goal::parse(text).map_err(|e| e.to_string())
}
