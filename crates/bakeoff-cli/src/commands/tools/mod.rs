//! `bakeoff tools`: the tool-call bakeoff. Resolves the engine (launched llama-server or attached
//! server), builds the arms, runs agentic tasks or the single-turn set under a stored run, and
//! prints summaries and divergence reports.

mod print;
mod target;

use crate::cli::Global;
use crate::cli_tools::{
    RenderDiffArgs, ToolSampling, ToolTarget, ToolsBfclArgs, ToolsCommand, ToolsRunArgs,
};
use crate::printer::Printer;
use bakeoff::quality::toolcall::bfcl::{self, Dataset, Item, ItemResult};
use bakeoff::quality::toolcall::{diverge, episode, render, Arm, Task, Trace};
use bakeoff::session::{RunSpec, Session};
use bakeoff::store::{NewTrial, Store};
use bakeoff::Error;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use target::{ArmMaker, Target};

pub fn run(global: &Global, command: ToolsCommand, printer: Printer) -> anyhow::Result<ExitCode> {
    match command {
        ToolsCommand::Run(args) => run_tasks(global, &args, printer),
        ToolsCommand::Bfcl(args) => run_bfcl(global, &args, printer),
        ToolsCommand::RenderDiff(args) => render_diff(global, &args, printer),
        ToolsCommand::Diff {
            run,
            arms,
            task,
            json,
        } => diff(global, &run, arms.as_deref(), task.as_deref(), json),
        ToolsCommand::Export { run, output } => export(global, &run, output.as_deref()),
        ToolsCommand::Tasks { json } => tasks(json),
    }
}

/// A stored run with its engines launched or attached, and its arms.
struct ToolRun {
    session: Session,
    targets: Vec<Target>,
    arms: Arms,
}

type Arms = Vec<(Box<dyn Arm>, usize)>;

/// What a tool-call run talks to and how it samples.
struct Setup<'a> {
    target: &'a ToolTarget,
    sampling: &'a ToolSampling,
    force_thinking: bool,
}

impl<'a> Setup<'a> {
    fn new(target: &'a ToolTarget, sampling: &'a ToolSampling, force_thinking: bool) -> Self {
        Setup {
            target,
            sampling,
            force_thinking,
        }
    }

    /// Arms on `target` with this run's sampling and force policy.
    fn arms<'t>(&self, args: &'t ToolTarget, target: &'t Target) -> bakeoff::Result<ArmMaker<'t>> {
        let (sampling, force) = target::sampling(self.sampling)?;
        Ok(ArmMaker {
            args,
            target,
            sampling,
            force,
            force_thinking: self.force_thinking,
        })
    }
}

fn begin(
    global: &Global,
    kind: &str,
    setup: &Setup,
    params: serde_json::Value,
    printer: Printer,
) -> anyhow::Result<ToolRun> {
    let store = super::open_store(global)?;
    let command = super::command_line();
    let run = RunSpec::new(kind, &command, setup.sampling.tag.as_deref(), params);
    let mut session = Session::begin(store, run)?;
    let opened = open_targets(global, &session, setup, printer);
    let (targets, arms) = session.guard(opened)?;
    Ok(ToolRun {
        session,
        targets,
        arms,
    })
}

/// The main target and its arms, then the reference target and its arm when asked for.
fn open_targets(
    global: &Global,
    session: &Session,
    setup: &Setup,
    printer: Printer,
) -> bakeoff::Result<(Vec<Target>, Arms)> {
    let main = target::open(global, setup.target, &session.run_dir(), Some(session))?;
    printer.status(format!("run {}: {}", session.run_id(), main.engine.label));
    let arms = setup
        .arms(setup.target, &main)?
        .named(&setup.sampling.arms)?;
    let mut arms: Arms = arms.into_iter().map(|arm| (arm, 0)).collect();
    let mut targets = vec![main];
    if let Some(url) = &setup.sampling.reference {
        let (reference, arm) = open_reference(global, session, setup, url, printer)?;
        arms.push((arm, 1));
        targets.push(reference);
    }
    Ok((targets, arms))
}

/// `--reference URL`: an attached server and the arm on it.
fn open_reference(
    global: &Global,
    session: &Session,
    setup: &Setup,
    url: &str,
    printer: Printer,
) -> bakeoff::Result<(Target, Box<dyn Arm>)> {
    let reference_args = ToolTarget {
        model: None,
        url: Some(url.to_string()),
        model_name: setup.sampling.reference_model.clone(),
        engine_args: Vec::new(),
        ..setup.target.clone()
    };
    let reference = target::open(global, &reference_args, &session.run_dir(), Some(session))?;
    printer.status(format!("reference: {}", reference.engine.label));
    let maker = setup.arms(&reference_args, &reference)?;
    let arm = maker.build("reference", setup.sampling.reference_arm.name())?;
    Ok((reference, arm))
}

impl ToolRun {
    fn trial(
        &self,
        arm: &dyn Arm,
        target: usize,
        workload: &serde_json::Value,
    ) -> bakeoff::Result<i64> {
        let target = &self.targets[target];
        self.session.store().begin_trial(
            self.session.run_id(),
            &NewTrial {
                config: Some(&target.config),
                engine_id: target.engine.engine_id,
                model_id: target.engine.model_id,
                workload: &json!({ "arm": arm.info(), "work": workload }),
                repetition: 0,
            },
        )
    }

    fn store(&self) -> &Store {
        self.session.store()
    }

    fn run_id(&self) -> i64 {
        self.session.run_id()
    }

    /// Store the launched engine's log and end the run; returns the exit code.
    fn finish<T>(&mut self, result: &bakeoff::Result<T>) -> bakeoff::Result<u8> {
        if let Some(target) = self.targets.iter().find(|t| t.engine.server.is_some()) {
            target.engine.store_log(&self.session)?;
        }
        self.session.finish(result)
    }
}

fn run_tasks(global: &Global, args: &ToolsRunArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let tasks = resolve_tasks(&args.task, args.budget)?;
    let names: Vec<&String> = tasks.iter().map(|t| &t.name).collect();
    let sampling = &args.sampling;
    let params = json!({ "tasks": names, "arms": sampling.arms,
        "force_tools": sampling.force_tools.name(), "reference": sampling.reference });
    let setup = Setup::new(&args.target, sampling, args.force_thinking);
    let mut session = begin(global, "tools", &setup, params, printer)?;
    let mut traces = Vec::new();
    let result = session.run_episodes(&tasks, &mut traces, printer);
    let code = session.finish(&result)?;
    result?;
    print_episodes(session.run_id(), &traces, sampling.json)?;
    let run_id = session.run_id();
    printer.status(format!(
        "stored as run {run_id}; `bakeoff tools diff {run_id}` or `bakeoff tools export {run_id}`"
    ));
    Ok(ExitCode::from(code))
}

/// `--task a,b` with `--budget` steps each.
fn resolve_tasks(names: &str, budget: Option<u32>) -> bakeoff::Result<Vec<Task>> {
    if budget == Some(0) {
        return Err(Error::input("--budget must be at least 1"));
    }
    let with_budget = |mut task: Task| {
        task.step_budget = budget.unwrap_or(task.step_budget);
        task
    };
    let resolve = |name: &str| Task::resolve(name.trim()).map(with_budget);
    names.split(',').map(resolve).collect()
}

fn print_episodes(run_id: i64, traces: &[Trace], as_json: bool) -> anyhow::Result<()> {
    let reports = diverge::per_task(traces, None);
    if as_json {
        let document = json!({ "run": run_id, "traces": traces, "divergence": reports });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print::episodes(traces);
        println!();
        reports.iter().for_each(print::divergence);
    }
    Ok(())
}

impl ToolRun {
    /// Every task on every arm, each episode a stored trial; stops early on Ctrl-C.
    fn run_episodes(
        &mut self,
        tasks: &[Task],
        traces: &mut Vec<Trace>,
        printer: Printer,
    ) -> bakeoff::Result<()> {
        let arms = self.arms.len();
        let runs = tasks
            .iter()
            .flat_map(|task| (0..arms).map(move |arm| (task, arm)));
        for (task, arm) in runs {
            if bakeoff::engines::process::interrupted().is_some() {
                break;
            }
            traces.push(self.episode(task, arm, printer)?);
        }
        Ok(())
    }

    fn episode(&mut self, task: &Task, index: usize, printer: Printer) -> bakeoff::Result<Trace> {
        let (arm, target) = &self.arms[index];
        let trial = self.trial(arm.as_ref(), *target, &json!({ "tool_task": task.name }))?;
        let name = arm.info().name.clone();
        let mut observe = |turn: &episode::Turn| show_turn(&task.name, &name, turn, printer);
        let trace = episode::run(self.arms[index].0.as_mut(), task, &mut observe);
        self.store_episode(trial, &trace)?;
        Ok(trace)
    }

    fn store_episode(&self, trial: i64, trace: &Trace) -> bakeoff::Result<()> {
        let store = self.session.store();
        store.record_episode(self.session.run_id(), Some(trial), trace)?;
        store.end_trial(trial, "ok", Some(&trace.outcome.halt_reason))
    }

    /// The built-in single-turn set on every arm, each arm one stored trial.
    fn run_bfcl(&mut self, set: &BfclSet, printer: Printer) -> bakeoff::Result<Vec<ItemResult>> {
        let mut results = Vec::new();
        for index in 0..self.arms.len() {
            let (arm, target) = &self.arms[index];
            let trial = self.trial(arm.as_ref(), *target, &json!({ "bfcl": "built-in" }))?;
            for item in &set.items {
                if bakeoff::engines::process::interrupted().is_some() {
                    break;
                }
                let scored = bfcl::score_item(self.arms[index].0.as_mut(), &set.dataset, item);
                let verdict = if scored.verdict.valid { "pass" } else { "fail" };
                printer.status(format!("{} {}: {verdict}", scored.arm, scored.id));
                self.store()
                    .record_bfcl(self.run_id(), Some(trial), &scored)?;
                results.push(scored);
            }
            self.store().end_trial(trial, "ok", None)?;
        }
        Ok(results)
    }
}

/// `[task] arm step N: calls or answer (seconds)`.
fn show_turn(task: &str, arm: &str, turn: &episode::Turn, printer: Printer) {
    let calls: Vec<String> = turn
        .tool_calls
        .iter()
        .map(|c| format!("{}({})", c.name, target::short(&c.arguments)))
        .collect();
    let what = turn
        .error
        .clone()
        .unwrap_or_else(|| match calls.is_empty() {
            true => "answer".into(),
            false => calls.join(", "),
        });
    let (step, seconds) = (turn.step, turn.elapsed_s);
    printer.status(format!(
        "[{task}] {arm} step {step}: {what} ({seconds:.2}s)"
    ));
}

/// The built-in BFCL-style items the command line selects.
struct BfclSet {
    dataset: Dataset,
    items: Vec<Item>,
}

fn run_bfcl(global: &Global, args: &ToolsBfclArgs, printer: Printer) -> anyhow::Result<ExitCode> {
    let set = bfcl_set(args.category.as_deref(), args.item.as_deref())?;
    let params = json!({ "bfcl": "built-in", "items": set.items.len(), "arms": args.sampling.arms, "force_tools": args.sampling.force_tools.name() });
    let setup = Setup::new(&args.target, &args.sampling, false);
    let mut session = begin(global, "tools-bfcl", &setup, params, printer)?;
    let result = session.run_bfcl(&set, printer);
    let code = session.finish(&result)?;
    print_bfcl(session.run_id(), &result?, args.sampling.json)?;
    Ok(ExitCode::from(code))
}

/// `--category a,b` and `--item id,...`, each name checked.
fn bfcl_set(categories: Option<&str>, ids: Option<&str>) -> bakeoff::Result<BfclSet> {
    let dataset = Dataset::builtin()?;
    let split = |text: &str| text.split(',').map(|s| s.trim().to_string()).collect();
    let categories: Option<Vec<String>> = categories.map(split);
    let ids: Option<Vec<String>> = ids.map(split);
    check_categories(categories.iter().flatten())?;
    check_items(&dataset, ids.iter().flatten())?;
    let in_category = |item: &Item| {
        categories
            .as_ref()
            .is_none_or(|c| c.contains(&item.category))
    };
    let wanted =
        |item: &&Item| in_category(item) && ids.as_ref().is_none_or(|i| i.contains(&item.id));
    let items = dataset.items.iter().filter(wanted).cloned().collect();
    Ok(BfclSet { dataset, items })
}

fn check_categories<'a>(mut names: impl Iterator<Item = &'a String>) -> bakeoff::Result<()> {
    match names.find(|c| !bfcl::CATEGORIES.contains(&c.as_str())) {
        None => Ok(()),
        Some(bad) => Err(Error::input(format!(
            "--category {bad}: expected {}",
            bfcl::CATEGORIES.join(", ")
        ))),
    }
}

fn check_items<'a>(
    dataset: &Dataset,
    mut ids: impl Iterator<Item = &'a String>,
) -> bakeoff::Result<()> {
    match ids.find(|id| !dataset.items.iter().any(|i| &i.id == *id)) {
        None => Ok(()),
        Some(bad) => Err(
            Error::input(format!("--item {bad}: no such item in the built-in set"))
                .with_hint("`bakeoff tools bfcl --json` lists every item id with its result"),
        ),
    }
}

fn print_bfcl(run_id: i64, results: &[ItemResult], as_json: bool) -> anyhow::Result<()> {
    if !as_json {
        print::bfcl_results(results);
        return Ok(());
    }
    let summary = bfcl_summary(results);
    let document = json!({ "run": run_id, "results": results, "summary": summary });
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(())
}

/// Accuracy per category for each arm that answered.
fn bfcl_summary(results: &[ItemResult]) -> serde_json::Map<String, serde_json::Value> {
    let of_arm = |arm: &&str| {
        let own: Vec<ItemResult> = results.iter().filter(|r| r.arm == *arm).cloned().collect();
        (!own.is_empty()).then(|| (arm.to_string(), json!(bfcl::summary(&own))))
    };
    ["json", "native", "reference"]
        .iter()
        .filter_map(of_arm)
        .collect()
}

fn render_diff(
    global: &Global,
    args: &RenderDiffArgs,
    printer: Printer,
) -> anyhow::Result<ExitCode> {
    let task = Task::resolve(&args.task)?;
    let log_dir = tempfile_dir()?;
    let target = target::open(global, &args.target, log_dir.path(), None)?;
    let (cases, label) = (render::cases(&task), &target.engine.label);
    let line = format!(
        "rendering {} conversations of task {} on {label}",
        cases.len(),
        task.name
    );
    printer.status(line);
    let template = target::native_template(&args.target, &target)?;
    let results = render::compare(&template, &target.endpoint, &cases);
    if args.json {
        let document = json!({ "engine": label, "task": task.name, "cases": results });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print::renderings(&results);
    }
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> bakeoff::Result<TempDir> {
    let path = std::env::temp_dir().join(format!("bakeoff-render-diff-{}", std::process::id()));
    std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
    Ok(TempDir(path))
}

/// A scratch directory for a launched server's log, removed afterwards.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn diff(
    global: &Global,
    run: &str,
    arms: Option<&str>,
    task: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = super::open_existing_store(global)?;
    let run_id = store.resolve_run(run)?;
    let traces = stored_episodes(&store, run_id, task)?;
    let pair = arms.map(arm_pair).transpose()?;
    let reports = diverge::per_task(&traces, pair);
    if json {
        let document = json!({ "run": run_id, "divergence": reports });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else if reports.is_empty() {
        eprintln!("run {run_id}: no task has both arms to compare");
    } else {
        reports.iter().for_each(print::divergence);
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's episodes (of `task` only, when given); an error when there are none.
fn stored_episodes(store: &Store, run_id: i64, task: Option<&str>) -> bakeoff::Result<Vec<Trace>> {
    let wanted = |t: &Trace| task.is_none_or(|name| t.task == name);
    let traces: Vec<Trace> = store.episodes(run_id)?.into_iter().filter(wanted).collect();
    if !traces.is_empty() {
        return Ok(traces);
    }
    let of_task = task.map(|t| format!(" of task {t}")).unwrap_or_default();
    let hint = "`bakeoff tools run` stores them; `bakeoff runs list` shows the runs";
    Err(Error::input(format!("run {run_id} has no tool-call episodes{of_task}")).with_hint(hint))
}

/// `--arms a,b`.
fn arm_pair(text: &str) -> bakeoff::Result<(&str, &str)> {
    let message = || format!("--arms {text}: expected two arms, e.g. json,native");
    let (a, b) = text
        .split_once(',')
        .ok_or_else(|| Error::input(message()))?;
    Ok((a.trim(), b.trim()))
}

fn export(global: &Global, run: &str, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let store = super::open_existing_store(global)?;
    let run_id = store.resolve_run(run)?;
    let detail = store.run_detail(run_id)?;
    let rows = store.tool_traces(run_id)?;
    let of_kind = |kind: &str| -> Vec<&serde_json::Value> {
        rows.iter()
            .filter(|r| r.kind == kind)
            .map(|r| &r.trace)
            .collect()
    };
    let (traces, bfcl) = (of_kind("episode"), of_kind("bfcl"));
    let document = json!({ "run": detail.run, "params": detail.params, "system": detail.system, "traces": traces, "bfcl": bfcl });
    let text = serde_json::to_string_pretty(&document)?;
    match output {
        Some(path) => std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))?,
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn tasks(json: bool) -> anyhow::Result<ExitCode> {
    let names = Task::builtin_names().into_iter();
    let tasks: Vec<Task> = names.filter_map(Task::builtin).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&tasks)?);
    } else {
        tasks.iter().for_each(print_task);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_task(task: &Task) {
    let tools: Vec<&str> = task.tools.iter().map(|t| t.name.as_str()).collect();
    let (name, budget, description) = (&task.name, task.step_budget, &task.description);
    println!("{name:<10} budget {budget:>2}  {description}");
    println!("{:<10} tools: {}", "", tools.join(", "));
}
