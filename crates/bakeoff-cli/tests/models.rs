//! `bakeoff models list` on the real GGUF files set-up installs: a catalog with both, selection
//! by name, glob, `--category` and `--max-size`, and a broken file listed as a row with its error.

use crate::common;

use common::{gemma, smollm, Sandbox};
use std::path::Path;
use std::time::Duration;

fn catalog(sandbox: &Sandbox) -> std::path::PathBuf {
    let broken = sandbox.dir.path().join("broken.gguf");
    std::fs::write(&broken, b"GGUF but not really").unwrap();
    let text = format!(
        "[[model]]\nname = \"smollm\"\npath = \"{}\"\ntags = [\"smoke\", \"dense\"]\n\n\
         [[model]]\nname = \"gemma\"\npath = \"{}\"\ntags = [\"smoke\"]\n\n\
         [[model]]\nname = \"broken\"\npath = \"broken.gguf\"\ntags = [\"smoke\"]\n",
        smollm().display(),
        gemma().display()
    );
    let file = sandbox.dir.path().join("models.toml");
    std::fs::write(&file, text).unwrap();
    file
}

fn list(sandbox: &Sandbox, catalog: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut cmd = sandbox.cmd();
    cmd.args(["models", "list", "-o", "json", "--catalog"])
        .arg(catalog)
        .args(extra);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(60));
    (status.success(), stdout, stderr)
}

fn rows(stdout: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn names(rows: &[serde_json::Value]) -> Vec<&str> {
    rows.iter().map(|r| r["model"].as_str().unwrap()).collect()
}

#[test]
fn the_catalog_lists_each_model_with_its_facts_and_a_broken_file_as_an_error_row() {
    let sandbox = Sandbox::new();
    let catalog = catalog(&sandbox);
    let (ok, stdout, stderr) = list(&sandbox, &catalog, &[]);
    assert!(ok, "{stderr}");
    let rows = rows(&stdout);
    assert_eq!(names(&rows), ["smollm", "gemma", "broken"]);
    let (smol, gem, broken) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(smol["arch"], "llama");
    assert_eq!(smol["quant"], "Q4_1");
    assert_eq!(gem["arch"], "gemma3");
    assert_eq!(gem["quant"], "Q4_K_M");
    assert_eq!(smol["size"], std::fs::metadata(smollm()).unwrap().len());
    let sha = bakeoff::formats::sha256_file(&smollm()).unwrap();
    assert_eq!(smol["sha256"], sha);
    // A 135M model at 8K context fits any machine that runs these tests.
    assert_eq!(smol["fits"], true);
    assert_eq!(smol["tags"], serde_json::json!(["smoke", "dense"]));
    let error = broken["error"].as_str().unwrap_or_default();
    assert!(error.contains("broken.gguf"), "{broken}");
    assert!(
        broken["fits"].is_null() && broken["arch"].is_null(),
        "{broken}"
    );
    assert!(smol["error"].is_null(), "{smol}");
}

#[test]
fn markdown_rows_carry_the_error_of_a_broken_file() {
    let sandbox = Sandbox::new();
    let catalog = catalog(&sandbox);
    let mut cmd = sandbox.cmd();
    cmd.args(["models", "list", "--catalog"]).arg(&catalog);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    let broken = stdout.lines().find(|l| l.starts_with("| broken ")).unwrap();
    assert!(broken.contains("| error |"), "{broken}");
    assert!(broken.contains("broken.gguf"), "{broken}");
    assert!(stdout.contains("| fits @ ctx 8192 |"), "{stdout}");
}

#[test]
fn category_max_size_and_name_globs_select_entries() {
    let sandbox = Sandbox::new();
    let catalog = catalog(&sandbox);
    let (ok, stdout, stderr) = list(
        &sandbox,
        &catalog,
        &["-m", "smol*,gemma", "--max-size", "200M"],
    );
    assert!(ok, "{stderr}");
    // gemma (241 MiB) is over 200M.
    assert_eq!(names(&rows(&stdout)), ["smollm"]);
    let (ok, stdout, stderr) = list(&sandbox, &catalog, &["--category", "dense"]);
    assert!(ok, "{stderr}");
    assert_eq!(names(&rows(&stdout)), ["smollm"]);
}

#[test]
fn bad_selections_are_one_line_errors_naming_what_was_typed() {
    let sandbox = Sandbox::new();
    let catalog = catalog(&sandbox);
    let (ok, _, stderr) = list(&sandbox, &catalog, &["--category", "moe"]);
    assert!(!ok);
    assert!(stderr.contains("--category moe: no model in "), "{stderr}");
    assert!(stderr.contains("(tags: dense, smoke)"), "{stderr}");
    let (ok, _, stderr) = list(&sandbox, &catalog, &["-m", "llama"]);
    assert!(!ok);
    assert!(
        stderr.contains("(known: smollm, gemma, broken)"),
        "{stderr}"
    );
    let glob = format!("{}/*.nothing.gguf", sandbox.dir.path().display());
    let (ok, _, stderr) = list(&sandbox, &catalog, &["-m", &glob]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("model '{glob}': the glob matches no file in ")),
        "{stderr}"
    );
}

#[test]
fn files_of_a_directory_are_listed_without_a_catalog() {
    let sandbox = Sandbox::new();
    let models = sandbox.dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::os::unix::fs::symlink(gemma(), models.join("b-gemma.gguf")).unwrap();
    std::os::unix::fs::symlink(smollm(), models.join("a-smollm.gguf")).unwrap();
    let mut cmd = sandbox.cmd();
    cmd.args(["models", "list", "-o", "json", "-m"])
        .arg(&models);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    assert_eq!(names(&rows(&stdout)), ["a-smollm.gguf", "b-gemma.gguf"]);
}

/// Load over two catalog models: the plan runs once per model in one run, and each model's step
/// is stored against that model's file (its sha256), not the first model's.
#[test]
fn load_runs_its_plan_once_per_model_and_stores_each_step_with_its_model() {
    let sandbox = Sandbox::new();
    let catalog = catalog(&sandbox);
    let mut cmd = sandbox.cmd();
    cmd.args(["load", "-m", "smollm,gemma", "--catalog"])
        .arg(&catalog);
    cmd.args([
        "--concurrency",
        "1",
        "--requests",
        "3",
        "--input",
        "16",
        "--output",
        "4",
    ]);
    let bin = common::llama_bin("llama-server");
    let build = format!("b11434={}", bin.parent().unwrap().display());
    cmd.args(["-o", "json", "--build", &build]);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(300));
    assert!(status.success(), "{stderr}");
    let steps = rows(&stdout);
    let labels: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    let expected = [
        "b11434/SmolLM2-135M-Instruct.Q4_1.gguf c1",
        "b11434/gemma-3-270m-q4_k_m.gguf c1",
    ];
    assert_eq!(labels, expected);
    assert!(steps.iter().all(|s| s["completed"] == 3), "{stdout}");
    let mut show = sandbox.cmd();
    show.args(["runs", "show", "last", "--json"]);
    let (_, stdout, stderr) = common::run(show, Duration::from_secs(60));
    let detail: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stderr}"));
    let trials = detail["trials"].as_array().unwrap();
    let shas: Vec<&str> = trials
        .iter()
        .map(|t| t["model_sha256"].as_str().unwrap())
        .collect();
    let expected = [smollm(), gemma()].map(|m| bakeoff::formats::sha256_file(&m).unwrap());
    assert_eq!(shas, expected, "one trial per model, in the order given");
    assert!(trials.iter().all(|t| t["status"] == "ok"), "{stdout}");
    // Both steps name the build's engine row (the --build binary, build 11434).
    let engines: Vec<&str> = trials
        .iter()
        .map(|t| t["engine"].as_str().unwrap())
        .collect();
    assert_eq!(engines, ["llama-server 0.6.0-dev (build 11434)"; 2]);
}

/// Gate over two models with a named build: each (build, model) gets its own baseline and
/// candidate in the one run, and every row says which build and model it is.
#[test]
fn gate_gives_each_build_and_model_its_own_baseline_and_candidates() {
    let sandbox = Sandbox::new();
    let dir = sandbox.dir.path();
    let suite = "[[canary]]\nname = \"count\"\nmax_tokens = 16\nprompt = \"How many legs does a cat have? Answer with a number.\"\nexpect = { kind = \"count\", answer = 4 }\n";
    std::fs::write(dir.join("suite.toml"), suite).unwrap();
    let checks =
        "[checks]\nkld = \"off\"\nagreement = false\ntg_reps = 0\nsuite = \"suite.toml\"\n";
    let candidates = "[baseline]\nname = \"f16\"\nflags = \"-t 1\"\n[[candidate]]\nname = \"q8_0\"\nflags = \"-t 1 -fa on -ctk q8_0 -ctv q8_0\"\n";
    let models = format!("{},{}", smollm().display(), gemma().display());
    let text = format!("model = \"{models}\"\nctx = 1024\n{candidates}{checks}");
    std::fs::write(dir.join("candidates.toml"), text).unwrap();
    let bin = common::llama_bin("llama-server");
    let build = format!("b11434={}", bin.parent().unwrap().display());
    let mut cmd = sandbox.cmd();
    cmd.arg("gate")
        .arg(dir.join("candidates.toml"))
        .args(["--build", &build, "-o", "json"]);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(300));
    assert!(status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("{stderr}"));
    let rows = report["candidates"].as_array().unwrap();
    let named: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["candidate"].as_str().unwrap(),
                r["model"].as_str().unwrap(),
            )
        })
        .collect();
    let (smol, gem) = (
        smollm().display().to_string(),
        gemma().display().to_string(),
    );
    let expected = [
        ("b11434/SmolLM2-135M-Instruct.Q4_1.gguf f16", smol.as_str()),
        ("b11434/SmolLM2-135M-Instruct.Q4_1.gguf q8_0", smol.as_str()),
        ("b11434/gemma-3-270m-q4_k_m.gguf f16", gem.as_str()),
        ("b11434/gemma-3-270m-q4_k_m.gguf q8_0", gem.as_str()),
    ];
    assert_eq!(named, expected);
    assert!(
        rows.iter().all(|r| r["canaries"][0]["name"] == "count"),
        "{stdout}"
    );
}

#[test]
fn one_file_under_two_names_is_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    let (a, b) = (
        sandbox.dir.path().join("a.gguf"),
        sandbox.dir.path().join("b.gguf"),
    );
    common::tensorless_gguf(&a, 2048);
    std::fs::copy(&a, &b).unwrap();
    let mut cmd = sandbox.cmd();
    cmd.args(["load", "-m"])
        .arg(format!("{},{}", a.display(), b.display()));
    let (status, _, stderr) = common::run(cmd, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{stderr}");
    let expected = format!(
        "{} and {} are the same model (sha256 ",
        a.display(),
        b.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // Nothing ran: no run was recorded.
    let mut runs = sandbox.cmd();
    runs.args(["runs", "list", "-o", "json"]);
    let (_, stdout, _) = common::run(runs, Duration::from_secs(60));
    assert!(!stdout.contains("\"load\""), "{stdout}");
}

/// A new user with no catalog gets the model cache listed (and told so), not an error.
#[test]
fn with_no_catalog_the_model_cache_is_listed_and_said_so() {
    let sandbox = Sandbox::new();
    let absent = sandbox.dir.path().join("no-such-catalog.toml");
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_MODELS", &absent)
        .args(["models", "list", "-o", "json"]);
    let (status, stdout, stderr) = common::run(cmd, Duration::from_secs(60));
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("no model catalog at {}", absent.display())),
        "{stderr}"
    );
    let rows = rows(&stdout);
    let listed = names(&rows);
    for model in [common::smollm(), common::gemma()] {
        let name = model.file_name().unwrap().to_string_lossy().into_owned();
        assert!(listed.contains(&name.as_str()), "{name} not in {listed:?}");
    }
    // A category needs a catalog: that stays an error naming the missing file.
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_MODELS", &absent)
        .args(["models", "list", "--category", "coder"]);
    let (status, _, stderr) = common::run(cmd, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
}
