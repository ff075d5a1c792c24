#!/usr/bin/env python3
"""Helper of scripts/bench-tune (standard library only): turns stored bakeoff runs into the figures
of docs/results/tune.md.

  score RUNS_SHOW_JSON            per configuration: the tune's score of every repetition (the
                                  harmonic mean of its tests' client tg t/s, as `bakeoff tune`
                                  scores a tg goal), its median and 95 % bootstrap CI, noisy trials
  gatefile MODEL CTX SCORES OUT   a `bakeoff gate` candidates file: every configuration scored,
                                  against the tune's reference (-ctk f16 -ctv f16), tune's checks
  exhaustive TUNE SCORES GATE W   the comparison table of part (a), W = JSON of wall times/loads
  optimus GATE (LABEL FLAGS SCORES)...  part (b)'s table: each winner re-measured and gated
  best-trial LOG                  the best llama-optimus trial in its log: "speed t b ub fa stage trials"
  final-answer LOG                llama-optimus's own final answer: "t b ub fa" or none
  tune-answer TUNE_JSON           one line on a tune's winner and cost

Statistics as bakeoff's own (crates/bakeoff/src/measure/stats.rs): type-7 quantiles, 95 %
percentile bootstrap of the median with 2000 resamples and a fixed seed (another RNG than
bakeoff's, so CIs agree to the resampling noise, not to the bit).
"""
import json
import random
import re
import sys

RESAMPLES = 2000
# Flags that the server is given by the harness, not by the configuration.
HARNESS_FLAGS = {"-c", "-np"}


def quantile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    h = (len(sorted_values) - 1) * q
    lo, hi = int(h), min(int(h) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def median(values):
    return quantile(sorted(values), 0.5)


def median_ci(values):
    if len(values) < 2:
        m = median(values)
        return m, m
    rng = random.Random(0x5EED)
    medians = sorted(median([rng.choice(values) for _ in values]) for _ in range(RESAMPLES))
    return quantile(medians, 0.025), quantile(medians, 0.975)


def key_of_flags(flags):
    """One configuration's identity: its flags without the harness's, in a fixed order."""
    return " ".join(f"{k} {v}".strip() for k, v in sorted(flags.items()) if k not in HARNESS_FLAGS)


def key_of_args(args):
    flags, i = {}, 0
    while i < len(args):
        value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else ""
        flags[args[i]] = value
        i += 2 if value else 1
    return key_of_flags(flags)


def client_tps(trial):
    for s in trial["samples"]:
        if s["metric"] in ("tg_tps", "pp_tps") and s["source"] == "client":
            return s["value"]
    return None


def score(path):
    """Per configuration: repetition → test → t/s, then the harmonic mean of each full repetition."""
    detail = json.load(open(path))
    configs = {}
    for t in detail["trials"]:
        if t["status"] != "ok":
            continue
        key = key_of_flags(t["flags"]["flags"])
        c = configs.setdefault(key, {"reps": {}, "trials": 0, "noisy": 0, "flags": t["flags"]["flags"]})
        c["reps"].setdefault(t["repetition"], {})[t["workload"]["test"]] = client_tps(t)
        c["trials"] += 1
        c["noisy"] += bool(t.get("note") and "noisy" in t["note"])
    tests = sorted({test for c in configs.values() for r in c["reps"].values() for test in r})
    out = {}
    for key, c in configs.items():
        scores = [len(tests) / sum(1 / r[t] for t in tests) for r in c["reps"].values() if all(r.get(t) for t in tests)]
        lo, hi = median_ci(scores)
        per_test = {t: median([r[t] for r in c["reps"].values() if r.get(t)]) for t in tests}
        args = [a for k, v in sorted(c["flags"].items()) if k not in HARNESS_FLAGS for a in (k, v)]
        out[key] = {"median": median(scores), "ci_low": lo, "ci_high": hi, "n": len(scores), "scores": scores,
                    "per_test": per_test, "trials": c["trials"], "noisy_trials": c["noisy"], "args": args}
    json.dump(out, sys.stdout, indent=1)


def gatefile(model, ctx, scores_path, out):
    scores = json.load(open(scores_path))
    lines = [f'model = "{model}"', f"ctx = {ctx}", "", "[baseline]", 'name = "reference"',
             'flags = "-ctk f16 -ctv f16"', ""]
    for key, s in sorted(scores.items()):
        lines += ["[[candidate]]", f'name = "{key}"', f"flags = {json.dumps(s['args'])}", ""]
    # The tune's checks: `bakeoff gate`'s defaults without its speed step (search/settings.rs).
    lines += ["[checks]", "tg_reps = 0", ""]
    open(out, "w").write("\n".join(lines))


def verdicts(gate_path):
    """Candidate name → (faithful, overall, mean KLD, greedy agreement), as the tune's veto reads
    them: only an overall `fail` vetoes."""
    report = json.load(open(gate_path))
    out = {}
    for row in report["candidates"]:
        if row.get("baseline"):
            continue
        figures = {o["name"]: o["value"] for o in row.get("outcomes", [])}
        overall = row.get("overall") or "none"
        out[row["candidate"]] = {"faithful": overall != "fail", "overall": overall,
                                 "mean_kld": figures.get("mean_kld"),
                                 "outcomes": {o["name"]: [o["status"], o["value"]] for o in row.get("outcomes", [])},
                                 "blocker": row.get("blocker")}
    return out


def fmt(s):
    return f"{s['median']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}] (n {s['n']})"


def exhaustive(tune_path, scores_path, gate_path, walls_path):
    tune = json.load(open(tune_path))
    scores = json.load(open(scores_path))
    gate = verdicts(gate_path)
    walls = json.load(open(walls_path))
    rows = sorted(scores.items(), key=lambda kv: -kv[1]["median"])
    faithful = [(k, s) for k, s in rows if gate.get(k, {}).get("faithful")]
    best_key, best = faithful[0] if faithful else (None, None)
    winner = tune.get("winner")
    wkey = key_of_args(winner["args"]) if winner else None
    wbench = scores.get(wkey)
    print("| configuration | exhaustive score t/s, median [95 % CI] | tg64 | tg64 @ d512 | noisy trials | gate | mean KLD | tune |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    tested = {key_of_args(p["args"]): p for p in tune.get("points", [])}
    for k, s in rows:
        g = gate.get(k, {})
        kld = g.get("mean_kld")
        tests = list(s["per_test"].values())
        p = tested.get(k)
        in_tune = "not measured"
        if p:
            in_tune = f"{p['median']:.2f} (n {p['n']}, {p['fidelity']})"
        if k == wkey:
            in_tune = "**winner** " + in_tune
        mark = "**" if k == best_key else ""
        print(f"| {mark}{k}{mark} | {fmt(s)} | {tests[0]:.2f} | {tests[-1]:.2f} | {s['noisy_trials']}/{s['trials']} | "
              f"{g.get('overall', '?')} | {'' if kld is None else f'{kld:.5f}'} | {in_tune} |")
    print()
    print(f"- exhaustive best faithful: `{best_key}` {fmt(best) if best else 'none'}")
    if winner:
        print(f"- tune winner: `{wkey}` {winner['median']:.2f} [{winner['ci_low']:.2f}, {winner['ci_high']:.2f}] "
              f"(n {winner['n']}, tune's own measurement); in the exhaustive bench {fmt(wbench) if wbench else 'absent'}")
        g = gate.get(wkey)
        print(f"- tune winner faithful by the exhaustive gate: {'yes' if g and g['faithful'] else 'NO'} "
              f"({g['overall'] if g else 'not gated'}); by tune's own gate: {winner['fidelity']}")
        if wbench and best:
            same = wkey == best_key
            slower = wbench["ci_high"] < best["ci_low"]
            ratio = wbench["median"] / best["median"]
            verdict = "the same configuration" if same else (
                "significantly slower (CIs disjoint)" if slower else "not significantly slower (CIs overlap)")
            print(f"- tune winner vs exhaustive best, both in the exhaustive bench: {ratio * 100:.1f} % of its median; {verdict}")
    else:
        print("- tune found no winner")
    print(f"- tune: {tune['configurations']} configurations, {tune['trials']} trials, {tune['engine_starts']} engine starts, "
          f"{tune['rounds']} rounds, {tune['gated']} gated, stop: {tune['stop']}")
    ex = walls["bench_s"] + walls["gate_s"]
    print(f"- wall: tune {walls['tune_s']:.0f} s (answer's wall_s {tune['wall_s']:.0f} s); exhaustive {ex:.0f} s "
          f"(bench {walls['bench_s']:.0f} s + gate {walls['gate_s']:.0f} s); tune = {walls['tune_s'] / ex * 100:.0f} % of exhaustive")
    for phase in ("tune", "bench", "gate"):
        load = walls.get(f"{phase}_load")
        if load:
            print(f"- load during {phase}: 1-min load average mean {load['mean']:.2f}, max {load['max']:.2f} "
                  f"({load['samples']} samples); before: {walls.get(phase + '_before', '?')}")
    same_numbers = []
    for k, g in gate.items():
        if " -t 1 " in f" {k} ":
            twin = gate.get(k.replace("-t 1", "-t 2"))
            if twin:
                same_numbers.append((k, g["outcomes"].get("mean_kld"), twin["outcomes"].get("mean_kld")))
    if same_numbers:
        equal = sum(a == b for _, a, b in same_numbers)
        print(f"- -t 1 vs -t 2 (tune treats threads as numerically inert): mean KLD identical in {equal} of "
              f"{len(same_numbers)} pairs")
        for k, a, b in same_numbers:
            if a != b:
                print(f"  - `{k}`: {a} vs -t 2: {b}")


BEST = re.compile(r"cmd_(\d): \[(.*?)\]")
SPEED = re.compile(r"Token generation speed: ([0-9.]+) tokens/s")


def best_trial(log_path):
    """The fastest trial the optimus log shows, as 'speed t b ub fa stage trials'."""
    best, cmd, trials = None, None, 0
    for line in open(log_path, errors="replace"):
        m = BEST.search(line)
        if m:
            cmd = (m.group(1), [a.strip().strip("'") for a in m.group(2).split(",")])
            continue
        m = SPEED.search(line)
        if m and cmd:
            trials += 1
            speed = float(m.group(1))
            if best is None or speed > best[0]:
                best = (speed, cmd)
            cmd = None
    if best is None:
        print("0 0 0 0 0 none 0")
        return
    speed, (stage, args) = best
    get = lambda flag: args[args.index(flag) + 1] if flag in args else ""
    fa = get("--flash-attn") or "0"
    print(f"{speed} {get('--threads')} {get('--batch-size')} {get('--ubatch-size')} {fa} {stage} {trials}")


def final_answer(log_path):
    """llama-optimus's own recommendation (its 'Best config Stage_3' and 'Stage_2'), if it got there."""
    text = open(log_path, errors="replace").read()
    s3 = re.search(r"Best config Stage_3: (\{.*\})", text)
    s2 = re.search(r"Best config Stage_2: (\{.*\})", text)
    if not (s3 and s2):
        print("none")
        return
    p3 = eval(s3.group(1), {})  # its printed Python dict of ints
    p2 = eval(s2.group(1), {})
    print(f"{p3['threads']} {p3['batch']} {p3['u_batch']} {p2['flash_attn']}")


def optimus_report(gate_path, *rows):
    """rows: LABEL FLAGS SCORES, repeated; one table row each, gated under LABEL."""
    gate = verdicts(gate_path)
    print("| tool | winner flags | re-measured by `bakeoff bench`, t/s median [95 % CI] | gate | mean KLD |")
    print("| --- | --- | ---: | --- | ---: |")
    for label, flags, path in zip(rows[0::3], rows[1::3], rows[2::3]):
        (_, s), = json.load(open(path)).items()
        g = gate.get(label, {})
        kld = g.get("mean_kld")
        print(f"| {label} | `{flags}` | {fmt(s)} | {g.get('overall', '?')} | {'' if kld is None else f'{kld:.5f}'} |")


def tune_answer(path):
    """One line on a tune's answer: the winner with its CI, and what the search cost."""
    a = json.load(open(path))
    w = a["winner"]
    if not w:
        print("  no winner")
        return
    print(f"  its answer: `{' '.join(w['args'])}` {w['median']:.2f} [{w['ci_low']:.2f}, {w['ci_high']:.2f}] t/s "
          f"(n {w['n']}), {a['configurations']} configurations, {a['trials']} trials, {a['engine_starts']} engine "
          f"starts, stop: {a['stop']}, fidelity {w['fidelity']}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"score": score, "gatefile": gatefile, "exhaustive": exhaustive, "best-trial": best_trial,
     "final-answer": final_answer, "optimus": optimus_report, "tune-answer": tune_answer}[command](*args)
