//! The shape of the candidate list as the race sees it: nominal profiles, each profile's starting
//! point, and a candidate's ordinal neighbours.

use std::collections::BTreeMap;

use super::{Candidate, Knob};

/// The knobs without a rank, and the names of the ordinal ones: candidates with the same profile
/// differ only in ordinal knobs.
fn profile(candidate: &Candidate) -> Vec<(&str, Option<&str>)> {
    let mut key: Vec<(&str, Option<&str>)> = candidate
        .knobs
        .iter()
        .map(|k| {
            (
                k.name.as_str(),
                k.rank.is_none().then_some(k.value.as_str()),
            )
        })
        .collect();
    key.sort_unstable();
    key
}

/// Each profile's candidate nearest the middle of every ordinal knob's ranks present in it
/// (ties: the first listed).
pub(super) fn starting_points(candidates: &[Candidate]) -> Vec<usize> {
    let mut profiles: BTreeMap<Vec<(&str, Option<&str>)>, Vec<usize>> = BTreeMap::new();
    for (index, candidate) in candidates.iter().enumerate() {
        profiles.entry(profile(candidate)).or_default().push(index);
    }
    let mut points: Vec<usize> = profiles
        .values()
        .map(|members| middle(candidates, members))
        .collect();
    points.sort_unstable();
    points
}

fn middle(candidates: &[Candidate], members: &[usize]) -> usize {
    let mut ranks: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for knob in members.iter().flat_map(|&i| &candidates[i].knobs) {
        if let Some(rank) = knob.rank {
            ranks.entry(&knob.name).or_default().push(rank);
        }
    }
    let mids: BTreeMap<&str, usize> = ranks
        .into_iter()
        .map(|(name, mut r)| {
            r.sort_unstable();
            r.dedup();
            (name, r[r.len() / 2])
        })
        .collect();
    let distance = |i: &usize| -> usize {
        let knobs = candidates[*i].knobs.iter();
        knobs
            .filter_map(|k| Some(k.rank?.abs_diff(*mids.get(k.name.as_str())?)))
            .sum()
    };
    members.iter().copied().min_by_key(distance).unwrap_or(0)
}

/// `candidate`'s neighbours: for each ordinal knob, the nearest rank below and above among the
/// candidates equal to it in every other knob.
pub(super) fn neighbours(candidates: &[Candidate], candidate: usize) -> Vec<(usize, String)> {
    let centre = &candidates[candidate];
    let mut found = Vec::new();
    for (position, knob) in centre.knobs.iter().enumerate() {
        let Some(rank) = knob.rank else { continue };
        let along: Vec<(usize, usize)> = candidates
            .iter()
            .enumerate()
            .filter(|(_, other)| differs_only_at(&centre.knobs, &other.knobs, position))
            .filter_map(|(i, other)| Some((other.knobs[position].rank?, i)))
            .collect();
        let below = along.iter().filter(|(r, _)| *r < rank).max();
        let above = along.iter().filter(|(r, _)| *r > rank).min();
        for (step, next) in [("down", below), ("up", above)] {
            if let Some(&(_, i)) = next {
                found.push((i, step_reason(step, knob, &candidates[i].knobs[position])));
            }
        }
    }
    found
}

fn step_reason(step: &str, from: &Knob, to: &Knob) -> String {
    format!(
        "one step {step} on {} ({} → {})",
        from.name, from.value, to.value
    )
}

/// The same knobs in the same order, equal everywhere except at `position`, where both are ordinal.
fn differs_only_at(a: &[Knob], b: &[Knob], position: usize) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).enumerate().all(|(i, (x, y))| {
            if i == position {
                x.name == y.name && y.rank.is_some() && x.value != y.value
            } else {
                x == y
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(kv: &str, threads: usize) -> Candidate {
        Candidate {
            id: format!("{kv}/t{threads}"),
            start_key: format!("{kv}/t{threads}"),
            knobs: vec![
                Knob::nominal("kv", kv),
                Knob::ordinal("threads", &threads.to_string(), threads),
            ],
        }
    }

    #[test]
    fn one_starting_point_per_profile_in_the_middle() {
        let list: Vec<Candidate> = ["f16", "q8_0"]
            .iter()
            .flat_map(|kv| (1..=5).map(|t| candidate(kv, t)))
            .collect();
        let ids: Vec<&str> = starting_points(&list)
            .iter()
            .map(|&i| list[i].id.as_str())
            .collect();
        assert_eq!(ids, ["f16/t3", "q8_0/t3"]);
    }

    #[test]
    fn neighbours_step_one_ordinal_knob_over_pruned_values() {
        // threads=3 was pruned: 2's upper neighbour is 4.
        let list: Vec<Candidate> = [1, 2, 4, 5]
            .iter()
            .map(|&t| candidate("f16", t))
            .chain([candidate("q8_0", 2)])
            .collect();
        let found = neighbours(&list, 1);
        let ids: Vec<&str> = found.iter().map(|(i, _)| list[*i].id.as_str()).collect();
        assert_eq!(ids, ["f16/t1", "f16/t4"]);
        assert_eq!(found[1].1, "one step up on threads (2 → 4)");
    }
}
