//! A race over a finite list of candidate configurations: honest under noise, cheap in engine
//! starts, and deterministic. It does not start engines: it hands [`Request`]s to the caller's
//! [`Evaluator`] and decides, from the samples that come back, what to measure next.
//!
//! # The algorithm
//! 1. **Screen.** Candidates are grouped by their *nominal profile* (every knob without a rank,
//!    e.g. KV type, flash attention). From each profile one starting point is screened with
//!    [`Options::screen_reps`] repetitions on one engine start: the candidate nearest the middle
//!    of each ordinal knob's range, plus any [`Options::seeds`] (e.g. the engine's defaults).
//!    Ordinal knobs (threads, -b, -ub) are not gridded.
//! 2. **Incumbent.** After every round the incumbent is the live candidate with the highest median.
//!    It must pass the caller's [`Constraint`] (a fidelity gate) before it may be compared with
//!    anyone: a vetoed candidate is out at once, with its reason, and the next-best takes its place.
//!    So every elimination is against a faithful reference, and a vetoed candidate never wins.
//! 3. **Screen cut.** A freshly screened candidate whose *best* screen repetition lies more than
//!    [`Options::screen_margin`] below the incumbent's median is eliminated; the rest are promoted
//!    into the race. One unlucky repetition (a burst of other work) cannot cut a candidate alone.
//! 4. **Race.** Each round gives every contender [`Options::reps_per_round`] more repetitions,
//!    interleaved, candidates sharing a `start_key` adjacent. By default ([`Order::Serpentine`])
//!    each contender's repetitions of a round run on one engine start and rounds alternate
//!    direction (A A B B C C, then C C B B A A): a start costs several repetitions, over each
//!    pair of rounds a linear drift adds the same to every contender, and the last contender of
//!    a round keeps its engine for the next. A contender with at least [`Options::min_race_reps`]
//!    samples whose 95 % bootstrap CI of the median lies wholly below the incumbent's is
//!    eliminated; with [`Options::tie_margin`], one whose median and the incumbent's are both
//!    known within that margin of the incumbent's is retired as tied. Then, while more than
//!    [`Options::halve_above`] contenders are left, the slower half (by median) of those measured
//!    at least twice is cut (successive halving, from the screen on): a crowd of candidates too
//!    close to separate cannot eat the budget, and the last few are decided by CIs.
//! 5. **Explore.** The incumbent's ordinal neighbours (one step up or down on one ordinal knob, all
//!    other knobs equal; a pruned value is stepped over) are screened in the next round: a hill
//!    climb on ordinal knobs instead of a grid. With [`Explore::Contenders`] every live
//!    contender's neighbours are, which also climbs a profile whose best ordinal values differ
//!    from the incumbent's (knobs that interact), at the cost of more screens.
//! 6. **Stop** when one contender is left with at least `min_race_reps` samples (a lone survivor
//!    of the screen is measured up to them, so that its CI means something) and all its
//!    neighbours measured ([`Stop::Separated`]); when the trials or seconds of the [`Budget`] are
//!    spent; or when every contender has [`Options::max_reps`] samples ([`Stop::RepetitionCap`]).
//!    A tie ends at the tie margin, the budget or the cap, never in a loop. The winner is the faithful incumbent:
//!    the best so far.
//!
//! # What it guarantees
//! - Every candidate gets exactly one terminal [`Decision`] ([`Action::is_terminal`]), with the
//!   reason in words; a failed measurement eliminates only that candidate. Each round's decisions
//!   and incumbent reach the caller as they are made ([`Evaluator::observe`]), to store and show;
//!   only the closing ones (winner, unresolved, skipped) come with the result alone.
//! - The winner passed the constraint; [`RaceResult::fastest`] is the fastest measured candidate,
//!   with its veto reason if it lost for that.
//! - On [`Stop::Separated`] every other candidate that reached the race lost a CI comparison
//!   against a faithful incumbent of its round (or failed, was vetoed, tied with it, or fell in
//!   the slower half while more than `halve_above` contenders were left), and the winner is a
//!   local optimum in its ordinal knobs: each neighbour was measured and lost, failed or was
//!   vetoed. Candidates cut at the screen lost by more than the margin on their best screen
//!   repetition, not by a CI: the margin, over the best of several repetitions, is what protects
//!   the best from one unlucky repetition.
//! - It ends: no candidate gets more than [`Options::max_reps`] samples, and every round measures
//!   at least one repetition, so at most `candidates × max_reps` trials are asked for.
//! - Determinism: the only randomness is the bootstrap in [`crate::measure::stats`], whose RNG has
//!   a fixed seed; the same samples give the same decisions on any machine.
//! - Resume: the requests depend only on the outcomes before them (and on the clock, through
//!   the time budget), so after a kill -9 an evaluator that answers the first requests from the
//!   stored samples, in order, replays the race to where it stopped and measures nothing twice.
//! - Samples are pooled across kinds: a screen is one repetition of the same measurement as a race
//!   repetition, so nothing is measured twice. [`RaceResult::starts`] counts the engine starts the
//!   batches imply when the caller keeps an engine across consecutive requests of one `start_key`.

mod run;
mod schedule;
mod space;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::measure::stats::Summary;
use crate::Result;

/// One knob's value in a candidate; `rank` is its position among the knob's ordered values when
/// the knob is ordinal (threads, batch sizes), `None` when it is nominal (KV type, flash attention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Knob {
    pub name: String,
    pub value: String,
    pub rank: Option<usize>,
}

impl Knob {
    pub fn nominal(name: &str, value: &str) -> Self {
        Knob {
            name: name.to_string(),
            value: value.to_string(),
            rank: None,
        }
    }

    pub fn ordinal(name: &str, value: &str, rank: usize) -> Self {
        Knob {
            rank: Some(rank),
            ..Knob::nominal(name, value)
        }
    }
}

/// One configuration the race may measure. Candidates with the same `start_key` share one engine
/// start (they differ only in request-level settings).
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub id: String,
    pub start_key: String,
    pub knobs: Vec<Knob>,
}

/// Why a repetition is asked for; the measurement must be the same for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    Screen,
    Race,
}

/// Measure `candidate` (an index into the candidate list) `repetitions` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Request {
    pub candidate: usize,
    pub repetitions: usize,
    pub kind: Kind,
}

/// What one request gave: samples (higher is better) or the reason it could not be measured.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Samples(Vec<f64>),
    Failed(String),
}

/// The caller's measuring side: runs a batch in the order given and returns one outcome per
/// request. An `Err` aborts the race (to stop cleanly, let the clock report the time as spent).
pub trait Evaluator {
    fn measure(&mut self, batch: &[Request]) -> Result<Vec<Outcome>>;

    /// Called after each round is judged: store its decisions, show the current best.
    fn observe(&mut self, _progress: &Progress) {}
}

/// One judged round, for progress and for storing decisions as they are made.
#[derive(Debug, Clone, Serialize)]
pub struct Progress<'r> {
    pub round: usize,
    /// Repetitions asked for so far.
    pub trials: usize,
    /// The decisions this round made.
    pub decisions: &'r [Decision],
    /// The faithful incumbent after this round.
    pub incumbent: Option<Standing>,
}

/// The caller's veto (a fidelity gate): `Some(reason)` rules a candidate out as a winner. It is
/// asked at most once per candidate, when that candidate would become the incumbent.
pub trait Constraint {
    fn veto(&mut self, candidate: usize) -> Result<Option<String>>;
}

/// No constraint: every candidate may win.
pub struct Unconstrained;

impl Constraint for Unconstrained {
    fn veto(&mut self, _candidate: usize) -> Result<Option<String>> {
        Ok(None)
    }
}

/// When to stop early; `max_seconds` is read from the clock given to [`run`] before each round,
/// so a round may overrun it by its own length.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    pub max_trials: Option<usize>,
    pub max_seconds: Option<f64>,
}

/// The order of repetitions in the race's rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// A B C A B C within a round: one engine start per repetition.
    Cyclic,
    /// A A B B C C, then C C B B A A the next round: one engine start per contender and round
    /// (the last of a round keeps its engine for the next), and a linear drift cancels over
    /// each pair of rounds.
    Serpentine,
}

/// Whose ordinal neighbours are explored after each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explore {
    /// The incumbent's only: the fewest screens; finds the best of the incumbent's profile.
    Incumbent,
    /// Every live contender's: more screens, but a profile that is slower at its starting point
    /// and faster elsewhere (threads that help only with flash attention on) is climbed too.
    Contenders,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub budget: Budget,
    /// Repetitions of a screen, on one engine start: a start costs more than a repetition, and
    /// the cut reads the best of them, so one unlucky repetition does not cut a candidate.
    pub screen_reps: usize,
    /// A screened candidate whose best screen repetition is this fraction below the incumbent's
    /// median is cut (0.10 = 10 %).
    pub screen_margin: f64,
    /// Fewest samples on both sides before a CI comparison may eliminate.
    pub min_race_reps: usize,
    pub reps_per_round: usize,
    /// No candidate gets more samples than this.
    pub max_reps: usize,
    /// Practical equivalence: a contender is retired as tied with the incumbent once both have
    /// `2 × min_race_reps` samples and both medians' CIs lie within this fraction of the
    /// incumbent's median (0.03: ±3 %). Resolving a smaller difference would cost more
    /// repetitions than it is worth. `None`: contenders race until separated or capped.
    pub tie_margin: Option<f64>,
    pub order: Order,
    pub explore: Explore,
    /// With more than this many contenders after a race round, the slower half is cut by median
    /// (successive halving); `None` races on CIs alone.
    pub halve_above: Option<usize>,
    /// Candidates screened first besides each profile's middle (e.g. the engine's defaults).
    pub seeds: Vec<usize>,
    /// The samples' unit, for the reasons ("t/s").
    pub unit: String,
    /// At most this many screens per round (`None`: every pending one), so that a time budget,
    /// read between rounds, is not overrun by one long round of screens.
    pub max_screens: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            budget: Budget::default(),
            screen_reps: 2,
            screen_margin: 0.10,
            min_race_reps: 3,
            reps_per_round: 2,
            max_reps: 30,
            tie_margin: None,
            order: Order::Serpentine,
            explore: Explore::Incumbent,
            halve_above: Some(4),
            seeds: Vec::new(),
            unit: "t/s".to_string(),
            max_screens: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    /// Measured once.
    Screened,
    /// Into the race.
    Promoted,
    /// Added as a neighbour of the incumbent, to be screened.
    Explored,
    /// Out: failed, cut at the screen, or its CI fell below the incumbent's.
    Eliminated,
    /// Out: the constraint ruled it out.
    Vetoed,
    /// Out: practically equal to the incumbent (see [`Options::tie_margin`]), which is kept.
    Tied,
    Winner,
    /// Still racing when the race stopped, not separated from the winner.
    Unresolved,
    /// Never measured: not a starting point and never a neighbour of an incumbent.
    Skipped,
}

impl Action {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Action::Screened | Action::Promoted | Action::Explored)
    }
}

/// One decision, as a value the caller can store. `reference` is the candidate it was judged
/// against (the incumbent, or the one whose neighbour was explored).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub round: usize,
    pub candidate: usize,
    pub action: Action,
    pub reference: Option<usize>,
    pub why: String,
}

/// A measured candidate's samples summarised, and its veto if it had one.
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub candidate: usize,
    pub summary: Summary,
    pub vetoed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stop {
    /// One contender left (the others separated from it or tied with it), its neighbours
    /// measured.
    Separated,
    TrialBudget,
    TimeBudget,
    /// Every contender reached `max_reps` without separating.
    RepetitionCap,
    /// Every candidate failed or was vetoed.
    NoneLeft,
}

#[derive(Debug, Clone, Serialize)]
pub struct RaceResult {
    /// The fastest faithful candidate found.
    pub winner: Option<Standing>,
    /// The fastest measured candidate, vetoed or not.
    pub fastest: Option<Standing>,
    /// Every measured candidate that did not fail, fastest median first.
    pub standings: Vec<Standing>,
    pub decisions: Vec<Decision>,
    /// Repetitions asked for.
    pub trials: usize,
    /// Engine starts the batches imply.
    pub starts: usize,
    pub rounds: usize,
    pub stop: Stop,
}

/// Races `candidates`: see the module docs. `clock` returns the seconds elapsed since the start.
pub fn run(
    candidates: &[Candidate],
    options: &Options,
    evaluator: &mut dyn Evaluator,
    constraint: &mut dyn Constraint,
    clock: &mut dyn FnMut() -> f64,
) -> Result<RaceResult> {
    run::Racer::new(candidates, options)?.race(evaluator, constraint, clock)
}
