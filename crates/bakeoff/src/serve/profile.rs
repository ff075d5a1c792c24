//! Serving profiles: a measured run's winning configuration turned into a profile (model file and
//! hash, engine binary, llama-server flags), and a profile turned into the llama-server command
//! line (shell-quoted) or a systemd unit.

use crate::domain::EngineConfig;
use crate::measure::stats;
use crate::store::{Profile, RunConfig, Store};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Flags a profile may not carry: bakeoff (or the unit) sets the model, host and port itself.
const OWNED_FLAGS: [&str; 4] = ["-m", "--model", "--host", "--port"];

/// One of a run's configs with its tg speed: the geometric mean over tg tests of the per-test
/// median t/s (the plain median when the run had one tg test).
#[derive(Debug, Clone, Serialize)]
pub struct RankedConfig {
    pub config: RunConfig,
    /// Flags as the tables print them, e.g. `-ctk q8_0 -fa on`.
    pub label: String,
    pub tg_tps: Option<f64>,
    /// Trials of this config that completed.
    pub ok_trials: usize,
}

/// A profile about to be saved, with how its config was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct Draft {
    pub profile: Profile,
    pub chosen: RankedConfig,
    /// Why this config: named by the user, or the fastest by tg median.
    pub reason: String,
    /// Settings bakeoff added only to measure (one slot, a small context): not stored.
    pub bench_only: Vec<String>,
    pub configs: Vec<RankedConfig>,
}

/// Profile names become file and unit names: keep them to letters, digits, `.`, `_` and `-`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::input(format!(
            "profile name '{name}': use letters, digits, '.', '_' and '-' (at most 64, not starting with '-' or '.')"
        )))
    }
}

/// A stored config's flags; one that does not parse is an error, never "no flags" (a profile
/// drafted from it would silently serve the engine's defaults).
fn engine_config(run_id: i64, config: &RunConfig) -> Result<EngineConfig> {
    serde_json::from_value(config.flags.clone()).map_err(|e| {
        Error::input(format!(
            "run {run_id}: stored config {} ({}) does not parse: {e}",
            config.config_id, config.hash
        ))
        .with_hint("the database may come from another bakeoff version or have been edited by hand")
    })
}

/// Rank every config of a run by tg speed, fastest first (unmeasured configs last).
pub fn rank_configs(store: &Store, run_id: i64) -> Result<Vec<RankedConfig>> {
    let detail = store.run_detail(run_id)?;
    let mut ranked: Vec<RankedConfig> = Vec::new();
    for config in store.run_configs(run_id)? {
        let trials: Vec<_> = detail
            .trials
            .iter()
            .filter(|t| t.config_hash.as_deref() == Some(config.hash.as_str()))
            .filter(|t| t.status == "ok")
            .collect();
        let mut by_test: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for trial in &trials {
            if trial.workload["kind"].as_str() != Some("tg") {
                continue;
            }
            let value = trial.samples.iter().find(|s| {
                s.metric == "tg_tps" && matches!(s.source.as_str(), "client" | "llama-bench")
            });
            if let (Some(test), Some(sample)) = (trial.workload["test"].as_str(), value) {
                by_test
                    .entry(test.to_string())
                    .or_default()
                    .push(sample.value);
            }
        }
        let medians: Vec<f64> = by_test.values().map(|v| stats::median(v)).collect();
        let tg_tps = (!medians.is_empty())
            .then(|| (medians.iter().map(|m| m.ln()).sum::<f64>() / medians.len() as f64).exp());
        ranked.push(RankedConfig {
            label: engine_config(run_id, &config)?.label(),
            config,
            tg_tps,
            ok_trials: trials.len(),
        });
    }
    ranked.sort_by(|a, b| {
        let key = |r: &RankedConfig| r.tg_tps.unwrap_or(f64::NEG_INFINITY);
        key(b).total_cmp(&key(a))
    });
    Ok(ranked)
}

fn list_configs(configs: &[RankedConfig]) -> String {
    configs
        .iter()
        .map(|c| {
            format!(
                "{} ({}, {})",
                c.config.config_id,
                &c.config.hash[..8.min(c.config.hash.len())],
                c.label
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Pick a run's config: by config id or hash prefix when `selector` is given, else the fastest by
/// tg median (or the only one).
pub fn choose_config(
    run_id: i64,
    configs: &[RankedConfig],
    selector: Option<&str>,
) -> Result<(RankedConfig, String)> {
    if configs.is_empty() {
        return Err(
            Error::input(format!("run {run_id} measured no engine configuration"))
                .with_hint("save a profile from a `bakeoff bench` or `bakeoff load` run"),
        );
    }
    let chosen = match selector {
        Some(selector) => {
            let matches: Vec<&RankedConfig> = configs
                .iter()
                .filter(|c| {
                    selector.parse::<i64>().ok() == Some(c.config.config_id)
                        || (selector.len() >= 4 && c.config.hash.starts_with(selector))
                })
                .collect();
            match matches.as_slice() {
                [one] => ((*one).clone(), format!("config {selector} as asked")),
                [] => {
                    return Err(
                        Error::input(format!("run {run_id} has no config '{selector}'")).with_hint(
                            format!("its configs (id, hash, flags): {}", list_configs(configs)),
                        ),
                    )
                }
                _ => {
                    return Err(Error::input(format!(
                        "config '{selector}' is ambiguous in run {run_id}"
                    ))
                    .with_hint(format!(
                        "its configs (id, hash, flags): {}",
                        list_configs(configs)
                    )))
                }
            }
        }
        None => auto_choice(run_id, configs)?,
    };
    if chosen.0.ok_trials == 0 {
        return Err(Error::input(format!(
            "config {} ({}) of run {run_id} has no completed trial (skipped or failed)",
            chosen.0.config.config_id, chosen.0.label
        ))
        .with_hint("`bakeoff runs show RUN` says why; pick a measured config as RUN:CONFIG"));
    }
    Ok(chosen)
}

fn auto_choice(run_id: i64, configs: &[RankedConfig]) -> Result<(RankedConfig, String)> {
    if let Some(best) = configs.first().filter(|c| c.tg_tps.is_some()) {
        let tps = best.tg_tps.unwrap_or_default();
        return Ok((
            best.clone(),
            format!("fastest of {} by tg median ({tps:.2} t/s)", configs.len()),
        ));
    }
    if configs.iter().all(|c| c.ok_trials == 0) {
        return Err(Error::input(format!(
            "run {run_id} has no completed trial: every config was skipped or failed"
        ))
        .with_hint("`bakeoff runs show RUN` says why"));
    }
    match configs {
        [only] => Ok((only.clone(), "the run's only config".to_string())),
        _ => Err(Error::input(format!(
            "run {run_id} measured no tg, so there is no fastest config to pick"
        ))
        .with_hint(format!(
            "name one as RUN:CONFIG; configs (id, hash, flags): {}",
            list_configs(configs)
        ))),
    }
}

/// The engine to serve with: llama-server itself, or the llama-server beside the llama-bench a
/// run used.
pub(crate) fn server_binary(engine_path: &str) -> Option<String> {
    let path = Path::new(engine_path);
    let server = match path.file_name()?.to_str()? {
        "llama-server" => path.to_path_buf(),
        _ => path.parent()?.join("llama-server"),
    };
    server.is_file().then(|| server.display().to_string())
}

/// Build the profile `name` from run `run_id` (config `selector`, else the fastest), with
/// `extra_flags` appended to the config's flags.
pub fn draft(
    store: &Store,
    name: &str,
    run_id: i64,
    selector: Option<&str>,
    extra_flags: &[String],
    fallback: Option<&str>,
) -> Result<Draft> {
    check_name(name)?;
    let configs = rank_configs(store, run_id)?;
    let (chosen, reason) = choose_config(run_id, &configs, selector)?;
    let model_id = chosen.config.model_id.ok_or_else(|| {
        Error::input(format!(
            "run {run_id} recorded no model for config {}",
            chosen.config.config_id
        ))
    })?;
    let model = store.model_by_id(model_id)?;
    let engine = chosen
        .config
        .engine_id
        .map(|id| store.engine_by_id(id))
        .transpose()?;
    let detail = store.run_detail(run_id)?;
    let plan = &detail.params["plan"];
    let config = engine_config(run_id, &chosen.config)?;
    let mut flags = config.args();
    if config.extra.is_empty() && !plan["extra_args"].is_null() {
        // Bench runs keep their pass-through flags in the plan: every config ran with them.
        let passed: Vec<String> =
            serde_json::from_value(plan["extra_args"].clone()).map_err(|e| {
                Error::input(format!(
                    "run {run_id}: the stored plan's extra_args do not parse: {e}"
                ))
            })?;
        flags.extend(passed);
    }
    flags.extend(extra_flags.iter().cloned());
    if let Some(flag) = flags.iter().find(|f| OWNED_FLAGS.contains(&f.as_str())) {
        return Err(Error::input(format!(
            "engine flag {flag} cannot be part of a profile: the model comes from the run, host and port from `serve`/`export`"
        )));
    }
    if let Some(fallback) = fallback {
        if fallback == name {
            return Err(Error::input(format!(
                "profile '{name}' cannot be its own fallback"
            )));
        }
        store.profile(fallback)?;
    }
    let bench_only = bench_only_settings(detail.run.kind.as_str(), plan, &config);
    let profile = Profile {
        name: name.to_string(),
        run_id: Some(run_id),
        config_id: Some(chosen.config.config_id),
        config_hash: Some(chosen.config.hash.clone()),
        model_id: Some(model.id),
        model_path: model.path,
        model_sha256: Some(model.sha256),
        engine_id: engine.as_ref().map(|e| e.id),
        engine_path: engine.as_ref().and_then(|e| server_binary(&e.path)),
        engine_version: engine.map(|e| {
            format!(
                "{} {} (build {})",
                e.kind,
                e.version.unwrap_or_else(|| "?".into()),
                e.build_number
                    .map(|b| b.to_string())
                    .unwrap_or_else(|| "?".into())
            )
        }),
        flags,
        fallback: fallback.map(str::to_string),
        canary_reference: None,
        created_at: String::new(),
        updated_at: String::new(),
    };
    Ok(Draft {
        profile,
        chosen,
        reason,
        bench_only,
        configs,
    })
}

/// `-np 1` and `-c N`, which a through-server bench adds unless swept: right for measuring one
/// request at a time, wrong for a daily server.
fn bench_only_settings(kind: &str, plan: &serde_json::Value, config: &EngineConfig) -> Vec<String> {
    if kind != "bench" || plan["engine"].as_str() != Some("llama-server") {
        return Vec::new();
    }
    let mut out = Vec::new();
    if !config.flags.contains_key("-np") {
        out.push("-np 1".to_string());
    }
    if !config.flags.contains_key("-c") {
        let plan: Option<crate::measure::bench::BenchPlan> =
            serde_json::from_value(plan.clone()).ok();
        if let Some(plan) = plan {
            out.push(format!("-c {}", plan.matrix.context_needed()));
        }
    }
    out
}

/// The full llama-server argument vector (program first) for `profile` on `host:port`.
pub fn command(profile: &Profile, binary: &Path, host: &str, port: u16) -> Vec<String> {
    let mut argv = vec![
        binary.display().to_string(),
        "-m".to_string(),
        profile.model_path.clone(),
        "--host".to_string(),
        host.to_string(),
        "--port".to_string(),
        port.to_string(),
    ];
    argv.extend(profile.flags.iter().cloned());
    argv
}

/// POSIX shell quoting: bare when safe, else single quotes (`'` written as `'\''`).
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

pub fn shell_command(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word of a systemd command line: `%` and `$` doubled (specifiers, variables), quoted when
/// it holds spaces, quotes, backslashes or `;`.
fn systemd_word(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    let needs_quotes = escaped.is_empty()
        || escaped
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if needs_quotes {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

/// A systemd service unit that runs `argv` and restarts it when it fails.
pub fn systemd_unit(profile: &Profile, argv: &[String]) -> String {
    let source = match (profile.run_id, &profile.config_hash) {
        (Some(run), Some(hash)) => {
            format!("bakeoff run {run}, config {}", &hash[..8.min(hash.len())])
        }
        (Some(run), None) => format!("bakeoff run {run}"),
        _ => "bakeoff".to_string(),
    };
    let exec: Vec<String> = argv.iter().map(|a| systemd_word(a)).collect();
    let mut unit = format!(
        "# Written by bakeoff {}: `bakeoff profile export {} --systemd`.\n",
        crate::VERSION,
        profile.name
    );
    if let Some(sha) = &profile.model_sha256 {
        unit.push_str(&format!("# Model sha256 when saved: {sha}\n"));
    }
    if let Some(fallback) = &profile.fallback {
        unit.push_str(&format!(
            "# Fallback profile: {fallback} (a unit has no readiness gate; `bakeoff serve {}` has).\n",
            profile.name
        ));
    }
    unit.push_str(&format!(
        "\n[Unit]\nDescription=llama-server profile {} (from {source})\nAfter=network.target\n\n",
        profile.name
    ));
    unit.push_str(&format!(
        "[Service]\nType=exec\nExecStart={}\nRestart=on-failure\nRestartSec=5\n",
        exec.join(" ")
    ));
    // llama-server may ignore SIGTERM while a client stays connected: bound the stop.
    unit.push_str(
        "TimeoutStopSec=10\nKillMode=control-group\n\n[Install]\nWantedBy=default.target\n",
    );
    unit
}

/// The engine binary a profile runs with: an explicit one, else the profile's own if it is still
/// there. `None` means "discover one".
pub fn stored_binary(profile: &Profile) -> Option<PathBuf> {
    profile
        .engine_path
        .as_deref()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            name: "daily".into(),
            run_id: Some(7),
            config_id: Some(3),
            config_hash: Some("0123456789abcdef".into()),
            model_id: Some(1),
            model_path: "/models/my model.gguf".into(),
            model_sha256: Some("ab".repeat(32)),
            engine_id: Some(1),
            engine_path: Some("/opt/llama/llama-server".into()),
            engine_version: None,
            flags: vec![
                "-fa".into(),
                "on".into(),
                "--alias".into(),
                "50% $HOME".into(),
            ],
            fallback: Some("safe".into()),
            canary_reference: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    // A config whose flags did not parse used to become "no flags" and a profile was drafted from it.
    #[test]
    fn a_stored_config_that_does_not_parse_is_an_error_naming_run_and_config() {
        let config = RunConfig {
            config_id: 4,
            hash: "feedface".into(),
            flags: serde_json::json!({"flags": "not a map"}),
            model_id: None,
            engine_id: None,
        };
        let error = engine_config(12, &config).unwrap_err().to_string();
        assert!(
            error.starts_with("run 12: stored config 4 (feedface) does not parse"),
            "{error}"
        );
        let fine = RunConfig {
            flags: serde_json::json!({"flags": {}}),
            ..config
        };
        assert!(engine_config(12, &fine).unwrap().args().is_empty());
    }

    #[test]
    fn shell_quoting_round_trips_through_sh() {
        let argv: Vec<String> = ["printf", "%s\\n", "plain", "it's", "a b", "$HOME", ""]
            .map(String::from)
            .to_vec();
        let out = std::process::Command::new("sh")
            .args(["-c", &shell_command(&argv)])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "plain\nit's\na b\n$HOME\n\n"
        );
    }

    #[test]
    fn systemd_unit_escapes_specifiers_and_quotes_spaces() {
        let p = profile();
        let unit = systemd_unit(
            &p,
            &command(&p, Path::new("/opt/llama/llama-server"), "127.0.0.1", 8080),
        );
        let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert_eq!(
            exec,
            "ExecStart=/opt/llama/llama-server -m \"/models/my model.gguf\" --host 127.0.0.1 --port 8080 -fa on --alias \"50%% $$HOME\""
        );
        assert!(unit.contains(
            "Description=llama-server profile daily (from bakeoff run 7, config 01234567)"
        ));
        assert!(unit.contains("Restart=on-failure"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("q8-kv_2.fast").is_ok());
        for bad in ["", "-x", "a b", "a/b", ".hidden"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn choosing_needs_a_measured_config() {
        let config = |id: i64, hash: &str| RunConfig {
            config_id: id,
            hash: hash.into(),
            flags: serde_json::json!({"flags": {}}),
            model_id: Some(1),
            engine_id: None,
        };
        let ranked = vec![
            RankedConfig {
                config: config(4, "aaaa1111"),
                label: "-b 256".into(),
                tg_tps: Some(120.0),
                ok_trials: 2,
            },
            RankedConfig {
                config: config(5, "bbbb2222"),
                label: "-b 512".into(),
                tg_tps: Some(100.0),
                ok_trials: 2,
            },
            RankedConfig {
                config: config(6, "cccc3333"),
                label: "-ctv q8_0".into(),
                tg_tps: None,
                ok_trials: 0,
            },
        ];
        assert_eq!(
            choose_config(1, &ranked, None).unwrap().0.config.config_id,
            4
        );
        assert_eq!(
            choose_config(1, &ranked, Some("5"))
                .unwrap()
                .0
                .config
                .config_id,
            5
        );
        assert_eq!(
            choose_config(1, &ranked, Some("bbbb"))
                .unwrap()
                .0
                .config
                .config_id,
            5
        );
        let skipped = choose_config(1, &ranked, Some("6"))
            .unwrap_err()
            .to_string();
        assert!(skipped.contains("no completed trial"), "{skipped}");
        assert!(choose_config(1, &ranked, Some("zzzz")).is_err());
    }
}
