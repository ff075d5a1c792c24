//! The tune search space, built rather than typed: which knobs exist and which values they take
//! come from the engine build's own `--help`, the model's GGUF facts, the machine and the goal;
//! the user then pins, narrows or extends any knob.

use crate::engines::build::KnownFlags;
use crate::model::ModelFacts;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the tune maximises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    /// Decode tokens/s.
    Tg,
    /// Prompt-processing tokens/s.
    Pp,
    /// Decode and prompt processing, weighted.
    Balanced,
    /// Output tok/s under concurrent load (through `bakeoff load`).
    Load,
    /// Decode tokens per joule (energy from the machine's counters: NVML, RAPL, amdgpu).
    TokensPerJoule,
}

impl Goal {
    pub fn parse(text: &str) -> Result<Goal> {
        Ok(match text {
            "tg" => Goal::Tg,
            "pp" => Goal::Pp,
            "balanced" => Goal::Balanced,
            "load" => Goal::Load,
            "tokens-per-joule" => Goal::TokensPerJoule,
            _ => {
                return Err(Error::input(format!(
                    "'{text}' is not a goal: expected tg, pp, balanced, load or tokens-per-joule"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Goal::Tg => "tg",
            Goal::Pp => "pp",
            Goal::Balanced => "balanced",
            Goal::Load => "load",
            Goal::TokensPerJoule => "tokens-per-joule",
        }
    }
}

/// Whether a knob's values have an order worth exploring locally (batch sizes, threads) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KnobKind {
    Ordinal,
    Categorical,
}

/// One value of a knob: its label and the engine arguments it sets (`(flag, value)`, value empty
/// for a switch; no arguments for the engine's default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub label: String,
    pub args: Vec<(String, String)>,
}

impl Setting {
    /// `flag value` as one argument.
    pub fn flag(flag: &str, value: &str) -> Setting {
        Setting {
            label: value.to_string(),
            args: vec![(flag.to_string(), value.to_string())],
        }
    }

    /// A value that sets nothing (the engine's own behaviour).
    pub fn nothing(label: &str) -> Setting {
        Setting {
            label: label.to_string(),
            args: Vec::new(),
        }
    }

    /// The value this setting gives `flag`, if it sets it.
    pub fn value_of(&self, flag: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }
}

/// One dimension of the space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Knob {
    /// The name users pin it by: its short flag (`-ctk`), or `model`, `spec`, `load-mode`.
    pub name: String,
    /// The llama-server flags its values set.
    pub flags: Vec<String>,
    pub values: Vec<Setting>,
    pub kind: KnobKind,
    /// Why it is in the space (and why these values).
    pub why: String,
}

impl Knob {
    fn new(name: &str, flags: &[&str], kind: KnobKind, values: Vec<Setting>, why: String) -> Knob {
        Knob {
            name: name.to_string(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            values,
            kind,
            why,
        }
    }

    fn of_flag(name: &str, kind: KnobKind, values: &[String], why: String) -> Knob {
        let settings = values.iter().map(|v| Setting::flag(name, v)).collect();
        Knob::new(name, &[name], kind, settings, why)
    }

    /// Whether `key` (a knob name or any spelling of its flag) names this knob.
    fn answers_to(&self, key: &str, help: &Help) -> bool {
        self.name == key || self.flags.iter().any(|f| help.same_option(f, key))
    }
}

/// A user's change to a knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    /// Exactly this value.
    Pin,
    /// Only these of the built values.
    Only,
    /// These values as well.
    Extend,
}

/// `--pin -ctk=q8_0`, `--only -t=1,2`, `--extend -ub=1024`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub kind: EditKind,
    pub key: String,
    pub values: Vec<String>,
}

impl Edit {
    /// `KEY=V1,V2`; `option` names the flag in errors.
    pub fn parse(kind: EditKind, text: &str) -> Result<Edit> {
        let option = match kind {
            EditKind::Pin => "--pin",
            EditKind::Only => "--only",
            EditKind::Extend => "--extend",
        };
        let (key, values) = text
            .split_once('=')
            .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
            .ok_or_else(|| {
                Error::input(format!("{option} {text}: expected KNOB=VALUE[,VALUE...]"))
            })?;
        let key = key.trim();
        let values: Vec<String> = values
            .split(',')
            .map(|v| split_value(key, v.trim()))
            .collect::<Result<_>>()?;
        if kind == EditKind::Pin && values.len() != 1 {
            return Err(Error::input(format!(
                "{option} {text}: a pin takes one value"
            )));
        }
        Ok(Edit {
            kind,
            key: key.to_string(),
            values,
        })
    }
}

/// A value of `-sm`, `-ts` or `-mg` (any spelling) checked as bench checks it (`-ts 3:1` → `3/1`);
/// `by-memory`, the space's label for llama.cpp's default split, and other knobs' values pass.
fn split_value(key: &str, value: &str) -> Result<String> {
    let flag = match key {
        "-sm" | "--split-mode" => "-sm",
        "-ts" | "--tensor-split" if value != "by-memory" => "-ts",
        "-mg" | "--main-gpu" => "-mg",
        _ => return Ok(value.to_string()),
    };
    crate::measure::matrix::checked(flag, value)
}

/// The `--help` of one build: its flags, and each option's entry text for allowed values.
#[derive(Debug, Clone, Default)]
pub struct Help {
    pub flags: KnownFlags,
    /// Each flag → the whole entry (header and continuation lines).
    entries: BTreeMap<String, String>,
}

impl Help {
    /// Read from `--help` text; an empty list of options is an error naming `origin`.
    pub fn parse(text: &str, origin: &str) -> Result<Help> {
        let flags = KnownFlags::parse_help(text);
        if flags.0.is_empty() {
            return Err(Error::input(format!("{origin} --help listed no options")));
        }
        let mut entries = BTreeMap::new();
        for entry in entries_of(text) {
            for flag in flags_of_header(&entry) {
                entries.insert(flag, entry.clone());
            }
        }
        Ok(Help { flags, entries })
    }

    pub fn knows(&self, flag: &str) -> bool {
        self.flags.knows(flag)
    }

    /// Whether two spellings are the same option (`-ctk` and `--cache-type-k`).
    pub fn same_option(&self, a: &str, b: &str) -> bool {
        a == b
            || self
                .entries
                .get(a)
                .is_some_and(|e| self.entries.get(b) == Some(e))
    }

    /// The values `--help` allows for `flag`: an `allowed values:` line, `[on|off|auto]`,
    /// `{none,layer}`, a comma list in place of the argument name, or `- name:` lines.
    pub fn allowed(&self, flag: &str) -> Option<Vec<String>> {
        let entry = self.entries.get(flag)?;
        allowed_in(entry)
    }
}

fn entries_of(text: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if indent <= 2 && line[indent..].starts_with('-') {
            entries.push(line[indent..].to_string());
        } else if line.starts_with(' ') {
            if let Some(entry) = entries.last_mut() {
                entry.push('\n');
                entry.push_str(line.trim());
            }
        } else {
            entries.push(String::new());
        }
    }
    entries
}

fn flags_of_header(entry: &str) -> Vec<String> {
    let header = entry.lines().next().unwrap_or("");
    KnownFlags::parse_help(header).0.into_iter().collect()
}

fn allowed_in(entry: &str) -> Option<Vec<String>> {
    let list = |text: &str, sep: char| -> Vec<String> {
        text.split(sep)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    if let Some(line) = entry
        .lines()
        .find_map(|l| l.strip_prefix("allowed values:"))
    {
        return Some(list(line, ','));
    }
    let header = entry.lines().next().unwrap_or("");
    let argument = header.split_whitespace().find(|t| !t.starts_with('-'))?;
    if let Some(inner) = argument.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
        return Some(list(inner, '|'));
    }
    if let Some(inner) = argument.strip_prefix('{').and_then(|a| a.strip_suffix('}')) {
        return Some(list(inner, ','));
    }
    if argument.contains(',')
        && argument
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-,_+".contains(c))
    {
        return Some(list(argument, ','));
    }
    let dashed: Vec<String> = entry
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.strip_prefix("- ")?
                .split_once(':')
                .map(|(n, _)| n.trim().to_string())
        })
        .collect();
    (!dashed.is_empty()).then_some(dashed)
}

/// One model file given to the tune.
#[derive(Debug, Clone)]
pub struct ModelInput {
    pub name: String,
    pub path: PathBuf,
    pub facts: ModelFacts,
    /// The draft model its catalog entry names.
    pub draft: Option<PathBuf>,
}

impl ModelInput {
    /// Whether the model is a mixture of experts.
    pub fn is_moe(&self) -> bool {
        self.facts.expert_count.is_some_and(|n| n > 1)
    }

    /// Sliding-window layers.
    pub fn swa_layers(&self) -> usize {
        self.facts
            .layers
            .iter()
            .filter(|l| l.sliding_window)
            .count()
    }

    /// `n_head / n_head_kv` of the first layer (1 without GQA).
    pub fn gqa(&self) -> u64 {
        let first = self.facts.layers.first();
        first.map_or(1, |l| l.n_head / l.n_head_kv.max(1))
    }
}

/// Everything the space is built from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub help: Help,
    pub models: Vec<ModelInput>,
    pub cpu_cores: usize,
    /// The largest GPU's memory, when there is a GPU.
    pub gpu_memory: Option<u64>,
    /// Each GPU's memory, in device order (what `-ts` and `-mg` index).
    pub gpu_memories: Vec<u64>,
    pub budget: u64,
    pub ctx: u64,
    pub goal: Goal,
    /// Concurrent users for `load` (served slots otherwise).
    pub parallel: u64,
    pub edits: Vec<Edit>,
}

/// The knobs of one tune, in the order they are listed.
#[derive(Debug, Clone, Serialize)]
pub struct Space {
    pub knobs: Vec<Knob>,
    /// Knobs or values left out before the space was formed, each with its reason (flags the
    /// build does not know, knobs that do not apply).
    pub left_out: Vec<(String, String)>,
}

impl Space {
    /// Build the space, then apply the user's edits.
    pub fn build(inputs: &Inputs) -> Result<Space> {
        let mut space = Space {
            knobs: Vec::new(),
            left_out: Vec::new(),
        };
        space.add_models(inputs);
        space.add_kv(inputs);
        space.add_flash(inputs);
        space.add_batches(inputs);
        space.add_threads(inputs);
        space.add_offload(inputs);
        space.add_split(inputs);
        space.add_speculation(inputs);
        space.add_slots(inputs);
        space.add_load_mode(inputs);
        for edit in &inputs.edits {
            space.apply(edit, &inputs.help)?;
        }
        Ok(space)
    }

    /// Configurations in the full product (before pruning).
    pub fn size(&self) -> u128 {
        self.knobs.iter().map(|k| k.values.len() as u128).product()
    }

    pub fn knob(&self, name: &str) -> Option<&Knob> {
        self.knobs.iter().find(|k| k.name == name)
    }

    /// Add a knob; one left with no values (a `--help` listing none of the values tried) is
    /// left out instead, as it would empty the product.
    fn push(&mut self, knob: Knob) {
        if knob.values.is_empty() {
            let why = format!(
                "this build's --help allows none of the values tried for {}",
                knob.name
            );
            return self.leave_out(&knob.name.clone(), why);
        }
        self.knobs.push(knob);
    }

    fn leave_out(&mut self, what: &str, why: impl Into<String>) {
        self.left_out.push((what.to_string(), why.into()));
    }

    /// `flag` if the build knows it, else recorded as left out.
    fn known(&mut self, inputs: &Inputs, knob: &str, flag: &str) -> bool {
        let known = inputs.help.knows(flag);
        if !known {
            self.leave_out(knob, format!("this build's --help does not list {flag}"));
        }
        known
    }

    fn add_models(&mut self, inputs: &Inputs) {
        let values = inputs
            .models
            .iter()
            .map(|m| Setting {
                label: m.name.clone(),
                args: vec![("-m".to_string(), m.path.display().to_string())],
            })
            .collect();
        let notes: Vec<String> = inputs.models.iter().map(describe_model).collect();
        let why = format!("the model files given: {}", notes.join("; "));
        self.push(Knob::new(
            "model",
            &["-m"],
            KnobKind::Categorical,
            values,
            why,
        ));
    }

    fn add_kv(&mut self, inputs: &Inputs) {
        for (flag, cache) in [("-ctk", "K"), ("-ctv", "V")] {
            if !self.known(inputs, flag, flag) {
                continue;
            }
            let allowed = inputs
                .help
                .allowed(flag)
                .unwrap_or_else(|| strings(&["f16", "q8_0"]));
            let values = kv_order(&allowed);
            let why = format!(
                "{cache} cache type, set apart from the other cache (types from --help; f32 left out: never smaller or faster than f16)"
            );
            self.push(Knob::of_flag(flag, KnobKind::Ordinal, &values, why));
        }
    }

    fn add_flash(&mut self, inputs: &Inputs) {
        if !self.known(inputs, "-fa", "-fa") {
            return;
        }
        let allowed = inputs
            .help
            .allowed("-fa")
            .unwrap_or_else(|| strings(&["on", "off"]));
        let values: Vec<String> = allowed.into_iter().filter(|v| v != "auto").collect();
        let why = "flash attention (auto is one of these, chosen by the engine); a quantized V cache needs it".to_string();
        self.push(Knob::of_flag("-fa", KnobKind::Categorical, &values, why));
    }

    fn add_batches(&mut self, inputs: &Inputs) {
        let pp_heavy = matches!(inputs.goal, Goal::Pp | Goal::Balanced);
        let (b, ub) = if pp_heavy {
            (
                strings(&["512", "1024", "2048", "4096"]),
                strings(&["128", "256", "512", "1024"]),
            )
        } else {
            (strings(&["512", "2048"]), strings(&["128", "256", "512"]))
        };
        let goal = inputs.goal.name();
        let wider = if pp_heavy {
            format!(", more values for goal {goal}")
        } else {
            String::new()
        };
        if self.known(inputs, "-b", "-b") {
            let why = format!("logical batch: prompt processing speed{wider}");
            self.push(Knob::of_flag("-b", KnobKind::Ordinal, &b, why));
        }
        if self.known(inputs, "-ub", "-ub") {
            let why = "physical batch: prompt speed against compute-buffer memory".to_string();
            self.push(Knob::of_flag("-ub", KnobKind::Ordinal, &ub, why));
        }
    }

    fn add_threads(&mut self, inputs: &Inputs) {
        if !self.known(inputs, "-t", "-t") {
            return;
        }
        let values = thread_counts(inputs.cpu_cores);
        let why = format!("{} CPU cores on this machine", inputs.cpu_cores);
        self.push(Knob::of_flag("-t", KnobKind::Ordinal, &values, why));
    }

    fn add_offload(&mut self, inputs: &Inputs) {
        let Some(mut gpu) = inputs.gpu_memory else {
            self.leave_out("-ngl", "no GPU on this machine: nothing to offload to");
            return;
        };
        if inputs.gpu_memories.len() >= 2 {
            // A layer split spreads the layers over every GPU.
            gpu = inputs.gpu_memories.iter().sum();
        }
        if self.known(inputs, "-ngl", "-ngl") {
            let values = gpu_layers(inputs, gpu);
            let why = format!(
                "GPU layers: {} of GPU memory",
                crate::domain::units::human_bytes(gpu)
            );
            self.push(Knob::of_flag("-ngl", KnobKind::Ordinal, &values, why));
        }
        self.add_expert_offload(inputs);
    }

    /// `-sm` and `-ts` with two GPUs or more; pinned (absent) with one or none.
    fn add_split(&mut self, inputs: &Inputs) {
        let gpus = inputs.gpu_memories.len();
        if gpus < 2 {
            let why = format!("{gpus} GPU(s) on this machine: a split needs two or more");
            self.leave_out("-sm", why.clone());
            return self.leave_out("-ts", why);
        }
        if self.known(inputs, "-sm", "-sm") {
            let allowed = inputs.help.allowed("-sm").unwrap_or_default();
            let values: Vec<String> = ["none", "layer", "row"]
                .iter()
                .filter(|m| allowed.is_empty() || allowed.iter().any(|a| a == *m))
                .map(|m| m.to_string())
                .collect();
            if allowed.iter().any(|a| a == "tensor") {
                let why =
                    "-sm tensor is experimental in this build: add it with --extend -sm=tensor";
                self.leave_out("-sm tensor", why);
            }
            let why = format!("{gpus} GPUs: one GPU, layers across them, or rows of each matrix");
            self.push(Knob::of_flag("-sm", KnobKind::Categorical, &values, why));
        }
        if self.known(inputs, "-ts", "-ts") {
            self.add_tensor_split(&inputs.gpu_memories);
        }
        if self.known(inputs, "-mg", "-mg") {
            self.add_main_gpu(&inputs.gpu_memories);
        }
    }

    /// With `-sm none`, which GPU holds the model: the first (llama.cpp's default) or the largest.
    fn add_main_gpu(&mut self, memories: &[u64]) {
        let largest = (0..memories.len()).max_by_key(|&i| (memories[i], std::cmp::Reverse(i)));
        let Some(largest) = largest.filter(|&i| memories[i] > memories[0]) else {
            let why = "GPU 0 is as large as any: -sm none's default main GPU is the largest";
            return self.leave_out("-mg", why);
        };
        let values = vec![
            Setting::nothing("0"),
            Setting::flag("-mg", &largest.to_string()),
        ];
        let why =
            format!("the GPU -sm none uses: GPU 0 (the default) or GPU {largest}, the largest");
        self.push(Knob::new(
            "-mg",
            &["-mg"],
            KnobKind::Categorical,
            values,
            why,
        ));
    }

    /// llama.cpp's default (proportional to free memory) and an even split, when the GPUs'
    /// memory differs (else the two are one).
    fn add_tensor_split(&mut self, memories: &[u64]) {
        if memories.iter().all(|&m| m == memories[0]) {
            let why = "the GPUs have equal memory: llama.cpp's default split is already even";
            return self.leave_out("-ts", why);
        }
        let even = vec!["1"; memories.len()].join("/");
        let values = vec![Setting::nothing("by-memory"), Setting::flag("-ts", &even)];
        let sizes: Vec<String> = memories
            .iter()
            .map(|&m| crate::domain::units::human_bytes(m))
            .collect();
        let why = format!(
            "GPUs of {}: split by free memory (llama.cpp's default) or evenly",
            sizes.join(", ")
        );
        self.push(Knob::new(
            "-ts",
            &["-ts"],
            KnobKind::Categorical,
            values,
            why,
        ));
    }

    fn add_expert_offload(&mut self, inputs: &Inputs) {
        let Some(moe) = inputs.models.iter().find(|m| m.is_moe()) else {
            self.leave_out("--n-cpu-moe", "no model given is a mixture of experts");
            return;
        };
        if !self.known(inputs, "--n-cpu-moe", "--n-cpu-moe") {
            return;
        }
        let n = moe.facts.n_layer;
        let mut values: Vec<String> = [0, n / 4, n / 2, n].iter().map(u64::to_string).collect();
        values.dedup();
        let why = format!(
            "{} is MoE ({} experts): keep the experts of the first N layers on the CPU",
            moe.name,
            moe.facts.expert_count.unwrap_or(0)
        );
        self.push(Knob::of_flag(
            "--n-cpu-moe",
            KnobKind::Ordinal,
            &values,
            why,
        ));
    }

    fn add_speculation(&mut self, inputs: &Inputs) {
        if !self.known(inputs, "spec", "--spec-type") {
            return;
        }
        let types = inputs.help.allowed("--spec-type").unwrap_or_default();
        let mut values = vec![Setting::nothing("none")];
        for (kind, sizes) in NGRAM_SIZES {
            if !types.iter().any(|t| t == kind) {
                self.leave_out(
                    "spec",
                    format!("this build's --spec-type does not list {kind}"),
                );
                continue;
            }
            for size in *sizes {
                values.push(ngram_setting(kind, size, &inputs.help));
            }
        }
        values.extend(draft_settings(inputs, &types));
        let why = "speculative decoding: n-gram types with their sizes, a draft model where the catalog names one".to_string();
        let flags = spec_flags(&values);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.push(Knob::new(
            "spec",
            &flags,
            KnobKind::Categorical,
            values,
            why,
        ));
    }

    fn add_slots(&mut self, inputs: &Inputs) {
        if inputs.goal != Goal::Load {
            self.leave_out(
                "-np",
                "slots are a knob only for goal load (one slot serves tg/pp)",
            );
            return;
        }
        if !self.known(inputs, "-np", "-np") {
            return;
        }
        let values = slot_counts(inputs.parallel);
        let why = format!("server slots for {} concurrent users", inputs.parallel);
        self.push(Knob::of_flag("-np", KnobKind::Ordinal, &values, why));
    }

    fn add_load_mode(&mut self, inputs: &Inputs) {
        let help = &inputs.help;
        if help.knows("-lm") {
            let allowed = help.allowed("-lm").unwrap_or_default();
            let values: Vec<String> = ["mmap", "none"]
                .iter()
                .filter(|v| allowed.iter().any(|a| a == *v))
                .map(|v| v.to_string())
                .collect();
            let why = "model load mode (-lm; this build's spelling of mmap / no-mmap)".to_string();
            self.push(Knob::of_flag("-lm", KnobKind::Categorical, &values, why));
        } else if help.knows("--no-mmap") {
            let no_mmap = Setting {
                label: "no-mmap".into(),
                args: vec![("--no-mmap".into(), String::new())],
            };
            let values = vec![Setting::nothing("mmap"), no_mmap];
            let why = "mmap or read the model (this build spells it --no-mmap)".to_string();
            let flags = ["--no-mmap"];
            self.push(Knob::new(
                "load-mode",
                &flags,
                KnobKind::Categorical,
                values,
                why,
            ));
        } else {
            self.leave_out(
                "load-mode",
                "this build's --help lists neither -lm nor --no-mmap",
            );
        }
    }

    /// Apply one pin, narrowing or extension; a knob the space lacks is added when the build
    /// knows its flag.
    fn apply(&mut self, edit: &Edit, help: &Help) -> Result<()> {
        let index = self
            .knobs
            .iter()
            .position(|k| k.answers_to(&edit.key, help));
        let index = match index {
            Some(index) => index,
            None => self.add_user_knob(edit, help)?,
        };
        let knob = &mut self.knobs[index];
        match edit.kind {
            EditKind::Pin | EditKind::Only => narrow(knob, edit),
            EditKind::Extend => {
                extend(knob, &edit.values);
                Ok(())
            }
        }
    }

    fn add_user_knob(&mut self, edit: &Edit, help: &Help) -> Result<usize> {
        if !help.knows(&edit.key) {
            let names: Vec<&str> = self.knobs.iter().map(|k| k.name.as_str()).collect();
            return Err(Error::input(format!(
                "{}: no such knob, and this build's --help does not list it as a flag",
                edit.key
            ))
            .with_hint(format!("knobs: {}", names.join(", "))));
        }
        let knob = Knob::new(
            &edit.key,
            &[&edit.key],
            KnobKind::Categorical,
            Vec::new(),
            "set by the user".into(),
        );
        self.knobs.push(knob);
        Ok(self.knobs.len() - 1)
    }
}

fn narrow(knob: &mut Knob, edit: &Edit) -> Result<()> {
    if knob.values.is_empty() {
        extend(knob, &edit.values);
        return Ok(());
    }
    let mut kept = Vec::new();
    for value in &edit.values {
        match knob.values.iter().find(|s| s.label == *value) {
            Some(setting) => kept.push(setting.clone()),
            None if edit.kind == EditKind::Pin && knob.flags.len() == 1 => {
                kept.push(Setting::flag(&knob.flags[0], value))
            }
            None => {
                let labels: Vec<&str> = knob.values.iter().map(|s| s.label.as_str()).collect();
                return Err(Error::input(format!(
                    "{}={value}: not a value of knob {} ({})",
                    edit.key,
                    knob.name,
                    labels.join(", ")
                ))
                .with_hint("use --extend to add a value"));
            }
        }
    }
    knob.values = kept;
    knob.why = format!("{} (narrowed by the user)", knob.why);
    Ok(())
}

fn extend(knob: &mut Knob, values: &[String]) {
    let flag = knob
        .flags
        .first()
        .cloned()
        .unwrap_or_else(|| knob.name.clone());
    for value in values {
        if !knob.values.iter().any(|s| s.label == *value) {
            knob.values.push(Setting::flag(&flag, value));
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Cache types from most to least precise, f32 left out; types this order does not know keep
/// their `--help` order at the end.
fn kv_order(allowed: &[String]) -> Vec<String> {
    const ORDER: [&str; 8] = [
        "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "iq4_nl", "q4_0",
    ];
    let mut values: Vec<String> = ORDER
        .iter()
        .filter(|t| allowed.iter().any(|a| a == *t))
        .map(|t| t.to_string())
        .collect();
    let rest = allowed
        .iter()
        .filter(|a| *a != "f32" && !ORDER.contains(&a.as_str()));
    values.extend(rest.cloned());
    values
}

/// Every count up to 4 cores, then quarters of the cores.
fn thread_counts(cores: usize) -> Vec<String> {
    let cores = cores.max(1);
    let mut counts: Vec<usize> = if cores <= 4 {
        (1..=cores).collect()
    } else {
        vec![cores / 4, cores / 2, cores * 3 / 4, cores]
    };
    counts.dedup();
    counts.into_iter().map(|n| n.to_string()).collect()
}

/// Powers of two up to the concurrency, and the concurrency itself.
fn slot_counts(parallel: u64) -> Vec<String> {
    let parallel = parallel.max(1);
    let mut counts: Vec<u64> = std::iter::successors(Some(1u64), |n| Some(n * 2))
        .take_while(|n| *n < parallel)
        .collect();
    counts.push(parallel);
    counts.into_iter().map(|n| n.to_string()).collect()
}

/// `all` when the largest model fits the GPU, else a split at a half and three quarters too.
fn gpu_layers(inputs: &Inputs, gpu: u64) -> Vec<String> {
    let largest = inputs
        .models
        .iter()
        .map(|m| &m.facts)
        .max_by_key(|f| f.tensor_bytes);
    let Some(facts) = largest else {
        return strings(&["all"]);
    };
    if facts.tensor_bytes < gpu {
        return strings(&["all"]);
    }
    let n = facts.n_layer;
    [n / 2, n * 3 / 4, n].iter().map(u64::to_string).collect()
}

/// The n-gram speculation types tried, each with the sizes tried: `(n, m)` for the lookup and
/// draft lengths (`ngram-mod`: match length and the most drafted). ngram-simple's defaults
/// (12, 48) found nothing on short prompts, so a shorter lookup is tried too.
const NGRAM_SIZES: &[(&str, &[(u32, u32)])] = &[
    ("ngram-simple", &[(12, 48), (4, 16)]),
    ("ngram-mod", &[(24, 64), (8, 16)]),
];

fn ngram_setting(kind: &str, (n, m): &(u32, u32), help: &Help) -> Setting {
    let (n_flag, m_flag) = match kind {
        "ngram-mod" => (
            "--spec-ngram-mod-n-match".to_string(),
            "--spec-ngram-mod-n-max".to_string(),
        ),
        _ => (
            format!("--spec-{kind}-size-n"),
            format!("--spec-{kind}-size-m"),
        ),
    };
    let mut args = vec![("--spec-type".to_string(), kind.to_string())];
    for (flag, value) in [(n_flag, n), (m_flag, m)] {
        if help.knows(&flag) {
            args.push((flag, value.to_string()));
        }
    }
    Setting {
        label: format!("{kind} n={n} m={m}"),
        args,
    }
}

fn draft_settings(inputs: &Inputs, types: &[String]) -> Vec<Setting> {
    if !types.iter().any(|t| t == "draft-simple") || !inputs.help.knows("-md") {
        return Vec::new();
    }
    let drafts: Vec<&PathBuf> = inputs
        .models
        .iter()
        .filter_map(|m| m.draft.as_ref())
        .collect();
    drafts
        .into_iter()
        .map(|path| Setting {
            label: format!(
                "draft {}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
            args: vec![
                ("--spec-type".to_string(), "draft-simple".to_string()),
                ("-md".to_string(), path.display().to_string()),
            ],
        })
        .collect()
}

fn spec_flags(values: &[Setting]) -> Vec<String> {
    let mut flags = vec!["--spec-type".to_string()];
    for (flag, _) in values.iter().flat_map(|s| &s.args) {
        if !flags.contains(flag) {
            flags.push(flag.clone());
        }
    }
    flags
}

/// `SmolLM2 (llama, GQA 3, dense)`, `gemma (gemma3, 15 of 18 layers SWA)`.
fn describe_model(model: &ModelInput) -> String {
    let mut notes = vec![model.facts.architecture.clone()];
    if model.gqa() > 1 {
        notes.push(format!("GQA {}", model.gqa()));
    }
    let swa = model.swa_layers();
    if swa > 0 {
        notes.push(format!("{swa} of {} layers SWA", model.facts.layers.len()));
    }
    notes.push(match model.facts.expert_count {
        Some(n) if n > 1 => format!("MoE {n} experts"),
        _ => "dense".to_string(),
    });
    format!("{} ({})", model.name, notes.join(", "))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const HELP: &str = include_str!("../../tests/fixtures/llama-server-b11434-help.txt");

    /// The trimmed fixture plus b11434's entries for -m, -b and -ub (it has no -t, on purpose).
    pub(crate) fn help() -> Help {
        let more = "-m,    --model FNAME                    model path to load\n\
                    -b,    --batch-size N                   logical maximum batch size (default: 2048)\n\
                    -ub,   --ubatch-size N                  physical maximum batch size (default: 512)\n";
        Help::parse(&format!("{HELP}{more}"), "llama-server").unwrap()
    }

    /// A 30-layer GQA model of 64 MiB of weights (the planner's toy shape).
    pub(crate) fn facts() -> ModelFacts {
        let layer = crate::model::facts::LayerAttention {
            n_head: 9,
            n_head_kv: 3,
            key_length: 64,
            value_length: 64,
            sliding_window: false,
            recurrent: false,
        };
        ModelFacts {
            architecture: "llama".into(),
            name: None,
            file_size: 64 << 20,
            parameters: 0,
            active_parameters: 0,
            tensor_bytes: 64 << 20,
            bytes_by_type: Default::default(),
            bytes_by_role: Default::default(),
            context_length: Some(8192),
            n_layer: 30,
            n_embd: 576,
            n_ff: 1536,
            n_vocab: Some(49152),
            layers: vec![layer; 30],
            ..Default::default()
        }
    }

    pub(crate) fn inputs(goal: Goal) -> Inputs {
        Inputs {
            help: help(),
            models: vec![ModelInput {
                name: "m".into(),
                path: PathBuf::from("m.gguf"),
                facts: facts(),
                draft: None,
            }],
            cpu_cores: 2,
            gpu_memory: None,
            gpu_memories: Vec::new(),
            budget: 1 << 30,
            ctx: 4096,
            goal,
            parallel: 4,
            edits: Vec::new(),
        }
    }

    fn labels(space: &Space, knob: &str) -> Vec<String> {
        let knob = space.knob(knob).unwrap_or_else(|| panic!("no knob {knob}"));
        knob.values.iter().map(|s| s.label.clone()).collect()
    }

    #[test]
    fn allowed_values_come_from_every_help_spelling() {
        let help = help();
        assert_eq!(help.allowed("-fa").unwrap(), ["on", "off", "auto"]);
        assert_eq!(help.allowed("--cache-type-v").unwrap().len(), 9);
        let spec = help.allowed("--spec-type").unwrap();
        assert!(spec.contains(&"ngram-mod".to_string()), "{spec:?}");
        let modes = help.allowed("-lm").unwrap();
        assert_eq!(
            modes,
            ["auto", "none", "mmap", "mlock", "mmap+mlock", "dio"]
        );
        assert!(help.same_option("-ctk", "--cache-type-k"));
        assert!(!help.same_option("-ctk", "-ctv"));
    }

    #[test]
    fn the_fixture_space_has_its_knobs_and_leaves_out_what_the_build_lacks() {
        let space = Space::build(&inputs(Goal::Tg)).unwrap();
        assert_eq!(labels(&space, "-ctk")[..3], ["f16", "bf16", "q8_0"]);
        assert!(!labels(&space, "-ctv").contains(&"f32".to_string()));
        assert_eq!(labels(&space, "-fa"), ["on", "off"]);
        assert_eq!(labels(&space, "-lm"), ["mmap", "none"]);
        assert!(space.knob("-ngl").is_none() && space.knob("-np").is_none());
        assert_eq!(labels(&space, "-ub"), ["128", "256", "512"]);
        // The fixture has no -t: left out with the reason.
        let left: Vec<&str> = space.left_out.iter().map(|(k, _)| k.as_str()).collect();
        assert!(left.contains(&"-t") && !left.contains(&"-ub"), "{left:?}");
        let spec = labels(&space, "spec");
        assert_eq!(spec[0], "none");
        assert!(spec.contains(&"ngram-mod n=8 m=16".to_string()), "{spec:?}");
    }

    #[test]
    fn load_goal_adds_slots_and_a_gpu_adds_layers() {
        let mut given = inputs(Goal::Load);
        given.gpu_memory = Some(80 << 30);
        let space = Space::build(&given).unwrap();
        assert_eq!(labels(&space, "-np"), ["1", "2", "4"]);
        assert_eq!(labels(&space, "-ngl"), ["all"]);
    }

    /// b11434's `-sm` and `-ts` entries on top of the fixture.
    pub(crate) fn help_with_split() -> Help {
        let more = "-m,    --model FNAME                    model path to load\n\
                    -sm,   --split-mode {none,layer,row,tensor}\n\
                    \x20                                       how to split the model across multiple GPUs, one of:\n\
                    \x20                                       - none: use one GPU only\n\
                    -ts,   --tensor-split N0,N1,N2,...      fraction of the model to offload to each GPU\n\
                    -mg,   --main-gpu INDEX                 the GPU to use for the model (with split-mode = none)\n";
        Help::parse(&format!("{HELP}{more}"), "llama-server").unwrap()
    }

    /// Two GPUs of `a` and `b` GiB (what the fingerprint's `gpus` rows give the space).
    pub(crate) fn two_gpus(a: u64, b: u64) -> Inputs {
        let mut given = inputs(Goal::Tg);
        given.help = help_with_split();
        given.gpu_memories = vec![a << 30, b << 30];
        given.gpu_memory = Some(a.max(b) << 30);
        given
    }

    #[test]
    fn two_gpus_add_split_mode_and_ratio_and_one_gpu_pins_them() {
        let space = Space::build(&two_gpus(24, 12)).unwrap();
        assert_eq!(labels(&space, "-sm"), ["none", "layer", "row"]);
        assert_eq!(labels(&space, "-ts"), ["by-memory", "1/1"]);
        // GPU 0 is the largest already: -sm none's main GPU is no knob; the other way round it is.
        assert!(space.knob("-mg").is_none());
        let space = Space::build(&two_gpus(12, 24)).unwrap();
        assert_eq!(labels(&space, "-mg"), ["0", "1"]);
        let left: Vec<&str> = space.left_out.iter().map(|(k, _)| k.as_str()).collect();
        assert!(left.contains(&"-sm tensor"), "{left:?}");
        // Equal GPUs: the default split is the even one, so -ts is no knob.
        let space = Space::build(&two_gpus(80, 80)).unwrap();
        assert!(space.knob("-ts").is_none() && space.knob("-sm").is_some());
        let mut one = two_gpus(80, 80);
        one.gpu_memories.pop();
        let space = Space::build(&one).unwrap();
        assert!(space.knob("-sm").is_none() && space.knob("-ts").is_none());
        let left: Vec<&str> = space.left_out.iter().map(|(k, _)| k.as_str()).collect();
        assert!(left.contains(&"-sm") && left.contains(&"-ts"), "{left:?}");
    }

    #[test]
    fn split_edits_are_checked_as_bench_checks_them() {
        let edit = Edit::parse(EditKind::Only, "-ts=by-memory,3:1").unwrap();
        assert_eq!(edit.values, ["by-memory", "3/1"]);
        let error = Edit::parse(EditKind::Extend, "-sm=rows")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("-sm rows: not a split mode"), "{error}");
        let mut given = two_gpus(24, 12);
        given.edits = vec![Edit::parse(EditKind::Extend, "-sm=tensor").unwrap()];
        let space = Space::build(&given).unwrap();
        assert_eq!(labels(&space, "-sm"), ["none", "layer", "row", "tensor"]);
    }

    #[test]
    fn pin_only_and_extend_change_the_space() {
        let mut given = inputs(Goal::Tg);
        given.edits = vec![
            Edit::parse(EditKind::Pin, "--cache-type-k=q8_0").unwrap(),
            Edit::parse(EditKind::Only, "-ctv=f16,q4_0").unwrap(),
            Edit::parse(EditKind::Extend, "-np=8").unwrap(),
        ];
        let space = Space::build(&given).unwrap();
        assert_eq!(labels(&space, "-ctk"), ["q8_0"]);
        assert_eq!(labels(&space, "-ctv"), ["f16", "q4_0"]);
        assert_eq!(labels(&space, "-np"), ["8"]);
    }

    #[test]
    fn edits_of_unknown_knobs_or_values_are_one_line_errors() {
        let mut given = inputs(Goal::Tg);
        given.edits = vec![Edit::parse(EditKind::Pin, "--draft-max=3").unwrap()];
        let error = Space::build(&given).unwrap_err().to_string();
        assert_eq!(
            error,
            "--draft-max: no such knob, and this build's --help does not list it as a flag"
        );
        given.edits = vec![Edit::parse(EditKind::Only, "-ctk=q3_0").unwrap()];
        let error = Space::build(&given).unwrap_err().to_string();
        assert!(
            error.starts_with("-ctk=q3_0: not a value of knob -ctk (f16, bf16"),
            "{error}"
        );
        let error = Edit::parse(EditKind::Pin, "-ctk").unwrap_err().to_string();
        assert_eq!(error, "--pin -ctk: expected KNOB=VALUE[,VALUE...]");
    }

    #[test]
    fn a_moe_model_on_a_gpu_gets_expert_offload_and_a_catalog_draft_is_a_speculation_value() {
        let mut given = inputs(Goal::Tg);
        let help =
            "-ncmoe, --n-cpu-moe N   keep the MoE weights of the first N layers in the CPU\n\
                    -ngl,  --n-gpu-layers N   max. number of layers to store in VRAM\n\
                    -md,   --model-draft FNAME   draft model\n";
        given.help = Help::parse(&format!("{HELP}{help}"), "llama-server").unwrap();
        given.gpu_memory = Some(16 << 20); // smaller than the 64 MiB of weights
        given.models[0].facts.expert_count = Some(8);
        given.models[0].draft = Some(PathBuf::from("/models/tiny-draft.gguf"));
        let space = Space::build(&given).unwrap();
        assert_eq!(labels(&space, "--n-cpu-moe"), ["0", "7", "15", "30"]);
        assert_eq!(labels(&space, "-ngl"), ["15", "22", "30"]);
        let spec = space.knob("spec").unwrap();
        let draft = spec
            .values
            .iter()
            .find(|s| s.label == "draft tiny-draft.gguf")
            .unwrap();
        assert_eq!(draft.value_of("-md"), Some("/models/tiny-draft.gguf"));
        assert_eq!(draft.value_of("--spec-type"), Some("draft-simple"));
        // Without a GPU neither is in the space, whatever the model.
        given.gpu_memory = None;
        let space = Space::build(&given).unwrap();
        assert!(space.knob("--n-cpu-moe").is_none() && space.knob("-ngl").is_none());
    }

    #[test]
    fn a_build_without_load_mode_gets_its_own_mmap_spelling() {
        let mut given = inputs(Goal::Tg);
        let old = "-ctk,  --cache-type-k TYPE   KV cache data type for K\n\
                   -m,    --model FNAME   model path to load\n\
                   --mmap, --no-mmap   whether to memory-map model\n";
        given.help = Help::parse(old, "old-server").unwrap();
        let space = Space::build(&given).unwrap();
        assert_eq!(labels(&space, "load-mode"), ["mmap", "no-mmap"]);
        let no_mmap = &space.knob("load-mode").unwrap().values[1];
        assert_eq!(no_mmap.args, [("--no-mmap".to_string(), String::new())]);
        // Without an allowed-values line the cache types fall back to f16 and q8_0.
        assert_eq!(labels(&space, "-ctk"), ["f16", "q8_0"]);
        assert!(space.knob("-ctv").is_none() && space.knob("spec").is_none());
    }

    #[test]
    fn threads_follow_the_cores() {
        assert_eq!(thread_counts(2), ["1", "2"]);
        assert_eq!(thread_counts(16), ["4", "8", "12", "16"]);
        assert_eq!(slot_counts(6), ["1", "2", "4", "6"]);
    }
}
