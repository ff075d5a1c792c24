//! `bakeoff model inspect` and `bakeoff plan`: what a GGUF file says, and what it will need.

use crate::cli::{Global, ModelCommand, PlanArgs, SynthArgs};
use crate::cli_values::ArchArg;
use crate::printer::Printer;
use bakeoff::chat::{ChatTemplate, Message, ToolCallFormat};
use bakeoff::domain::units::{human_bytes, parse_bytes};
use bakeoff::engines::process::Supervised;
use bakeoff::formats::gguf::{GgmlType, GgufFile};
use bakeoff::measure::matrix::checked;
use bakeoff::model::plan::{KvSettings, MemoryPlan, TABLE_TYPES};
use bakeoff::model::split::{plan_devices, DevicePlan, Split};
use bakeoff::model::synth::{self as synthesis, SynthReport, SynthShape, SynthSpec};
use bakeoff::model::ModelFacts;
use bakeoff::report::plan::{self as report_plan, PlanRequest};
use bakeoff::Error;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

fn load(file: &std::path::Path) -> bakeoff::Result<(std::path::PathBuf, ModelFacts)> {
    let path = super::resolve_model(file);
    bakeoff::model::check_file(&path)?;
    let gguf = GgufFile::open(&path)?;
    Ok((path, ModelFacts::from_gguf(&gguf)))
}

pub fn run(global: &Global, command: ModelCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Inspect { file, json } => inspect(&file, json),
        ModelCommand::Synth(args) => synth(global, &args, printer),
        ModelCommand::Template(args) => template(&args),
        ModelCommand::Vocab { file, out } => {
            let bytes = bakeoff::model::synth::extract_vocab(&super::resolve_model(&file), &out)?;
            println!(
                "{}: tokenizer of {} ({})",
                out.display(),
                file.display(),
                human_bytes(bytes as u64)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `bakeoff model template`: the prompt the model's chat template makes of a conversation.
fn template(args: &crate::cli::TemplateArgs) -> anyhow::Result<ExitCode> {
    let gguf = GgufFile::open(&super::resolve_model(&args.file))?;
    let mut template = ChatTemplate::from_gguf(&gguf)?;
    if let Some(path) = &args.template {
        template.source = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    }
    let (messages, tools, extra) = conversation(args)?;
    let prompt = template.render(&messages, &tools, !args.no_generation_prompt, &extra);
    print_prompt(&template, &prompt.map_err(Error::from)?, args.json)
}

/// The messages (one "Hello!" by default), tools and extra template variables.
fn conversation(args: &crate::cli::TemplateArgs) -> bakeoff::Result<Conversation> {
    let messages = match &args.messages {
        Some(path) => read_json_file(path, "a JSON array of messages", |t| {
            serde_json::from_str(t)
        })?,
        None => vec![Message::user("Hello!")],
    };
    let tools = match &args.tools {
        Some(path) => read_json_file(path, "a JSON array of tool definitions", |t| {
            serde_json::from_str(t)
        })?,
        None => Vec::new(),
    };
    let extra = args
        .vars
        .iter()
        .map(|v| parse_var(v))
        .collect::<bakeoff::Result<_>>()?;
    Ok((messages, tools, extra))
}

type Conversation = (
    Vec<Message>,
    Vec<serde_json::Value>,
    serde_json::Map<String, serde_json::Value>,
);

fn print_prompt(template: &ChatTemplate, prompt: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    if !as_json {
        print!("{prompt}");
        return Ok(ExitCode::SUCCESS);
    }
    let format = ToolCallFormat::detect(&template.source).map(ToolCallFormat::name);
    let out = json!({"prompt": prompt, "tool_call_format": format, "bos_token": template.bos_token, "eos_token": template.eos_token});
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// `path` parsed by `parse`; a parse error names the file and says what it should hold.
fn read_json_file<T>(path: &Path, what: &str, parse: JsonParser<T>) -> bakeoff::Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let hint = format!("the file should hold {what}");
    parse(&text).map_err(|e| Error::input(format!("{}: {e}", path.display())).with_hint(hint))
}

type JsonParser<T> = fn(&str) -> serde_json::Result<T>;

/// `NAME=JSON`; a value that is not JSON is taken as a string.
fn parse_var(var: &str) -> bakeoff::Result<(String, serde_json::Value)> {
    let Some((name, value)) = var.split_once('=').filter(|(name, _)| !name.is_empty()) else {
        return Err(Error::input(format!(
            "--var {var}: expected NAME=JSON, e.g. enable_thinking=false"
        )));
    };
    let value = serde_json::from_str(value)
        .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((name.to_string(), value))
}

fn synth(global: &Global, args: &SynthArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let unquantized = match &args.quantize {
        Some(_) => args.out.with_extension("f16.gguf"),
        None => args.out.clone(),
    };
    let spec = SynthSpec {
        shape: synth_shape(args)?,
        out: unquantized.clone(),
        dtype: args.dtype.ggml_type(),
        seed: args.seed,
    };
    let report = write_synth(&spec, printer)?;
    let mut final_path = report.out.clone();
    if let Some(kind) = &args.quantize {
        quantize(global, &unquantized, &args.out, kind, printer)?;
        let _ = std::fs::remove_file(&unquantized);
        final_path = args.out.clone();
    }
    print_synth(args, &final_path, &report)
}

/// `--like FILE`, or a llama shape from its dimensions.
fn synth_shape(args: &SynthArgs) -> bakeoff::Result<SynthShape> {
    match (&args.like, &args.arch) {
        (Some(like), _) => Ok(SynthShape::Like(super::resolve_model(like))),
        (None, Some(ArchArg::Llama)) => Ok(llama_shape(args)),
        (None, None) => Err(Error::input(
            "say what to synthesise: --like FILE, or --arch llama with its dimensions",
        )),
    }
}

fn llama_shape(args: &SynthArgs) -> SynthShape {
    let vocab_from = args.vocab_from.as_deref().unwrap_or(Path::new(""));
    SynthShape::Llama {
        layers: args.layers.unwrap_or(0),
        embd: args.embd.unwrap_or(0),
        heads: args.heads.unwrap_or(0),
        kv_heads: args.kv_heads.or(args.heads).unwrap_or(0),
        ff: args.ff.unwrap_or(0),
        vocab_from: super::resolve_model(vocab_from),
        context: args.ctx,
    }
}

/// Write the file, reporting every tenth of it.
fn write_synth(spec: &SynthSpec, printer: Printer) -> bakeoff::Result<SynthReport> {
    let mut last_report = 0;
    let out = spec.out.display();
    synthesis::synth(spec, &mut |done, total| {
        let pct = done * 100 / total.max(1);
        if pct >= last_report + 10 || done == total {
            last_report = pct;
            let size = human_bytes(total);
            printer.status(format!("writing {out}: {pct}% of {size}"));
        }
    })
}

/// `llama-quantize FROM TO KIND`, supervised, its log beside the output.
fn quantize(
    global: &Global,
    from: &Path,
    to: &Path,
    kind: &str,
    printer: Printer,
) -> bakeoff::Result<()> {
    let engine_path = global.engine_path.as_deref();
    let (_, quantize) = bakeoff::engines::discovery::find_tool(engine_path, "llama-quantize")?;
    let log = to.with_extension("quantize.log");
    let (tool, log_text) = (quantize.display(), log.display());
    printer.status(format!(
        "quantizing to {kind} with {tool} (log: {log_text})"
    ));
    let argv = [from, to].map(|p| p.display().to_string()).to_vec();
    let argv = [argv, vec![kind.to_string()]].concat();
    let mut child = Supervised::spawn(&quantize, &argv, &log)?;
    let status = wait_for(&mut child);
    if status.success() {
        return Ok(());
    }
    let reason = quantize_failure(&log);
    Err(
        Error::engine(format!("llama-quantize {kind} failed ({status}): {reason}"))
            .with_hint(format!("full log: {}", log.display())),
    )
}

/// Why llama-quantize failed, from its log. Its last line only says that it failed
/// (`failed to quantize model from '…'`); the cause is the exception it logged before
/// (`llama_model_quantize: failed to quantize: basic_ios::clear: iostream error`).
fn quantize_failure(log: &Path) -> String {
    let text = std::fs::read(log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let cause = text
        .lines()
        .map(str::trim)
        .find(|l| l.contains("failed to quantize:"));
    cause
        .map(str::to_string)
        .or_else(|| bakeoff::engines::fatal::first_error_in(&text))
        .or_else(|| {
            text.lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn wait_for(child: &mut Supervised) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait() {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn print_synth(args: &SynthArgs, path: &Path, report: &SynthReport) -> anyhow::Result<ExitCode> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "out": path, "architecture": report.architecture, "tensors": report.tensors, "parameters": report.parameters, "bytes": size, "dtype": args.dtype.name(), "quantized": args.quantize })
        );
    } else {
        println!(
            "{}: {} ({} tensors, {:.2} M parameters, {})",
            path.display(),
            report.architecture,
            report.tensors,
            report.parameters as f64 / 1e6,
            human_bytes(size)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let (path, facts) = load(file)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&facts)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", path.display());
    facts.describe().iter().for_each(|line| println!("{line}"));
    Ok(ExitCode::SUCCESS)
}

fn cache_type(flag: &str, name: &str) -> bakeoff::Result<GgmlType> {
    GgmlType::from_name(name).ok_or_else(|| {
        Error::input(format!("{flag} {name}: unknown cache type"))
            .with_hint(format!("one of {}", TABLE_TYPES.join(", ")))
    })
}

pub fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let (path, facts) = load(&args.file)?;
    let settings = kv_settings(args, &facts)?;
    let budget = args.mem.as_deref().map(memory_budget).transpose()?;
    let bandwidth = args.bandwidth.map(|gbs| gbs * 1e9);
    let flash = !args.no_flash_attn;
    let planned = MemoryPlan::of(&facts, &settings, flash, budget, args.depth, bandwidth)
        .ok_or_else(|| unplannable(&path, args))?;
    let request = PlanRequest {
        path: &path,
        parallel: args.parallel,
        ctk: &args.ctk,
        ctv: &args.ctv,
        bandwidth_gbs: args.bandwidth,
    };
    let devices = device_plan(args, &facts, &settings, flash)?;
    if args.json {
        let mut doc = report_plan::plan_json(&request, &planned);
        if let Some(devices) = &devices {
            doc["devices"] = serde_json::to_value(devices)?;
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", report_plan::plan_text(&request, &planned));
        if let Some(devices) = &devices {
            print!("\n{}", report_plan::devices_text(devices));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each GPU's share with `--gpus` (and `-sm`, `-ts`, `-mg`, checked as bench checks them).
fn device_plan(
    args: &PlanArgs,
    facts: &ModelFacts,
    settings: &KvSettings,
    flash: bool,
) -> bakeoff::Result<Option<DevicePlan>> {
    let Some(gpus) = &args.gpus else {
        return Ok(None);
    };
    let memory = gpus
        .split(',')
        .map(|size| {
            parse_bytes(size.trim()).ok_or_else(|| {
                Error::input(format!("--gpus {gpus}: '{size}' is not a size such as 24G"))
            })
        })
        .collect::<bakeoff::Result<Vec<u64>>>()?;
    let mut flags = std::collections::BTreeMap::new();
    for (flag, value) in [
        ("-sm", &args.split_mode),
        ("-ts", &args.tensor_split),
        ("-mg", &args.main_gpu),
    ] {
        if let Some(value) = value {
            // No sweep here: llama.cpp's own comma spelling of a ratio is accepted too.
            flags.insert(flag.to_string(), checked(flag, &value.replace(',', "/"))?);
        }
    }
    let split = Split::of_flags(&flags).unwrap_or_default();
    Ok(plan_devices(facts, settings, flash, &split, &memory))
}

fn kv_settings(args: &PlanArgs, facts: &ModelFacts) -> bakeoff::Result<KvSettings> {
    Ok(KvSettings {
        ctx: args.ctx.or(facts.context_length).unwrap_or(4096),
        parallel: args.parallel,
        type_k: cache_type("--ctk", &args.ctk)?,
        type_v: cache_type("--ctv", &args.ctv)?,
        unified: args.unified,
        n_ubatch: args.ubatch,
        swa_full: args.swa_full,
    })
}

fn memory_budget(text: &str) -> bakeoff::Result<u64> {
    parse_bytes(text).ok_or_else(|| {
        Error::input(format!(
            "--mem {text}: expected a size such as 24G or 512MiB"
        ))
    })
}

fn unplannable(path: &Path, args: &PlanArgs) -> Error {
    let (path, ctk, ctv) = (path.display(), &args.ctk, &args.ctv);
    Error::input(format!(
        "{path}: a head dimension is not a multiple of the {ctk}/{ctv} block size"
    ))
}
