//! `bakeoff plan --gpus`: each GPU's share of SmolLM2 under a layer or row split, as llama.cpp
//! places layers; no engine is started (the split plan reads the GGUF alone).

use crate::common;

use common::*;
use std::time::Duration;

fn plan(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    cmd.arg("plan").arg(smollm()).args(args);
    run(cmd, Duration::from_secs(60))
}

#[test]
fn an_even_split_overflows_the_small_gpu_and_a_skewed_one_fits() {
    let (status, stdout, stderr) = plan(&[
        "--ctx", "8192", "--gpus", "1G,64M", "-sm", "layer", "-ts", "1/1",
    ]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("-sm layer"), "{stdout}");
    // 31 slots (30 layers + output) at i/31: 16 below one half on GPU 0, the rest and the output on GPU 1.
    assert!(stdout.contains("  GPU 0  16 layers: "), "{stdout}");
    let second = stdout
        .lines()
        .find(|l| l.starts_with("  GPU 1  14 layers + output: "))
        .unwrap();
    assert!(second.ends_with("of 64.00 MiB → does NOT fit"), "{second}");
    // llama.cpp's comma spelling is taken here (no sweep), as 30 layers to 1.
    let (status, stdout, stderr) =
        plan(&["--ctx", "2048", "--gpus", "1G,64M", "-ts", "30,1", "--json"]);
    assert!(status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let devices = doc["devices"]["devices"].as_array().unwrap();
    assert_eq!(devices[1]["output"], true);
    assert!(
        devices[1]["total_bytes"].as_u64() < devices[1]["memory_bytes"].as_u64(),
        "{devices:?}"
    );
}

#[test]
fn split_flags_without_gpus_or_with_a_bad_size_are_argument_errors() {
    let (status, _, stderr) = plan(&["-sm", "row"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--gpus"), "{stderr}");
    let (status, _, stderr) = plan(&["--gpus", "24G,lots"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --gpus 24G,lots: 'lots' is not a size"),
        "{stderr}"
    );
}
