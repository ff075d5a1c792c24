//! The option conventions every command shares, checked on `--help` and on argument errors: no
//! engine is started here.

use crate::common;

use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn bakeoff(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(args);
    run(cmd, LIMIT)
}

fn help(command: &[&str]) -> String {
    let mut args = command.to_vec();
    args.push("--help");
    let (status, stdout, stderr) = bakeoff(&args);
    assert!(status.success(), "{command:?}: {stderr}");
    stdout
}

#[test]
fn engine_path_is_offered_only_where_an_engine_is_started() {
    // Regression: --engine-path was global, so `runs`, `report` and `compare` offered a flag that did nothing.
    for command in [
        &["runs"][..],
        &["runs", "list"],
        &["report"],
        &["compare"],
        &["journal", "show"],
        &["profile", "list"],
        &["plan"],
        &["tools", "diff"],
    ] {
        assert!(!help(command).contains("--engine-path"), "{command:?}");
    }
    for command in [
        &["bench"][..],
        &["load"],
        &["gate"],
        &["serve"],
        &["doctor"],
        &["model", "synth"],
        &["profile", "export"],
        &["tools", "run"],
    ] {
        assert!(help(command).contains("--engine-path"), "{command:?}");
    }
}

#[test]
fn dash_o_is_the_format_and_out_the_file_in_every_command() {
    for command in [
        &["bench"][..],
        &["load"],
        &["gate"],
        &["report"],
        &["runs", "list"],
        &["runs", "show"],
        &["compare"],
        &["journal", "show"],
        &["journal", "add"],
    ] {
        let text = help(command);
        assert!(
            text.contains("-o, --format <FORMAT>"),
            "{command:?}: {text}"
        );
    }
    let report = help(&["report"]);
    assert!(report.contains("--out <FILE>"), "{report}");
    let load = help(&["load"]);
    assert!(load.contains("--output-len <DIST>"), "{load}");
    for command in [
        &["model", "synth"][..],
        &["profile", "export"],
        &["tools", "export"],
    ] {
        let text = help(command);
        assert!(text.contains("--out <FILE>"), "{command:?}: {text}");
        assert!(!text.contains("-o,"), "{command:?}: {text}");
    }
}

#[test]
fn unknown_format_values_are_argument_errors_naming_the_choices() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["load", "--self-test", "-o", "xml"],
            "md, csv, json, jsonl",
        ),
        (&["gate", "--show", "last", "-o", "csv"], "md, json"),
        (
            &[
                "tools",
                "run",
                "--url",
                "http://127.0.0.1:9",
                "--force-tools",
                "often",
            ],
            "never, first, always",
        ),
        (
            &[
                "model", "synth", "--like", "m.gguf", "--out", "x", "--dtype", "q4",
            ],
            "f16, f32",
        ),
    ];
    for (args, choices) in cases {
        let (status, stdout, stderr) = bakeoff(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
        assert!(stderr.contains(choices), "{args:?}: {stderr}");
    }
}

#[test]
fn dash_o_json_and_the_json_shorthand_print_the_same() {
    let sandbox = Sandbox::new();
    // An empty database: read-only commands no longer create one (issue 14).
    bakeoff::store::Store::open(&sandbox.db()).expect("database");
    let runs = |args: &[&str]| {
        let mut cmd = sandbox.cmd();
        cmd.args(args);
        run(cmd, LIMIT)
    };
    let (status, by_format, stderr) = runs(&["runs", "list", "-o", "json"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(by_format.trim(), "[]");
    let (_, by_flag, _) = runs(&["runs", "list", "--json"]);
    assert_eq!(by_flag, by_format);
    let (status, _, stderr) = runs(&["runs", "list", "-o", "json", "--json"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let (status, stdout, stderr) = runs(&["journal", "show", "-o", "json"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "[]");
}

#[test]
fn old_spellings_still_parse() {
    // load --output-format and --output, report -o FILE, synth -o FILE: kept as aliases.
    // Each call fails on a later value, so the old spelling before it was accepted.
    let old_load = [
        "load",
        "--output",
        "8",
        "--output-format",
        "xml",
        "--self-test",
    ];
    let (status, _, stderr) = bakeoff(&old_load);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("invalid value 'xml'"), "{stderr}");
    let old_synth = [
        "model", "synth", "--like", "m.gguf", "-o", "x", "--dtype", "q4",
    ];
    let (status, _, stderr) = bakeoff(&old_synth);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("invalid value 'q4'"), "{stderr}");
    let (status, _, stderr) = bakeoff(&["report", "last", "-o", "r.txt"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--out r.txt: cannot tell the format"),
        "{stderr}"
    );
}
