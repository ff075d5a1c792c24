//! `bakeoff tune --dry-run` on the real installed llama-server's `--help` (read only: no model is
//! loaded) and the real GGUF files set-up installs: the space built from build, model, machine
//! and goal; pruning by the build's rules and by memory with the margin; one-line errors for an
//! impossible budget and a misspelt tune-file key; pins and narrowing. Then real tunes on
//! SmolLM2 (issue 16 point 9): an unfaithful q4_0 V cache never wins and the answer says why,
//! `--mem` prunes before measuring, and `--resume` after kill -9 measures nothing twice.

use crate::common;

use common::{gemma, llama_bin, smollm, Sandbox};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn tune(sandbox: &Sandbox, model: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(["tune", "-m"])
        .arg(model)
        .arg("--build")
        .arg(format!("b11434={}", llama_bin("llama-server").display()))
        .args(extra);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(60));
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// A successful `--dry-run -o json`.
fn dry_run(model: &Path, extra: &[&str]) -> Value {
    let sandbox = Sandbox::new();
    let mut args = vec!["--dry-run", "-o", "json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = tune(&sandbox, model, &args);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn knob<'a>(dry: &'a Value, name: &str) -> Option<&'a Value> {
    dry["space"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["knob"] == name)
}

fn values(dry: &Value, name: &str) -> Vec<String> {
    let knob = knob(dry, name).unwrap_or_else(|| panic!("no knob {name} in {dry}"));
    let values = knob["values"].as_array().unwrap();
    values
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn pruned<'a>(dry: &'a Value, kind: &str) -> Vec<&'a Value> {
    let rows = dry["pruned"].as_array().unwrap();
    rows.iter().filter(|r| r["kind"] == kind).collect()
}

fn plan(dry: &Value, item: &str) -> String {
    let rows = dry["plan"].as_array().unwrap();
    let row = rows.iter().find(|r| r["item"] == item).unwrap();
    row["value"].as_str().unwrap().to_string()
}

#[test]
fn smollm_space_comes_from_the_build_the_model_and_this_machine() {
    let dry = dry_run(&smollm(), &["--ctx", "4096", "--goal", "tg"]);
    // Types and flash-attention choices are the real --help's, f32 and auto left out.
    assert_eq!(values(&dry, "-ctk").len(), 8);
    assert_eq!(values(&dry, "-fa"), ["on", "off"]);
    assert!(values(&dry, "spec").contains(&"ngram-mod n=24 m=64".to_string()));
    // Threads come from the cores; this machine has no GPU and SmolLM2 is dense.
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = values(&dry, "-t");
    assert_eq!(threads.last().unwrap(), &cores.to_string(), "{threads:?}");
    for absent in ["-ngl", "--n-cpu-moe", "-np", "-sm", "-ts"] {
        assert!(
            knob(&dry, absent).is_none(),
            "{absent} should not be a knob"
        );
    }
    let left: Vec<&Value> = pruned(&dry, "left out");
    assert!(left.iter().any(|r| r["example"] == "-ngl"), "{left:?}");
    // No GPU: the split mode and ratio are pinned, each left out with its reason.
    assert!(left.iter().any(|r| r["example"] == "-sm"), "{left:?}");
    let why = knob(&dry, "model").unwrap()["why"].as_str().unwrap();
    assert!(why.contains("llama") && why.contains("dense"), "{why}");
    // A quantized V cache without flash attention is rejected: counted, never planned.
    let rejected = pruned(&dry, "rejected by the build");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0]["example"].as_str().unwrap().contains("-fa off"));
    assert_eq!(plan(&dry, "limit"), "budget 30m");
}

#[test]
fn gemma_is_noted_as_sliding_window() {
    let dry = dry_run(&gemma(), &["--ctx", "8192", "--goal", "pp"]);
    let why = knob(&dry, "model").unwrap()["why"].as_str().unwrap();
    assert!(why.contains("gemma3") && why.contains("SWA"), "{why}");
    // goal pp widens the batch knobs.
    assert_eq!(values(&dry, "-ub"), ["128", "256", "512", "1024"]);
    // -ub 1024 with -b 512 is the same as -ub 512: pruned as having no effect.
    let same = pruned(&dry, "no effect");
    assert!(
        same[0]["example"]
            .as_str()
            .unwrap()
            .contains("-b 512 -ub 1024"),
        "{same:?}"
    );
}

#[test]
fn a_memory_budget_prunes_with_the_margin_shown() {
    // At 32K tokens an f16 KV cache of SmolLM2 is ~720 MiB; q4_0 ~200 MiB.
    let dry = dry_run(
        &smollm(),
        &["--ctx", "32768", "--goal", "tg", "--mem", "400M"],
    );
    let memory = pruned(&dry, "memory");
    assert_eq!(memory.len(), 1, "{memory:?}");
    let example = memory[0]["example"].as_str().unwrap();
    assert!(example.contains("of 400.00 MiB (over by "), "{example}");
    let tightest = pruned(&dry, "tightest fit");
    let fit = tightest[0]["example"].as_str().unwrap();
    assert!(fit.contains("of 400.00 MiB (margin "), "{fit}");
    let kept: u64 = plan(&dry, "configurations after pruning").parse().unwrap();
    assert!(kept > 0);
}

#[test]
fn an_impossible_budget_is_one_line_and_exit_2() {
    let sandbox = Sandbox::new();
    let args = [
        "--ctx",
        "32768",
        "--goal",
        "tg",
        "--mem",
        "64M",
        "--dry-run",
    ];
    let (code, stdout, stderr) = tune(&sandbox, &smollm(), &args);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let first = stderr.lines().next().unwrap();
    let prefix = "error: nothing fits 64.00 MiB at ctx 32768: the smallest configuration needs ";
    assert!(first.starts_with(prefix), "{stderr}");
    assert!(stderr
        .lines()
        .all(|l| l.starts_with("error:") || l.starts_with("hint:")));
}

#[test]
fn a_misspelt_tune_file_key_names_file_line_and_key() {
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("tune.toml");
    std::fs::write(&file, "ctx = 4096\ngoal = \"tg\"\nmax-trails = 20\n").unwrap();
    let config = file.display().to_string();
    let (code, _, stderr) = tune(&sandbox, &smollm(), &["--config", &config, "--dry-run"]);
    assert_eq!(code, 2, "{stderr}");
    let expected = format!("error: {config}:3:1: unknown field 'max-trails'");
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(
        stderr.contains("hint: did you mean 'max-trials'?"),
        "{stderr}"
    );
}

#[test]
fn pin_and_only_change_the_space_on_the_command_line_and_in_the_file() {
    let base = dry_run(&smollm(), &["--ctx", "4096", "--goal", "tg"]);
    let edited = dry_run(
        &smollm(),
        &[
            "--ctx",
            "4096",
            "--goal",
            "tg",
            "--pin",
            "-ctk=q8_0",
            "--only",
            "-t=1",
        ],
    );
    assert_eq!(values(&edited, "-ctk"), ["q8_0"]);
    assert_eq!(values(&edited, "-t"), ["1"]);
    let count = |dry: &Value| -> u64 { plan(dry, "configurations after pruning").parse().unwrap() };
    assert!(count(&edited) < count(&base));
    // The same in a tune file; the command line's --ctx wins over the file's.
    let sandbox = Sandbox::new();
    let file = sandbox.dir.path().join("tune.toml");
    let text = "ctx = 2048\ngoal = \"tg\"\n[pin]\n\"--cache-type-v\" = \"f16\"\n[extend]\n\"-ub\" = [1024]\n";
    std::fs::write(&file, text).unwrap();
    let config = file.display().to_string();
    let dry = dry_run(&smollm(), &["--config", &config, "--ctx", "4096"]);
    assert_eq!(values(&dry, "-ctv"), ["f16"]);
    assert_eq!(values(&dry, "-ub").last().unwrap(), "1024");
    assert_eq!(plan(&dry, "context"), "4096");
}

/// The pins that leave a tiny space on SmolLM2: one K type, flash attention on, one batch size,
/// one thread (tests run two at a time on two cores: ggml's spinning threads must not share a
/// core), no speculation; each test narrows or pins `-ctv` itself.
const SMALL: &[&str] = &[
    "--ctx",
    "512",
    "--goal",
    "tg",
    "-n",
    "16",
    "--pin",
    "-ctk=f16",
    "--pin",
    "-fa=on",
    "--pin",
    "-b=512",
    "--pin",
    "-ub=128",
    "--pin",
    "spec=none",
    "--pin",
    "-lm=mmap",
    "--pin",
    "-t=1",
];

/// A tune file with the gate's checks made small enough for a test (`bakeoff gate`'s checks with
/// fewer prompts and chunks, canaries off: they are tested in gate.rs).
fn quick_checks(sandbox: &Sandbox) -> String {
    let path = sandbox.dir.path().join("tune.toml");
    let text =
        "[checks]\ncanaries = false\nagreement_prompts = 2\nagreement_tokens = 16\nkld_chunks = 8\ntg_reps = 0\n";
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A real tune: the small space plus `extra`, the answer as JSON.
fn real_tune(sandbox: &Sandbox, extra: &[&str]) -> (i32, Value, String) {
    let config = quick_checks(sandbox);
    let mut cmd = sandbox.cmd();
    cmd.args(["tune", "-m"])
        .arg(smollm())
        .arg("--build")
        .arg(format!("b11434={}", llama_bin("llama-server").display()))
        .args(["--config", &config, "-o", "json"])
        .args(SMALL)
        .args(extra);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(900));
    let answer =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (status.code().unwrap_or(-1), answer, stderr)
}

fn args_of(finalist: &Value) -> Vec<String> {
    let args = finalist["args"]
        .as_array()
        .unwrap_or_else(|| panic!("no args in {finalist}"));
    args.iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

/// Issue 16 point 9: a q4_0 V cache fails the KLD gate on this model. Alone in the space it is
/// measured, gated, vetoed and reported as the fastest that lost, with the gate's reason; the
/// tune exits 1 with no winner, and the engine's defaults are still measured to compare with.
#[test]
fn a_fast_but_unfaithful_q4_0_v_cache_is_never_the_winner_and_the_answer_says_why() {
    let sandbox = Sandbox::new();
    let (code, answer, stderr) = real_tune(&sandbox, &["--pin", "-ctv=q4_0", "--max-trials", "6"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(answer["winner"].is_null(), "{answer}");
    let fastest = &answer["fastest"];
    assert!(has_pair(&args_of(fastest), "-ctv", "q4_0"), "{fastest}");
    assert_eq!(fastest["fidelity"], "fail", "{fastest}");
    let lost = answer["fastest_lost"].as_str().unwrap_or_default();
    assert!(lost.starts_with("failed the fidelity gate: "), "{lost}");
    assert!(
        stderr.contains("no configuration passed the fidelity gate"),
        "{stderr}"
    );
    assert_eq!(
        answer["reference"],
        "SmolLM2-135M-Instruct.Q4_1.gguf -ctk f16 -ctv f16"
    );
    assert!(
        answer["defaults"]["n"].as_u64().unwrap_or(0) >= 1,
        "{answer}"
    );
}

/// With f16 beside it, the winner is faithful and never the q4_0 V cache, whatever their speeds.
#[test]
fn beside_f16_the_winner_is_faithful_and_every_decision_is_stored() {
    let sandbox = Sandbox::new();
    let (code, answer, stderr) =
        real_tune(&sandbox, &["--only", "-ctv=f16,q4_0", "--max-trials", "12"]);
    assert_eq!(code, 0, "{stderr}");
    let winner = &answer["winner"];
    assert_eq!(winner["fidelity"], "pass", "{winner}");
    assert!(!has_pair(&args_of(winner), "-ctv", "q4_0"), "{winner}");
    let (low, high) = (
        winner["ci_low"].as_f64().unwrap(),
        winner["ci_high"].as_f64().unwrap(),
    );
    assert!(
        low <= high && winner["n"].as_u64().unwrap() >= 3,
        "{winner}"
    );
    assert!(answer["speedup_over_defaults_pct"].is_number(), "{answer}");
    let store = bakeoff::store::Store::open(&sandbox.db()).unwrap();
    let run = store.runs(1).unwrap()[0].id;
    let decisions = store.tune_decisions(run).unwrap();
    let winners: Vec<_> = decisions.iter().filter(|d| d.action == "winner").collect();
    assert_eq!(winners.len(), 1, "{decisions:?}");
    assert_eq!(winners[0].candidate, winner["label"].as_str().unwrap());
    assert_eq!(store.tune_answer(run).unwrap().as_ref(), Some(&answer));
    // The winner and the defaults are compared interleaved, A B B A A B, not all of one then
    // all of the other: the last four runs of one configuration alternate, sized 2, 2 and 1
    // repetitions (the first may run on from the race).
    let mut runs: Vec<(Option<String>, Vec<i64>)> = Vec::new();
    for trial in store.trials(run).unwrap() {
        match runs.last_mut() {
            Some((config, reps)) if *config == trial.config_hash => reps.push(trial.repetition),
            _ => runs.push((trial.config_hash.clone(), vec![trial.repetition])),
        }
    }
    let tail = &runs[runs.len() - 4..];
    let (a, b) = (&tail[0].0, &tail[1].0);
    assert_ne!(a, b);
    let configs: Vec<_> = tail.iter().map(|(config, _)| config).collect();
    assert_eq!(configs, [a, b, a, b], "{runs:?}");
    let distinct = |reps: &[i64]| reps.iter().collect::<std::collections::BTreeSet<_>>().len();
    let sizes: Vec<usize> = tail[1..].iter().map(|(_, reps)| distinct(reps)).collect();
    assert_eq!(sizes, [2, 2, 1], "{runs:?}");
}

/// The two fits `--dry-run` reports, tightest first: what the f16 and q8_0 V configurations need.
fn needs(dry: &Value) -> (u64, u64) {
    let fit = |kind: &str| {
        let row = pruned(dry, kind)[0]["example"]
            .as_str()
            .unwrap()
            .to_string();
        let needs = row
            .split("needs ")
            .nth(1)
            .unwrap()
            .split(" of ")
            .next()
            .unwrap();
        bakeoff::domain::units::parse_bytes(&needs.replace(' ', "")).unwrap()
    };
    (fit("tightest fit"), fit("most room"))
}

/// `--mem` between what the two V types need: the f16 one is pruned with the planner's reason
/// and never measured; the q8_0 one is tuned.
#[test]
fn a_memory_budget_prunes_before_measuring_and_the_tune_measures_only_what_fits() {
    let mut args = vec!["--ctx", "512", "--goal", "tg", "--only", "-ctv=f16,q8_0"];
    args.extend_from_slice(&SMALL[4..]);
    let dry = dry_run(&smollm(), &args);
    let (big, small) = needs(&dry);
    assert!(
        big > small,
        "f16 V needs more than q8_0 V: {big} vs {small}"
    );
    let mem = ((big + small) / 2).to_string();
    let sandbox = Sandbox::new();
    let (code, answer, stderr) = real_tune(
        &sandbox,
        &[
            "--only",
            "-ctv=f16,q8_0",
            "--mem",
            &mem,
            "--max-trials",
            "6",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("tune: 2 configurations, 1 after pruning"),
        "{stderr}"
    );
    let points = answer["points"].as_array().unwrap();
    assert!(!points.is_empty());
    for point in points {
        assert!(
            has_pair(&args_of(point), "-ctv", "q8_0"),
            "a pruned config was measured: {point}"
        );
        assert!(point["memory_bytes"].as_u64().unwrap() <= mem.parse::<u64>().unwrap());
    }
}

/// Issue 16 point 7, in one tune's life: Ctrl-C stops it cleanly (exit 130, the answer so far
/// printed, no engine left running); `--resume` carries on until kill -9 cuts it; a second
/// `--resume` finishes it. The stored repetitions answer the race's first requests each time, so
/// no (configuration, test, repetition) is measured twice.
#[test]
fn ctrl_c_and_kill_9_lose_nothing_and_resume_measures_nothing_twice() {
    let sandbox = Sandbox::new();
    let config = quick_checks(&sandbox);
    let mut cmd = sandbox.cmd();
    cmd.args(["tune", "-m"])
        .arg(smollm())
        .args(["--config", &config, "-o", "json"])
        .args(SMALL)
        .args(["--only", "-ctv=f16,q8_0", "--max-trials", "10"]);
    // Two repetitions stored: the first screen and its gate are behind, the race is measuring.
    let (code, stdout, stderr, run) = interrupt_after(cmd, &sandbox.db(), 4, libc::SIGINT);
    assert_eq!(code, Some(130), "{stderr}");
    let answer: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(answer["stop"], "interrupted", "{answer}");
    assert!(
        stderr.contains(&format!("resume with: bakeoff tune --resume {run}")),
        "{stderr}"
    );
    let runs_dir = sandbox.dir.path().display().to_string();
    assert_eq!(engines_of(&runs_dir), 0, "an engine outlived the tune");
    let after_ctrl_c = ok_trials(&sandbox.db(), run);

    let mut resume = sandbox.cmd();
    resume.args(["tune", "--resume", &run.to_string(), "-o", "json"]);
    let wanted = after_ctrl_c.len() + 2;
    let (_, _, _, _) = interrupt_after(resume, &sandbox.db(), wanted, libc::SIGKILL);
    let after_kill = ok_trials(&sandbox.db(), run);

    let mut resume = sandbox.cmd();
    resume.args(["tune", "--resume", &run.to_string(), "-o", "json"]);
    let (status, stdout, stderr) = common::run(resume, Duration::from_secs(900));
    assert!(status.success(), "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(answer["winner"].is_object(), "{answer}");
    let replayed = stderr
        .lines()
        .find_map(|l| l.strip_prefix("resumed: "))
        .and_then(|l| l.split(' ').next()?.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no resumed line: {stderr}"));
    assert!(replayed >= 1, "{stderr}");
    let last = ok_trials(&sandbox.db(), run);
    let mut keys: Vec<_> = last.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    let total = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), total, "a trial was measured twice: {last:?}");
    for kept in after_ctrl_c.iter().chain(&after_kill) {
        assert!(
            last.contains(kept),
            "{kept:?} measured before a stop was kept"
        );
    }
}

/// Start `cmd`, wait (bounded) until its run holds `ok` stored speed trials, send `signal`, and
/// collect its exit code, stdout, stderr and the run's id.
fn interrupt_after(
    mut cmd: std::process::Command,
    db: &Path,
    ok: usize,
    signal: i32,
) -> (Option<i32>, String, String, i64) {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let run = wait_for_ok_trials(&mut child, db, ok);
    common::signal(child.id(), signal);
    let status = common::wait_exit(&mut child, Duration::from_secs(120));
    (status.code(), out.join().unwrap(), err.join().unwrap(), run)
}

/// Live llama-server processes whose output goes to a log file under `dir`.
fn engines_of(dir: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let logs_under_dir = |proc: &Path| {
        let cmdline = std::fs::read(proc.join("cmdline")).unwrap_or_default();
        let server = String::from_utf8_lossy(&cmdline).contains("llama-server");
        let log = std::fs::read_link(proc.join("fd/1")).unwrap_or_default();
        server && log.starts_with(dir)
    };
    entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| logs_under_dir(p))
        .count()
}

type TrialKey = (String, String, i64);

/// The ok trials of `run`: (config hash, test, repetition) and the trial id.
fn ok_trials(db: &Path, run: i64) -> Vec<(TrialKey, i64)> {
    let store = bakeoff::store::Store::open(db).unwrap();
    let trials = store.trials(run).unwrap();
    // Speed trials; the gate's readiness rows are checked by the store's own tests.
    let ok = trials
        .into_iter()
        .filter(|t| t.status == "ok" && t.workload["test"] != "fidelity");
    ok.map(|t| {
        let test = t.workload["test"].as_str().unwrap_or_default().to_string();
        (
            (t.config_hash.unwrap_or_default(), test, t.repetition),
            t.id,
        )
    })
    .collect()
}

/// Poll (bounded) until the newest run of `db` holds `ok` stored speed trials, while `child` runs.
fn wait_for_ok_trials(child: &mut std::process::Child, db: &Path, ok: usize) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("bakeoff tune exited ({status}) before {ok} trials were stored");
        }
        if let Ok(store) = bakeoff::store::Store::open(db) {
            let run = store.runs(1).ok().and_then(|r| r.first().map(|r| r.id));
            if let Some(run) = run.filter(|&id| ok_trials(db, id).len() >= ok) {
                return run;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ok} trials not stored in time"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
