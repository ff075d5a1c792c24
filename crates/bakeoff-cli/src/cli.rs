//! Command-line arguments. Only clap types live here; commands resolve them into library settings.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
    #[arg(long, global = true, value_name = "PATH", env = "BAKEOFF_DB")]
    pub db: Option<PathBuf>,
    /// A llama.cpp build to use: a directory of its tools or the path of one tool.
    #[arg(long, global = true, value_name = "PATH")]
    pub engine_path: Option<PathBuf>,
    /// Print only results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check engines, models and the machine; print the fingerprint stored with every run.
    #[command(
        after_help = "Examples:\n  bakeoff doctor\n  bakeoff doctor --json\n  bakeoff doctor --engine-path ~/src/llama.cpp/build/bin"
    )]
    Doctor(DoctorArgs),
    /// Start llama-server supervised (or attach to a running server) and keep it up until Ctrl-C.
    #[command(
        after_help = "Examples:\n  bakeoff serve --model SmolLM2-135M-Instruct.Q4_1.gguf\n  bakeoff serve --model m.gguf --port 8080 -- -c 8192 -fa on -ctk q8_0 -ctv q8_0\n  bakeoff serve --url http://127.0.0.1:11434   # attach: detect the server, manage nothing"
    )]
    Serve(ServeArgs),
    /// List and show stored runs.
    #[command(
        subcommand,
        after_help = "Examples:\n  bakeoff runs list\n  bakeoff runs show last --json"
    )]
    Runs(RunsCommand),
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// GGUF model file to serve (a file name alone is looked up in the model cache).
    #[arg(
        long,
        short = 'm',
        value_name = "FILE",
        required_unless_present = "url"
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
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub health_timeout: u64,
    /// Print the ready line as JSON.
    #[arg(long)]
    pub json: bool,
    /// Tag for the run.
    #[arg(long)]
    pub tag: Option<String>,
    /// Flags passed to llama-server as they are (after `--`).
    #[arg(last = true, value_name = "ENGINE FLAGS")]
    pub engine_args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// List the newest runs.
    #[command(after_help = "Examples:\n  bakeoff runs list\n  bakeoff runs list --limit 5 --json")]
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one run: its trials, samples, engine logs and system fingerprint.
    #[command(
        after_help = "Examples:\n  bakeoff runs show 3\n  bakeoff runs show last --json\n  bakeoff runs show baseline   # newest run tagged 'baseline'"
    )]
    Show {
        /// Run id, `last`, or a tag.
        run: String,
        #[arg(long)]
        json: bool,
    },
}
