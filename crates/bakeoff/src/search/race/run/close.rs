//! The end of a race: the winner crowned, every candidate still open closed with its reason,
//! the standings.

use super::{ci, Racer, Status};
use crate::search::race::{Action, Constraint, RaceResult, Standing, Stop};
use crate::Result;

impl Racer<'_> {
    pub(super) fn finish(
        mut self,
        stop: Stop,
        constraint: &mut dyn Constraint,
    ) -> Result<RaceResult> {
        let winner = self.incumbent(constraint)?;
        let standings = self.standings();
        let runner_up = standings
            .iter()
            .find(|s| Some(s.candidate) != winner && s.vetoed.is_none())
            .map(|s| s.candidate);
        if let Some(w) = winner {
            let why = self.winner_why(w, runner_up, stop);
            self.decide(w, Action::Winner, runner_up, why);
        }
        self.close_the_rest(winner, stop);
        let pick = |c: Option<usize>| standings.iter().find(|s| Some(s.candidate) == c).cloned();
        Ok(RaceResult {
            winner: pick(winner),
            fastest: standings.first().cloned(),
            decisions: self.decisions,
            trials: self.trials,
            starts: self.starts,
            rounds: self.round,
            stop,
            standings,
        })
    }

    pub(super) fn standing(&self, candidate: usize) -> Standing {
        Standing {
            candidate,
            summary: self.entries[candidate].summary.clone(),
            vetoed: self.entries[candidate].veto.clone(),
        }
    }

    fn standings(&self) -> Vec<Standing> {
        let measured = |&i: &usize| !self.entries[i].failed && !self.entries[i].samples.is_empty();
        let mut standings: Vec<Standing> = (0..self.entries.len())
            .filter(measured)
            .map(|i| self.standing(i))
            .collect();
        standings.sort_by(|a, b| {
            (b.summary.median.total_cmp(&a.summary.median)).then(a.candidate.cmp(&b.candidate))
        });
        standings
    }

    fn stop_words(&self, stop: Stop) -> String {
        let budget = &self.options.budget;
        match stop {
            Stop::Separated if self.decisions.iter().any(|d| d.action == Action::Tied) => {
                "separated from every other contender, or tied with it (within the tie margin)"
                    .into()
            }
            Stop::Separated => "separated from every other contender".into(),
            Stop::TrialBudget => format!(
                "best so far when the trial budget of {} ran out",
                budget.max_trials.unwrap_or(self.trials)
            ),
            Stop::TimeBudget => format!(
                "best so far when the time budget of {:.0} s ran out",
                budget.max_seconds.unwrap_or(0.0)
            ),
            Stop::RepetitionCap => format!(
                "best so far: contenders still overlap at {} repetitions",
                self.options.max_reps
            ),
            Stop::NoneLeft => "no candidate left".into(),
        }
    }

    fn winner_why(&self, winner: usize, runner_up: Option<usize>, stop: Stop) -> String {
        let s = self.summary(winner);
        let mut why = format!(
            "{}: median {:.1} {}, CI {} over {} repetitions",
            self.stop_words(stop),
            s.median,
            self.options.unit,
            ci(s),
            s.n
        );
        if let Some(r) = runner_up {
            why += &format!("; runner-up {} CI {}", self.id(r), ci(self.summary(r)));
        }
        why
    }

    fn close_the_rest(&mut self, winner: Option<usize>, stop: Stop) {
        for c in 0..self.entries.len() {
            let (action, why) = match self.entries[c].status {
                Status::Alive if Some(c) != winner => {
                    (Action::Unresolved, self.unresolved(c, stop))
                }
                Status::Pending => (
                    Action::Skipped,
                    "explored but not measured before the race stopped".into(),
                ),
                Status::Unmeasured => (
                    Action::Skipped,
                    "never measured: not a starting point and not a neighbour of any incumbent"
                        .into(),
                ),
                _ => continue,
            };
            self.decide(c, action, winner, why);
        }
    }

    fn unresolved(&self, candidate: usize, stop: Stop) -> String {
        let mut why = format!(
            "still racing when the race stopped ({}): CI {}",
            self.stop_words(stop),
            ci(self.summary(candidate))
        );
        if let Some(w) = self.best_alive() {
            why += &format!(
                " against the winner {}'s {}",
                self.id(w),
                ci(self.summary(w))
            );
        }
        why
    }
}
