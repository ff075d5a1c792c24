//! The race's state and its rounds: measure a batch, judge it (incumbent, screen cut, CI
//! eliminations, halving, exploration) and stop; [`close`] crowns the winner.

use super::schedule::{grouped, race_round, screens, starts};
use super::{
    space, Action, Candidate, Constraint, Decision, Evaluator, Explore, Kind, Options, Outcome,
    Progress, RaceResult, Request, Stop,
};
use crate::measure::stats::Summary;
use crate::{Error, Result};

mod close;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Unmeasured,
    /// A starting point or an explored neighbour, to be screened.
    Pending,
    Alive,
    Out,
}

struct Entry {
    samples: Vec<f64>,
    status: Status,
    /// Of `samples`, refreshed after every batch (NaN until measured).
    summary: Summary,
    /// `Some(true)` once the constraint passed it.
    faithful: Option<bool>,
    veto: Option<String>,
    failed: bool,
    /// Screened in the round being judged.
    fresh: bool,
}

pub(super) struct Racer<'a> {
    candidates: &'a [Candidate],
    options: &'a Options,
    entries: Vec<Entry>,
    decisions: Vec<Decision>,
    round: usize,
    trials: usize,
    starts: usize,
    last_key: Option<&'a str>,
    /// Race rounds measured so far: odd ones run backward (serpentine).
    race_rounds: usize,
    /// Candidates that failed or were vetoed in the round being judged, with the word for it.
    lost: Vec<(usize, &'static str)>,
}

fn ci(summary: &Summary) -> String {
    format!("[{:.1}, {:.1}]", summary.ci_low, summary.ci_high)
}

impl<'a> Racer<'a> {
    pub(super) fn new(candidates: &'a [Candidate], options: &'a Options) -> Result<Self> {
        validate(candidates, options)?;
        let entry = || Entry {
            samples: Vec::new(),
            status: Status::Unmeasured,
            summary: Summary::of(&[]),
            faithful: None,
            veto: None,
            failed: false,
            fresh: false,
        };
        Ok(Racer {
            candidates,
            options,
            entries: candidates.iter().map(|_| entry()).collect(),
            decisions: Vec::new(),
            round: 0,
            trials: 0,
            starts: 0,
            last_key: None,
            race_rounds: 0,
            lost: Vec::new(),
        })
    }

    pub(super) fn race(
        mut self,
        evaluator: &mut dyn Evaluator,
        constraint: &mut dyn Constraint,
        clock: &mut dyn FnMut() -> f64,
    ) -> Result<RaceResult> {
        let mut points = space::starting_points(self.candidates);
        points.extend(&self.options.seeds);
        points
            .iter()
            .for_each(|&p| self.entries[p].status = Status::Pending);
        let stop = self.rounds(evaluator, constraint, clock)?;
        self.finish(stop, constraint)
    }

    fn rounds(
        &mut self,
        evaluator: &mut dyn Evaluator,
        constraint: &mut dyn Constraint,
        clock: &mut dyn FnMut() -> f64,
    ) -> Result<Stop> {
        loop {
            if let Some(stop) = self.settled().or_else(|| self.out_of_time(clock)) {
                return Ok(stop);
            }
            let batch = self.next_batch();
            if batch.is_empty() {
                return Ok(Stop::TrialBudget); // work is left but no whole block fits
            }
            let before = self.decisions.len();
            self.measure(evaluator, &batch)?;
            let incumbent = self.judge(constraint)?;
            evaluator.observe(&Progress {
                round: self.round,
                trials: self.trials,
                decisions: &self.decisions[before..],
                incumbent: incumbent.map(|c| self.standing(c)),
            });
            self.round += 1;
        }
    }

    fn with(&self, status: Status) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].status == status)
            .collect()
    }

    fn settled(&self) -> Option<Stop> {
        let alive = self.with(Status::Alive);
        if !self.with(Status::Pending).is_empty() {
            return None;
        }
        let capped = |&i: &usize| self.entries[i].samples.len() >= self.options.max_reps;
        match alive.len() {
            0 => Some(Stop::NoneLeft),
            1 if self.unconfirmed(alive[0]) => None,
            1 => Some(Stop::Separated),
            _ if alive.iter().all(capped) => Some(Stop::RepetitionCap),
            _ => None,
        }
    }

    /// A lone contender with too few samples for a CI worth reporting (cut rivals at the screen
    /// leave a winner of one repetition otherwise).
    fn unconfirmed(&self, candidate: usize) -> bool {
        let enough = self.options.min_race_reps.min(self.options.max_reps);
        self.entries[candidate].samples.len() < enough
    }

    fn out_of_time(&self, clock: &mut dyn FnMut() -> f64) -> Option<Stop> {
        let budget = &self.options.budget;
        if budget.max_trials.is_some_and(|max| self.trials >= max) {
            return Some(Stop::TrialBudget);
        }
        budget
            .max_seconds
            .is_some_and(|max| clock() >= max)
            .then_some(Stop::TimeBudget)
    }

    fn next_batch(&mut self) -> Vec<Request> {
        let room = (self.options.budget.max_trials)
            .map_or(usize::MAX, |max| max.saturating_sub(self.trials));
        let pending = grouped(self.candidates, self.with(Status::Pending));
        let screen_room = room.min(self.options.max_screens.unwrap_or(usize::MAX));
        let mut batch = screens(&pending, screen_room, self.options.screen_reps);
        let alive = self.with(Status::Alive);
        let lone = alive.len() == 1 && self.unconfirmed(alive[0]);
        if alive.len() >= 2 || lone {
            let below_cap = alive
                .into_iter()
                .filter(|&i| self.entries[i].samples.len() < self.options.max_reps)
                .collect();
            let contenders = grouped(self.candidates, below_cap);
            // A lone survivor is measured up to a CI worth reporting, no further.
            let target = match lone {
                true => self.options.min_race_reps.min(self.options.max_reps),
                false => self.options.max_reps,
            };
            let left = |&c: &usize| target.saturating_sub(self.entries[c].samples.len());
            let fewest_left = contenders.iter().map(left).min().unwrap_or(0);
            let reps = self.options.reps_per_round.min(fewest_left);
            let order = (self.options.order, self.race_rounds % 2 == 1);
            let used: usize = batch.iter().map(|r| r.repetitions).sum();
            batch.extend(race_round(&contenders, reps, order, room - used));
        }
        let raced = batch.iter().any(|r| r.kind == Kind::Race);
        self.race_rounds += usize::from(raced);
        self.starts += starts(self.candidates, &batch, &mut self.last_key);
        batch
    }

    fn measure(&mut self, evaluator: &mut dyn Evaluator, batch: &[Request]) -> Result<()> {
        let outcomes = evaluator.measure(batch)?;
        if outcomes.len() != batch.len() {
            return Err(Error::engine(format!(
                "tune: the evaluator returned {} outcomes for a batch of {} requests",
                outcomes.len(),
                batch.len()
            )));
        }
        for (request, outcome) in batch.iter().zip(outcomes) {
            self.trials += request.repetitions;
            self.apply(request.candidate, outcome);
        }
        for &c in &self.with(Status::Alive) {
            let entry = &mut self.entries[c];
            entry.summary = Summary::of(&entry.samples);
        }
        Ok(())
    }

    fn apply(&mut self, candidate: usize, outcome: Outcome) {
        if self.entries[candidate].status == Status::Out {
            return; // failed earlier in this batch
        }
        let samples: Vec<f64> = match outcome {
            Outcome::Failed(reason) => return self.fail(candidate, &reason),
            Outcome::Samples(s) => s.into_iter().filter(|x| x.is_finite()).collect(),
        };
        if samples.is_empty() {
            return self.fail(candidate, "the measurement gave no finite sample");
        }
        let entry = &mut self.entries[candidate];
        entry.samples.extend(samples);
        if entry.status == Status::Pending {
            entry.status = Status::Alive;
            entry.fresh = true;
        }
    }

    fn fail(&mut self, candidate: usize, reason: &str) {
        let entry = &mut self.entries[candidate];
        entry.status = Status::Out;
        entry.failed = true;
        entry.fresh = false;
        self.lost.push((candidate, "failed"));
        self.decide(
            candidate,
            Action::Eliminated,
            None,
            format!("failed: {reason}"),
        );
    }

    fn decide(&mut self, candidate: usize, action: Action, reference: Option<usize>, why: String) {
        self.decisions.push(Decision {
            round: self.round,
            candidate,
            action,
            reference,
            why,
        });
    }

    fn summary(&self, candidate: usize) -> &Summary {
        &self.entries[candidate].summary
    }

    fn id(&self, candidate: usize) -> &'a str {
        &self.candidates[candidate].id
    }

    /// Judges the round just measured; returns the incumbent.
    fn judge(&mut self, constraint: &mut dyn Constraint) -> Result<Option<usize>> {
        self.record_screens();
        let incumbent = self.incumbent(constraint)?;
        match incumbent {
            Some(incumbent) => {
                self.cut_screens(incumbent);
                self.eliminate_by_ci(incumbent);
                self.retire_ties(incumbent);
                self.halve(incumbent);
                self.explore(incumbent);
            }
            None => self.promote_fresh(),
        }
        self.explore_around_lost();
        self.entries.iter_mut().for_each(|e| e.fresh = false);
        Ok(incumbent)
    }

    fn fresh(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].fresh && self.entries[i].status == Status::Alive)
            .collect()
    }

    /// The best of a fresh candidate's screen repetitions: what the screen cut reads.
    fn best_sample(&self, candidate: usize) -> f64 {
        let samples = &self.entries[candidate].samples;
        samples.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    }

    fn record_screens(&mut self) {
        for c in self.fresh() {
            let samples = &self.entries[c].samples;
            let why = match samples.len() {
                1 => format!(
                    "screened: {:.1} {} (1 repetition)",
                    samples[0], self.options.unit
                ),
                n => format!(
                    "screened: best {:.1}, median {:.1} {} ({n} repetitions)",
                    self.best_sample(c),
                    self.summary(c).median,
                    self.options.unit
                ),
            };
            self.decide(c, Action::Screened, None, why);
        }
    }

    /// The live candidate with the best median that passed the constraint; those above it that
    /// fail it are vetoed on the way.
    fn incumbent(&mut self, constraint: &mut dyn Constraint) -> Result<Option<usize>> {
        while let Some(best) = self.best_alive() {
            if self.entries[best].faithful == Some(true) {
                return Ok(Some(best));
            }
            match constraint.veto(best)? {
                None => self.entries[best].faithful = Some(true),
                Some(reason) => self.veto(best, reason),
            }
        }
        Ok(None)
    }

    fn best_alive(&self) -> Option<usize> {
        let median = |i: usize| self.summary(i).median;
        self.with(Status::Alive)
            .into_iter()
            .max_by(|&a, &b| median(a).total_cmp(&median(b)).then(b.cmp(&a)))
    }

    fn veto(&mut self, candidate: usize, reason: String) {
        let entry = &mut self.entries[candidate];
        entry.faithful = Some(false);
        entry.status = Status::Out;
        entry.veto = Some(reason.clone());
        self.lost.push((candidate, "vetoed"));
        self.decide(candidate, Action::Vetoed, None, format!("vetoed: {reason}"));
    }

    fn promote_fresh(&mut self) {
        for c in self.fresh() {
            self.decide(
                c,
                Action::Promoted,
                None,
                "no faithful incumbent yet".into(),
            );
        }
    }

    fn cut_screens(&mut self, incumbent: usize) {
        let reference = self.summary(incumbent).median;
        let margin = self.options.screen_margin;
        for c in self.fresh() {
            let screen = self.best_sample(c);
            if c == incumbent {
                let why = format!("best so far: {screen:.1} {}", self.options.unit);
                self.decide(c, Action::Promoted, None, why);
                continue;
            }
            let below = (1.0 - screen / reference) * 100.0;
            let out = screen < reference * (1.0 - margin);
            let why = format!(
                "best screen {screen:.1} {} is {below:.1} % below the incumbent {}'s median {reference:.1} (margin {:.0} %)",
                self.options.unit,
                self.id(incumbent),
                margin * 100.0
            );
            let action = if out {
                Action::Eliminated
            } else {
                Action::Promoted
            };
            if out {
                self.entries[c].status = Status::Out;
            }
            self.decide(c, action, Some(incumbent), why);
        }
    }

    fn eliminate_by_ci(&mut self, incumbent: usize) {
        let min = self.options.min_race_reps;
        let reference = self.summary(incumbent).clone();
        if reference.n < min {
            return;
        }
        for c in self.with(Status::Alive) {
            let summary = self.summary(c);
            if c == incumbent || summary.n < min || summary.ci_high >= reference.ci_low {
                continue;
            }
            let why = format!(
                "CI {} below the incumbent {}'s {} ({} against {} repetitions)",
                ci(summary),
                self.id(incumbent),
                ci(&reference),
                summary.n,
                reference.n
            );
            self.entries[c].status = Status::Out;
            self.decide(c, Action::Eliminated, Some(incumbent), why);
        }
    }

    /// Contenders practically equal to the incumbent are retired (see [`Options::tie_margin`]).
    fn retire_ties(&mut self, incumbent: usize) {
        let Some(margin) = self.options.tie_margin else {
            return;
        };
        let enough = 2 * self.options.min_race_reps;
        let reference = self.summary(incumbent).clone();
        let (low, high) = (
            reference.median * (1.0 - margin),
            reference.median * (1.0 + margin),
        );
        let within = |s: &Summary| s.n >= enough && s.ci_low >= low && s.ci_high <= high;
        if !within(&reference) {
            return;
        }
        for c in self.with(Status::Alive) {
            let summary = self.summary(c);
            if c == incumbent || !within(summary) {
                continue;
            }
            let why = format!(
                "tied with the incumbent {}: CIs {} and {} both within ±{:.0} % of its median {:.1} {} ({} and {} repetitions); the incumbent is kept",
                self.id(incumbent),
                ci(summary),
                ci(&reference),
                margin * 100.0,
                reference.median,
                self.options.unit,
                summary.n,
                reference.n
            );
            self.entries[c].status = Status::Out;
            self.decide(c, Action::Tied, Some(incumbent), why);
        }
    }

    /// Successive halving: with more than `halve_above` contenders, the slower half (by median)
    /// of those measured at least twice is cut, fresh screens included, so a crowd of close
    /// candidates cannot eat the budget.
    fn halve(&mut self, incumbent: usize) {
        let Some(keep) = self.options.halve_above else {
            return;
        };
        let alive = self.with(Status::Alive);
        let raced = |&c: &usize| c != incumbent && self.summary(c).n >= 2;
        let mut eligible: Vec<usize> = alive.iter().copied().filter(raced).collect();
        let median = |c: usize| self.summary(c).median;
        eligible.sort_by(|&a, &b| median(a).total_cmp(&median(b)).then(b.cmp(&a)));
        let cut = (alive.len() / 2).min(alive.len().saturating_sub(keep));
        for c in eligible.into_iter().take(cut) {
            let why = self.halving_why(c, incumbent, alive.len());
            self.entries[c].status = Status::Out;
            self.decide(c, Action::Eliminated, Some(incumbent), why);
        }
    }

    fn halving_why(&self, candidate: usize, incumbent: usize, contenders: usize) -> String {
        let (own, reference) = (self.summary(candidate), self.summary(incumbent));
        format!(
            "median {:.1} {} in the slower half of {contenders} contenders after {} repetitions (successive halving; the incumbent {}'s is {:.1})",
            own.median,
            self.options.unit,
            own.n,
            self.id(incumbent),
            reference.median
        )
    }

    fn explore(&mut self, incumbent: usize) {
        let centres = match self.options.explore {
            Explore::Incumbent => vec![incumbent],
            Explore::Contenders => self.with(Status::Alive),
        };
        for centre in centres {
            let role = if centre == incumbent {
                "incumbent"
            } else {
                "contender"
            };
            let from = format!("from the {role} {}", self.id(centre));
            self.screen_neighbours(centre, &from);
        }
    }
}

impl Racer<'_> {
    /// The ordinal neighbours of the candidates that failed or were vetoed this round are
    /// screened next: a starting point that crashed or lost fidelity (a q4_0 V cache) must not
    /// take its whole profile with it (q5_1 V, one step away, may be fast and faithful).
    fn explore_around_lost(&mut self) {
        for (lost, word) in std::mem::take(&mut self.lost) {
            let from = format!("from {} (it {word})", self.id(lost));
            self.screen_neighbours(lost, &from);
        }
    }

    /// `centre`'s unmeasured ordinal neighbours become pending screens, each decision saying
    /// the step and `from` where.
    fn screen_neighbours(&mut self, centre: usize, from: &str) {
        for (neighbour, step) in space::neighbours(self.candidates, centre) {
            if self.entries[neighbour].status != Status::Unmeasured {
                continue;
            }
            self.entries[neighbour].status = Status::Pending;
            self.decide(
                neighbour,
                Action::Explored,
                Some(centre),
                format!("{step} {from}"),
            );
        }
    }
}

fn validate(candidates: &[Candidate], options: &Options) -> Result<()> {
    let bad = |field: &str, what: &str| Err(Error::input(format!("tune: {field} {what}")));
    if candidates.is_empty() {
        return bad("search space", "has no candidate to race");
    }
    if let Some(&seed) = options.seeds.iter().find(|&&s| s >= candidates.len()) {
        return bad(
            "seed",
            &format!("{seed} is not one of the {} candidates", candidates.len()),
        );
    }
    if options.reps_per_round == 0 || options.max_reps == 0 || options.screen_reps == 0 {
        return bad(
            "reps_per_round, screen_reps and max_reps",
            "must be at least 1",
        );
    }
    if !(0.0..1.0).contains(&options.screen_margin) {
        return bad("screen_margin", "must be in [0, 1)");
    }
    Ok(())
}
