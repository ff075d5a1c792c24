//! `bakeoff load`: resolve the shapes and workload, launch or attach to a server, run the steps
//! under the machine-wide lock, print one row per step.

use crate::cli::{Global, LoadArgs};
use crate::printer::Printer;
use bakeoff::domain::EngineConfig;
use bakeoff::engines::EngineKind;
use bakeoff::measure::load::executor::{Progress, Shape, StepLimits};
use bakeoff::measure::load::metrics::{parse_duration_ms, Slo};
use bakeoff::measure::load::selftest;
use bakeoff::measure::load::workload::{Generator, LengthDist, WorkloadSpec};
use bakeoff::measure::load::{LoadEvent, LoadPlan, LoadRunner, StepTable};
use bakeoff::measure::matrix::{parse_values, PromptSet};
use bakeoff::measure::prompts::TokenSource;
use bakeoff::report::table::Format;
use bakeoff::session::{self, Launch, RunSpec, Session, Target};
use bakeoff::Error;
use std::fmt::Write;
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
    let output = LengthDist::parse("--output", &args.output)?;
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

pub fn run(global: &Global, args: LoadArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let format = output_format(&args.output_format)?;
    if args.serve_scripted {
        return serve_scripted(&args, printer);
    }
    if args.self_test {
        let _lock = session::take_lock(&super::command_line())?;
        return self_test(global, printer);
    }
    if args.url.is_none() && args.model.is_none() {
        return Err(Error::input("nothing to load-test: pass --model FILE or --url URL").into());
    }
    let plan = plan(&args)?;
    let mut session = begin(global, &args, &plan)?;
    let ceiling = session
        .store()
        .latest_system_measurement(session.system_id(), "client_ceiling_tps")?;
    let target = open_target(&session, global, &args, &plan, printer);
    let target = session.guard(target)?;
    let result = drive(&session, &args, &plan, &target, ceiling, printer);
    printer.finish();
    target.store_log(&session)?;
    drop(target);
    let code = session.finish(&result)?;
    print!("{}", render(format, &result?));
    closing_lines(&session, ceiling, printer);
    Ok(ExitCode::from(code))
}

fn output_format(text: &str) -> bakeoff::Result<Format> {
    Format::parse(text)
        .ok_or_else(|| Error::input(format!("-o {text}: expected md, csv, json or jsonl")))
}

/// The scripted endpoint measures nothing itself: it takes no lock (the clients measuring it do).
fn serve_scripted(args: &LoadArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let port = args.port.unwrap_or(0);
    let pace = Duration::from_micros(args.pace_us);
    let endpoint = selftest::ScriptedEndpoint::start_on(port, pace)
        .map_err(|e| Error::engine(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    println!("ready {}", endpoint.url);
    printer.status("serving the scripted endpoint until Ctrl-C");
    while bakeoff::engines::process::interrupted().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(ExitCode::SUCCESS)
}

fn begin(global: &Global, args: &LoadArgs, plan: &LoadPlan) -> bakeoff::Result<Session> {
    let store = super::open_store(global)?;
    let command = super::command_line();
    let params = serde_json::json!({ "plan": plan, "url": args.url, "model": args.model, "engine_args": args.engine_args });
    let run = RunSpec {
        kind: "load",
        command: &command,
        tag: args.tag.as_deref(),
        params,
    };
    Session::begin(store, run)
}

/// Attach to `--url`, or launch llama-server on `--model` with slots and context for the plan.
fn open_target(
    session: &Session,
    global: &Global,
    args: &LoadArgs,
    plan: &LoadPlan,
    printer: Printer,
) -> bakeoff::Result<Target> {
    let Some(model) = args.model.as_deref().filter(|_| args.url.is_none()) else {
        let url = args.url.as_deref().unwrap_or_default();
        return Target::attach(Some(session.store()), url);
    };
    let model = super::resolve_model(model);
    let mut launch = Launch::in_session(session, global.engine_path.as_deref(), &model)?;
    let sizing = plan.server_sizing(&args.engine_args);
    printer.status(format!(
        "starting {} with {} slots, ctx {} (log: {})",
        launch.engine.label(),
        sizing.slots,
        sizing.ctx,
        launch.log_path.display()
    ));
    launch.args = sizing.args;
    launch.health_timeout = Duration::from_secs(args.health_timeout);
    launch.start(Some(session))
}

/// Run the plan's steps against `target`, printing each step's progress.
fn drive(
    session: &Session,
    args: &LoadArgs,
    plan: &LoadPlan,
    target: &Target,
    ceiling: Option<f64>,
    printer: Printer,
) -> bakeoff::Result<Vec<StepTable>> {
    let synthetic_on_llama = target.kind == EngineKind::LlamaServer && args.dataset.is_none();
    let source = synthetic_on_llama
        .then(|| TokenSource::new(&target.http, &PromptSet::Random))
        .transpose()?;
    let generator = Generator::new(plan.workload.clone(), plan.seed, source)?;
    let config = EngineConfig {
        extra: args.engine_args.clone(),
        ..Default::default()
    };
    let runner = LoadRunner {
        store: session.store(),
        run_id: session.run_id(),
        http: &target.http,
        generator: &generator,
        config: &config,
        engine_id: target.engine_id,
        model_id: target.model_id,
        model_name: target.served_model(),
        ceiling_tps: ceiling,
        tracked_pids: target.tracked_pids(),
    };
    runner.run(plan, &mut |event| observe(plan, event, printer))
}

fn observe(plan: &LoadPlan, event: LoadEvent, printer: Printer) {
    match event {
        LoadEvent::StepStart { label } => {
            printer.status(format!("step {label}: {}", plan.workload.describe()))
        }
        LoadEvent::Progress { label, progress } => show_progress(plan, label, progress, printer),
        LoadEvent::StepDone { summary } => {
            if let Some(note) = &summary.note {
                printer.status(format!("  {}: {note}", summary.step));
            }
        }
        LoadEvent::Warning(message) => printer.warn(message),
    }
}

/// A bar on a terminal, else a line; the bound is the step's requests, or its seconds when the
/// step is duration-bound.
fn show_progress(plan: &LoadPlan, label: &str, progress: &Progress, printer: Printer) {
    let line = format!(
        "{label}: {} done, {} errors, {:.2} req/s, p50 TTFT {:.0} ms",
        progress.done, progress.errors, progress.rate, progress.p50_ttft_ms
    );
    if !printer.terminal {
        printer.status(format!("  {line} ({:.0}s)", progress.elapsed_s));
        return;
    }
    let (done, total) = match (plan.limits.requests, plan.limits.duration) {
        (Some(n), _) => (progress.done, n),
        (None, Some(d)) => (progress.elapsed_s as usize, d.as_secs() as usize),
        (None, None) => (0, 0),
    };
    let left = total.saturating_sub(done) as f64;
    let eta = if done > 0 {
        progress.elapsed_s / done as f64 * left
    } else {
        0.0
    };
    printer.bar(done, total, eta, &line);
}

fn closing_lines(session: &Session, ceiling: Option<f64>, printer: Printer) {
    if ceiling.is_none() {
        printer.status(
            "note: the client's ceiling is unknown here; `bakeoff load --self-test` measures it",
        );
    }
    let path = session.store().path().display();
    printer.status(format!("stored as run {} in {path}", session.run_id()));
}

/// The step tables as Markdown, CSV, JSON or JSONL.
pub fn render(format: Format, tables: &[StepTable]) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(tables).unwrap_or_default() + "\n",
        Format::Jsonl => tables
            .iter()
            .map(|t| serde_json::to_string(t).unwrap_or_default() + "\n")
            .collect(),
        Format::Csv => {
            let mut out = String::from("step,completed,errors,req_s,out_tok_s,goodput_rps,ttft_p50_ms,ttft_p90_ms,ttft_p99_ms,itl_p50_ms,itl_p99_ms,tpot_p50_ms,tpot_p99_ms,e2e_p50_ms,e2e_p99_ms,client_cpu_cores\n");
            for t in tables {
                let _ = writeln!(
                    out,
                    "{},{},{},{:.3},{:.2},{},{:.1},{:.1},{:.1},{:.2},{:.2},{:.2},{:.2},{:.1},{:.1},{:.3}",
                    t.step,
                    t.completed,
                    t.errors.values().sum::<u64>(),
                    t.request_throughput,
                    t.output_tps,
                    t.goodput_rps.map(|g| format!("{g:.3}")).unwrap_or_default(),
                    t.ttft_ms.p("p50"),
                    t.ttft_ms.p("p90"),
                    t.ttft_ms.p("p99"),
                    t.itl_ms.p("p50"),
                    t.itl_ms.p("p99"),
                    t.tpot_ms.p("p50"),
                    t.tpot_ms.p("p99"),
                    t.e2e_ms.p("p50"),
                    t.e2e_ms.p("p99"),
                    t.client_cpu_cores
                );
            }
            out
        }
        Format::Markdown => {
            let mut out = String::from(
                "| step | done | errors | req/s | out tok/s | goodput req/s | TTFT p50 / p90 / p99 ms | ITL p50 / p99 ms | TPOT p50 / p99 ms | E2E p50 / p99 ms | client CPU | note |\n\
                 | ---- | ---: | -----: | ----: | --------: | ------------: | ----------------------: | ---------------: | ----------------: | ---------------: | ---------: | ---- |\n",
            );
            for t in tables {
                let errors = if t.errors.is_empty() {
                    "0".to_string()
                } else {
                    t.errors
                        .iter()
                        .map(|(k, v)| format!("{v} {k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {errors} | {:.2} | {:.1} | {} | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} / {:.0} | {:.2} | {} |",
                    t.step,
                    t.completed,
                    t.request_throughput,
                    t.output_tps,
                    t.goodput_rps.map(|g| format!("{g:.2}")).unwrap_or_else(|| "-".into()),
                    t.ttft_ms.p("p50"),
                    t.ttft_ms.p("p90"),
                    t.ttft_ms.p("p99"),
                    t.itl_ms.p("p50"),
                    t.itl_ms.p("p99"),
                    t.tpot_ms.p("p50"),
                    t.tpot_ms.p("p99"),
                    t.e2e_ms.p("p50"),
                    t.e2e_ms.p("p99"),
                    t.client_cpu_cores,
                    t.note.as_deref().unwrap_or("")
                );
            }
            out
        }
    }
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
    let system_id = session::this_system(&store)?;
    store.system_measurement(system_id, "client_ceiling_tps", best, "tok/s")?;
    println!("| streams | pace | streamed tok/s | requests | errors | gap error p50 / p99 µs | client CPU |");
    println!("| ------: | ---: | -------------: | -------: | -----: | ---------------------: | ---------: |");
    for r in &rows {
        let gap = match (r.gap_error_p50_us, r.gap_error_p99_us) {
            (Some(a), Some(b)) => format!("{a:.0} / {b:.0}"),
            _ => "-".into(),
        };
        let pace = if r.pace_us == 0 {
            "as fast as possible".to_string()
        } else {
            format!("{} µs", r.pace_us)
        };
        println!(
            "| {} | {pace} | {:.0} | {} | {} | {gap} | {:.2} |",
            r.streams, r.streamed_tps, r.requests, r.errors, r.client_cpu_cores
        );
    }
    printer.status(format!("client ceiling {best:.0} streamed tok/s stored; load runs warn when they come within 50 % of it"));
    Ok(ExitCode::SUCCESS)
}
