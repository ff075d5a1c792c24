//! The parameter matrix: every parameter takes a comma list or a llama-bench range
//! (`first-last`, `first-last+step`, `first-last*mult`). Expands into engine configurations (one
//! engine start each) and tests (pp/tg at a depth with a prompt set), and knows which
//! combinations the engine rejects.

use crate::domain::EngineConfig;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Expand `64,128`, `128-512*2`, `1-4`, `0-1024+512` or `q8_0,f16` into values.
pub fn parse_values(flag: &str, text: &str) -> Result<Vec<String>> {
    let mut values = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match parse_range(item) {
            Some(range) => values.extend(range.into_iter().map(|v| v.to_string())),
            None => values.push(item.to_string()),
        }
        if values.len() > 10_000 {
            return Err(Error::input(format!(
                "{flag} {text}: more than 10000 values"
            )));
        }
    }
    if values.is_empty() {
        return Err(Error::input(format!("{flag}: empty value list")));
    }
    Ok(values)
}

fn parse_range(item: &str) -> Option<Vec<u64>> {
    let (first, rest) = item.split_once('-')?;
    let first: u64 = first.parse().ok()?;
    let (last, step): (u64, Box<dyn Fn(u64) -> u64>) =
        if let Some((last, step)) = rest.split_once('+') {
            let step: u64 = step.parse().ok().filter(|&s| s > 0)?;
            (last.parse().ok()?, Box::new(move |v| v + step))
        } else if let Some((last, mult)) = rest.split_once('*') {
            let mult: u64 = mult.parse().ok().filter(|&m| m > 1)?;
            (last.parse().ok()?, Box::new(move |v| v * mult.max(1)))
        } else {
            (rest.parse().ok()?, Box::new(|v| v + 1))
        };
    let mut values = Vec::new();
    let mut v = first;
    while v <= last && values.len() <= 10_000 {
        values.push(v);
        let next = step(v);
        if next <= v {
            break; // 0 * mult
        }
        v = next;
    }
    Some(values)
}

/// Which prompts feed a test; stored as its name (`"random"`, `"natural"`, `"code"` or the path).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(into = "String", from = "String")]
pub enum PromptSet {
    /// Random token ids (what llama-bench uses).
    Random,
    /// The project's natural-text prompts.
    Natural,
    /// The project's code prompts.
    Code,
    /// A user file.
    File(String),
}

impl From<String> for PromptSet {
    fn from(text: String) -> Self {
        PromptSet::parse(&text)
    }
}

impl From<PromptSet> for String {
    fn from(set: PromptSet) -> Self {
        set.name()
    }
}

impl PromptSet {
    pub fn parse(text: &str) -> Self {
        match text {
            "random" => PromptSet::Random,
            "natural" => PromptSet::Natural,
            "code" => PromptSet::Code,
            path => PromptSet::File(path.to_string()),
        }
    }

    pub fn name(&self) -> String {
        match self {
            PromptSet::Random => "random".into(),
            PromptSet::Natural => "natural".into(),
            PromptSet::Code => "code".into(),
            PromptSet::File(path) => path.clone(),
        }
    }
}

/// One test, as llama-bench names them: `pp512`, `tg128`, `tg128 @ d4096`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Test {
    /// `pp` or `tg`.
    pub kind: String,
    pub tokens: u32,
    pub depth: u32,
    pub prompts: PromptSet,
}

impl Test {
    pub fn name(&self) -> String {
        let mut name = format!("{}{}", self.kind, self.tokens);
        if self.depth > 0 {
            name.push_str(&format!(" @ d{}", self.depth));
        }
        if self.prompts != PromptSet::Random {
            name.push_str(&format!(" [{}]", self.prompts.name()));
        }
        name
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "test": self.name(), "kind": self.kind, "tokens": self.tokens, "depth": self.depth, "prompts": self.prompts.name() })
    }
}

/// Server flags that can be swept (bakeoff name → llama-server flag).
pub const SERVER_FLAGS: &[&str] = &[
    "-ctk",
    "-ctv",
    "-fa",
    "-b",
    "-ub",
    "-t",
    "-ngl",
    "-np",
    "-c",
    "-md",
    "--spec-type",
    "--spec-draft-n-max",
    "-sm",
    "-ts",
    "-mg",
];

/// llama.cpp b11434's split modes (`-sm`; `tensor` is its experimental tensor parallelism).
pub const SPLIT_MODES: [&str; 4] = ["none", "layer", "row", "tensor"];

/// [`parse_values`], then each value checked and put in its canonical spelling: a bad `-sm`,
/// `-ts` or `-mg` is a one-line error naming the flag, before any engine starts.
pub fn parse_flag_values(flag: &str, text: &str) -> Result<Vec<String>> {
    parse_values(flag, text)?
        .iter()
        .map(|value| checked(flag, value))
        .collect()
}

/// One value of `flag` checked and normalised (flags without rules pass unchanged).
pub fn checked(flag: &str, value: &str) -> Result<String> {
    match flag {
        "-sm" if !SPLIT_MODES.contains(&value) => Err(Error::input(format!(
            "-sm {value}: not a split mode (expected {})",
            SPLIT_MODES.join(", ")
        ))),
        "-mg" if value.parse::<u32>().is_err() => Err(Error::input(format!(
            "-mg {value}: expected a GPU index (0, 1, ...)"
        ))),
        "-ts" => tensor_split(value),
        _ => Ok(normalize(flag, value)),
    }
}

/// `3/1` or `3:1` → `3/1`: proportions of the model per GPU. A comma separates sweep values, so a
/// ratio is written with `/` (llama-bench's spelling, which llama-server accepts as well).
fn tensor_split(value: &str) -> Result<String> {
    let hint = "write a ratio per GPU as 3/1 or 3:1 (a comma separates sweep values: -ts 1/1,3/1)";
    let parts: Vec<&str> = value.split(['/', ':']).map(str::trim).collect();
    let numbers: Option<Vec<f64>> = parts
        .iter()
        .map(|p| p.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0))
        .collect();
    let Some(numbers) = numbers else {
        return Err(Error::input(format!(
            "-ts {value}: expected non-negative proportions such as 3/1"
        ))
        .with_hint(hint));
    };
    if numbers.len() < 2 {
        return Err(Error::input(format!(
            "-ts {value}: a split needs a proportion for at least two GPUs"
        ))
        .with_hint(hint));
    }
    if numbers.iter().all(|&n| n == 0.0) {
        return Err(Error::input(format!("-ts {value}: every proportion is 0")));
    }
    Ok(parts.join("/"))
}

/// Flags passed through to llama-server as they are (after `--`), with `-sm`, `-ts` and `-mg`
/// checked as matrix values are and `-ts` in its canonical spelling. No sweep there, so a `-ts`
/// may also use llama.cpp's commas (`-ts 3,1` → `3/1`).
pub fn checked_engine_args(args: &[String]) -> Result<Vec<String>> {
    let mut out = args.to_vec();
    for at in 1..out.len() {
        let flag = match out[at - 1].as_str() {
            "-sm" | "--split-mode" => "-sm",
            "-ts" | "--tensor-split" => "-ts",
            "-mg" | "--main-gpu" => "-mg",
            _ => continue,
        };
        let value = match flag {
            "-ts" => out[at].replace(',', "/"),
            _ => out[at].clone(),
        };
        out[at] = checked(flag, &value)?;
    }
    Ok(out)
}

/// What to measure: server flag lists and workload lists.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Matrix {
    /// (flag, values) in the order given.
    pub flags: Vec<(String, Vec<String>)>,
    pub prompt_tokens: Vec<u32>,
    pub gen_tokens: Vec<u32>,
    pub depths: Vec<u32>,
    pub prompts: Vec<PromptSet>,
}

/// A configuration the matrix produced, possibly rejected before any engine runs.
#[derive(Debug, Clone)]
pub struct PlannedConfig {
    pub config: EngineConfig,
    pub rejected: Option<String>,
}

impl Matrix {
    pub fn set(&mut self, flag: &str, values: Vec<String>) {
        let values = values.into_iter().map(|v| normalize(flag, &v)).collect();
        match self.flags.iter_mut().find(|(f, _)| f == flag) {
            Some(entry) => entry.1 = values,
            None => self.flags.push((flag.to_string(), values)),
        }
    }

    /// Every combination of flag values, in sweep order (the last flag varies fastest).
    pub fn configs(&self) -> Vec<PlannedConfig> {
        let mut configs = vec![EngineConfig::default()];
        for (flag, values) in &self.flags {
            configs = configs
                .into_iter()
                .flat_map(|c| {
                    values
                        .iter()
                        .map(move |v| c.clone().with_flag(flag, v.clone()))
                })
                .collect();
        }
        configs
            .into_iter()
            .map(expand_kv)
            .map(|config| PlannedConfig {
                rejected: rejection(&config),
                config,
            })
            .collect()
    }

    /// Tests in llama-bench order: for each prompt set and depth, the pp tests then the tg tests.
    pub fn tests(&self) -> Vec<Test> {
        let mut tests = Vec::new();
        let prompts = if self.prompts.is_empty() {
            vec![PromptSet::Random]
        } else {
            self.prompts.clone()
        };
        let depths = if self.depths.is_empty() {
            vec![0]
        } else {
            self.depths.clone()
        };
        for set in &prompts {
            for &depth in &depths {
                for &p in self.prompt_tokens.iter().filter(|&&p| p > 0) {
                    tests.push(Test {
                        kind: "pp".into(),
                        tokens: p,
                        depth,
                        prompts: set.clone(),
                    });
                }
                for &n in self.gen_tokens.iter().filter(|&&n| n > 0) {
                    tests.push(Test {
                        kind: "tg".into(),
                        tokens: n,
                        depth,
                        prompts: set.clone(),
                    });
                }
            }
        }
        tests
    }

    /// The context a server needs for every test (depth + prompt + generated + headroom).
    pub fn context_needed(&self) -> u32 {
        let max = |v: &[u32]| v.iter().copied().max().unwrap_or(0);
        let needed =
            max(&self.depths) + max(&self.prompt_tokens).max(64) + max(&self.gen_tokens) + 64;
        needed.div_ceil(256) * 256
    }
}

/// `--kv T` is shorthand for `-ctk T -ctv T` (one KV type for both caches).
fn expand_kv(mut config: EngineConfig) -> EngineConfig {
    if let Some(kv) = config.flags.remove("--kv") {
        config.flags.insert("-ctk".into(), kv.clone());
        config.flags.insert("-ctv".into(), kv);
    }
    config
}

/// Canonical spellings, so `-fa 1` and `-fa on` are one config.
fn normalize(flag: &str, value: &str) -> String {
    match (flag, value) {
        ("-fa", "1" | "true" | "on") => "on".into(),
        ("-fa", "0" | "false" | "off") => "off".into(),
        ("-ts", ratio) => ratio.replace(':', "/"),
        _ => value.to_string(),
    }
}

/// Why the engine would refuse this config, if it would.
pub fn rejection(config: &EngineConfig) -> Option<String> {
    let v_type = config
        .flags
        .get("-ctv")
        .map(String::as_str)
        .unwrap_or("f16");
    let flash = config
        .flags
        .get("-fa")
        .map(String::as_str)
        .unwrap_or("auto");
    let quantized_v = !matches!(v_type, "f16" | "bf16" | "f32");
    if quantized_v && flash == "off" {
        return Some(format!("a quantized V cache (-ctv {v_type}) requires flash attention; -fa off is rejected by llama.cpp"));
    }
    if config.flags.get("-sm").is_some_and(|m| m == "tensor") && flash == "off" {
        return Some(
            "-sm tensor requires flash attention; -fa off is rejected by llama.cpp".into(),
        );
    }
    let spec = config
        .flags
        .get("--spec-type")
        .map(String::as_str)
        .unwrap_or("none");
    if spec.starts_with("draft") && !config.flags.contains_key("-md") {
        return Some(format!("--spec-type {spec} needs a draft model (-md)"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_llama_bench() {
        assert_eq!(parse_values("-p", "64,128").unwrap(), ["64", "128"]);
        assert_eq!(
            parse_values("-p", "128-512*2").unwrap(),
            ["128", "256", "512"]
        );
        assert_eq!(
            parse_values("-d", "0-1024+512").unwrap(),
            ["0", "512", "1024"]
        );
        assert_eq!(parse_values("-t", "1-3").unwrap(), ["1", "2", "3"]);
        assert_eq!(parse_values("-ctk", "q8_0, f16").unwrap(), ["q8_0", "f16"]);
        assert!(parse_values("-p", " , ").is_err());
    }

    #[test]
    fn quantized_v_without_flash_attention_is_rejected() {
        let mut m = Matrix::default();
        m.set("-ctv", vec!["f16".into(), "q8_0".into()]);
        m.set("-fa", vec!["0".into(), "1".into()]);
        let configs = m.configs();
        assert_eq!(configs.len(), 4);
        let rejected: Vec<String> = configs
            .iter()
            .filter(|c| c.rejected.is_some())
            .map(|c| c.config.label())
            .collect();
        assert_eq!(rejected, ["-ctv q8_0 -fa off"]);
    }

    #[test]
    fn kv_sets_both_cache_types() {
        let mut m = Matrix::default();
        m.set("--kv", vec!["f16".into(), "q4_0".into()]);
        m.set("-fa", vec!["off".into()]);
        let labels: Vec<(String, bool)> = m
            .configs()
            .iter()
            .map(|c| (c.config.label(), c.rejected.is_some()))
            .collect();
        assert_eq!(
            labels,
            [
                ("-ctk f16 -ctv f16 -fa off".to_string(), false),
                ("-ctk q4_0 -ctv q4_0 -fa off".to_string(), true)
            ]
        );
    }

    #[test]
    fn split_flags_are_checked_and_normalised() {
        assert_eq!(
            parse_flag_values("-sm", "none,layer,row").unwrap(),
            ["none", "layer", "row"]
        );
        assert_eq!(
            parse_flag_values("-ts", "1/1, 3:1").unwrap(),
            ["1/1", "3/1"]
        );
        assert_eq!(parse_flag_values("-mg", "0-1").unwrap(), ["0", "1"]);
        let error = |flag, text| parse_flag_values(flag, text).unwrap_err().to_string();
        assert!(error("-sm", "rows").contains("-sm rows: not a split mode"));
        assert!(error("-mg", "x").starts_with("-mg x:"));
        // `-ts 3,1` is two sweep values, each a one-GPU "split": refused with the spelling to use.
        assert!(error("-ts", "3,1").contains("at least two GPUs"));
        assert!(error("-ts", "3/-1").contains("non-negative"));
        assert!(error("-ts", "0/0").contains("every proportion is 0"));
    }

    #[test]
    fn passed_through_split_flags_are_checked_and_a_comma_ratio_kept() {
        let args = |text: &str| text.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            checked_engine_args(&args("-c 4096 -ts 3,1 --split-mode row")).unwrap(),
            args("-c 4096 -ts 3/1 --split-mode row")
        );
        let error = checked_engine_args(&args("--main-gpu one")).unwrap_err();
        assert!(error.to_string().starts_with("-mg one:"), "{error}");
    }

    #[test]
    fn tensor_split_mode_needs_flash_attention() {
        let mut m = Matrix::default();
        m.set("-sm", vec!["layer".into(), "tensor".into()]);
        m.set("-fa", vec!["off".into()]);
        let rejected: Vec<String> = m
            .configs()
            .iter()
            .filter(|c| c.rejected.is_some())
            .map(|c| c.config.label())
            .collect();
        assert_eq!(rejected, ["-fa off -sm tensor"]);
    }

    #[test]
    fn tests_are_pp_then_tg_per_depth() {
        let m = Matrix {
            prompt_tokens: vec![64],
            gen_tokens: vec![16],
            depths: vec![0, 512],
            ..Default::default()
        };
        let names: Vec<String> = m.tests().iter().map(Test::name).collect();
        assert_eq!(names, ["pp64", "tg16", "pp64 @ d512", "tg16 @ d512"]);
        assert_eq!(m.context_needed(), 768);
    }
}
