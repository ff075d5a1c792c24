//! A tune's winner saved as a serving profile (`bakeoff tune --save NAME`): the winner's flags with
//! the slots and context the tune started it with, the model file it was measured on (path and
//! sha256) and the engine that ran it, so `bakeoff serve NAME` starts what was measured.

use super::profile::{check_name, server_binary};
use crate::search::answer::{Answer, Finalist};
use crate::search::measure::Launch;
use crate::store::{Profile, Store};
use crate::{Error, Result};
use std::path::Path;

/// What `--save` did.
#[derive(Debug)]
pub enum Saved {
    Profile(Box<Profile>),
    /// Nothing was saved; the line says why.
    Nothing(String),
}

/// Refuse a bad or taken name before anything is measured (a half-hour tune should not end in
/// "already exists"). Taken names follow `profile save`'s rule: replaced only with `--force`.
pub fn check_free(store: &Store, name: &str, force: bool) -> Result<()> {
    check_name(name)?;
    if force || store.find_profile(name)?.is_none() {
        return Ok(());
    }
    Err(
        Error::input(format!("--save {name}: profile '{name}' already exists"))
            .with_hint("pass --force to replace it, or `bakeoff profile delete` it first"),
    )
}

/// Save the answer's winner of tune run `run_id` as profile `name`; a tune with no faithful
/// winner, or one interrupted before its answer was final, saves nothing and says why.
pub fn save(
    store: &Store,
    run_id: i64,
    name: &str,
    (answer, launch): (&Answer, &Launch),
    force: bool,
) -> Result<Saved> {
    if answer.stop == "interrupted" {
        return Ok(Saved::Nothing(format!(
            "--save {name}: nothing saved: the tune was interrupted; resume it to save its winner"
        )));
    }
    let Some(winner) = &answer.winner else {
        return Ok(Saved::Nothing(format!(
            "--save {name}: nothing saved: no configuration passed the fidelity gate"
        )));
    };
    let profile = winner_profile(store, run_id, name, winner, launch)?;
    store.save_profile(&profile, force)?;
    Ok(Saved::Profile(Box::new(store.profile(name)?)))
}

/// The profile of `winner`: the model and engine rows of its trials in run `run_id`, its flags
/// as the tune started it.
pub fn winner_profile(
    store: &Store,
    run_id: i64,
    name: &str,
    winner: &Finalist,
    launch: &Launch,
) -> Result<Profile> {
    check_name(name)?;
    let (model_id, engine_id) = winner_rows(store, run_id, winner)?;
    let model = store.model_by_id(model_id)?;
    let engine = engine_id.map(|id| store.engine_by_id(id)).transpose()?;
    let config = store
        .run_configs(run_id)?
        .into_iter()
        .find(|c| c.hash == winner.config_hash);
    Ok(Profile {
        name: name.to_string(),
        run_id: Some(run_id),
        config_id: config.map(|c| c.config_id),
        config_hash: Some(winner.config_hash.clone()),
        model_id: Some(model.id),
        model_path: model.path,
        model_sha256: Some(model.sha256),
        engine_id,
        engine_path: engine.as_ref().and_then(|e| server_binary(&e.path)),
        engine_version: None,
        flags: launch.server_args(winner.args.clone()),
        fallback: None,
        canary_reference: None,
        created_at: String::new(),
        updated_at: String::new(),
    })
}

/// The model and engine rows of the winner's completed trials: the configuration on the winner's
/// model file (one configuration may have raced on several models).
fn winner_rows(store: &Store, run_id: i64, winner: &Finalist) -> Result<(i64, Option<i64>)> {
    let wanted = canonical(&winner.model);
    let mut fallback = None;
    for trial in store.trials(run_id)? {
        if trial.status != "ok" || trial.config_hash.as_deref() != Some(&winner.config_hash) {
            continue;
        }
        let Some(model_id) = trial.model_id else {
            continue;
        };
        let path = store.model_by_id(model_id)?.path;
        if canonical(Path::new(&path)) == wanted {
            return Ok((model_id, trial.engine_id));
        }
        fallback.get_or_insert((model_id, trial.engine_id));
    }
    fallback.ok_or_else(|| {
        Error::input(format!(
            "run {run_id}: no completed trial of the winner ({}, config {})",
            winner.label, winner.config_hash
        ))
    })
}

fn canonical(path: &Path) -> std::path::PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{EngineConfig, Unit};
    use crate::engines::http::Timeouts;
    use crate::store::NewTrial;
    use crate::system::Fingerprint;
    use std::time::Duration;

    /// A measured configuration of an answer: `median` t/s with a ±2 % CI, 128 MiB, faithful.
    pub(crate) fn finalist(label: &str, median: f64, config: &EngineConfig) -> Finalist {
        Finalist {
            label: label.into(),
            args: config.args(),
            model: "m.gguf".into(),
            config_hash: config.hash(),
            median,
            ci_low: median * 0.98,
            ci_high: median * 1.02,
            n: 5,
            memory_bytes: Some(128 << 20),
            fidelity: "pass".into(),
            fidelity_note: None,
            tokens_per_j: None,
            watts: None,
        }
    }

    /// An answer of a finished tg tune at ctx 512 with these points and no winner yet.
    pub(crate) fn answer(points: Vec<Finalist>) -> Answer {
        Answer {
            goal: "tg".into(),
            score: "tg32 t/s".into(),
            ctx: 512,
            reference: "m.gguf -ctk f16 -ctv f16".into(),
            winner: None,
            fastest: points.first().cloned(),
            fastest_lost: None,
            smallest: None,
            defaults: None,
            beside_defaults: None,
            speedup_over_defaults_pct: None,
            contributions: Vec::new(),
            points,
            stop: "separated".into(),
            configurations: 2,
            trials: 6,
            engine_starts: 2,
            rounds: 2,
            gated: 1,
            wall_s: 60.0,
        }
    }

    pub(crate) fn launch() -> Launch {
        Launch {
            ctx: 512,
            parallel: 1,
            extra_args: Vec::new(),
            health_timeout: Duration::from_secs(1),
            timeouts: Timeouts::default(),
            per_slot: false,
            watch: Default::default(),
        }
    }

    /// A tune run in a fresh store whose trials ran `config` on a real file; returns the store,
    /// the run and the winner as the answer names it.
    fn tune_run(dir: &Path, config: &EngineConfig) -> (Store, i64, Finalist) {
        let store = Store::open(&dir.join("t.db")).unwrap();
        let system = store.system_id(&Fingerprint::collect()).unwrap();
        let run = store
            .begin_run("tune", "bakeoff tune", system, None, &serde_json::json!({}))
            .unwrap();
        let model_path = dir.join("m.gguf");
        std::fs::write(&model_path, b"weights").unwrap();
        let model = store.model(&model_path).unwrap();
        let server = dir.join("llama-server");
        std::fs::write(&server, b"").unwrap();
        let engine = store
            .engine_id(
                "llama-server",
                &server.display().to_string(),
                None,
                Some("1"),
            )
            .unwrap();
        let workload = serde_json::json!({"test": "tg32", "kind": "tg"});
        let trial = NewTrial {
            config: Some(config),
            engine_id: Some(engine),
            model_id: Some(model.id),
            workload: &workload,
            repetition: 0,
        };
        let id = store.begin_trial(run, &trial).unwrap();
        store
            .sample(id, "tg_tps", 100.0, Unit::TokensPerSecond, "client", 0)
            .unwrap();
        store.end_trial(id, "ok", None).unwrap();
        let winner = finalist("winner", 100.0, config);
        let winner = Finalist {
            model: model_path,
            ..winner
        };
        (store, run, winner)
    }

    #[test]
    fn the_winner_is_saved_with_the_context_and_slots_it_was_measured_at() {
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig::default()
            .with_flag("-ctv", "q8_0")
            .with_flag("-fa", "on");
        let (store, run, winner) = tune_run(dir.path(), &config);
        let mut answer = answer(vec![winner.clone()]);
        answer.winner = Some(winner);
        let saved = save(&store, run, "daily", (&answer, &launch()), false).unwrap();
        let Saved::Profile(profile) = saved else {
            panic!("nothing saved: {saved:?}");
        };
        assert_eq!(
            profile.flags,
            ["-ctv", "q8_0", "-fa", "on", "-np", "1", "-c", "512"]
        );
        assert_eq!(profile.run_id, Some(run));
        assert_eq!(profile.config_hash, Some(config.hash()));
        assert!(profile.config_id.is_some());
        assert_eq!(profile.model_sha256.as_deref().map(str::len), Some(64));
        assert!(profile.engine_path.unwrap().ends_with("llama-server"));
        // A taken name is refused up front, and by the save itself, unless forced.
        let taken = check_free(&store, "daily", false).unwrap_err().to_string();
        assert!(taken.contains("profile 'daily' already exists"), "{taken}");
        assert!(check_free(&store, "daily", true).is_ok());
        assert!(save(&store, run, "daily", (&answer, &launch()), false).is_err());
        assert!(save(&store, run, "daily", (&answer, &launch()), true).is_ok());
        assert!(check_free(&store, "bad name", true).is_err());
    }

    #[test]
    fn no_winner_or_an_interrupted_tune_saves_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let (store, run, winner) = tune_run(dir.path(), &EngineConfig::default());
        let answer = answer(vec![winner.clone()]);
        let Saved::Nothing(why) = save(&store, run, "daily", (&answer, &launch()), false).unwrap()
        else {
            panic!("saved without a winner");
        };
        assert!(
            why.contains("no configuration passed the fidelity gate"),
            "{why}"
        );
        let interrupted = Answer {
            winner: Some(winner),
            stop: "interrupted".into(),
            ..answer
        };
        let Saved::Nothing(why) =
            save(&store, run, "daily", (&interrupted, &launch()), false).unwrap()
        else {
            panic!("saved an interrupted tune");
        };
        assert!(why.contains("interrupted"), "{why}");
        assert!(store.find_profile("daily").unwrap().is_none());
    }
}
