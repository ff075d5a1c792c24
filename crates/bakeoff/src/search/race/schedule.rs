//! The order of one round's requests: screens grouped by engine start, then the race's
//! repetitions interleaved, cut to what the trial budget still allows.

use std::collections::HashMap;

use super::{Candidate, Kind, Order, Request};

/// Sorts candidate indices so that those sharing a `start_key` are adjacent, groups in the order
/// their first member appears in the list.
pub(super) fn grouped(candidates: &[Candidate], mut members: Vec<usize>) -> Vec<usize> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (index, candidate) in candidates.iter().enumerate() {
        first.entry(candidate.start_key.as_str()).or_insert(index);
    }
    members.sort_by_key(|&i| (first[candidates[i].start_key.as_str()], i));
    members
}

fn single(candidate: usize, kind: Kind) -> Request {
    Request {
        candidate,
        repetitions: 1,
        kind,
    }
}

/// One race round's requests for `contenders` (already grouped), `reps` repetitions each, all of
/// them or none (no round is started that `room` cannot hold). Serpentine: one visit of `reps`
/// consecutive repetitions per contender (one engine start each), in reverse order when
/// `backward`, so that alternate rounds run A A B B C C and C C B B A A: over each pair of rounds
/// a linear drift adds the same to every contender, and the last contender of a round keeps its
/// engine for the next. Cyclic: `reps` blocks of one repetition each, A B C A B C.
pub(super) fn race_round(
    contenders: &[usize],
    reps: usize,
    (order, backward): (Order, bool),
    room: usize,
) -> Vec<Request> {
    if contenders.is_empty() || reps == 0 || contenders.len() * reps > room {
        return Vec::new();
    }
    match order {
        Order::Serpentine => {
            let mut ordered = contenders.to_vec();
            if backward {
                ordered.reverse();
            }
            (ordered.into_iter())
                .map(|candidate| Request {
                    candidate,
                    repetitions: reps,
                    kind: Kind::Race,
                })
                .collect()
        }
        Order::Cyclic => (0..reps)
            .flat_map(|_| contenders.iter().map(|&c| single(c, Kind::Race)))
            .collect(),
    }
}

/// The screens that `room` repetitions hold, `reps` each (the last one shorter when the room is).
pub(super) fn screens(pending: &[usize], room: usize, reps: usize) -> Vec<Request> {
    let mut left = room;
    let mut batch = Vec::new();
    for &candidate in pending {
        if left == 0 {
            break;
        }
        let repetitions = reps.min(left);
        left -= repetitions;
        batch.push(Request {
            candidate,
            repetitions,
            kind: Kind::Screen,
        });
    }
    batch
}

/// Engine starts a batch implies after `last` (the start key the previous batch ended on).
pub(super) fn starts<'a>(
    candidates: &'a [Candidate],
    batch: &[Request],
    last: &mut Option<&'a str>,
) -> usize {
    let mut count = 0;
    for request in batch {
        let key = candidates[request.candidate].start_key.as_str();
        if *last != Some(key) {
            count += 1;
            *last = Some(key);
        }
    }
    count
}
