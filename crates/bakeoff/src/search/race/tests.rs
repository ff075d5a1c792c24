//! Tests of the race against a simulated evaluator: known true means, seeded noise and a drift.

use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::domain::rng::Rng;

const KV: [(&str, f64); 3] = [("f16", 0.0), ("q8_0", -1.5), ("q4_0", 6.0)];
const FA: [(&str, f64); 2] = [("on", 4.0), ("off", 0.0)];
const THREADS: std::ops::RangeInclusive<usize> = 1..=5;
/// Repetitions per candidate of the exhaustive grid the race is compared with.
const EXHAUSTIVE_REPS: usize = 10;
/// An engine start with its warmups and depth fill costs about three repetitions on a kept
/// engine (SmolLM2 on 2 cores, tg64 at depths 0 and 512: 3.5 s against 1.3 s).
const START_COST: usize = 3;

/// A race's cost in repetitions' worth: its trials and its engine starts.
fn cost(result: &RaceResult) -> usize {
    result.trials + START_COST * result.starts
}

/// The exhaustive sweep's: every candidate started once and measured `EXHAUSTIVE_REPS` times.
fn exhaustive_cost(candidates: &[Candidate]) -> usize {
    candidates.len() * (EXHAUSTIVE_REPS + START_COST)
}

/// 3 KV types × 2 flash-attention settings × 5 thread counts = 30 candidates; true decode speed
/// peaks at 4 threads; the fastest is q4_0 (which the veto tests rule out), then f16.
fn space() -> (Vec<Candidate>, Vec<f64>) {
    let mut candidates = Vec::new();
    let mut truth = Vec::new();
    for (kv, kv_gain) in KV {
        for (fa, fa_gain) in FA {
            for threads in THREADS {
                let id = format!("{kv}/fa-{fa}/t{threads}");
                candidates.push(Candidate {
                    start_key: id.clone(),
                    id,
                    knobs: vec![
                        Knob::nominal("kv", kv),
                        Knob::nominal("fa", fa),
                        Knob::ordinal("threads", &threads.to_string(), threads - 1),
                    ],
                });
                truth.push(40.0 + kv_gain + fa_gain - 3.0 * threads.abs_diff(4) as f64);
            }
        }
    }
    (candidates, truth)
}

fn index_of(candidates: &[Candidate], id: &str) -> usize {
    candidates.iter().position(|c| c.id == id).unwrap()
}

fn gaussian(rng: &mut Rng) -> f64 {
    let (u1, u2) = (1.0 - rng.unit(), rng.unit());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A machine with known true means, 2 % noise, an upward drift of 0.02 t/s a trial, and a clock
/// that advances 10 s a trial.
struct Sim {
    truth: Vec<f64>,
    noise: f64,
    drift: f64,
    rng: Rng,
    trial: usize,
    failing: Option<(usize, &'static str)>,
    batches: Vec<Vec<Request>>,
    log: Vec<(Request, Outcome)>,
    /// What `observe` was told: each round's decisions and incumbent.
    observed: Vec<Decision>,
    incumbents: Vec<Option<usize>>,
    seconds: Rc<Cell<f64>>,
}

impl Sim {
    fn new(truth: Vec<f64>, seed: u64) -> Self {
        Sim {
            truth,
            noise: 0.02,
            drift: 0.02,
            rng: Rng::new(seed),
            trial: 0,
            failing: None,
            batches: Vec::new(),
            log: Vec::new(),
            observed: Vec::new(),
            incumbents: Vec::new(),
            seconds: Rc::new(Cell::new(0.0)),
        }
    }

    fn sample(&mut self, candidate: usize) -> f64 {
        self.trial += 1;
        self.seconds.set(self.seconds.get() + 10.0);
        let truth = self.truth[candidate];
        truth * (1.0 + self.noise * gaussian(&mut self.rng)) + self.drift * self.trial as f64
    }
}

impl Evaluator for Sim {
    fn measure(&mut self, batch: &[Request]) -> Result<Vec<Outcome>> {
        self.batches.push(batch.to_vec());
        let outcome = |sim: &mut Sim, r: &Request| match sim.failing {
            Some((c, reason)) if c == r.candidate => Outcome::Failed(reason.to_string()),
            _ => Outcome::Samples(
                (0..r.repetitions)
                    .map(|_| sim.sample(r.candidate))
                    .collect(),
            ),
        };
        let outcomes: Vec<Outcome> = batch.iter().map(|r| outcome(self, r)).collect();
        (self.log).extend(batch.iter().copied().zip(outcomes.iter().cloned()));
        Ok(outcomes)
    }

    fn observe(&mut self, progress: &Progress) {
        assert_eq!(progress.round, self.incumbents.len());
        let asked: usize = self.log.iter().map(|(r, _)| r.repetitions).sum();
        assert_eq!(progress.trials, asked);
        self.observed.extend(progress.decisions.iter().cloned());
        self.incumbents
            .push(progress.incumbent.as_ref().map(|s| s.candidate));
    }
}

/// After a kill -9: answers the requests the store already holds from it (they must come in the
/// same order) and measures only the rest.
struct Resumed<'a> {
    stored: &'a [(Request, Outcome)],
    live: Sim,
}

impl Evaluator for Resumed<'_> {
    fn measure(&mut self, batch: &[Request]) -> Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        for request in batch {
            match self.stored.split_first() {
                Some(((stored, outcome), rest)) => {
                    assert_eq!(stored, request, "the replay asks what was asked before");
                    outcomes.push(outcome.clone());
                    self.stored = rest;
                }
                None => outcomes.extend(self.live.measure(&[*request])?),
            }
        }
        Ok(outcomes)
    }
}

/// Vetoes every q4_0 candidate, as a KLD gate would on a small model; counts its calls.
struct KldGate {
    candidates: Vec<Candidate>,
    asked: Vec<usize>,
}

impl Constraint for KldGate {
    fn veto(&mut self, candidate: usize) -> Result<Option<String>> {
        self.asked.push(candidate);
        let unfaithful = self.candidates[candidate].id.starts_with("q4_0");
        Ok(unfaithful.then(|| "q4_0 V failed mean_kld 0.045 > 0.02".to_string()))
    }
}

fn race_with(
    candidates: &[Candidate],
    options: &Options,
    sim: &mut Sim,
    constraint: &mut dyn Constraint,
) -> RaceResult {
    let seconds = sim.seconds.clone();
    race_on(candidates, options, sim, constraint, seconds)
}

fn race_on(
    candidates: &[Candidate],
    options: &Options,
    evaluator: &mut dyn Evaluator,
    constraint: &mut dyn Constraint,
    seconds: Rc<Cell<f64>>,
) -> RaceResult {
    let result = run(candidates, options, evaluator, constraint, &mut || {
        seconds.get()
    })
    .unwrap();
    assert_complete(&result, candidates.len());
    result
}

/// Every candidate gets exactly one terminal decision, and nothing after it.
fn assert_complete(result: &RaceResult, count: usize) {
    for candidate in 0..count {
        let actions: Vec<Action> = (result.decisions.iter())
            .filter(|d| d.candidate == candidate)
            .map(|d| d.action)
            .collect();
        let terminal = actions.iter().filter(|a| a.is_terminal()).count();
        assert_eq!(terminal, 1, "candidate {candidate}: {actions:?}");
        assert!(actions.last().unwrap().is_terminal(), "{actions:?}");
    }
    let winners = result
        .decisions
        .iter()
        .filter(|d| d.action == Action::Winner);
    assert!(winners.count() <= 1);
}

fn winner_id<'a>(candidates: &'a [Candidate], result: &RaceResult) -> &'a str {
    &candidates[result.winner.as_ref().expect("a winner").candidate].id
}

fn decisions_of(result: &RaceResult, candidate: usize) -> Vec<&Decision> {
    let of = |d: &&Decision| d.candidate == candidate;
    result.decisions.iter().filter(of).collect()
}

#[test]
fn finds_the_true_best_at_under_40_percent_of_the_grids_cost() {
    let (candidates, truth) = space();
    let exhaustive = exhaustive_cost(&candidates);
    for seed in 1..=5 {
        let mut sim = Sim::new(truth.clone(), seed);
        let result = race_with(
            &candidates,
            &Options::default(),
            &mut sim,
            &mut Unconstrained,
        );
        assert_eq!(
            winner_id(&candidates, &result),
            "q4_0/fa-on/t4",
            "seed {seed}"
        );
        assert_eq!(result.stop, Stop::Separated, "seed {seed}");
        assert!(
            cost(&result) * 100 <= exhaustive * 40,
            "seed {seed}: cost {} against {exhaustive} exhaustive",
            cost(&result)
        );
        assert_eq!(
            result.trials, sim.trial,
            "every repetition asked was counted"
        );
        assert!(result.starts <= result.trials);
        assert!(result.winner.as_ref().unwrap().summary.n >= 3);
    }
}

/// 30 builds, no ordinal knob: every one is screened and the close ones are raced on CIs.
fn builds() -> (Vec<Candidate>, Vec<f64>) {
    let candidates: Vec<Candidate> = (0..30)
        .map(|i| Candidate {
            id: format!("b{i}"),
            start_key: format!("b{i}"),
            knobs: vec![Knob::nominal("build", &i.to_string())],
        })
        .collect();
    let mut truth: Vec<f64> = (0..30).map(|i| 30.0 + 0.5 * i as f64).collect();
    truth[17] = truth[29] * 1.04;
    (candidates, truth)
}

#[test]
fn races_nominal_candidates_on_cis_at_under_60_percent_of_the_grids_cost() {
    // Without an ordinal knob every candidate is a starting point: screening all 30 (a start
    // and two repetitions each) is already 38 % of the grid's cost.
    let (candidates, truth) = builds();
    let exhaustive = exhaustive_cost(&candidates);
    for seed in 1..=5 {
        let mut sim = Sim::new(truth.clone(), seed);
        let result = race_with(
            &candidates,
            &Options::default(),
            &mut sim,
            &mut Unconstrained,
        );
        assert_eq!(winner_id(&candidates, &result), "b17", "seed {seed}");
        assert_eq!(result.stop, Stop::Separated, "seed {seed}");
        let raced = (result.decisions.iter())
            .filter(|d| d.action == Action::Eliminated && d.why.starts_with("CI"));
        assert!(
            raced.count() >= 2,
            "seed {seed}: some were raced, not cut at the screen"
        );
        assert!(
            cost(&result) * 100 <= exhaustive * 60,
            "seed {seed}: cost {} against {exhaustive} exhaustive",
            cost(&result)
        );
    }
}

#[test]
fn the_same_samples_give_the_same_decisions() {
    let (candidates, truth) = space();
    let whys = |seed| {
        let mut sim = Sim::new(truth.clone(), seed);
        let result = race_with(
            &candidates,
            &Options::default(),
            &mut sim,
            &mut Unconstrained,
        );
        result
            .decisions
            .into_iter()
            .map(|d| d.why)
            .collect::<Vec<_>>()
    };
    assert_eq!(whys(7), whys(7));
}

fn race_parts(batches: &[Vec<Request>]) -> Vec<Vec<usize>> {
    let race = |b: &Vec<Request>| -> Vec<usize> {
        let r = b.iter().filter(|r| r.kind == Kind::Race);
        r.map(|r| r.candidate).collect()
    };
    batches.iter().map(race).filter(|r| !r.is_empty()).collect()
}

#[test]
fn a_resumed_race_measures_nothing_twice() {
    let (candidates, truth) = space();
    let mut first = Sim::new(truth.clone(), 9);
    let whole = race_with(
        &candidates,
        &Options::default(),
        &mut first,
        &mut Unconstrained,
    );
    // Killed after 10 trials, in the middle of a batch; the store kept them.
    let stored = &first.log[..10];
    let mut resumed = Resumed {
        stored,
        live: Sim::new(truth, 9),
    };
    resumed.live.trial = 10; // the drift goes on
    let seconds = resumed.live.seconds.clone();
    let options = Options::default();
    let result = race_on(
        &candidates,
        &options,
        &mut resumed,
        &mut Unconstrained,
        seconds,
    );
    assert!(resumed.stored.is_empty(), "every stored trial was replayed");
    let repetitions =
        |log: &[(Request, Outcome)]| log.iter().map(|(r, _)| r.repetitions).sum::<usize>();
    assert_eq!(
        result.trials,
        repetitions(stored) + repetitions(&resumed.live.log)
    );
    assert_eq!(
        winner_id(&candidates, &result),
        winner_id(&candidates, &whole)
    );
    let whys = |r: &RaceResult, n| {
        r.decisions[..n]
            .iter()
            .map(|d| d.why.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        whys(&result, 6),
        whys(&whole, 6),
        "the replayed screen decided the same"
    );
}

#[test]
fn each_round_reports_its_decisions_and_incumbent_as_it_goes() {
    let (candidates, truth) = space();
    let mut gate = KldGate {
        candidates: candidates.clone(),
        asked: Vec::new(),
    };
    let mut sim = Sim::new(truth, 4);
    let result = race_with(&candidates, &Options::default(), &mut sim, &mut gate);
    assert_eq!(sim.incumbents.len(), result.rounds);
    let whys = |d: &[Decision]| d.iter().map(|d| d.why.clone()).collect::<Vec<_>>();
    let (during, at_the_end) = result.decisions.split_at(sim.observed.len());
    assert_eq!(
        whys(&sim.observed),
        whys(during),
        "observed as made, in order"
    );
    let closing = [Action::Winner, Action::Unresolved, Action::Skipped];
    assert!(at_the_end.iter().all(|d| closing.contains(&d.action)));
    let last = sim.incumbents.last().unwrap();
    assert_eq!(*last, result.winner.as_ref().map(|w| w.candidate));
    let faithful = |c: &Option<usize>| c.is_some_and(|c| !candidates[c].id.starts_with("q4_0"));
    assert!(
        sim.incumbents.iter().all(faithful),
        "a vetoed one is never shown as best"
    );
}

#[test]
fn race_rounds_interleave_contenders() {
    let (candidates, truth) = space();
    for order in [Order::Cyclic, Order::Serpentine] {
        let mut sim = Sim::new(truth.clone(), 3);
        let options = Options {
            order,
            ..Options::default()
        };
        race_with(&candidates, &options, &mut sim, &mut Unconstrained);
        let rounds = race_parts(&sim.batches);
        assert!(!rounds.is_empty());
        let mut previous: Option<Vec<usize>> = None;
        for round in rounds {
            let mut distinct = round.clone();
            distinct.dedup();
            match order {
                Order::Cyclic => {
                    // A B C A B C: every block holds each contender once.
                    let k = round.len() / options.reps_per_round;
                    let (first, second) = round.split_at(k);
                    assert_eq!(first, second, "A B C then A B C");
                    assert_eq!(distinct.len(), round.len(), "never A A: {round:?}");
                }
                Order::Serpentine => {
                    // A A B B C C: one visit (one engine start) per contender.
                    assert_eq!(distinct.len(), round.len(), "one visit each: {round:?}");
                    // The next round with the same contenders runs backward.
                    if let Some(before) = previous.as_ref().filter(|p| p.len() == distinct.len()) {
                        let mut sorted = (before.clone(), distinct.clone());
                        sorted.0.sort_unstable();
                        sorted.1.sort_unstable();
                        if sorted.0 == sorted.1 {
                            let mut reversed = before.clone();
                            reversed.reverse();
                            assert_eq!(distinct, reversed, "C C B B A A after A A B B C C");
                        }
                    }
                }
            }
            previous = Some(distinct);
        }
    }
}

#[test]
fn serpentine_order_cancels_a_linear_drift() {
    // Two rounds, A A B B C C then C C B B A A: each contender's positions sum to 22.
    let mut requests = schedule::race_round(&[0, 1, 2], 2, (Order::Serpentine, false), 12);
    requests.extend(schedule::race_round(
        &[0, 1, 2],
        2,
        (Order::Serpentine, true),
        12,
    ));
    let mut sums = [0; 3];
    let mut position = 0;
    for request in &requests {
        for _ in 0..request.repetitions {
            sums[request.candidate] += position;
            position += 1;
        }
    }
    assert_eq!(sums, [22, 22, 22]);
    assert!(
        schedule::race_round(&[0, 1, 2], 2, (Order::Serpentine, false), 5).is_empty(),
        "a round that the room cannot hold is not started"
    );
}

#[test]
fn candidates_sharing_an_engine_start_are_measured_together() {
    // Two request-level depths share one server: their requests must be adjacent.
    let mut candidates = Vec::new();
    for kv in ["f16", "q8_0", "q4_0"] {
        for depth in ["0", "4096"] {
            candidates.push(Candidate {
                id: format!("{kv}/d{depth}"),
                start_key: kv.to_string(),
                knobs: vec![Knob::nominal("kv", kv), Knob::nominal("depth", depth)],
            });
        }
    }
    let truth = vec![40.0, 39.9, 40.1, 40.0, 39.8, 40.05];
    let mut sim = Sim::new(truth, 5);
    let options = Options {
        budget: Budget {
            max_trials: Some(60),
            max_seconds: None,
        },
        ..Options::default()
    };
    let result = race_with(&candidates, &options, &mut sim, &mut Unconstrained);
    let runs = |requests: &[Request]| {
        let mut keys: Vec<&str> = (requests.iter())
            .map(|r| candidates[r.candidate].start_key.as_str())
            .collect();
        keys.dedup();
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        (keys.len(), distinct.len())
    };
    for batch in &sim.batches {
        let split = batch.iter().position(|r| r.kind == Kind::Race);
        let (screens, race) = batch.split_at(split.unwrap_or(batch.len()));
        let (runs_, keys) = runs(screens);
        assert_eq!(
            runs_, keys,
            "screens of one start are adjacent: {screens:?}"
        );
        if race.is_empty() {
            continue;
        }
        let contenders = race
            .iter()
            .filter(|r| r.candidate == race[0].candidate)
            .count();
        for block in race.chunks(race.len() / contenders.max(1)) {
            let (runs_, keys) = runs(block);
            assert_eq!(runs_, keys, "one run per start in a block: {block:?}");
        }
    }
    assert!(
        result.starts * 2 <= result.trials + 2,
        "{} starts for {} trials",
        result.starts,
        result.trials
    );
}

#[test]
fn exploration_steps_one_ordinal_knob_from_the_incumbent() {
    let (candidates, truth) = space();
    let mut sim = Sim::new(truth, 11);
    let result = race_with(
        &candidates,
        &Options::default(),
        &mut sim,
        &mut Unconstrained,
    );
    let explored: Vec<&Decision> = (result.decisions.iter())
        .filter(|d| d.action == Action::Explored)
        .collect();
    assert!(!explored.is_empty());
    for decision in &explored {
        let from = &candidates[decision.reference.unwrap()].knobs;
        let to = &candidates[decision.candidate].knobs;
        let steps: Vec<usize> = (from.iter().zip(to))
            .filter(|(a, b)| a != b)
            .map(|(a, b)| a.rank.unwrap().abs_diff(b.rank.unwrap()))
            .collect();
        assert_eq!(steps, [1], "{}", decision.why);
    }
    // The winner (4 threads) was reached from the middle start (3 threads), not gridded.
    let winner = result.winner.as_ref().unwrap().candidate;
    let found = decisions_of(&result, winner);
    assert_eq!(found[0].action, Action::Explored, "{found:?}");
    assert!(found[0].why.contains("one step up on threads (3 → 4)"));
    let skipped = (result.decisions.iter()).filter(|d| d.action == Action::Skipped);
    assert!(skipped.count() >= 10, "ordinal knobs are not gridded");
}

/// Profile a is best at its middle (4 threads); b starts 4 % slower there but gains with threads.
fn interacting() -> (Vec<Candidate>, Vec<f64>) {
    let mut candidates = Vec::new();
    let mut truth = Vec::new();
    for profile in ["a", "b"] {
        for threads in 1..=7_usize {
            let id = format!("{profile}/t{threads}");
            candidates.push(Candidate {
                start_key: id.clone(),
                id,
                knobs: vec![
                    Knob::nominal("profile", profile),
                    Knob::ordinal("threads", &threads.to_string(), threads - 1),
                ],
            });
            let t = threads as f64;
            truth.push(match profile {
                "a" => 45.0 - (t - 4.0).abs(),
                _ => 43.0 + 2.5 * (t - 4.0),
            });
        }
    }
    (candidates, truth)
}

#[test]
fn exploring_around_contenders_climbs_a_profile_the_incumbent_hides() {
    let (candidates, truth) = interacting();
    let winner = |explore| {
        let options = Options {
            explore,
            ..Options::default()
        };
        let mut sim = Sim::new(truth.clone(), 12);
        let result = race_with(&candidates, &options, &mut sim, &mut Unconstrained);
        (winner_id(&candidates, &result).to_string(), result.trials)
    };
    let (incumbent_only, cheap) = winner(Explore::Incumbent);
    let (contenders, dearer) = winner(Explore::Contenders);
    assert_eq!(incumbent_only, "a/t4", "b's climb is never started");
    assert_eq!(contenders, "b/t7");
    assert!(cheap < dearer, "{cheap} against {dearer} trials");
}

#[test]
fn a_failed_candidate_is_eliminated_with_its_reason_and_the_race_goes_on() {
    let (candidates, truth) = space();
    let broken = index_of(&candidates, "f16/fa-on/t3");
    let mut sim = Sim::new(truth, 2);
    sim.failing = Some((broken, "engine exited: failed to allocate KV buffer"));
    let result = race_with(
        &candidates,
        &Options::default(),
        &mut sim,
        &mut Unconstrained,
    );
    let found = decisions_of(&result, broken);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].action, Action::Eliminated);
    assert_eq!(
        found[0].why,
        "failed: engine exited: failed to allocate KV buffer"
    );
    assert_eq!(winner_id(&candidates, &result), "q4_0/fa-on/t4");
    assert!(result.standings.iter().all(|s| s.candidate != broken));
}

#[test]
fn a_vetoed_fastest_candidate_never_wins_and_the_result_says_why() {
    let (candidates, truth) = space();
    let mut gate = KldGate {
        candidates: candidates.clone(),
        asked: Vec::new(),
    };
    let mut sim = Sim::new(truth, 4);
    let result = race_with(&candidates, &Options::default(), &mut sim, &mut gate);
    assert_eq!(winner_id(&candidates, &result), "f16/fa-on/t4");
    let fastest = result.fastest.as_ref().unwrap();
    assert!(candidates[fastest.candidate].id.starts_with("q4_0"));
    assert_eq!(
        fastest.vetoed.as_deref(),
        Some("q4_0 V failed mean_kld 0.045 > 0.02")
    );
    let vetoed = decisions_of(&result, fastest.candidate);
    assert_eq!(vetoed.last().unwrap().action, Action::Vetoed);
    assert!(vetoed.last().unwrap().why.contains("mean_kld 0.045 > 0.02"));
    let mut asked = gate.asked.clone();
    asked.sort_unstable();
    asked.dedup();
    assert_eq!(asked.len(), gate.asked.len(), "each candidate gated once");
}

#[test]
fn when_every_candidate_is_vetoed_there_is_no_winner() {
    let (candidates, truth) = space();
    let q4: Vec<Candidate> = candidates
        .iter()
        .filter(|c| c.id.starts_with("q4_0"))
        .cloned()
        .collect();
    let q4_truth: Vec<f64> = (candidates.iter().zip(&truth))
        .filter(|(c, _)| c.id.starts_with("q4_0"))
        .map(|(_, t)| *t)
        .collect();
    let mut gate = KldGate {
        candidates: q4.clone(),
        asked: Vec::new(),
    };
    let mut sim = Sim::new(q4_truth, 4);
    let result = race_with(&q4, &Options::default(), &mut sim, &mut gate);
    assert!(result.winner.is_none());
    assert_eq!(result.stop, Stop::NoneLeft);
    assert!(result.fastest.unwrap().vetoed.is_some());
}

#[test]
fn the_trial_budget_stops_the_race_with_the_best_so_far() {
    let (candidates, truth) = space();
    let mut sim = Sim::new(truth, 6);
    let options = Options {
        budget: Budget {
            max_trials: Some(10),
            max_seconds: None,
        },
        ..Options::default()
    };
    let result = race_with(&candidates, &options, &mut sim, &mut Unconstrained);
    assert_eq!(result.stop, Stop::TrialBudget);
    assert!(result.trials <= 10, "{}", result.trials);
    let winner = result.winner.as_ref().unwrap();
    let still_in = |s: &&Standing| {
        let last = decisions_of(&result, s.candidate).last().unwrap().action;
        matches!(last, Action::Winner | Action::Unresolved)
    };
    let best = result.standings.iter().find(still_in).unwrap();
    assert_eq!(winner.candidate, best.candidate);
    let why = &decisions_of(&result, winner.candidate).last().unwrap().why;
    assert!(why.contains("trial budget of 10 ran out"), "{why}");
}

#[test]
fn the_time_budget_stops_the_race() {
    let (candidates, truth) = space();
    let unbounded = race_with(
        &candidates,
        &Options::default(),
        &mut Sim::new(truth.clone(), 6),
        &mut Unconstrained,
    );
    let mut sim = Sim::new(truth, 6);
    let options = Options {
        budget: Budget {
            max_trials: None,
            max_seconds: Some(70.0), // 10 s a trial: the screen of 6 and the next round
        },
        ..Options::default()
    };
    let result = race_with(&candidates, &options, &mut sim, &mut Unconstrained);
    assert_eq!(result.stop, Stop::TimeBudget);
    assert!(result.trials < unbounded.trials);
    assert!(
        sim.seconds.get() >= 70.0,
        "it stopped only once the time was spent"
    );
    assert!(result.winner.is_some());
}

fn twins() -> Vec<Candidate> {
    ["a", "b"]
        .iter()
        .map(|id| Candidate {
            id: id.to_string(),
            start_key: id.to_string(),
            knobs: vec![Knob::nominal("build", id)],
        })
        .collect()
}

#[test]
fn a_winner_alone_after_the_screen_is_confirmed_with_a_ci() {
    let candidates = twins();
    let mut sim = Sim::new(vec![40.0, 30.0], 8);
    let result = race_with(
        &candidates,
        &Options::default(),
        &mut sim,
        &mut Unconstrained,
    );
    assert_eq!(winner_id(&candidates, &result), "a");
    assert_eq!(result.winner.as_ref().unwrap().summary.n, 3);
    assert_eq!(
        result.trials, 5,
        "both screened twice, b cut at the screen, a measured to 3 repetitions"
    );
    assert_eq!(result.stop, Stop::Separated);
}

#[test]
fn a_tie_stops_at_the_budget_rather_than_looping() {
    let candidates = twins();
    let mut sim = Sim::new(vec![40.0, 40.0], 8);
    let options = Options {
        budget: Budget {
            max_trials: Some(80),
            max_seconds: None,
        },
        max_reps: 1000,
        ..Options::default()
    };
    let result = race_with(&candidates, &options, &mut sim, &mut Unconstrained);
    assert_eq!(result.stop, Stop::TrialBudget);
    assert_eq!(result.trials, 80);
    let actions: Vec<Action> = (0..2)
        .map(|c| decisions_of(&result, c).last().unwrap().action)
        .collect();
    assert!(actions.contains(&Action::Winner) && actions.contains(&Action::Unresolved));
}

#[test]
fn a_tie_without_a_budget_stops_at_the_repetition_cap() {
    let candidates = twins();
    let mut sim = Sim::new(vec![40.0, 40.0], 8);
    let options = Options {
        max_reps: 20,
        ..Options::default()
    };
    let result = race_with(&candidates, &options, &mut sim, &mut Unconstrained);
    assert_eq!(result.stop, Stop::RepetitionCap);
    assert_eq!(result.trials, 40);
}

#[test]
fn a_practical_tie_is_retired_long_before_the_cap() {
    let candidates = twins();
    let mut sim = Sim::new(vec![40.0, 40.0], 8);
    let options = Options {
        max_reps: 30,
        tie_margin: Some(0.03),
        ..Options::default()
    };
    let result = race_with(&candidates, &options, &mut sim, &mut Unconstrained);
    assert_eq!(result.stop, Stop::Separated);
    assert!(result.trials < 20, "{} trials", result.trials);
    let tied: Vec<&Decision> = (result.decisions.iter())
        .filter(|d| d.action == Action::Tied)
        .collect();
    assert_eq!(tied.len(), 1, "{:?}", result.decisions);
    assert!(tied[0].why.contains("within ±3 %"), "{}", tied[0].why);
    assert_eq!(tied[0].reference, Some(result.winner.unwrap().candidate));
    // Two percent apart is not a tie at ±1 %: they race to a CI or the cap.
    let mut sim = Sim::new(vec![40.0, 40.8], 8);
    let options = Options {
        tie_margin: Some(0.01),
        ..options
    };
    let result = race_with(&candidates, &options, &mut sim, &mut Unconstrained);
    assert!(result.decisions.iter().all(|d| d.action != Action::Tied));
}

struct Short;

impl Evaluator for Short {
    fn measure(&mut self, _batch: &[Request]) -> Result<Vec<Outcome>> {
        Ok(vec![Outcome::Samples(vec![1.0])])
    }
}

#[test]
fn bad_input_and_a_broken_evaluator_give_one_line_errors() {
    let candidates = twins();
    let clock = &mut || 0.0;
    let error = run(
        &[],
        &Options::default(),
        &mut Short,
        &mut Unconstrained,
        clock,
    );
    let message = error.unwrap_err().to_string();
    assert_eq!(message, "tune: search space has no candidate to race");
    let options = Options {
        seeds: vec![5],
        ..Options::default()
    };
    let error = run(&candidates, &options, &mut Short, &mut Unconstrained, clock);
    let message = error.unwrap_err().to_string();
    assert_eq!(message, "tune: seed 5 is not one of the 2 candidates");
    let error = run(
        &candidates,
        &Options::default(),
        &mut Short,
        &mut Unconstrained,
        clock,
    );
    let message = error.unwrap_err().to_string();
    assert_eq!(
        message,
        "tune: the evaluator returned 1 outcomes for a batch of 2 requests"
    );
}

/// 30 builds within 1.5 % of each other, the best 3 % above them: every one passes the screen.
fn crowd() -> (Vec<Candidate>, Vec<f64>) {
    let (candidates, _) = builds();
    let mut truth: Vec<f64> = (0..30).map(|i| 40.0 + 0.02 * i as f64).collect();
    truth[11] = 41.6 * 1.015;
    (candidates, truth)
}

#[test]
fn successive_halving_keeps_a_crowd_of_close_candidates_cheap() {
    let (candidates, truth) = crowd();
    let exhaustive = exhaustive_cost(&candidates);
    let (mut halved, mut raced) = (0, 0);
    for seed in 1..=5 {
        let race = |halve_above| {
            let options = Options {
                halve_above,
                ..Options::default()
            };
            let mut sim = Sim::new(truth.clone(), seed);
            race_with(&candidates, &options, &mut sim, &mut Unconstrained)
        };
        let (with, without) = (race(Some(4)), race(None));
        assert_eq!(winner_id(&candidates, &with), "b11", "seed {seed}");
        // Thirty starts are needed to screen them all: what halving saves is the race.
        assert!(
            cost(&with) < exhaustive,
            "seed {seed}: cost {} against {exhaustive} exhaustive",
            cost(&with)
        );
        let cut = (with.decisions.iter()).filter(|d| d.why.contains("successive halving"));
        assert!(
            cut.count() > 0 || with.trials == without.trials,
            "seed {seed}"
        );
        (halved, raced) = (halved + cost(&with), raced + cost(&without));
    }
    assert!(
        halved < raced,
        "cost {halved} halving, {raced} racing on CIs alone"
    );
}

#[test]
fn a_failed_starting_point_does_not_take_its_profile_with_it() {
    // One profile (kv f16, fa on), threads 1..5: the middle (t3) is the only starting point and
    // its engine crashes. Its neighbours are screened next, and the climb goes on from there.
    let (all, truth) = space();
    let keep: Vec<usize> = (0..all.len())
        .filter(|&i| all[i].id.starts_with("f16/fa-on/"))
        .collect();
    let candidates: Vec<Candidate> = keep.iter().map(|&i| all[i].clone()).collect();
    let truth: Vec<f64> = keep.iter().map(|&i| truth[i]).collect();
    let broken = index_of(&candidates, "f16/fa-on/t3");
    let mut sim = Sim::new(truth, 3);
    sim.failing = Some((broken, "engine exited"));
    let result = race_with(
        &candidates,
        &Options::default(),
        &mut sim,
        &mut Unconstrained,
    );
    let explored: Vec<String> = result
        .decisions
        .iter()
        .filter(|d| d.action == Action::Explored && d.reference == Some(broken))
        .map(|d| d.why.clone())
        .collect();
    assert_eq!(
        explored,
        [
            "one step down on threads (3 → 2) from f16/fa-on/t3 (it failed)",
            "one step up on threads (3 → 4) from f16/fa-on/t3 (it failed)"
        ]
    );
    assert_eq!(winner_id(&candidates, &result), "f16/fa-on/t4");
}
