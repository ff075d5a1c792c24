//! The scheduler examples in `examples/cluster/` run: the Slurm array script parses under `bash -n`
//! and its bakeoff command plans its task's shard; the Kubernetes Job's command does the same with
//! the index Kubernetes sets.

use crate::common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn example(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
    root.join(name)
}

/// The `config N: ...` numbers of a dry run.
fn config_numbers(stdout: &str) -> Vec<&str> {
    fn number(line: &str) -> Option<&str> {
        Some(line.strip_prefix("  config ")?.split_once(':')?.0)
    }
    stdout.lines().filter_map(number).collect()
}

#[test]
fn the_slurm_array_script_parses_and_plans_its_tasks_shard() {
    let script = example("bench-array.sbatch");
    let mut check = Command::new("bash");
    check.arg("-n").arg(&script);
    let (status, _, stderr) = run(check, LIMIT);
    assert!(status.success(), "bash -n: {stderr}");
    let text = std::fs::read_to_string(&script).unwrap();
    for line in [
        "#SBATCH --array=1-4",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --exclusive",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
    // The script's own command, as array task 3 of 4 would run it, as a dry run.
    let sandbox = Sandbox::new();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"bakeoff() { "$BAKEOFF_BIN" "$@" --dry-run; }; export -f bakeoff; bash "$0""#)
        .arg(&script);
    cmd.env("BAKEOFF_BIN", env!("CARGO_BIN_EXE_bakeoff"))
        .env("BAKEOFF_DB", sandbox.db())
        .env("BAKEOFF_LOCK", sandbox.dir.path().join("measure.lock"))
        .env("MODEL", smollm())
        .env("SLURM_ARRAY_JOB_ID", "77")
        .env("SLURM_ARRAY_TASK_ID", "3")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .env("SLURM_ARRAY_TASK_MIN", "1");
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    // Three KV types × two micro-batches: task 3 of 4 takes cell 3 alone.
    assert!(
        stdout.contains("  shard 3/4: 1 of the matrix's 6 cells\n"),
        "{stdout}"
    );
    assert_eq!(config_numbers(&stdout), ["3"], "{stdout}");
}

/// The Job's `args: [...]` (a flow sequence of quoted strings, so JSON too).
fn job_args(yaml: &str) -> Vec<String> {
    let start = yaml.find("args: [").expect("args: [ in the Job") + "args: ".len();
    let end = start + yaml[start..].find(']').expect("closing ]") + 1;
    serde_json::from_str(&yaml[start..end]).expect("args as a JSON array")
}

#[test]
fn the_indexed_job_shards_by_its_completion_index() {
    let yaml = std::fs::read_to_string(example("bench-indexed-job.yaml")).unwrap();
    for line in [
        "  completionMode: Indexed",
        "  completions: 4",
        "  parallelism: 4",
        "              nvidia.com/gpu: 1",
        "            - name: BAKEOFF_SHARDS",
        "              value: \"4\"",
        "            - name: BAKEOFF_DB",
        "                secretKeyRef:",
    ] {
        assert!(yaml.lines().any(|l| l == line), "{line:?} missing");
    }
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.cmd();
    let model = smollm().display().to_string();
    let args = job_args(&yaml)
        .into_iter()
        .map(|arg| match arg.starts_with("/models/") {
            true => model.clone(),
            false => arg,
        });
    cmd.args(args).arg("--dry-run");
    cmd.env("JOB_COMPLETION_INDEX", "0")
        .env("BAKEOFF_SHARDS", "4");
    let (status, stdout, stderr) = run(cmd, LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.contains("  shard 1/4: 2 of the matrix's 6 cells\n"),
        "{stdout}"
    );
    assert_eq!(config_numbers(&stdout), ["1", "5"], "{stdout}");
}
