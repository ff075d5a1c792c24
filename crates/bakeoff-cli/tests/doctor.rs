//! `bakeoff doctor` finds the engine and models set-up installed, and fails with a hint when not.

use crate::common;

use common::*;
use std::time::Duration;

#[test]
fn doctor_reports_engine_models_and_fingerprint() {
    let _ = (smollm(), gemma());
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.args(["doctor", "--json"]);
    let (status, stdout, stderr) = run(cmd, Duration::from_secs(120));
    assert!(status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let engine = doc["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "cache")
        .expect("cached engine");
    assert_eq!(engine["build_number"], 11434);
    assert!(engine["tools"].as_array().unwrap().len() == 4);
    let shas: Vec<&str> = doc["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sha256"].as_str().unwrap())
        .collect();
    assert!(shas.contains(&"b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"));
    assert!(shas.contains(&"a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"));
    let system = &doc["system"];
    assert!(system["ram_bytes"].as_u64().unwrap() > 0);
    assert!(!system["kernel"].as_str().unwrap().is_empty());
    assert!(system.get("swappiness").is_some() && system.get("transparent_hugepages").is_some());
}

#[test]
fn doctor_without_engine_fails_with_a_hint() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_HOME", sandbox.dir.path().join("empty"))
        .env("PATH", "/usr/bin:/bin")
        .arg("doctor");
    let (status, _, stderr) = run(cmd, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("error: no usable engine"), "{stderr}");
    assert!(stderr.contains("hint: run scripts/setup"), "{stderr}");
}

#[test]
fn engine_path_is_honoured() {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.env("BAKEOFF_HOME", sandbox.dir.path().join("empty"))
        .env("PATH", "/usr/bin:/bin");
    cmd.arg("doctor")
        .arg("--json")
        .arg("--engine-path")
        .arg(llama_bin("llama-server"));
    let (_, stdout, _) = run(cmd, Duration::from_secs(60));
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["engines"][0]["source"], "--engine-path");
    assert_eq!(doc["engines"][0]["build_number"], 11434);
}
