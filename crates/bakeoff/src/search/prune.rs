//! Prune the space before anything is measured: values whose flags the build does not know,
//! combinations the build rejects, combinations that change nothing, and configurations that do
//! not fit the memory budget at the required context (the planner's numbers, with the margin), and,
//! with several GPUs, configurations that leave some GPU a share larger than its memory.
//!
//! Only the knobs that memory or the build's rules depend on are enumerated; the other knobs
//! multiply the counts without being materialised.

use super::space::{Inputs, ModelInput, Setting, Space};
use crate::domain::config::EngineConfig;
use crate::domain::units::human_bytes;
use crate::formats::gguf::GgmlType;
use crate::model::plan::{KvSettings, MemoryPlan, DEFAULT_UBATCH};
use crate::model::split::overflow_note;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;

/// The knobs whose combinations are enumerated (the memory planner and the build's rules read
/// them); every other knob only multiplies the counts.
pub const ENUMERATED: [&str; 11] = [
    "model", "-ctk", "-ctv", "-fa", "-b", "-ub", "-np", "-ngl", "-sm", "-ts", "-mg",
];

/// More enumerated combinations than this is a space to narrow, not to prune.
pub const MAX_ENUMERATED: u128 = 2_000_000;

/// Configurations excluded for one reason, with an example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exclusion {
    /// `memory`, `rejected by the build`, `no effect`, `unknown flag`, `cache type`.
    pub kind: String,
    pub reason: String,
    pub count: u128,
    pub example: String,
}

/// One configuration's fit: what it needs against the budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fit {
    pub label: String,
    pub needed: u64,
    pub budget: u64,
}

impl Fit {
    /// Budget minus need (negative when it does not fit).
    pub fn margin(&self) -> i128 {
        self.budget as i128 - self.needed as i128
    }

    /// `needs 80.10 MiB of 64.00 MiB (over by 16.10 MiB)` or `(margin 3.20 MiB)`.
    pub fn describe(&self) -> String {
        let margin = self.margin();
        let amount = human_bytes(margin.unsigned_abs() as u64);
        let side = if margin < 0 { "over by" } else { "margin" };
        format!(
            "{}: needs {} of {} ({side} {amount})",
            self.label,
            human_bytes(self.needed),
            human_bytes(self.budget)
        )
    }
}

/// What pruning left and why the rest went.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub total: u128,
    pub kept: u128,
    pub exclusions: Vec<Exclusion>,
    /// The kept configuration closest to the budget.
    pub tightest: Option<Fit>,
    /// The kept configuration with the most room.
    pub roomiest: Option<Fit>,
    pub budget: u64,
    pub ctx: u64,
}

/// Prune `space` for `inputs`' context, slots and memory budget. Nothing fitting the budget is
/// an error saying what the smallest configuration needs.
pub fn prune(space: &Space, inputs: &Inputs) -> Result<Pruned> {
    let mut space = space.clone();
    let total = space.size();
    let mut tally = Tally::new(inputs.budget);
    drop_unknown_flags(&mut space, inputs, &mut tally);
    let (group, rest) = split(&space);
    let combinations: u128 = group.iter().map(|k| k.len() as u128).product();
    if combinations > MAX_ENUMERATED {
        return Err(Error::input(format!(
            "the space has {combinations} combinations of {} to check: too many to prune",
            ENUMERATED.join(", ")
        ))
        .with_hint("narrow it with --only or --pin"));
    }
    for_each(&group, |choice| tally.check(choice, inputs, rest));
    tally.finish(total, inputs)
}

/// Values setting a flag the build does not know go, counted over the rest of the space.
fn drop_unknown_flags(space: &mut Space, inputs: &Inputs, tally: &mut Tally) {
    let sizes: Vec<u128> = space.knobs.iter().map(|k| k.values.len() as u128).collect();
    let whole: u128 = sizes.iter().product();
    for (index, knob) in space.knobs.iter_mut().enumerate() {
        let others = whole.checked_div(sizes[index]).unwrap_or(0);
        knob.values.retain(|setting| {
            let unknown = setting.args.iter().find(|(f, _)| !inputs.help.knows(f));
            let Some((flag, _)) = unknown else {
                return true;
            };
            let reason = format!("this build's --help does not list {flag}");
            let example = format!("{} {}", knob.name, setting.label);
            tally.exclude("unknown flag", reason, others, example);
            false
        });
    }
}

/// The enumerated knobs' values (by name) and the product of the other knobs' sizes.
fn split(space: &Space) -> (Vec<Vec<(String, Setting)>>, u128) {
    let mut group = Vec::new();
    let mut rest = 1u128;
    for knob in &space.knobs {
        if ENUMERATED.contains(&knob.name.as_str()) {
            group.push(
                knob.values
                    .iter()
                    .map(|s| (knob.name.clone(), s.clone()))
                    .collect(),
            );
        } else {
            rest *= knob.values.len() as u128;
        }
    }
    (group, rest)
}

/// Call `each` with every combination of one value per knob (an odometer: nothing stored).
fn for_each(group: &[Vec<(String, Setting)>], mut each: impl FnMut(&[&(String, Setting)])) {
    if group.iter().any(Vec::is_empty) {
        return;
    }
    let mut digits = vec![0usize; group.len()];
    loop {
        let choice: Vec<&(String, Setting)> = digits
            .iter()
            .zip(group)
            .map(|(d, knob)| &knob[*d])
            .collect();
        each(&choice);
        let Some(position) = (0..group.len())
            .rev()
            .find(|&i| digits[i] + 1 < group[i].len())
        else {
            return;
        };
        digits[position] += 1;
        digits[position + 1..].iter_mut().for_each(|d| *d = 0);
    }
}

struct Tally {
    budget: u64,
    kept: u128,
    exclusions: BTreeMap<(String, String), Exclusion>,
    tightest: Option<Fit>,
    roomiest: Option<Fit>,
    smallest: Option<Fit>,
}

impl Tally {
    fn new(budget: u64) -> Tally {
        Tally {
            budget,
            kept: 0,
            exclusions: BTreeMap::new(),
            tightest: None,
            roomiest: None,
            smallest: None,
        }
    }

    fn exclude(&mut self, kind: &str, reason: String, count: u128, example: String) {
        if count == 0 {
            return;
        }
        let key = (kind.to_string(), reason.clone());
        let entry = self.exclusions.entry(key).or_insert(Exclusion {
            kind: kind.to_string(),
            reason,
            count: 0,
            example,
        });
        entry.count += count;
    }

    /// Judge one combination of the enumerated knobs; it stands for `rest` configurations.
    fn check(&mut self, choice: &[&(String, Setting)], inputs: &Inputs, rest: u128) {
        match judge(choice, inputs) {
            Verdict::Exclude { kind, why, example } => self.exclude(kind, why, rest, example),
            Verdict::Keep(None) => self.kept += rest,
            Verdict::Keep(Some(fit)) => self.weigh(fit, rest),
        }
    }

    fn weigh(&mut self, fit: Fit, rest: u128) {
        if self.smallest.as_ref().is_none_or(|s| fit.needed < s.needed) {
            self.smallest = Some(fit.clone());
        }
        if fit.margin() < 0 {
            let why = "does not fit the memory budget at the required context".to_string();
            let example = fit.describe();
            return self.exclude("memory", why, rest, example);
        }
        self.kept += rest;
        if self
            .tightest
            .as_ref()
            .is_none_or(|t| fit.margin() < t.margin())
        {
            self.tightest = Some(fit.clone());
        }
        if self
            .roomiest
            .as_ref()
            .is_none_or(|t| fit.margin() > t.margin())
        {
            self.roomiest = Some(fit);
        }
    }

    fn finish(self, total: u128, inputs: &Inputs) -> Result<Pruned> {
        if self.kept == 0 {
            return Err(nothing_left(&self, inputs));
        }
        Ok(Pruned {
            total,
            kept: self.kept,
            exclusions: self.exclusions.into_values().collect(),
            tightest: self.tightest,
            roomiest: self.roomiest,
            budget: self.budget,
            ctx: inputs.ctx,
        })
    }
}

/// What pruning says of one combination.
enum Verdict {
    Exclude {
        kind: &'static str,
        why: String,
        example: String,
    },
    /// Kept by the build's rules; its fit when a model is chosen (memory is weighed after).
    Keep(Option<Fit>),
}

fn judge(choice: &[&(String, Setting)], inputs: &Inputs) -> Verdict {
    let config = config_of(choice);
    let example = label_of(choice);
    let exclude = |kind, why| Verdict::Exclude {
        kind,
        why,
        example: example.clone(),
    };
    if let Some(why) = crate::measure::matrix::rejection(&config) {
        return exclude("rejected by the build", without_values(&why));
    }
    if let (Some(b), Some(ub)) = (number(&config, "-b"), number(&config, "-ub")) {
        if ub > b {
            let why = "-ub larger than -b: llama.cpp clamps -ub to -b, the same as -ub = -b";
            return exclude("no effect", why.to_string());
        }
    }
    let split_mode = config.flags.get("-sm").map(String::as_str);
    if split_mode == Some("none") && config.flags.contains_key("-ts") {
        let why = "-ts with -sm none: one GPU holds the whole model, the split is ignored";
        return exclude("no effect", why.to_string());
    }
    if split_mode != Some("none") && config.flags.contains_key("-mg") {
        // llama.cpp b11434 reads main_gpu only in llama_prepare_model_devices, for -sm none.
        let why = "-mg with a split: llama.cpp uses the main GPU only with -sm none";
        return exclude("no effect", why.to_string());
    }
    let Some(model) = model_of(choice, inputs) else {
        return Verdict::Keep(None);
    };
    if let Some(over) = gpu_overflow(model, &config, inputs) {
        let why = "a GPU's share (llama.cpp's layer placement) does not fit its memory at the required context";
        return Verdict::Exclude {
            kind: "GPU memory",
            why: why.to_string(),
            example: format!("{example}: {over}"),
        };
    }
    match needed(model, &config, inputs) {
        Some(needed) => Verdict::Keep(Some(Fit {
            label: example.clone(),
            needed,
            budget: inputs.budget,
        })),
        None => exclude(
            "cache type",
            format!(
                "{}'s rows do not divide into these cache types' blocks",
                model.name
            ),
        ),
    }
}

/// More configurations than this left after pruning is a space to narrow before a search.
pub const MAX_CANDIDATES: u128 = 50_000;

/// One configuration left after pruning: a value of every knob, in the space's order.
#[derive(Debug, Clone, Serialize)]
pub struct Configuration {
    pub choice: Vec<(String, Setting)>,
    /// What the planner says it needs at the required context (with a model chosen).
    pub needed: Option<u64>,
}

impl Configuration {
    /// The engine flags it sets (the model's `-m` among them).
    pub fn config(&self) -> EngineConfig {
        let refs: Vec<&(String, Setting)> = self.choice.iter().collect();
        config_of(&refs)
    }

    /// `smol -ctk q8_0 -ctv f16 -fa on -ub 512`.
    pub fn label(&self) -> String {
        let refs: Vec<&(String, Setting)> = self.choice.iter().collect();
        label_of(&refs)
    }

    /// The value `knob` takes.
    pub fn value(&self, knob: &str) -> Option<&Setting> {
        self.choice.iter().find(|(k, _)| k == knob).map(|(_, s)| s)
    }
}

/// Every configuration pruning keeps, materialised (for the search). Too many is an error asking
/// to narrow the space; the same exclusions as [`prune`] apply.
pub fn configurations(space: &Space, inputs: &Inputs) -> Result<Vec<Configuration>> {
    let mut space = space.clone();
    drop_unknown_flags(&mut space, inputs, &mut Tally::new(inputs.budget));
    let size = space.size();
    if size > MAX_CANDIDATES {
        return Err(Error::input(format!(
            "the space has {size} configurations: too many to search (at most {MAX_CANDIDATES})"
        ))
        .with_hint("narrow it with --only or --pin"));
    }
    let all: Vec<Vec<(String, Setting)>> = space
        .knobs
        .iter()
        .map(|k| {
            k.values
                .iter()
                .map(|s| (k.name.clone(), s.clone()))
                .collect()
        })
        .collect();
    let mut kept = Vec::new();
    for_each(&all, |choice| {
        let needed = match judge(choice, inputs) {
            Verdict::Exclude { .. } => return,
            Verdict::Keep(Some(fit)) if fit.margin() < 0 => return,
            Verdict::Keep(fit) => fit.map(|f| f.needed),
        };
        let choice = choice.iter().map(|&c| c.clone()).collect();
        kept.push(Configuration { choice, needed });
    });
    Ok(kept)
}

/// "nothing fits 8 GiB at ctx 131072: the smallest configuration needs 9.3 GiB", or the reasons.
fn nothing_left(tally: &Tally, inputs: &Inputs) -> Error {
    if let Some(smallest) = &tally.smallest {
        return Error::input(format!(
            "nothing fits {} at ctx {}: the smallest configuration needs {}",
            human_bytes(tally.budget),
            inputs.ctx,
            human_bytes(smallest.needed)
        ))
        .with_hint(format!("smallest: {}", smallest.label));
    }
    let reasons: Vec<String> = tally
        .exclusions
        .values()
        .map(|e| e.reason.clone())
        .collect();
    Error::input(format!(
        "nothing is left to tune after pruning: {}",
        reasons.join("; ")
    ))
}

/// A reason without its parenthesised values, so that one rule is one row:
/// `a quantized V cache (-ctv q8_0) requires...` → `a quantized V cache requires...`.
fn without_values(reason: &str) -> String {
    let mut out = String::new();
    let mut rest = reason;
    while let Some((before, after)) = rest.split_once(" (") {
        out.push_str(before);
        rest = after.split_once(')').map_or("", |(_, tail)| tail);
    }
    out.push_str(rest);
    out
}

fn config_of(choice: &[&(String, Setting)]) -> EngineConfig {
    let mut config = EngineConfig::default();
    for (flag, value) in choice.iter().flat_map(|(_, s)| &s.args) {
        config.flags.insert(flag.clone(), value.clone());
    }
    config
}

/// `smol -ctk q8_0 -ctv f16 -fa on -ub 512`.
fn label_of(choice: &[&(String, Setting)]) -> String {
    let parts: Vec<String> = choice
        .iter()
        .map(|(name, s)| match name.as_str() {
            "model" => s.label.clone(),
            _ => format!("{name} {}", s.label),
        })
        .collect();
    parts.join(" ")
}

fn number(config: &EngineConfig, flag: &str) -> Option<u64> {
    config.flags.get(flag)?.parse().ok()
}

fn model_of<'a>(choice: &[&(String, Setting)], inputs: &'a Inputs) -> Option<&'a ModelInput> {
    let label = &choice.iter().find(|(name, _)| name == "model")?.1.label;
    inputs.models.iter().find(|m| m.name == *label)
}

/// The cache settings `config` gives `model` at the required context.
fn kv_settings(config: &EngineConfig, inputs: &Inputs) -> Option<KvSettings> {
    let cache =
        |flag: &str| GgmlType::from_name(config.flags.get(flag).map_or("f16", String::as_str));
    let slots = number(config, "-np");
    let parallel = slots.unwrap_or(inputs.parallel).max(1);
    // Goal load's servers get -c ctx × slots, so each slot holds the context (search::measure).
    let ctx = match inputs.goal {
        super::space::Goal::Load => inputs.ctx * parallel,
        _ => inputs.ctx,
    };
    let settings = KvSettings {
        ctx,
        // Without -np llama-server's automatic slots share one unified cache.
        parallel,
        unified: slots.is_none(),
        n_ubatch: number(config, "-ub").unwrap_or(DEFAULT_UBATCH),
        ..KvSettings::new(ctx, cache("-ctk")?, cache("-ctv")?)
    };
    Some(settings)
}

fn flash_attention(config: &EngineConfig) -> bool {
    config.flags.get("-fa").is_none_or(|v| v != "off")
}

/// Weights + KV + compute estimate of `config` on `model` at the required context.
fn needed(model: &ModelInput, config: &EngineConfig, inputs: &Inputs) -> Option<u64> {
    let settings = kv_settings(config, inputs)?;
    let flash = flash_attention(config);
    let plan = MemoryPlan::of(&model.facts, &settings, flash, Some(inputs.budget), 0, None)?;
    Some(plan.total_bytes)
}

/// With two GPUs or more and every layer offloaded: `GPU 1 needs X of Y` for the first GPU whose
/// share of `config` is over its memory.
fn gpu_overflow(model: &ModelInput, config: &EngineConfig, inputs: &Inputs) -> Option<String> {
    if !all_offloaded(model, config) {
        return None;
    }
    let settings = kv_settings(config, inputs)?;
    overflow_note(&model.facts, &settings, &config.flags, &inputs.gpu_memories)
}

/// `-ngl` absent, `all`, or at least every layer and the output.
fn all_offloaded(model: &ModelInput, config: &EngineConfig) -> bool {
    crate::model::split::all_offloaded(&model.facts, &config.flags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::space::tests::inputs;
    use crate::search::space::{Edit, EditKind, Goal, Knob};

    fn only(given: &mut Inputs, edit: &str) {
        given.edits.push(Edit::parse(EditKind::Only, edit).unwrap());
    }

    #[test]
    fn quantized_v_without_flash_attention_is_rejected_and_counted() {
        let mut given = inputs(Goal::Tg);
        only(&mut given, "-ctk=f16");
        only(&mut given, "-ctv=f16,q8_0");
        let space = Space::build(&given).unwrap();
        let pruned = prune(&space, &given).unwrap();
        let rejected = pruned
            .exclusions
            .iter()
            .find(|e| e.kind == "rejected by the build")
            .unwrap();
        // One of the four (-ctv, -fa) pairs, times the other knobs.
        assert_eq!(rejected.count * 4, pruned.total);
        assert_eq!(
            rejected.reason,
            "a quantized V cache requires flash attention; -fa off is rejected by llama.cpp"
        );
        assert!(
            rejected.example.contains("-ctv q8_0 -fa off"),
            "{}",
            rejected.example
        );
        assert_eq!(pruned.kept, pruned.total - rejected.count);
    }

    #[test]
    fn memory_prunes_with_the_margin_and_impossible_budgets_say_what_is_needed() {
        let mut given = inputs(Goal::Tg);
        given.ctx = 8192;
        given.budget = 64 << 20; // the weights alone are 64 MiB
        let space = Space::build(&given).unwrap();
        let error = prune(&space, &given).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "nothing fits 64.00 MiB at ctx 8192: the smallest configuration needs "
            ),
            "{error}"
        );
        given.budget = 200 << 20;
        let pruned = prune(&space, &given).unwrap();
        let memory = pruned
            .exclusions
            .iter()
            .find(|e| e.kind == "memory")
            .unwrap();
        assert!(memory.example.contains("over by"), "{}", memory.example);
        let tightest = pruned.tightest.unwrap();
        assert!(tightest.margin() >= 0 && tightest.describe().contains("margin"));
    }

    #[test]
    fn values_with_flags_the_build_lacks_go_with_their_reason() {
        let given = inputs(Goal::Tg);
        let mut space = Space::build(&given).unwrap();
        let before = space.size();
        let knob = Knob {
            name: "--old".into(),
            flags: vec!["--draft-max".into()],
            values: vec![Setting::flag("--draft-max", "3"), Setting::nothing("off")],
            kind: crate::search::space::KnobKind::Categorical,
            why: String::new(),
        };
        space.knobs.push(knob);
        let pruned = prune(&space, &given).unwrap();
        let unknown = pruned
            .exclusions
            .iter()
            .find(|e| e.kind == "unknown flag")
            .unwrap();
        assert_eq!(unknown.count, before);
        assert_eq!(
            unknown.reason,
            "this build's --help does not list --draft-max"
        );
    }

    #[test]
    fn with_two_gpus_a_share_over_a_gpus_memory_is_pruned_naming_the_gpu() {
        use crate::search::space::tests::two_gpus;
        // The fixture model: 64 MiB of weights over 30 layers; GPU 1 holds 48 MiB.
        let mut given = two_gpus(1, 1);
        given.gpu_memories = vec![1 << 30, 48 << 20];
        only(&mut given, "-ctk=f16");
        only(&mut given, "-ctv=f16");
        only(&mut given, "-fa=on");
        let space = Space::build(&given).unwrap();
        assert_eq!(labels(&space, "-ts"), ["by-memory", "1/1"]);
        let pruned = prune(&space, &given).unwrap();
        let over = pruned
            .exclusions
            .iter()
            .find(|e| e.kind == "GPU memory")
            .unwrap();
        // -ts 1/1 puts half the layers on the 48 MiB GPU under -sm layer and row.
        assert!(
            over.example.contains("-ts 1/1: GPU 1 needs"),
            "{}",
            over.example
        );
        let kept = configurations(&space, &given).unwrap();
        let labels: Vec<String> = kept.iter().map(Configuration::label).collect();
        assert!(labels.iter().all(|l| !l.contains("-ts 1/1")), "{labels:?}");
        assert!(
            labels.iter().any(|l| l.contains("-sm layer -ts by-memory")),
            "{labels:?}"
        );
        // -sm none with a split changes nothing and is pruned as such.
        let none = pruned
            .exclusions
            .iter()
            .find(|e| e.kind == "no effect" && e.reason.starts_with("-ts with -sm none"));
        assert!(none.is_some(), "{:?}", pruned.exclusions);
    }

    #[test]
    fn a_main_gpu_counts_only_with_split_mode_none() {
        let mut given = crate::search::space::tests::two_gpus(12, 24);
        only(&mut given, "-ctk=f16");
        only(&mut given, "-ctv=f16");
        only(&mut given, "-fa=on");
        let space = Space::build(&given).unwrap();
        let kept = configurations(&space, &given).unwrap();
        let with_mg: Vec<String> = (kept.iter().map(Configuration::label))
            .filter(|l| l.contains("-mg 1"))
            .collect();
        assert!(
            !with_mg.is_empty() && with_mg.iter().all(|l| l.contains("-sm none")),
            "{with_mg:?}"
        );
    }

    fn labels(space: &Space, knob: &str) -> Vec<String> {
        let knob = space.knob(knob).unwrap();
        knob.values.iter().map(|s| s.label.clone()).collect()
    }

    #[test]
    fn the_odometer_visits_every_combination_once() {
        let knob = |n: usize| {
            (0..n)
                .map(|i| ("k".to_string(), Setting::nothing(&i.to_string())))
                .collect()
        };
        let mut seen = Vec::new();
        for_each(&[knob(2), knob(3)], |c| {
            seen.push(format!("{}{}", c[0].1.label, c[1].1.label))
        });
        assert_eq!(seen, ["00", "01", "02", "10", "11", "12"]);
    }
}
