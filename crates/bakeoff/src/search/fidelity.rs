//! Fidelity as the race's constraint: a candidate about to become the incumbent is gated against
//! the reference configuration with `bakeoff gate`'s checks and thresholds; one that fails is
//! vetoed and can never win. A verdict is shared by every candidate that differs only in knobs
//! that cannot change the numbers the model computes ([`NUMERICALLY_INERT`]).

use super::race::Constraint;
use super::sink::TuneSink;
use crate::domain::EngineConfig;
use crate::quality::gate::GateSpec;
use crate::quality::readiness::{self, Baseline, Candidate, Flags, GateFile, GateRun, Readiness};
use crate::quality::Status;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Flags that change how fast the numbers are computed or how the weights reach memory, never
/// the numbers themselves, so gate results are reused across their values:
/// - threads (`-t`, `-tb`): ggml splits each matrix product by rows between threads, and every
///   dot product is summed by one thread in one order, so the logits are the same bits;
/// - load mode (`-lm`, `--no-mmap`, `--mmap`, `--mlock`): the same bytes reach memory another way;
/// - slots (`-np`): the gate always measures with one slot, whatever the candidate serves with.
///
/// Batch sizes are *not* here: the physical batch decides how a prompt is split into matrix
/// products, which changes rounding (FACTS: logits depend on batch size).
pub const NUMERICALLY_INERT: &[&str] = &[
    "-t",
    "--threads",
    "-tb",
    "--threads-batch",
    "-lm",
    "--load-mode",
    "--no-mmap",
    "--mmap",
    "--mlock",
    "-np",
    "--parallel",
];

/// What the constraint needs to know of each candidate.
#[derive(Debug, Clone)]
pub struct Gated {
    pub label: String,
    pub model: PathBuf,
    pub config: EngineConfig,
}

/// One verdict: the candidate that was gated, and the veto if it failed.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub gated: String,
    pub veto: Option<String>,
    pub row: Readiness,
}

/// Progress of the gate, for the display.
pub type Stage<'a> = dyn Fn(&str, &str) + 'a;

/// The fidelity gate as a [`Constraint`]; the reference is measured on the first veto asked.
pub struct Fidelity<'a> {
    pub candidates: &'a [Gated],
    pub file: GateFile,
    pub spec: GateSpec,
    pub server: PathBuf,
    pub perplexity: Option<PathBuf>,
    pub run_dir: PathBuf,
    pub timeouts: crate::engines::http::Timeouts,
    pub store: &'a dyn TuneSink,
    pub run_id: i64,
    pub engine_id: i64,
    pub stage: &'a Stage<'a>,
    baseline: Option<Baseline>,
    /// Fidelity key → verdict.
    pub verdicts: BTreeMap<String, Verdict>,
}

impl<'a> Fidelity<'a> {
    /// `reference` is the baseline's model and flags; `file` carries the checks and context.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site, each a distinct input"
    )]
    pub fn new(
        candidates: &'a [Gated],
        file: GateFile,
        spec: GateSpec,
        (server, perplexity): (PathBuf, Option<PathBuf>),
        run_dir: PathBuf,
        timeouts: crate::engines::http::Timeouts,
        (store, run_id, engine_id): (&'a dyn TuneSink, i64, i64),
        stage: &'a Stage<'a>,
    ) -> Self {
        Fidelity {
            candidates,
            file,
            spec,
            server,
            perplexity,
            run_dir,
            timeouts,
            store,
            run_id,
            engine_id,
            stage,
            baseline: None,
            verdicts: BTreeMap::new(),
        }
    }

    /// Take back the verdicts a resumed run already stored (its readiness rows), so that no
    /// candidate is gated twice. The reference is measured again only if a candidate not gated
    /// before the stop needs it (its greedy outputs are not stored).
    pub fn restore(&mut self, rows: Vec<Readiness>) {
        for row in rows.into_iter().filter(|r| !r.baseline) {
            let Some(gated) = self.candidates.iter().find(|c| c.label == row.candidate) else {
                continue;
            };
            let verdict = Verdict {
                gated: gated.label.clone(),
                veto: veto_of(&row),
                row,
            };
            self.verdicts.insert(key(gated), verdict);
        }
    }

    /// The verdict that holds for `candidate` (its own or one it shares), if gated.
    pub fn verdict_of(&self, candidate: usize) -> Option<&Verdict> {
        self.verdicts.get(&key(&self.candidates[candidate]))
    }

    /// `f` with the gate runner over this tune's file and spec (rows are stored by the caller)
    /// and the gate's stages forwarded to the display.
    fn with_gate<T>(&self, f: impl FnOnce(&GateRun, &mut dyn FnMut(readiness::Event)) -> T) -> T {
        let mut ignore = |_: &Readiness| Ok(());
        let stage = self.stage;
        let mut observe = |event: readiness::Event| {
            if let readiness::Event::Stage { candidate, what } = event {
                stage(candidate, what);
            }
        };
        let gate = GateRun {
            file: &self.file,
            spec: &self.spec,
            server: self.server.clone(),
            perplexity: self.perplexity.clone(),
            run_dir: self.run_dir.clone(),
            store: &mut ignore,
            timeouts: self.timeouts,
            // The tune's own trials carry its energy figures.
            telemetry: None,
        };
        f(&gate, &mut observe)
    }

    fn ensure_baseline(&mut self) -> Result<()> {
        if self.baseline.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.run_dir).map_err(|e| Error::io(&self.run_dir, e))?;
        let baseline = self.with_gate(|gate, observe| gate.baseline(observe))?;
        (self.store).record_readiness(self.run_id, self.engine_id, &baseline.row)?;
        self.baseline = Some(baseline);
        Ok(())
    }
}

/// The candidate's model and the flags that can change its numbers.
fn key(gated: &Gated) -> String {
    let mut config = gated.config.clone();
    config
        .flags
        .retain(|flag, _| !NUMERICALLY_INERT.contains(&flag.as_str()));
    format!("{} {}", gated.model.display(), config.canonical_json())
}

/// `failed the fidelity gate: mean_kld 0.21 (fail above 0.05)` or the row's blocker.
fn veto_of(row: &Readiness) -> Option<String> {
    if row.overall != Some(Status::Fail) {
        return None;
    }
    let failed: Vec<String> = row
        .outcomes
        .iter()
        .filter(|o| o.status == Status::Fail)
        .map(|o| format!("{} {:.4}", o.name, o.value))
        .collect();
    let why = match (failed.is_empty(), &row.blocker) {
        (false, _) => failed.join(", "),
        (true, Some(blocker)) => blocker.clone(),
        (true, None) => "a check failed".to_string(),
    };
    Some(format!("failed the fidelity gate: {why}"))
}

impl Constraint for Fidelity<'_> {
    fn veto(&mut self, candidate: usize) -> Result<Option<String>> {
        let gated = &self.candidates[candidate];
        let key = key(gated);
        if let Some(verdict) = self.verdicts.get(&key) {
            let shared = match &verdict.veto {
                Some(veto) => format!("{veto} (as {}: same numbers)", verdict.gated),
                None => return Ok(None),
            };
            return Ok(Some(shared));
        }
        if let Some(veto) = interrupted_veto() {
            return Ok(Some(veto));
        }
        if let Err(error) = self.ensure_baseline() {
            // Stopped by Ctrl-C while the reference was measured: no verdict, and the race ends
            // at its next round with the best so far.
            return interrupted_veto().map(Some).ok_or(error);
        }
        let gated = &self.candidates[candidate];
        let gate_candidate = Candidate {
            name: gated.label.clone(),
            model: Some(gated.model.clone()),
            flags: Flags::List(gated.config.args()),
        };
        let Some(baseline) = self.baseline.as_ref() else {
            return Err(Error::engine(
                "tune: the fidelity reference was not measured",
            ));
        };
        let row =
            self.with_gate(|gate, observe| gate.candidate(baseline, &gate_candidate, observe));
        if let Some(veto) = interrupted_veto() {
            // A gate cut short is no verdict: nothing is stored, and a resumed tune gates it again.
            return Ok(Some(veto));
        }
        (self.store).record_readiness(self.run_id, self.engine_id, &row)?;
        let veto = veto_of(&row);
        let verdict = Verdict {
            gated: gated.label.clone(),
            veto: veto.clone(),
            row,
        };
        self.verdicts.insert(key, verdict);
        Ok(veto)
    }
}

/// After Ctrl-C the race winds down at once: no gate is started.
fn interrupted_veto() -> Option<String> {
    let signal = crate::engines::process::interrupted()?;
    let signal = crate::engines::process::signal_name(signal);
    Some(format!("its gate was interrupted by {signal}"))
}
