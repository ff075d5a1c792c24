//! Arguments of `bakeoff tools` (the tool-call bakeoff), kept beside `cli.rs` so the group's clap
//! types stay together.

use crate::cli::EngineArgs;
use crate::cli_values::{ArmPath, ForceToolsArg, ToolFormatArg};
use clap::{Args, Subcommand};
use std::path::PathBuf;

pub const TOOLS_EXAMPLES: &str = "Examples:
  bakeoff tools tasks
  bakeoff tools run --task movies -m SmolLM2-135M-Instruct.Q4_1.gguf --force-tools first -- --chat-template-file qwen2.5.jinja
  bakeoff tools run --task movies,long --url http://127.0.0.1:8080 --reference http://127.0.0.1:8081
  bakeoff tools run --task memory --url http://127.0.0.1:11434 --model-name gemma4 --template gemma4.jinja
  bakeoff tools diff last
  bakeoff tools export last --out traces.json
  bakeoff tools bfcl -m SmolLM2-135M-Instruct.Q4_1.gguf --force-tools always -- --chat-template-file qwen2.5.jinja
  bakeoff tools render-diff --url http://127.0.0.1:8080 --task movies

Arms: json = the engine's tools API (OpenAI /v1/chat/completions, Ollama /api/chat).
native = bakeoff renders the model's template, posts it raw (llama-server /completion, Ollama
/api/generate raw) and parses the native tool-call spans. reference = either path on another
server (--reference). Small models rarely call tools on their own: --force-tools forces a call
with a grammar (native) or tool_choice \"required\" (json). Templates ship with llama.cpp in
models/templates/ (e.g. Qwen-Qwen2.5-7B-Instruct.jinja).";

#[derive(Subcommand, Debug)]
pub enum ToolsCommand {
    /// Run agentic tasks through the arms; store one trace per (arm, task) and print where they diverge.
    #[command(after_help = TOOLS_EXAMPLES)]
    Run(Box<ToolsRunArgs>),
    /// Score the single-turn function-calling set (simple, multiple, parallel, irrelevance) on each arm with BFCL's AST rules.
    #[command(after_help = TOOLS_EXAMPLES)]
    Bfcl(Box<ToolsBfclArgs>),
    /// Diff the engine's own rendering of a task's conversations against bakeoff's rendering of the template.
    #[command(after_help = TOOLS_EXAMPLES)]
    RenderDiff(Box<RenderDiffArgs>),
    /// Divergence report between the arms of a stored run: first divergent step, call and argument differences, halts, prompts.
    #[command(
        after_help = "Examples:\n  bakeoff tools diff last\n  bakeoff tools diff 12 --arms native,reference --task long --json"
    )]
    Diff {
        /// Run id, `last`, or a tag.
        run: String,
        /// The two arms to compare (default: json,native, and each against reference when present).
        #[arg(long, value_name = "A,B")]
        arms: Option<String>,
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Export a stored run's traces (seed 001's schema) and single-turn results as JSON.
    #[command(
        after_help = "Examples:\n  bakeoff tools export last\n  bakeoff tools export 12 --out traces.json"
    )]
    Export {
        /// Run id, `last`, or a tag.
        run: String,
        /// Write to this file instead of stdout (`-o`/`--output` still work).
        #[arg(long = "out", short_alias = 'o', alias = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the built-in agentic tasks.
    #[command(after_help = "Examples:\n  bakeoff tools tasks\n  bakeoff tools tasks --json")]
    Tasks {
        #[arg(long)]
        json: bool,
    },
}

impl ToolsCommand {
    /// Where the llama.cpp tools are, for the subcommands that may launch a server.
    pub fn build(&self) -> Option<&EngineArgs> {
        match self {
            ToolsCommand::Run(args) => Some(&args.target.build),
            ToolsCommand::Bfcl(args) => Some(&args.target.build),
            ToolsCommand::RenderDiff(args) => Some(&args.target.build),
            _ => None,
        }
    }
}

/// Which engine the arms talk to.
#[derive(Args, Debug, Clone)]
pub struct ToolTarget {
    /// GGUF model: bakeoff launches llama-server (--jinja, one slot) on it.
    #[arg(
        long,
        short = 'm',
        value_name = "FILE",
        conflicts_with = "url",
        required_unless_present = "url"
    )]
    pub model: Option<PathBuf>,
    /// Attach to a running llama-server, Ollama or OpenAI-compatible server instead.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Model name sent in requests (required for Ollama).
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
    /// Jinja chat template the native arm renders (default: the template llama-server reports).
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Native tool-call format [default: detected from the template] (`--format` still works).
    #[arg(long, alias = "format", value_enum, value_name = "FORMAT")]
    pub tool_format: Option<ToolFormatArg>,
    /// Context size: -c of a launched llama-server, options.num_ctx for Ollama.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub ctx: u32,
    /// Seconds to wait for a launched server to become healthy.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub health_timeout: u64,
    #[command(flatten)]
    pub timeouts: crate::cli::TimeoutArgs,
    #[command(flatten)]
    pub build: EngineArgs,
    /// Flags passed to a launched llama-server as they are (after `--`).
    #[arg(last = true, value_name = "ENGINE FLAGS")]
    pub engine_args: Vec<String>,
}

/// How turns are sampled and whether a call is forced.
#[derive(Args, Debug, Clone)]
pub struct ToolSampling {
    /// Arms to run: json, native (comma list).
    #[arg(long, default_value = "json,native", value_name = "ARMS", value_parser = crate::cli_values::arm_list)]
    pub arms: String,
    /// Force a tool call on no step, the first step, or every step: a grammar on the native arm, tool_choice "required" on the json arm.
    #[arg(long, value_enum, default_value_t, value_name = "WHEN")]
    pub force_tools: ForceToolsArg,
    /// Most tokens generated per turn.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_tokens: u32,
    /// Sampling seed (temperature is 0).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A third arm against another server (another engine, config or model).
    #[arg(long, value_name = "URL")]
    pub reference: Option<String>,
    /// Path of the reference arm.
    #[arg(long, value_enum, default_value_t = ArmPath::Json, value_name = "PATH")]
    pub reference_arm: ArmPath,
    /// Model name for the reference server's requests.
    #[arg(long, value_name = "NAME")]
    pub reference_model: Option<String>,
    /// Tag for the run.
    #[arg(long)]
    pub tag: Option<String>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ToolsRunArgs {
    /// Tasks: built-in names (movies, research, memory, long) or task TOML files, comma-separated.
    #[arg(long, default_value = "movies", value_name = "TASKS")]
    pub task: String,
    /// Override every task's step budget.
    #[arg(long, value_name = "N")]
    pub budget: Option<u32>,
    /// Testing aid: the forcing grammar begins with a <think> block, to check thinking is never replayed.
    #[arg(long)]
    pub force_thinking: bool,
    #[command(flatten)]
    pub sampling: ToolSampling,
    #[command(flatten)]
    pub target: ToolTarget,
}

#[derive(Args, Debug)]
pub struct ToolsBfclArgs {
    /// Only these categories (simple, multiple, parallel, irrelevance), comma-separated.
    #[arg(long, value_name = "CATEGORIES")]
    pub category: Option<String>,
    /// Only these items (ids as listed by --json output), comma-separated.
    #[arg(long, value_name = "IDS")]
    pub item: Option<String>,
    #[command(flatten)]
    pub sampling: ToolSampling,
    #[command(flatten)]
    pub target: ToolTarget,
}

#[derive(Args, Debug)]
pub struct RenderDiffArgs {
    /// Task whose conversations are rendered (built-in name or TOML file).
    #[arg(long, default_value = "movies", value_name = "TASK")]
    pub task: String,
    /// Print the comparisons as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: ToolTarget,
}
