//! Two real llama.cpp builds (b11434 from `scripts/setup`, b10798 from `--second-build`): what
//! bakeoff records as each one's identity, which flags each knows, and how `runs show` lists them.

use crate::common;

use bakeoff::engines::build::{identify, BuildIdentity, BuildRef, KnownFlags};
use bakeoff::measure::sink::NewTrial;
use bakeoff::store::Store;
use bakeoff::system::Fingerprint;
use common::{llama_bin, run, second_build, Sandbox};
use std::process::Command;
use std::time::Duration;

fn new_build() -> BuildRef {
    let server = llama_bin("llama-server");
    BuildRef {
        name: "b11434".into(),
        path: server.parent().unwrap().to_path_buf(),
    }
}

fn old_build() -> BuildRef {
    BuildRef {
        name: "b10798".into(),
        path: second_build(),
    }
}

fn identities() -> (BuildIdentity, BuildIdentity) {
    let new = identify(&new_build(), "llama-server").unwrap();
    let old = identify(&old_build(), "llama-server").unwrap();
    (new, old)
}

#[test]
fn two_real_builds_have_their_own_identity() {
    let (new, old) = identities();
    assert_eq!(
        (new.build_number, old.build_number),
        (Some(11434), Some(10798))
    );
    assert_eq!((new.name.as_str(), old.name.as_str()), ("b11434", "b10798"));
    assert!(new.version.is_some() && old.version.is_some());
    for identity in [&new, &old] {
        assert_eq!(identity.binary_sha256.len(), 64, "{identity:?}");
        assert!(identity.backends.iter().any(|b| b == "CPU"), "{identity:?}");
        assert!(identity
            .built_with
            .as_deref()
            .unwrap_or("")
            .starts_with("built with"));
    }
    assert_ne!(new.binary_sha256, old.binary_sha256);
    // The path given was the bin directory; the identity names the binary itself.
    assert!(old
        .binary
        .ends_with("llama.cpp-b10798-cpu/bin/llama-server"));
}

#[test]
fn no_mmap_is_unknown_to_exactly_one_build_and_that_build_refuses_it() {
    let new_server = new_build().tool("llama-server").unwrap();
    let old_server = old_build().tool("llama-server").unwrap();
    let new = KnownFlags::of(&new_server).unwrap();
    let old = KnownFlags::of(&old_server).unwrap();
    let args: Vec<String> = [
        "-ctk",
        "q8_0",
        "--no-mmap",
        "-ngl",
        "-1",
        "--load-mode",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(new.unknown(&args), ["--no-mmap"]);
    assert!(old.unknown(&args).is_empty(), "{:?}", old.unknown(&args));
    // What the help says is what the binary does: b11434 rejects --no-mmap before --version,
    // b10798 takes it.
    let status = |server: &std::path::Path| {
        let mut cmd = Command::new(server);
        cmd.args(["--no-mmap", "--version"]);
        run(cmd, Duration::from_secs(30)).0
    };
    assert!(!status(&new_server).success());
    assert!(status(&old_server).success());
}

#[test]
fn runs_show_lists_each_build_with_its_identity() {
    let (new, old) = identities();
    let sandbox = Sandbox::new();
    let store = Store::open(&sandbox.db()).unwrap();
    let system = store.system_id(&Fingerprint::collect()).unwrap();
    let run_id = store
        .begin_run(
            "bench",
            "bakeoff bench --build ...",
            system,
            None,
            &serde_json::json!({}),
        )
        .unwrap();
    let workload = serde_json::json!({"tg": 32});
    for identity in [&new, &old] {
        let engine = store.build_engine_id("llama-server", identity).unwrap();
        let trial = NewTrial {
            engine_id: Some(engine),
            ..NewTrial::new(None, &workload, 0)
        };
        store.begin_trial(run_id, &trial).unwrap();
    }
    drop(store);

    let mut cmd = sandbox.cmd();
    cmd.args(["runs", "show", "last"]);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    for identity in [&new, &old] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  build    {} ", identity.name)))
            .unwrap_or_else(|| panic!("no build line for {}:\n{stdout}", identity.name));
        let build = format!("(build {}, ", identity.build_number.unwrap());
        assert!(line.contains(&build), "{line}");
        assert!(line.contains("backends: CPU"), "{line}");
        assert!(
            line.ends_with(&format!("sha256 {}", &identity.binary_sha256[..12])),
            "{line}"
        );
    }

    let mut cmd = sandbox.cmd();
    cmd.args(["runs", "show", "last", "-o", "json"]);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    let detail: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let builds = detail["builds"].as_array().expect("builds");
    let names: Vec<_> = builds.iter().map(|b| b["build_name"].as_str()).collect();
    assert_eq!(names, [Some("b11434"), Some("b10798")]);
    assert_eq!(
        builds[1]["binary_sha256"].as_str(),
        Some(old.binary_sha256.as_str())
    );
    assert_eq!(builds[1]["build_number"], 10798);
}

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1";
const GEMMA: &str = "gemma-3-270m-q4_k_m";

/// `bakeoff ARGS...` in `sandbox`, which must succeed; its stdout.
fn bakeoff_ok(sandbox: &Sandbox, args: &[String]) -> String {
    let mut cmd = sandbox.cmd();
    cmd.args(args);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(600));
    assert!(status.success(), "bakeoff {args:?}: {status}\n{stderr}");
    stdout
}

fn json_of(sandbox: &Sandbox, args: &[&str]) -> serde_json::Value {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = bakeoff_ok(sandbox, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
}

/// `bench` over SmolLM2 and Gemma (`-m A,B`) on both real builds, then `EXTRA`.
fn sweep_args(models: &[std::path::PathBuf], extra: &[&str]) -> Vec<String> {
    let models: Vec<String> = models.iter().map(|m| m.display().to_string()).collect();
    let mut args = vec!["bench".to_string(), "-m".into(), models.join(",")];
    for build in [new_build(), old_build()] {
        args.push("--build".into());
        args.push(format!("{}={}", build.name, build.path.display()));
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Issue 15 on real engines: two models × two builds land in one run, and the shootout has a row
/// for each pair naming its model and its build's identity.
#[test]
fn two_models_on_two_real_builds_are_one_run_and_a_four_row_shootout() {
    let sandbox = Sandbox::new();
    let models = [common::smollm(), common::gemma()];
    let bench = sweep_args(&models, &["-p", "16", "-n", "4", "-r", "1", "-t", "1"]);
    bakeoff_ok(&sandbox, &bench);

    let rows = json_of(&sandbox, &["report", "last", "--shootout", "-o", "json"]);
    let mut ids: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().into(),
                r["build"].as_str().unwrap().into(),
            )
        })
        .collect();
    ids.sort();
    // Sorted as strings: SmolLM2's capital S comes before gemma.
    let expected = [
        (SMOL, "b10798"),
        (SMOL, "b11434"),
        (GEMMA, "b10798"),
        (GEMMA, "b11434"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(m, b)| (m.to_string(), b.to_string()))
        .collect();
    assert_eq!(ids, expected, "{rows:#}");
    for row in rows.as_array().unwrap() {
        let tg = row["tg4"]["median"].as_f64();
        assert!(tg.is_some_and(|t| t > 0.0), "no tg4 in {row:#}");
        let quant = if row["model"] == SMOL {
            "Q4_1"
        } else {
            "Q4_K_M"
        };
        assert_eq!(row["quant"], quant, "{row:#}");
    }

    // Every trial names the engine row of its own build: the run's builds are the two real ones.
    let detail = json_of(&sandbox, &["runs", "show", "last", "--json"]);
    let mut numbers: Vec<i64> = detail["builds"]
        .as_array()
        .unwrap_or_else(|| panic!("no builds in {detail:#}"))
        .iter()
        .map(|b| b["build_number"].as_i64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, [10798, 11434], "{:#}", detail["builds"]);
    let trials = detail["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 8, "2 models × 2 builds × (pp16, tg4)");
    assert!(trials.iter().all(|t| t["status"] == "ok"), "{trials:#?}");
}

/// A flag one build does not know (b11434's `--spec-draft-sampling`) skips that build's cells
/// with the reason, and the other build is measured.
#[test]
fn a_flag_only_one_real_build_knows_is_skipped_on_the_other_only() {
    let sandbox = Sandbox::new();
    let extra = [
        "-p",
        "0",
        "-n",
        "4",
        "-r",
        "1",
        "--server-flag=--spec-draft-sampling=greedy",
    ];
    bakeoff_ok(&sandbox, &sweep_args(&[common::smollm()], &extra));
    let detail = json_of(&sandbox, &["runs", "show", "last", "--json"]);
    let trials = detail["trials"].as_array().unwrap();
    let of = |build: &str| -> Vec<&serde_json::Value> {
        trials.iter().filter(|t| t["build"] == build).collect()
    };
    let (new, old) = (of("b11434"), of("b10798"));
    assert!(
        !new.is_empty() && new.iter().all(|t| t["status"] == "ok"),
        "{trials:#?}"
    );
    assert!(!old.is_empty(), "no trial of b10798: {trials:#?}");
    for trial in old {
        assert_eq!(trial["status"], "skipped", "{trial:#}");
        let note = trial["note"].as_str().unwrap_or_default();
        assert!(note.contains("--spec-draft-sampling"), "{note}");
    }
}
