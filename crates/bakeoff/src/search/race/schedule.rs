//! The order of one round's requests: screens grouped by engine start, then the race's
//! repetitions interleaved block by block, cut to what the trial budget still allows.

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

/// `reps` blocks of one repetition per contender (contenders already grouped), each block whole:
/// no block is started that `room` cannot hold.
pub(super) fn race_blocks(
    contenders: &[usize],
    reps: usize,
    order: Order,
    room: usize,
) -> Vec<Request> {
    let mut batch = Vec::new();
    for block in 0..reps {
        if contenders.is_empty() || batch.len() + contenders.len() > room {
            break;
        }
        let reversed = order == Order::Serpentine && block % 2 == 1;
        let mut ordered = contenders.to_vec();
        if reversed {
            ordered.reverse();
        }
        batch.extend(ordered.into_iter().map(|c| single(c, Kind::Race)));
    }
    batch
}

pub(super) fn screens(pending: &[usize], room: usize) -> Vec<Request> {
    pending
        .iter()
        .take(room)
        .map(|&c| single(c, Kind::Screen))
        .collect()
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
