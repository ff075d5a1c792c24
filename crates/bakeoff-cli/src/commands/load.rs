//! `bakeoff load`: resolve the shapes and workload, launch or attach to a server, run the steps
//! under the machine-wide lock, print one row per step.

use crate::cli::{Global, LoadArgs};
use crate::printer::Printer;
use bakeoff::domain::EngineConfig;
use bakeoff::engines::http::Http;
use bakeoff::engines::llama_server::{LlamaServer, ServerSpec};
use bakeoff::engines::{attach, discovery, EngineKind};
use bakeoff::measure::load::executor::{Shape, StepLimits};
use bakeoff::measure::load::metrics::{parse_duration_ms, Slo};
use bakeoff::measure::load::selftest;
use bakeoff::measure::load::workload::{Generator, LengthDist, WorkloadSpec};
use bakeoff::measure::load::{LoadEvent, LoadPlan, LoadRunner};
use bakeoff::measure::matrix::{parse_values, PromptSet};
use bakeoff::measure::prompts::TokenSource;
use bakeoff::report::table::Format;
use bakeoff::system::{lock, paths, Fingerprint, MeasureLock};
use bakeoff::Error;
use std::process::ExitCode;
use std::time::Duration;

fn parse_duration(flag: &str, text: &str) -> bakeoff::Result<Duration> {
    parse_duration_ms(text)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .ok_or_else(|| {
            Error::input(format!(
                "{flag} {text}: expected a duration such as 30s, 500ms or 2m"
            ))
        })
}

fn shapes(args: &LoadArgs) -> bakeoff::Result<Vec<Shape>> {
    let mut shapes = Vec::new();
    if let Some(list) = &args.concurrency {
        for v in parse_values("--concurrency", list)? {
            let n: usize = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                Error::input(format!(
                    "--concurrency: '{v}' is not a positive whole number"
                ))
            })?;
            shapes.push(Shape::Concurrency(n));
        }
    }
    if let Some(list) = &args.rate {
        for v in list.split(',').map(str::trim) {
            let rate: f64 =
                v.parse().ok().filter(|r: &f64| *r > 0.0).ok_or_else(|| {
                    Error::input(format!("--rate: '{v}' is not a positive number"))
                })?;
            shapes.push(Shape::Rate {
                rate,
                burstiness: args.burstiness,
            });
        }
    }
    if args.max_throughput {
        shapes.push(Shape::MaxThroughput);
    }
    if shapes.is_empty() && args.sweep.is_none() {
        shapes = vec![
            Shape::Concurrency(1),
            Shape::Concurrency(2),
            Shape::Concurrency(4),
        ];
    }
    if let Some(k) = args.burstiness.filter(|k| *k <= 0.0) {
        return Err(Error::input(format!("--burstiness {k}: must be above 0")));
    }
    Ok(shapes)
}

fn plan(args: &LoadArgs) -> bakeoff::Result<LoadPlan> {
    let input = LengthDist::parse("--input", &args.input)?;
    let output = LengthDist::parse("--output-len", &args.output_len)?;
    let workload = match (&args.dataset, args.turns) {
        (Some(path), _) => WorkloadSpec::Jsonl {
            path: path.clone(),
            output,
        },
        (None, Some(turns)) if turns > 0 => WorkloadSpec::MultiTurn {
            turns,
            shared_prefix: args.shared_prefix,
            input,
            output,
        },
        _ => WorkloadSpec::Synthetic { input, output },
    };
    let duration = args
        .duration
        .as_deref()
        .map(|d| parse_duration("--duration", d))
        .transpose()?;
    let requests = args
        .requests
        .or(if duration.is_none() { Some(32) } else { None });
    let slo = args
        .slo
        .as_deref()
        .map(Slo::parse)
        .transpose()
        .map_err(Error::input)?
        .unwrap_or_default();
    Ok(LoadPlan {
        shapes: shapes(args)?,
        sweep_rates: args.sweep,
        workload,
        limits: StepLimits {
            duration,
            requests,
            warmup: parse_duration("--warmup", &args.warmup)?,
            cooldown: parse_duration("--cooldown", &args.cooldown)?,
            max_inflight: args.max_inflight.max(1),
            stop_on_saturation: !args.no_stop_on_saturation,
        },
        seed: args.seed,
        slo,
    })
}

/// The most concurrent requests any step can have (sizes the server's slots).
fn peak_concurrency(plan: &LoadPlan) -> usize {
    plan.shapes
        .iter()
        .map(|s| match s {
            Shape::Concurrency(n) => *n,
            _ => 4,
        })
        .max()
        .unwrap_or(4)
        .max(if plan.sweep_rates.is_some() { 4 } else { 1 })
}

pub fn run(global: &Global, args: LoadArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let format = Format::from(args.format);
    // The scripted endpoint measures nothing itself: it takes no lock (the clients measuring it do).
    if args.serve_scripted {
        let endpoint = selftest::ScriptedEndpoint::start_on(
            args.port.unwrap_or(0),
            Duration::from_micros(args.pace_us),
        )
        .map_err(|e| {
            Error::engine(format!(
                "cannot listen on 127.0.0.1:{}: {e}",
                args.port.unwrap_or(0)
            ))
        })?;
        println!("ready {}", endpoint.url);
        printer.status("serving the scripted endpoint until Ctrl-C");
        while bakeoff::engines::process::interrupted().is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = MeasureLock::acquire(&lock::default_path(), &super::command_line())?;
    if args.self_test {
        return self_test(global, printer);
    }
    let plan = plan(&args)?;
    let store = super::open_store(global)?;
    let system_id = store.system_id(&Fingerprint::collect())?;
    let ceiling = store.latest_system_measurement(system_id, "client_ceiling_tps")?;
    let params = serde_json::json!({ "plan": plan, "url": args.url, "model": args.model, "engine_args": args.engine_args });
    let run_id = store.begin_run(
        "load",
        &super::command_line(),
        system_id,
        args.tag.as_deref(),
        &params,
    )?;
    let mut server = None;
    let (http, kind, engine_id, model_id, model_name) = match (&args.url, &args.model) {
        (Some(url), _) => {
            let detected = attach::detect(url)?;
            let engine_id = store.engine_id(
                detected.kind.as_str(),
                url,
                None,
                detected.version.as_deref(),
            )?;
            (
                Http::new(&detected.url, Duration::from_secs(600)),
                detected.kind,
                Some(engine_id),
                None,
                detected.models.first().cloned(),
            )
        }
        (None, Some(model)) => {
            let model = super::resolve_model(model);
            let (install, binary) =
                discovery::find_tool(global.engine_path.as_deref(), "llama-server")?;
            let model_row = store.model(&model)?;
            let engine_id = store.engine_id(
                "llama-server",
                &binary.display().to_string(),
                Some(&install),
                None,
            )?;
            let slots = peak_concurrency(&plan);
            let ctx =
                (slots as u32 * (plan.workload.max_tokens_per_request() + 64)).div_ceil(256) * 256;
            let mut engine_args = vec![
                "--metrics".to_string(),
                "-np".into(),
                slots.to_string(),
                "-c".into(),
                ctx.to_string(),
            ];
            engine_args.extend(args.engine_args.iter().cloned());
            let log_path = paths::run_dir(store.path(), run_id).join("llama-server.log");
            printer.status(format!(
                "starting {} with {slots} slots, ctx {ctx} (log: {})",
                install.label(),
                log_path.display()
            ));
            let launched = LlamaServer::launch(ServerSpec {
                binary,
                model: model.clone(),
                host: "127.0.0.1".into(),
                port: None,
                args: engine_args,
                health_timeout: Duration::from_secs(args.health_timeout),
                log_path,
            });
            let launched = match launched {
                Ok(s) => s,
                Err(e) => {
                    store.end_run(run_id, "failed", Some(&e.to_string()))?;
                    return Err(e.into());
                }
            };
            let http = launched.http.clone();
            server = Some(launched);
            (
                http,
                EngineKind::LlamaServer,
                Some(engine_id),
                Some(model_row.id),
                None,
            )
        }
        (None, None) => {
            return Err(Error::input("nothing to load-test: pass --model FILE or --url URL").into())
        }
    };
    let source = if kind == EngineKind::LlamaServer && args.dataset.is_none() {
        Some(TokenSource::new(&http, &PromptSet::Random)?)
    } else {
        None
    };
    let generator = Generator::new(plan.workload.clone(), plan.seed, source)?;
    let config = EngineConfig {
        extra: args.engine_args.clone(),
        ..Default::default()
    };
    // Our engine, or an attached server on this machine: its CPU use is the work, not noise.
    let attached_local = args
        .url
        .as_deref()
        .and_then(|u| u.trim_end_matches('/').rsplit(':').next()?.parse().ok())
        .and_then(bakeoff::system::listening_pid);
    let tracked_pids: Vec<i32> = server
        .as_ref()
        .map(|s: &LlamaServer| s.pid())
        .or(attached_local)
        .into_iter()
        .collect();
    let runner = LoadRunner {
        sink: &store,
        run_id,
        http: &http,
        generator: &generator,
        config: &config,
        engine_id,
        model_id,
        model_name,
        ceiling_tps: ceiling,
        tracked_pids,
    };
    let result = runner.run(&plan, &mut |event| match event {
        LoadEvent::StepStart { label } => {
            printer.status(format!("step {label}: {}", plan.workload.describe()))
        }
        LoadEvent::Progress { label, progress } => {
            let line = format!(
                "{label}: {} done, {} errors, {:.2} req/s, p50 TTFT {:.0} ms",
                progress.done, progress.errors, progress.rate, progress.p50_ttft_ms
            );
            // The step's bound: requests, or seconds when the step is duration-bound.
            let (done, total) = match (plan.limits.requests, plan.limits.duration) {
                (Some(n), _) => (progress.done, n),
                (None, Some(d)) => (progress.elapsed_s as usize, d.as_secs() as usize),
                (None, None) => (0, 0),
            };
            let eta = if done > 0 {
                progress.elapsed_s / done as f64 * total.saturating_sub(done) as f64
            } else {
                0.0
            };
            if printer.terminal {
                printer.bar(done, total, eta, &line);
            } else {
                printer.status(format!("  {line} ({:.0}s)", progress.elapsed_s));
            }
        }
        LoadEvent::StepDone { summary } => {
            if let Some(note) = &summary.note {
                printer.status(format!("  {}: {note}", summary.step));
            }
        }
        LoadEvent::Warning(message) => printer.warn(message),
    });
    printer.finish();
    if let Some(server) = &server {
        store.engine_log(run_id, None, server.log_path())?;
    }
    drop(server);
    let interrupted = bakeoff::engines::process::interrupted();
    let status = if interrupted.is_some() {
        "interrupted"
    } else if result.is_ok() {
        "ok"
    } else {
        "failed"
    };
    store.end_run(
        run_id,
        status,
        result.as_ref().err().map(|e| e.to_string()).as_deref(),
    )?;
    let tables = result?;
    print!("{}", bakeoff::report::load::render(format, &tables));
    if ceiling.is_none() {
        printer.status(
            "note: the client's ceiling is unknown here; `bakeoff load --self-test` measures it",
        );
    }
    printer.status(format!(
        "stored as run {run_id} in {}",
        store.path().display()
    ));
    Ok(interrupted.map_or(ExitCode::SUCCESS, |s| ExitCode::from((128 + s) as u8)))
}

fn self_test(global: &Global, printer: Printer) -> anyhow::Result<ExitCode> {
    printer.status(
        "measuring the client's ceiling against a scripted streaming endpoint on loopback…",
    );
    let mut rows = Vec::new();
    for streams in [1, 8, 32, 64] {
        rows.push(selftest::measure_ceiling(
            streams,
            Duration::ZERO,
            256,
            Duration::from_secs(3),
        )?);
    }
    // Timing error: a paced stream (1 token per ms) with 8 streams.
    rows.push(selftest::measure_ceiling(
        8,
        Duration::from_millis(1),
        256,
        Duration::from_secs(3),
    )?);
    let best = rows.iter().map(|r| r.streamed_tps).fold(0.0, f64::max);
    let store = super::open_store(global)?;
    let system_id = store.system_id(&Fingerprint::collect())?;
    store.system_measurement(system_id, "client_ceiling_tps", best, "tok/s")?;
    print!("{}", bakeoff::report::load::ceiling_table(&rows).markdown());
    printer.status(format!("client ceiling {best:.0} streamed tok/s stored; load runs warn when they come within 50 % of it"));
    Ok(ExitCode::SUCCESS)
}
