//! `bakeoff tune`: merge the command line over the tune file, resolve the models, the build's
//! `--help` and this machine; print the dry run, or run the search under the machine-wide lock
//! with progress on stderr, and print the answer. `--resume RUN` re-reads the stored command line.

use crate::cli::{Cli, Command, Global, TuneArgs};
use crate::printer::Printer;
use bakeoff::analysis::tune_journal;
use bakeoff::domain::units::human_bytes;
use bakeoff::domain::Combine;
use bakeoff::engines::build::{self, BuildRef};
use bakeoff::measure::experiment::Values;
use bakeoff::measure::watch::WatchConfig;
use bakeoff::model::select::{self, ModelQuery};
use bakeoff::report::table::Format;
use bakeoff::search::measure::{Event, Launch};
use bakeoff::search::settings::{Tune, TuneSettings};
use bakeoff::search::space::{Help, Inputs};
use bakeoff::search::tuner::{self, TuneRun};
use bakeoff::serve::tuned::{self as saving, Saved};
use bakeoff::session::{RunSpec, Session, Sweep};
use bakeoff::system::fingerprint::Fingerprint;
use bakeoff::Error;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(global: &Global, args: &TuneArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let (stored_args, resume) = match &args.resume {
        Some(reference) => {
            let (args, run_id, mem) = stored(global, reference)?;
            (Some((args, mem)), Some(run_id))
        }
        None => (None, None),
    };
    let (args, mem) = match &stored_args {
        Some((stored, mem)) => (stored, *mem),
        None => (args, None),
    };
    let mut tune = settings(args)?.resolve()?;
    if let Some(mem) = mem {
        tune.mem = Some(mem); // the budget the run was pruned with
    }
    let selected = select::select(&query(&tune))?;
    if args.queue.queue && !args.dry_run {
        let paths: Vec<_> = selected.iter().map(|s| s.path.clone()).collect();
        let tag = args.tag.as_deref();
        let queued = super::worker::Queued {
            kind: "tune",
            cells: 1,
            tag,
            models: &paths,
            builds: Some(&[]),
            files: super::worker::named_files(&[&args.config, &tune.catalog]),
        };
        return super::worker::enqueue(global, &args.queue, queued, printer);
    }
    let models = bakeoff::search::model_inputs(&selected)?;
    let help = help(global, &tune)?;
    let machine = Fingerprint::collect();
    let budget = bakeoff::report::models::machine_budget();
    let inputs = bakeoff::search::inputs(&tune, help, models, &machine, budget);
    let dry = bakeoff::search::dry_run(&tune, &inputs)?;
    if args.dry_run {
        let text = bakeoff::report::tune::render(&dry, args.format.into());
        println!("{}", text.trim_end_matches('\n'));
        return Ok(ExitCode::SUCCESS);
    }
    tuner::workload(&tune)?; // a workload that cannot run is refused before anything starts
    let line = format!(
        "tune: {} configurations, {} after pruning; {}; memory budget {}",
        dry.pruned.total,
        dry.pruned.kept,
        dry.cost.limit,
        human_bytes(inputs.budget)
    );
    printer.status(line);
    let search = Search {
        global,
        args,
        tune: &tune,
        inputs: &inputs,
        printer,
    };
    search.run(resume)
}

/// One tune being run.
struct Search<'a> {
    global: &'a Global,
    args: &'a TuneArgs,
    tune: &'a Tune,
    inputs: &'a Inputs,
    printer: Printer,
}

impl Search<'_> {
    fn run(&self, resume: Option<i64>) -> anyhow::Result<ExitCode> {
        let store = super::open_store(self.global)?;
        if let Some(name) = &self.tune.save {
            saving::check_free(&store, name, self.args.force)?;
        }
        let paths: Vec<PathBuf> = self.inputs.models.iter().map(|m| m.path.clone()).collect();
        let engine_path = self.global.engine_path.as_deref();
        let sweep = Sweep::resolve(
            &store,
            engine_path,
            "llama-server",
            &self.tune.builds,
            &paths,
        )?;
        let perplexity = sweep
            .engines
            .first()
            .and_then(|e| e.install.tool("llama-perplexity"));
        let command = super::command_line();
        let mut session = match resume {
            Some(run_id) => {
                store.clear_tune_decisions(run_id)?;
                Session::resume(store, run_id, &command)?
            }
            None => {
                let params = params(self.inputs.budget);
                let tag = self.args.tag.as_deref();
                Session::begin(store, RunSpec::new("tune", &command, tag, params))?
            }
        };
        if let Some(note) = session.lock_note() {
            self.printer.status(note);
        }
        let run_id = session.run_id();
        self.printer.status(format!(
            "run {run_id}: tune for goal {} at ctx {} on {}",
            self.tune.goal.name(),
            self.tune.ctx,
            sweep.engines.first().map(|e| e.label()).unwrap_or_default()
        ));
        let run = TuneRun {
            tune: self.tune,
            inputs: self.inputs,
            store: session.store(),
            run_id,
            run_dir: session.run_dir(),
            subjects: &sweep.subjects,
            perplexity,
            launch: Launch {
                ctx: self.tune.ctx,
                parallel: self.tune.parallel,
                extra_args: Vec::new(),
                health_timeout: std::time::Duration::from_secs(self.args.health_timeout),
                timeouts: self.args.timeouts.timeouts(),
                per_slot: self.tune.goal == bakeoff::search::space::Goal::Load,
                // Other GPU processes are not asked about per trial: a tune runs hundreds.
                watch: WatchConfig {
                    gpu_processes: false,
                    ..WatchConfig::new(self.args.telemetry.no_telemetry)
                },
            },
            spent_s: 0.0,
        };
        let progress = Progress::new(self.printer, self.tune);
        let result = tuner::run(&run, &|event| progress.event(event));
        let launch = run.launch.clone(); // a saved profile serves what was measured
        self.printer.finish();
        let code = session.finish(&result)?;
        let tuned = result?;
        let format = Format::from(self.args.format);
        print!("{}", bakeoff::report::tune::answer(&tuned.answer, format));
        if tuned.replayed > 0 {
            let replayed = tuned.replayed;
            self.printer.status(format!(
                "resumed: {replayed} repetitions answered from stored trials"
            ));
        }
        if code >= 128 || tuned.interrupted.is_some() {
            self.printer.status(format!(
                "interrupted: the best so far is above; resume with: bakeoff tune --resume {run_id}"
            ));
            return Ok(ExitCode::from(code.max(130)));
        }
        self.printer.status(format!(
            "stored as run {run_id} in {}",
            session.store().path().display()
        ));
        let store = session.store();
        let entry = tune_journal::record(store, run_id, &tuned.answer)?;
        let verdict = tune_journal::propose(&tuned.answer);
        self.printer.status(format!(
            "journal entry {entry}: {} — {}",
            verdict.0, verdict.1
        ));
        if let Some(name) = &self.tune.save {
            let answer = (&tuned.answer, &launch);
            self.saved(saving::save(store, run_id, name, answer, self.args.force)?);
        }
        match &tuned.answer.winner {
            Some(_) => Ok(ExitCode::from(code)),
            None => {
                self.printer
                    .warn("no configuration passed the fidelity gate");
                Ok(ExitCode::FAILURE)
            }
        }
    }

    /// What `--save` did, in one line.
    fn saved(&self, saved: Saved) {
        match saved {
            Saved::Profile(p) => self.printer.status(format!(
                "saved profile '{}': {}; start it with `bakeoff serve {}`",
                p.name,
                bakeoff::serve::profile::shell_command(&p.flags),
                p.name
            )),
            Saved::Nothing(why) => self.printer.warn(why),
        }
    }
}

/// What a resume needs again: the command line (to re-read the same settings) and the memory
/// budget the space was pruned with.
fn params(budget: u64) -> serde_json::Value {
    let argv: Vec<String> = std::env::args().collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    serde_json::json!({ "argv": argv, "cwd": cwd, "mem": budget })
}

/// The stored tune run's arguments, its id and its memory budget.
fn stored(global: &Global, reference: &str) -> anyhow::Result<(TuneArgs, i64, Option<u64>)> {
    let store = super::open_existing_store(global)?;
    let run_id = store.resolve_run(reference)?;
    let detail = store.run_detail(run_id)?;
    if detail.run.kind != "tune" {
        let kind = &detail.run.kind;
        return Err(Error::input(format!("run {run_id} is a {kind} run, not a tune")).into());
    }
    let argv: Vec<String> = serde_json::from_value(detail.params["argv"].clone()).map_err(|e| {
        Error::input(format!(
            "run {run_id} has no tune command line to resume ({e})"
        ))
    })?;
    if let Some(cwd) = detail.params["cwd"].as_str() {
        // Relative paths in the stored command line are relative to where it ran.
        std::env::set_current_dir(cwd).map_err(|e| Error::io(std::path::Path::new(cwd), e))?;
    }
    let cli = Cli::try_parse_from(&argv).map_err(|e| {
        Error::input(format!(
            "run {run_id}: its stored command line no longer parses: {e}"
        ))
    })?;
    let Command::Tune(args) = cli.command else {
        return Err(Error::input(format!("run {run_id} did not run `bakeoff tune`")).into());
    };
    Ok((*args, run_id, detail.params["mem"].as_u64()))
}

/// Progress lines on stderr: engine starts, trials, each round's best and the time left.
struct Progress {
    printer: Printer,
    started: Instant,
    budget_s: Option<f64>,
    max_trials: Option<u64>,
    /// What the score counts (`t/s`; goal load: `tok/s` or `req/s`).
    unit: &'static str,
}

impl Progress {
    fn new(printer: Printer, tune: &Tune) -> Self {
        let budget = match tune.max_trials {
            Some(_) => None,
            None => Some(
                tune.budget
                    .unwrap_or(bakeoff::search::settings::DEFAULT_BUDGET),
            ),
        };
        Progress {
            printer,
            started: Instant::now(),
            budget_s: budget.map(|b| b.as_secs_f64()),
            max_trials: tune.max_trials,
            unit: tuner::workload(tune).map_or("t/s", |w| w.unit()),
        }
    }

    fn event(&self, event: Event) {
        match event {
            Event::Start { label } => self.printer.status(format!("engine start: {label}")),
            Event::Trial {
                label,
                test,
                rep,
                value,
                flags,
            } => {
                let note = match flags.is_empty() {
                    true => String::new(),
                    false => format!("  [{}]", flags.join("; ")),
                };
                let rep = rep + 1;
                self.printer.status(format!(
                    "  {label}: {test} rep {rep}: {value:.2} {}{note}",
                    self.unit
                ));
            }
            Event::Failed { label, why } => self.printer.warn(format!("{label}: failed: {why}")),
            Event::Gate { candidate, what } => {
                self.printer.status(format!("  gate {candidate}: {what}"))
            }
            Event::Round { progress, best } => {
                let best = progress
                    .incumbent
                    .as_ref()
                    .map_or("none yet".to_string(), |s| {
                        let label = best.unwrap_or_default();
                        let (median, low, high) =
                            (s.summary.median, s.summary.ci_low, s.summary.ci_high);
                        let unit = &self.unit;
                        format!("{label} at {median:.2} {unit} [{low:.2}, {high:.2}]")
                    });
                let eta = self.eta(progress.trials);
                self.printer.status(format!(
                    "round {}: {} trials, {} decisions; best {best}; eta {eta}",
                    progress.round + 1,
                    progress.trials,
                    progress.decisions.len()
                ));
            }
        }
    }

    /// The time left: the budget's rest, or the trials left at the mean trial time so far.
    fn eta(&self, trials: usize) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = match (self.budget_s, self.max_trials) {
            (Some(budget), _) => (budget - elapsed).max(0.0),
            (None, Some(max)) if trials > 0 => {
                elapsed / trials as f64 * (max as f64 - trials as f64).max(0.0)
            }
            _ => 0.0,
        };
        format!(
            "≤ {}",
            bakeoff::search::minutes(std::time::Duration::from_secs_f64(left))
        )
    }
}

/// The command line over the tune file.
fn settings(args: &TuneArgs) -> anyhow::Result<TuneSettings> {
    let file = match &args.config {
        Some(path) => TuneSettings::read(path)?,
        None => TuneSettings::default(),
    };
    Ok(command_line(args)?.combine(file))
}

fn command_line(args: &TuneArgs) -> bakeoff::Result<TuneSettings> {
    let subject = &args.subject;
    Ok(TuneSettings {
        model: subject.model.clone().map(Values),
        category: subject.category.clone(),
        max_size: subject.max_size.map(|s| Values(s.to_string())),
        catalog: subject.catalog.clone(),
        builds: Some(subject.builds()?).filter(|b| !b.is_empty()),
        ctx: args.ctx,
        parallel: args.parallel,
        goal: args.goal,
        budget: args.budget.clone(),
        max_trials: args.max_trials,
        mem: args.mem.clone().map(Values),
        save: args.save.clone(),
        pin: keyed("--pin", &args.pin)?,
        only: keyed("--only", &args.only)?,
        extend: keyed("--extend", &args.extend)?,
        depth: args.depth.clone().map(Values),
        gen: args.gen,
        prompt: args.prompt,
        prompts: args.prompts.clone(),
        requests: args.requests,
        slo: args.slo.clone(),
        checks: None,
        gate: None,
    })
}

/// `KNOB=VALUES` entries as the tune file's tables hold them.
fn keyed(option: &str, entries: &[String]) -> bakeoff::Result<Vec<(String, Values)>> {
    let shape = "KNOB=VALUE[,VALUE...]";
    entries
        .iter()
        .map(|entry| Values::keyed(option, entry, shape))
        .collect()
}

fn query(tune: &Tune) -> ModelQuery {
    ModelQuery {
        spec: tune.model.clone(),
        category: tune.category.clone(),
        max_size: tune.max_size,
        catalog: tune.catalog.clone(),
        models_dir: Some(bakeoff::system::paths::models_dir()),
    }
}

/// The `--help` of the one build tuned: `--build`, else the llama-server discovery finds.
fn help(global: &Global, tune: &Tune) -> anyhow::Result<Help> {
    let binary = match tune.builds.as_slice() {
        [] => discovered(global)?,
        [build] => build.tool("llama-server")?,
        more => return Err(one_build(more).into()),
    };
    let text = build::help_text(&binary)?;
    Ok(Help::parse(&text, &binary.display().to_string())?)
}

fn discovered(global: &Global) -> bakeoff::Result<PathBuf> {
    let explicit = global.engine_path.as_deref();
    Ok(bakeoff::engines::discovery::find_tool(explicit, "llama-server")?.1)
}

fn one_build(builds: &[BuildRef]) -> Error {
    let names: Vec<&str> = builds.iter().map(|b| b.name.as_str()).collect();
    Error::input(format!(
        "tune takes one --build for now, got {}",
        names.join(", ")
    ))
}
