//! Bench settings as one typed layer: an experiment file (`bench --config`) read through serde with
//! unknown keys rejected, or the command line; layers merge with [`Combine`] (command line first).

use crate::domain::Combine;
use crate::engines::build::BuildRef;
use crate::formats::config_file;
use crate::measure::bench::BenchPlan;
use crate::model::select::ModelQuery;
use crate::{Error, Result};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Which engine measures: through llama-server, or llama-bench in-process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchEngine {
    LlamaServer,
    LlamaBench,
}

impl BenchEngine {
    /// The tool's name, as stored in plans and engine rows.
    pub fn as_str(self) -> &'static str {
        match self {
            BenchEngine::LlamaServer => "llama-server",
            BenchEngine::LlamaBench => "llama-bench",
        }
    }
}

/// A comma list as text (`"f16,q8_0"`, `512-2048*2`); files may also give a number, a bool
/// (`on`/`off`) or a list of those.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Values(pub String);

impl Values {
    /// A command line's `KEY=VALUES` entry of `option` (`--server-flag -ub=256,512`,
    /// `--pin -ctk=q8_0`), as a settings file's table holds it; `shape` names the expected form.
    pub fn keyed(option: &str, entry: &str, shape: &str) -> Result<(String, Values)> {
        let (key, values) = entry
            .split_once('=')
            .ok_or_else(|| Error::input(format!("{option} {entry}: expected {shape}")))?;
        Ok((key.to_string(), Values(values.to_string())))
    }
}

/// One layer of bench settings; `None` where this source does not say.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Experiment {
    /// Model file(s): a comma list, glob, directory or catalog names, or an array of them.
    pub model: Option<Values>,
    #[serde(default, alias = "repetitions", deserialize_with = "whole")]
    pub reps: Option<u32>,
    #[serde(default, deserialize_with = "whole")]
    pub warmup: Option<u32>,
    #[serde(default, deserialize_with = "whole")]
    pub max_reps: Option<u32>,
    /// Percent, `2` or `"2%"`.
    pub ci_target: Option<Values>,
    pub engine: Option<BenchEngine>,
    pub tag: Option<String>,
    #[serde(default)]
    pub matrix: MatrixSettings,
    /// Other llama-server flags to sweep, `FLAG = VALUES`, in the order given.
    #[serde(default, deserialize_with = "flag_table")]
    pub server_flags: Vec<(String, Values)>,
    /// Catalog models carrying this tag.
    pub category: Option<String>,
    /// Only models no larger than this: bytes, or a size such as `"20G"`.
    pub max_size: Option<Values>,
    /// The model catalog file.
    pub catalog: Option<PathBuf>,
    /// `[builds]`: `NAME = "PATH"`, in the order given.
    #[serde(default, deserialize_with = "build_table")]
    pub builds: Option<Vec<BuildRef>>,
}

/// The swept parameters, keyed as llama-bench spells them (`[matrix]` in a file).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MatrixSettings {
    pub kv: Option<Values>,
    pub ctk: Option<Values>,
    pub ctv: Option<Values>,
    pub fa: Option<Values>,
    pub b: Option<Values>,
    pub ub: Option<Values>,
    pub t: Option<Values>,
    pub ngl: Option<Values>,
    pub np: Option<Values>,
    pub c: Option<Values>,
    pub md: Option<Values>,
    pub spec_type: Option<Values>,
    pub spec_draft_n_max: Option<Values>,
    /// Split mode across GPUs (`-sm`: none, layer, row, tensor).
    pub sm: Option<Values>,
    /// Proportions per GPU (`-ts`), each spelled `3/1` or `3:1`.
    pub ts: Option<Values>,
    /// Main GPU (`-mg`).
    pub mg: Option<Values>,
    pub p: Option<Values>,
    pub n: Option<Values>,
    pub d: Option<Values>,
    pub prompts: Option<Values>,
}

impl Experiment {
    /// Read an experiment file; errors name the key, the file and the line.
    pub fn load(path: &Path) -> Result<Experiment> {
        config_file::read(path)
    }

    /// The model selection these settings make.
    pub fn model_query(&self) -> Result<ModelQuery> {
        let max_size = self.max_size.as_ref().map(|Values(text)| {
            crate::domain::units::parse_bytes(text).ok_or_else(|| {
                Error::input(format!("max-size {text}: not a size such as 20G or 512M"))
            })
        });
        Ok(ModelQuery {
            spec: self.model.as_ref().map(|Values(text)| text.clone()),
            category: self.category.clone(),
            max_size: max_size.transpose()?,
            catalog: self.catalog.clone(),
            models_dir: Some(crate::system::paths::models_dir()),
        })
    }
}

/// Refuse a plan that would measure nothing (`-r 0`, `-p 0 -n 0`), before any engine starts: such a
/// run used to end "ok" with no sample.
pub fn check_plan(plan: &BenchPlan) -> Result<()> {
    if plan.reps == 0 {
        return Err(
            Error::input("-r/--repetitions 0: at least one repetition is needed")
                .with_hint("pass -r 1 or more (reps in --config)"),
        );
    }
    if plan.ci_target_pct.is_some() && plan.max_reps < plan.reps {
        let (max, reps) = (plan.max_reps, plan.reps);
        return Err(Error::input(format!(
            "--max-reps {max} is below -r {reps}: --ci-target repeats from -r up to --max-reps"
        )));
    }
    let matrix = &plan.matrix;
    let none = |tokens: &[u32]| tokens.iter().all(|&t| t == 0);
    if none(&matrix.prompt_tokens) && none(&matrix.gen_tokens) {
        return Err(
            Error::input("-p 0 and -n 0: no test to run (every pp and tg size is 0)")
                .with_hint("give a prompt size (-p 64) or a generation length (-n 32)"),
        );
    }
    Ok(())
}

/// A warning for each depth (plus the test's own tokens) beyond the model's trained context:
/// llama.cpp still runs it, but past `context_length` the figures are of a model out of its range.
pub fn depth_warnings(plan: &BenchPlan, trained_context: Option<u64>) -> Vec<String> {
    let Some(trained) = trained_context.filter(|&c| c > 0) else {
        return Vec::new();
    };
    let matrix = &plan.matrix;
    let longest = |tokens: &[u32]| u64::from(tokens.iter().copied().max().unwrap_or(0));
    let test = longest(&matrix.prompt_tokens).max(longest(&matrix.gen_tokens));
    matrix
        .depths
        .iter()
        .map(|&d| u64::from(d))
        .filter(|&depth| depth + test > trained)
        .map(|depth| {
            format!(
                "-d {depth}: depth plus test ({}) is beyond the model's trained context ({trained} tokens, GGUF context_length); figures there are outside what the model was trained for",
                depth + test
            )
        })
        .collect()
}

/// [`depth_warnings`] for every model of the plan (its trained context read from its GGUF), each
/// warning once.
pub fn plan_depth_warnings(plan: &BenchPlan) -> Vec<String> {
    let mut warnings: Vec<String> = Vec::new();
    for file in &plan.models {
        let trained = crate::model::trained_context(file);
        for warning in depth_warnings(plan, trained) {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    warnings
}

/// With two GPUs or more (`gpu_memories`, each GPU's memory): a warning for each configuration
/// of the plan that would leave some GPU a share of a model larger than its memory, as llama.cpp
/// places layers (`-sm`, `-ts`, `-mg`; every layer offloaded). With one GPU: a warning that `-sm
/// row` will be refused. Warnings, not skips: the split plan is an estimate, and the engine's own
/// load is the judge.
pub fn plan_gpu_warnings(plan: &BenchPlan, gpu_memories: &[u64]) -> Vec<String> {
    let configs = plan.configs();
    if gpu_memories.len() == 1 {
        // Measured on the lent H200 (b11434, CUDA): `llama_model_load: error loading model:
        // device CUDA0 does not support split buffers`, and the server exits.
        let row = configs.iter().find(|c| {
            c.rejected.is_none() && c.config.flags.get("-sm").is_some_and(|sm| sm == "row")
        });
        return row
            .map(|c| vec![format!("{}: -sm row needs two GPUs or more; llama.cpp's CUDA backend refuses it on one (\"does not support split buffers\"), so it will be skipped", c.config.label())])
            .unwrap_or_default();
    }
    if gpu_memories.len() < 2 {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    for file in &plan.models {
        let Ok(gguf) = crate::formats::gguf::GgufFile::open(file) else {
            continue;
        };
        let facts = crate::model::ModelFacts::from_gguf(&gguf);
        for planned in configs.iter().filter(|c| c.rejected.is_none()) {
            let flags = &planned.config.flags;
            let note = gpu_settings(&plan.matrix, flags)
                .filter(|_| crate::model::split::all_offloaded(&facts, flags))
                .and_then(|s| crate::model::split::overflow_note(&facts, &s, flags, gpu_memories));
            if let Some(note) = note {
                let name = file.file_name().unwrap_or_default().to_string_lossy();
                let label = planned.config.label();
                warnings.push(format!(
                    "{name} {label}: {note} (llama.cpp's layer placement); it may fail to load"
                ));
            }
        }
    }
    warnings
}

/// The cache settings a bench server gets from `flags` (context: `-c`, else what the tests need).
fn gpu_settings(
    matrix: &crate::measure::matrix::Matrix,
    flags: &std::collections::BTreeMap<String, String>,
) -> Option<crate::model::plan::KvSettings> {
    use crate::formats::gguf::GgmlType;
    let number = |flag: &str| flags.get(flag).and_then(|v| v.parse::<u64>().ok());
    let cache = |flag: &str| GgmlType::from_name(flags.get(flag).map_or("f16", String::as_str));
    let ctx = number("-c").unwrap_or(u64::from(matrix.context_needed()));
    Some(crate::model::plan::KvSettings {
        parallel: number("-np").unwrap_or(1),
        n_ubatch: number("-ub").unwrap_or(crate::model::plan::DEFAULT_UBATCH),
        ..crate::model::plan::KvSettings::new(ctx, cache("-ctk")?, cache("-ctv")?)
    })
}

impl MatrixSettings {
    /// The engine flags with their values, in sweep order (the last varies fastest).
    pub fn engine_flags(&self) -> Vec<(&'static str, Option<&Values>)> {
        vec![
            ("--kv", self.kv.as_ref()),
            ("-ctk", self.ctk.as_ref()),
            ("-ctv", self.ctv.as_ref()),
            ("-fa", self.fa.as_ref()),
            ("-b", self.b.as_ref()),
            ("-ub", self.ub.as_ref()),
            ("-t", self.t.as_ref()),
            ("-ngl", self.ngl.as_ref()),
            ("-np", self.np.as_ref()),
            ("-c", self.c.as_ref()),
            ("-md", self.md.as_ref()),
            ("--spec-type", self.spec_type.as_ref()),
            ("--spec-draft-n-max", self.spec_draft_n_max.as_ref()),
            ("-sm", self.sm.as_ref()),
            ("-ts", self.ts.as_ref()),
            ("-mg", self.mg.as_ref()),
        ]
    }
}

impl Combine for Experiment {
    fn combine(self, other: Experiment) -> Experiment {
        Experiment {
            model: self.model.combine(other.model),
            category: self.category.combine(other.category),
            max_size: self.max_size.combine(other.max_size),
            catalog: self.catalog.combine(other.catalog),
            builds: self.builds.combine(other.builds),
            reps: self.reps.combine(other.reps),
            warmup: self.warmup.combine(other.warmup),
            max_reps: self.max_reps.combine(other.max_reps),
            ci_target: self.ci_target.combine(other.ci_target),
            engine: self.engine.combine(other.engine),
            tag: self.tag.combine(other.tag),
            matrix: self.matrix.combine(other.matrix),
            server_flags: self.server_flags.combine(other.server_flags),
        }
    }
}

impl Combine for MatrixSettings {
    fn combine(self, other: MatrixSettings) -> MatrixSettings {
        MatrixSettings {
            kv: self.kv.combine(other.kv),
            ctk: self.ctk.combine(other.ctk),
            ctv: self.ctv.combine(other.ctv),
            fa: self.fa.combine(other.fa),
            b: self.b.combine(other.b),
            ub: self.ub.combine(other.ub),
            t: self.t.combine(other.t),
            ngl: self.ngl.combine(other.ngl),
            np: self.np.combine(other.np),
            c: self.c.combine(other.c),
            md: self.md.combine(other.md),
            spec_type: self.spec_type.combine(other.spec_type),
            spec_draft_n_max: self.spec_draft_n_max.combine(other.spec_draft_n_max),
            sm: self.sm.combine(other.sm),
            ts: self.ts.combine(other.ts),
            mg: self.mg.combine(other.mg),
            p: self.p.combine(other.p),
            n: self.n.combine(other.n),
            d: self.d.combine(other.d),
            prompts: self.prompts.combine(other.prompts),
        }
    }
}

struct ValuesVisitor;

impl<'de> Visitor<'de> for ValuesVisitor {
    type Value = Values;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, bool or list of them")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Values, E> {
        Ok(Values(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Values, E> {
        Ok(Values(value.to_string()))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Values, E> {
        Ok(Values(value.to_string()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Values, E> {
        Ok(Values(value.to_string()))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Values, E> {
        Ok(Values(if value { "on" } else { "off" }.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Values, A::Error> {
        let mut texts = Vec::new();
        while let Some(Values(text)) = items.next_element()? {
            texts.push(text);
        }
        Ok(Values(texts.join(",")))
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Values, D::Error> {
        deserializer.deserialize_any(ValuesVisitor)
    }
}

/// A whole number, written as one (`5`) or as text (`"5"`).
fn whole<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    let Values(text) = Values::deserialize(deserializer)?;
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| de::Error::custom(format!("invalid value '{text}', expected a whole number")))
}

/// `[server-flags]`: a table of flag = values, kept in file order.
fn flag_table<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, Values)>, D::Error> {
    struct FlagVisitor;
    impl<'de> Visitor<'de> for FlagVisitor {
        type Value = Vec<(String, Values)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a table of FLAG = VALUES")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut flags = Vec::new();
            while let Some(entry) = map.next_entry::<String, Values>()? {
                flags.push(entry);
            }
            Ok(flags)
        }
    }
    deserializer.deserialize_map(FlagVisitor)
}

/// `[builds]`: `NAME = "PATH"` entries, in the order given.
fn build_table<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<BuildRef>>, D::Error> {
    struct BuildVisitor;
    impl<'de> Visitor<'de> for BuildVisitor {
        type Value = Option<Vec<BuildRef>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a table of NAME = \"PATH\"")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut builds = Vec::new();
            while let Some((name, path)) = map.next_entry::<String, PathBuf>()? {
                builds.push(BuildRef { name, path });
            }
            Ok(Some(builds))
        }
    }
    deserializer.deserialize_map(BuildVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Experiment> {
        config_file::parse(text, "experiment.toml")
    }

    fn values(text: &str) -> Option<Values> {
        Some(Values(text.into()))
    }

    #[test]
    fn every_spelling_of_a_value_becomes_a_comma_list() {
        let e = parse(
            "model = \"m.gguf\"\nrepetitions = \"4\"\nmax-reps = 9\nci-target = \"2%\"\nengine = \"llama-bench\"\n\
             [matrix]\nctk = [\"f16\", \"q8_0\"]\nfa = true\nb = 512\nspec-type = \"none,ngram-mod\"\n\
             [server-flags]\n\"--spec-ngram-mod-n-min\" = [2, 4]\n",
        )
        .unwrap();
        assert_eq!(e.model, values("m.gguf"));
        assert_eq!((e.reps, e.max_reps, e.warmup), (Some(4), Some(9), None));
        assert_eq!(e.ci_target, values("2%"));
        assert_eq!(e.engine, Some(BenchEngine::LlamaBench));
        assert_eq!(e.matrix.ctk, values("f16,q8_0"));
        assert_eq!(e.matrix.fa, values("on"));
        assert_eq!(e.matrix.b, values("512"));
        assert_eq!(e.matrix.spec_type, values("none,ngram-mod"));
        assert_eq!(
            e.server_flags,
            vec![("--spec-ngram-mod-n-min".into(), Values("2,4".into()))]
        );
    }

    #[test]
    fn a_typo_names_the_key_file_and_line() {
        // Regression: the hand walk listed the keys three times; a typo must still name its line.
        let error = parse("model = \"m.gguf\"\nrep = 5\n").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("experiment.toml:2:1: unknown field 'rep', expected one of"),
            "{error}"
        );
        assert_eq!(error.hint().as_deref(), Some("did you mean 'reps'?"));
        let error = parse("[matrix]\nctkk = \"f16\"\n").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("experiment.toml:2:1: unknown field 'ctkk'"));
    }

    #[test]
    fn bad_values_name_their_line() {
        let error = parse("reps = 3\nwarmup = \"some\"\n").unwrap_err();
        assert!(
            error.to_string().starts_with("experiment.toml:2:"),
            "{error}"
        );
        assert!(error.to_string().contains("whole number"), "{error}");
        let error = parse("engine = \"llama-cli\"\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown variant 'llama-cli'"),
            "{error}"
        );
        let error = parse("[matrix]\nb = { x = 1 }\n").unwrap_err();
        assert!(
            error.to_string().starts_with("experiment.toml:2:5:"),
            "{error}"
        );
    }

    #[test]
    fn gpu_warnings_need_two_gpus_and_plan_the_bench_servers_context() {
        let mut bench = plan(1, &[64], &[32], &[0]);
        bench.matrix.set("-sm", vec!["layer".into()]);
        assert!(plan_gpu_warnings(&bench, &[1 << 30]).is_empty(), "one GPU");
        bench.matrix.set("-sm", vec!["none".into(), "row".into()]);
        let warnings = plan_gpu_warnings(&bench, &[1 << 30]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("-sm row needs two GPUs"),
            "{warnings:?}"
        );
        bench.matrix.set("-sm", vec!["layer".into()]);
        // The model file is absent: nothing to plan, no warning, no error.
        assert!(plan_gpu_warnings(&bench, &[1 << 30, 1 << 30]).is_empty());
        let flags = [("-c", "8192"), ("-ctv", "q8_0"), ("-np", "2")]
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .into();
        let settings = gpu_settings(&bench.matrix, &flags).unwrap();
        assert_eq!((settings.ctx, settings.parallel), (8192, 2));
        assert_eq!(
            settings.type_v,
            crate::formats::gguf::GgmlType::from_name("q8_0").unwrap()
        );
        let defaults = gpu_settings(&bench.matrix, &Default::default()).unwrap();
        assert_eq!(defaults.ctx, u64::from(bench.matrix.context_needed()));
    }

    fn plan(reps: u32, prompt: &[u32], gen: &[u32], depths: &[u32]) -> BenchPlan {
        let mut matrix = crate::measure::matrix::Matrix::default();
        (matrix.prompt_tokens, matrix.gen_tokens) = (prompt.to_vec(), gen.to_vec());
        matrix.depths = depths.to_vec();
        BenchPlan {
            models: vec![PathBuf::from("m.gguf")],
            builds: Vec::new(),
            matrix,
            reps,
            warmup: 1,
            ci_target_pct: None,
            max_reps: 20,
            engine: "llama-server".into(),
            extra_args: Vec::new(),
            health_timeout_s: 120,
            timeouts: Default::default(),
            shard: None,
        }
    }

    #[test]
    fn a_plan_that_measures_nothing_is_refused() {
        // Regression: `-r 0` and `-p 0 -n 0` ran, stored nothing and ended ok.
        let error = check_plan(&plan(0, &[64], &[32], &[0])).unwrap_err();
        assert!(
            error.to_string().starts_with("-r/--repetitions 0"),
            "{error}"
        );
        let error = check_plan(&plan(5, &[0], &[0], &[0])).unwrap_err();
        assert!(error.to_string().starts_with("-p 0 and -n 0"), "{error}");
        assert!(check_plan(&plan(5, &[0, 64], &[0], &[0])).is_ok());
        let mut adaptive = plan(5, &[64], &[0], &[0]);
        (adaptive.ci_target_pct, adaptive.max_reps) = (Some(2.0), 3);
        assert!(check_plan(&adaptive)
            .unwrap_err()
            .to_string()
            .contains("--max-reps 3"));
    }

    #[test]
    fn a_depth_past_the_trained_context_is_warned() {
        let plan = plan(5, &[64], &[32], &[0, 8150, 9000]);
        let warnings = depth_warnings(&plan, Some(8192));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("-d 8150: depth plus test (8214)"),
            "{warnings:?}"
        );
        assert!(depth_warnings(&plan, None).is_empty());
        assert!(depth_warnings(&plan, Some(16384)).is_empty());
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let cli = Experiment {
            reps: Some(2),
            matrix: MatrixSettings {
                ctk: values("q4_0"),
                ..Default::default()
            },
            server_flags: vec![("--x".into(), Values("1".into()))],
            ..Default::default()
        };
        let file = parse(
            "reps = 7\nwarmup = 3\n[matrix]\nctk = \"f16\"\nctv = \"f16\"\n\
             [server-flags]\n\"--x\" = 9\n\"--y\" = 2\n",
        )
        .unwrap();
        let merged = cli.combine(file);
        assert_eq!((merged.reps, merged.warmup), (Some(2), Some(3)));
        assert_eq!(merged.matrix.ctk, values("q4_0"));
        assert_eq!(merged.matrix.ctv, values("f16"));
        assert_eq!(
            merged.server_flags,
            vec![
                ("--x".into(), Values("1".into())),
                ("--y".into(), Values("2".into()))
            ]
        );
    }

    #[test]
    fn models_and_builds_come_from_a_file_as_lists_or_tables() {
        let e = parse(
            "model = [\"a.gguf\", \"b.gguf\"]\ncategory = \"smoke\"\nmax-size = \"2G\"\n\
             [builds]\nnew = \"/opt/new\"\nold = \"/opt/old/bin/llama-server\"\n",
        )
        .unwrap();
        let query = e.model_query().unwrap();
        assert_eq!(query.spec.as_deref(), Some("a.gguf,b.gguf"));
        assert_eq!(query.category.as_deref(), Some("smoke"));
        assert_eq!(query.max_size, Some(2 << 30));
        let builds = e.builds.clone().unwrap();
        let names: Vec<&str> = builds.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["new", "old"], "in the file's order");
        assert_eq!(builds[1].path, PathBuf::from("/opt/old/bin/llama-server"));
        let cli = Experiment {
            builds: Some(vec![BuildRef::parse("cli=/x").unwrap()]),
            ..Default::default()
        };
        let merged = cli.combine(e);
        assert_eq!(
            merged.builds.unwrap().len(),
            1,
            "the command line's builds win"
        );
        let bad = parse("max-size = \"lots\"\n").unwrap().model_query();
        assert!(bad.unwrap_err().to_string().starts_with("max-size lots:"));
        let bad = parse("[builds]\nnew = 3\n").unwrap_err();
        assert!(bad.to_string().starts_with("experiment.toml:2:"), "{bad}");
    }
}
