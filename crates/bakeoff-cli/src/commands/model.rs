//! `bakeoff model inspect` and `bakeoff plan`: what a GGUF file says, and what it will need.

use crate::cli::{ModelCommand, PlanArgs};
use crate::cli_values::ArchArg;
use bakeoff::domain::units::{human_bytes, parse_bytes};
use bakeoff::formats::gguf::{GgmlType, GgufFile};
use bakeoff::model::plan::{self, KvSettings, TABLE_TYPES};
use bakeoff::model::ModelFacts;
use bakeoff::report::plan::{kv_types_table, KvTypeRow};
use bakeoff::Error;
use serde_json::json;
use std::process::ExitCode;

fn load(file: &std::path::Path) -> bakeoff::Result<(std::path::PathBuf, ModelFacts)> {
    let path = super::resolve_model(file);
    let gguf = GgufFile::open(&path)?;
    Ok((path, ModelFacts::from_gguf(&gguf)))
}

pub fn run(
    global: &crate::cli::Global,
    command: ModelCommand,
    printer: crate::printer::Printer,
) -> anyhow::Result<ExitCode> {
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
    use bakeoff::chat::{ChatTemplate, Message, ToolCallFormat};
    let gguf = GgufFile::open(&super::resolve_model(&args.file))?;
    let mut template = ChatTemplate::from_gguf(&gguf)?;
    if let Some(path) = &args.template {
        template.source = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    }
    let messages: Vec<Message> = match &args.messages {
        Some(path) => read_json_file(path, "a JSON array of messages", |text| {
            serde_json::from_str(text)
        })?,
        None => vec![Message::user("Hello!")],
    };
    let tools: Vec<serde_json::Value> = match &args.tools {
        Some(path) => read_json_file(path, "a JSON array of tool definitions", |text| {
            serde_json::from_str(text)
        })?,
        None => Vec::new(),
    };
    let mut extra = serde_json::Map::new();
    for var in &args.vars {
        let (name, value) = parse_var(var)?;
        extra.insert(name, value);
    }
    let prompt = template
        .render(&messages, &tools, !args.no_generation_prompt, &extra)
        .map_err(Error::from)?;
    if args.json {
        let format = ToolCallFormat::detect(&template.source).map(ToolCallFormat::name);
        let out = json!({"prompt": prompt, "tool_call_format": format, "bos_token": template.bos_token, "eos_token": template.eos_token});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{prompt}");
    }
    Ok(ExitCode::SUCCESS)
}

fn read_json_file<T>(
    path: &std::path::Path,
    what: &str,
    parse: impl FnOnce(&str) -> serde_json::Result<T>,
) -> bakeoff::Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text).map_err(|e| {
        Error::input(format!("{}: {e}", path.display()))
            .with_hint(format!("the file should hold {what}"))
    })
}

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

fn synth(
    global: &crate::cli::Global,
    args: &crate::cli::SynthArgs,
    printer: crate::printer::Printer,
) -> anyhow::Result<ExitCode> {
    use bakeoff::model::synth::{synth, SynthShape, SynthSpec};
    let shape = match (&args.like, &args.arch) {
        (Some(like), _) => SynthShape::Like(super::resolve_model(like)),
        (None, Some(ArchArg::Llama)) => SynthShape::Llama {
            layers: args.layers.unwrap_or(0),
            embd: args.embd.unwrap_or(0),
            heads: args.heads.unwrap_or(0),
            kv_heads: args.kv_heads.or(args.heads).unwrap_or(0),
            ff: args.ff.unwrap_or(0),
            vocab_from: super::resolve_model(
                args.vocab_from
                    .as_deref()
                    .unwrap_or(std::path::Path::new("")),
            ),
            context: args.ctx,
        },
        (None, None) => {
            return Err(Error::input(
                "say what to synthesise: --like FILE, or --arch llama with its dimensions",
            )
            .into())
        }
    };
    let dtype = GgmlType::from_name(args.dtype.name())
        .ok_or_else(|| Error::input(format!("--dtype {}: unknown type", args.dtype.name())))?;
    let unquantized = match &args.quantize {
        Some(_) => args.out.with_extension("f16.gguf"),
        None => args.out.clone(),
    };
    let spec = SynthSpec {
        shape,
        out: unquantized.clone(),
        dtype,
        seed: args.seed,
    };
    let mut last_report = 0;
    let report = synth(&spec, &mut |done, total| {
        let pct = done * 100 / total.max(1);
        if pct >= last_report + 10 || done == total {
            last_report = pct;
            printer.status(format!(
                "writing {}: {pct}% of {}",
                unquantized.display(),
                human_bytes(total)
            ));
        }
    })?;
    let mut final_path = report.out.clone();
    if let Some(kind) = &args.quantize {
        let (_, quantize) = bakeoff::engines::discovery::find_tool(
            global.engine_path.as_deref(),
            "llama-quantize",
        )?;
        let log = args.out.with_extension("quantize.log");
        printer.status(format!(
            "quantizing to {kind} with {} (log: {})",
            quantize.display(),
            log.display()
        ));
        let argv = vec![
            unquantized.display().to_string(),
            args.out.display().to_string(),
            kind.clone(),
        ];
        let mut child = bakeoff::engines::process::Supervised::spawn(&quantize, &argv, &log)?;
        let status = loop {
            if let Some(status) = child.try_wait() {
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        if !status.success() {
            let reason = bakeoff::engines::fatal::tail(&log, 1)
                .pop()
                .unwrap_or_default();
            return Err(Error::engine(format!(
                "llama-quantize {kind} failed ({status}): {reason}"
            ))
            .with_hint(format!("full log: {}", log.display()))
            .into());
        }
        let _ = std::fs::remove_file(&unquantized);
        final_path = args.out.clone();
    }
    let size = std::fs::metadata(&final_path).map(|m| m.len()).unwrap_or(0);
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "out": final_path, "architecture": report.architecture, "tensors": report.tensors, "parameters": report.parameters, "bytes": size, "quantized": args.quantize })
        );
    } else {
        println!(
            "{}: {} ({} tensors, {:.2} M parameters, {})",
            final_path.display(),
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
    let f = &facts;
    println!("{}", path.display());
    println!(
        "  architecture   {}{}",
        f.architecture,
        f.name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    let active = if f.active_parameters != f.parameters {
        format!(
            ", {:.2} M active per token",
            f.active_parameters as f64 / 1e6
        )
    } else {
        String::new()
    };
    println!(
        "  parameters     {:.2} M{active}",
        f.parameters as f64 / 1e6
    );
    println!(
        "  file size      {} (tensor data {})",
        human_bytes(f.file_size),
        human_bytes(f.tensor_bytes)
    );
    println!(
        "  context length {}",
        f.context_length
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into())
    );
    println!(
        "  by type        {}",
        f.bytes_by_type
            .iter()
            .map(|(t, b)| format!("{t} {}", human_bytes(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  by role        {}",
        f.bytes_by_role
            .iter()
            .map(|(r, b)| format!("{r} {}", human_bytes(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let first = f.layers.first();
    let kv_heads: std::collections::BTreeSet<u64> = f.layers.iter().map(|l| l.n_head_kv).collect();
    println!(
        "  attention      {} layers, {} heads, KV heads {:?}, head dims K {} / V {}",
        f.n_layer,
        first.map(|l| l.n_head).unwrap_or(0),
        kv_heads,
        first.map(|l| l.key_length).unwrap_or(0),
        first.map(|l| l.value_length).unwrap_or(0)
    );
    if let Some(window) = f.sliding_window {
        let pattern: String = f
            .layers
            .iter()
            .map(|l| if l.sliding_window { 'S' } else { 'F' })
            .collect();
        println!("  sliding window {window} tokens; layers (S=windowed, F=full): {pattern}");
    }
    if f.shared_kv_layers > 0 {
        println!(
            "  shared KV      last {} layers reuse earlier layers' KV",
            f.shared_kv_layers
        );
    }
    if let Some(rank) = f.kv_lora_rank {
        println!(
            "  MLA            kv_lora_rank {rank}, q_lora_rank {}",
            f.q_lora_rank
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    if let (Some(n), Some(k)) = (f.expert_count, f.expert_used_count) {
        println!("  experts        {k} of {n} per token");
    }
    let recurrent = f.layers.iter().filter(|l| l.recurrent).count();
    if recurrent > 0 || f.ssm_state_size.is_some() {
        println!(
            "  recurrent      {recurrent} SSM layers (state size {})",
            f.ssm_state_size.unwrap_or(0)
        );
    }
    println!(
        "  tokenizer      {} ({} tokens)",
        f.tokenizer_model.as_deref().unwrap_or("?"),
        f.n_vocab
            .map(|v| v.to_string())
            .unwrap_or_else(|| "?".into())
    );
    println!(
        "  chat template  {}",
        f.chat_template_sha256
            .as_ref()
            .map(|h| format!("present (sha256 {h}…)"))
            .unwrap_or_else(|| "none".into())
    );
    if let Some(count) = f.split_count {
        println!("  split          {count} files");
    }
    for note in &f.notes {
        println!("  note: {note}");
    }
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
    let ctx = args.ctx.or(facts.context_length).unwrap_or(4096);
    let settings = KvSettings {
        ctx,
        parallel: args.parallel,
        type_k: cache_type("--ctk", &args.ctk)?,
        type_v: cache_type("--ctv", &args.ctv)?,
        unified: args.unified,
        n_ubatch: args.ubatch,
        swa_full: args.swa_full,
    };
    let flash = !args.no_flash_attn;
    let kv = plan::plan_kv(&facts, &settings).ok_or_else(|| {
        Error::input(format!(
            "{}: a head dimension is not a multiple of the {}/{} block size",
            path.display(),
            args.ctk,
            args.ctv
        ))
    })?;
    let budget = args
        .mem
        .as_deref()
        .map(|m| {
            parse_bytes(m).ok_or_else(|| {
                Error::input(format!("--mem {m}: expected a size such as 24G or 512MiB"))
            })
        })
        .transpose()?;
    let compute = plan::compute_buffer_estimate(&facts, ctx, args.ubatch, flash);
    let needed = facts.tensor_bytes + kv.total_bytes + compute;
    let largest = budget.and_then(|b| plan::largest_context(&facts, &settings, b, flash));
    let table: Vec<KvTypeRow> = TABLE_TYPES
        .iter()
        .filter_map(|t| {
            let ty = GgmlType::from_name(t)?;
            let typed = KvSettings {
                type_k: ty,
                type_v: ty,
                ..settings.clone()
            };
            let p = plan::plan_kv(&facts, &typed)?;
            let largest_context =
                budget.and_then(|b| plan::largest_context(&facts, &typed, b, flash));
            Some(KvTypeRow {
                kind: t.to_string(),
                bytes_per_token: p.bytes_per_token,
                total_bytes: p.total_bytes,
                largest_context,
            })
        })
        .collect();
    let bandwidth = args.bandwidth.map(|gbs| gbs * 1e9);
    let roofline =
        bandwidth.map(|bw| plan::roofline_tg(&facts, kv.bytes_per_token, args.depth, bw));
    if args.json {
        let doc = json!({
            "model": path, "ctx": kv.ctx, "parallel": args.parallel, "ctk": args.ctk, "ctv": args.ctv,
            "kv": kv, "weights_bytes": facts.tensor_bytes, "compute_buffer_estimate": compute, "total_bytes": needed,
            "budget_bytes": budget, "fits": budget.map(|b| needed <= b), "largest_context": largest,
            "bytes_read_per_token": facts.bytes_read_per_token() + kv.bytes_per_token * args.depth,
            "roofline_tg": roofline, "depth": args.depth, "table": table,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} at ctx {} × {} sequence(s), K {} / V {}",
        path.display(),
        kv.ctx,
        args.parallel,
        args.ctk,
        args.ctv
    );
    println!(
        "  KV per token   {} (while inside every window)",
        human_bytes(kv.bytes_per_token)
    );
    for c in &kv.caches {
        println!(
            "  {:<4} cache     {} cells × {} stream(s), {} layers: K {} + V {} = {}",
            c.kind,
            c.cells,
            c.streams,
            c.layers,
            human_bytes(c.k_bytes),
            human_bytes(c.v_bytes),
            human_bytes(c.bytes())
        );
    }
    if kv.recurrent_bytes > 0 {
        println!("  recurrent      {}", human_bytes(kv.recurrent_bytes));
    }
    println!("  weights        {}", human_bytes(facts.tensor_bytes));
    println!("  compute (est.) {}", human_bytes(compute));
    println!("  total          {}", human_bytes(needed));
    if let Some(b) = budget {
        let verdict = if needed <= b { "fits" } else { "does NOT fit" };
        println!(
            "  budget         {} → {verdict}; largest context that fits: {}",
            human_bytes(b),
            largest
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into())
        );
    }
    if let Some(r) = roofline {
        println!(
            "  roofline       {:.1} t/s upper bound for tg at depth {} ({} read per token at {:.1} GB/s)",
            r,
            args.depth,
            human_bytes(facts.bytes_read_per_token() + kv.bytes_per_token * args.depth),
            args.bandwidth.unwrap_or(0.0)
        );
    }
    let kv_types = kv_types_table(&table, kv.ctx, budget.is_some());
    print!("\n{}", kv_types.markdown());
    Ok(ExitCode::SUCCESS)
}
