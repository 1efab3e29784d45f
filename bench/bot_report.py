#!/usr/bin/env python3
"""Tables for bench/bot.sh: reads DIR/overhead/ (the shared run.sh's runs.tsv / results.tsv)
and DIR/raw/ (wrk output with the FAILOVER line of failover.lua, the writer's log, /metrics and
/status of the edge, the origin's log of x-holdfast-bot-score), writes DIR/results.md and
prints it.

Exit status 1 when a replay invariant does not hold: client errors, a missing or `0` score
header at the origin, a wrong active version, rejections that do not match the bad files
written, or a restart that did not come up on the last-known-good copy. The CPU goal of the
overhead part is reported, not enforced (it moves with the machine's noise).

usage: bot_report.py DIR
"""
import collections
import os
import re
import sys

from report_common import (OVERHEAD_ALIGN, OVERHEAD_HEAD, errors, load_overhead, metrics, ms, one,
                           overhead_cells, overhead_desc, read, rps, series, sockets, status, summary_line,
                           versus, wrk_desc, write_results)

GOAL = 1.10
ART = "bot-features"
# the rejection reason each bad file of the writer must produce
EXPECT = {"double": "capacity", "truncated": "parse", "empty": "parse",
          "not_utf8": "not_utf8", "too_large": "too_large"}


def artifact(st):
    for a in (st or {}).get("artifacts", []):
        if a.get("kind") == ART:
            return a
    return None


def module(st, name="bot"):
    for m in (st or {}).get("modules", []):
        if m.get("name") == name:
            return m
    return None


def scores(path):
    """Counter of the x-holdfast-bot-score values the origin logged, or None."""
    text = read(path)
    if text is None:
        return None
    return collections.Counter(line.strip() for line in text.splitlines())


def overhead(d, out, fails):
    res, runs = load_overhead(d)
    if res is None:
        return
    env = read(os.path.join(d, "env.txt")) or ""
    hdr = re.search(r"HEADERS=(\S+)", env)
    desc = overhead_desc(env, "OVERHEAD_DURATION")
    if hdr and hdr.group(1) != "none":
        desc += f"; request headers: {hdr.group(1)}"
    out.append(f"### Overhead: bot scoring on vs off, `/1k` ({desc})")
    out.append("")
    out.append(f"| target | {OVERHEAD_HEAD} |")
    out.append("|---|" + OVERHEAD_ALIGN)
    for label in ("nginx", "holdfast", "holdfast-bot"):
        r = res.get(label)
        if not r:
            out.append(f"| {label} | no result |" + " |" * 8)
            continue
        out.append(f"| {label} | {overhead_cells(r)} |")
    out.append("")
    hb, h = res.get("holdfast-bot"), res.get("holdfast")
    vs = versus(res, runs, "holdfast-bot", "holdfast")
    if vs:
        paired, reps, cpu, p99, rate = vs
        verdict = "PASS" if paired <= GOAL else "FAIL"
        if reps and min(reps) <= GOAL < max(reps):
            verdict += f" (noisy: the repeats span {min(reps):.2f}–{max(reps):.2f}, across the goal; rerun with more REPEAT)"
        out.append(f"**holdfast-bot / holdfast: CPU per request = {paired:.3f}** (median of the per-repeat "
                   f"ratios {', '.join(f'{x:.3f}' for x in reps)}; ratio of the medians {cpu:.3f}), "
                   f"p99 = {p99:.2f}, req/s = {rate:.2f}; goal CPU ≤ {GOAL:.2f}: {verdict}")
    st = status(os.path.join(d, "raw", "overhead-holdfast-bot.status.json"))
    mt = metrics(os.path.join(d, "raw", "overhead-holdfast-bot.metrics.txt"))
    a, mo = artifact(st), module(st)
    if a or mo:
        act = (a or {}).get("active") or {}
        calls = one(mt, "holdfast_module_calls_total", module="bot")
        errs = series(mt, "holdfast_module_errors_total", module="bot")
        errs = ", ".join(f"{l['kind']} {int(v)}" for l, v in sorted(errs, key=lambda x: x[0]["kind"]))
        out.append("")
        out.append(f"holdfast-bot's bot module at the end: state {(mo or {}).get('state', '?')}, "
                   f"{calls if calls is not None else '?'} calls, errors: {errs or '?'} "
                   f"(an error is scored `unknown`); feature file version {act.get('version', '?')} "
                   f"({act.get('source', '?')}).")
    if hb and int(hb.get("errors", "0")) + int((h or {}).get("errors", "0")) > 0:
        out.append("")
        out.append("WARNING: client errors in the overhead runs (see overhead/raw/).")
    out.append("")


def replay(d, out, fails):
    raw = os.path.join(d, "raw")
    rows = [(n, summary_line(os.path.join(raw, f"{n}.main.txt"), "FAILOVER")) for n in ("steady", "replay")]
    rows = [(n, r) for n, r in rows if r or os.path.exists(os.path.join(raw, f"{n}.main.txt"))]
    if not rows:
        return
    env = read(os.path.join(d, "env.txt")) or ""
    desc = wrk_desc(env, "REPLAY_DURATION") or "wrk"
    writes = []
    for line in (read(os.path.join(raw, "writes.txt")) or "").splitlines():
        p = line.split()
        if len(p) == 4:
            writes.append((int(p[0]), p[1], int(p[2]), int(p[3])))
    sc = {n: scores(os.path.join(raw, f"{n}.score.log")) for n in ("steady", "replay", "restart")}
    mx = {n: metrics(os.path.join(raw, f"{n}.metrics.txt")) for n in ("steady", "replay")}

    out.append(f"### Replay of 18 Nov 2025: the feature file replaced every 0.3–0.5 s under load ({desc})")
    out.append("")
    out.append("| run | requests | req/s | client errors | non-2xx | connect/read/write/timeout "
               "| p50 ms | p99 ms | p99.9 ms | max ms | scores at origin | `unknown` | absent or `0` |")
    out.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in rows:
        s = sc.get(n)
        bad = (s.get("-", 0) + s.get("", 0) + s.get("0", 0)) if s is not None else None
        if not r:
            out.append(f"| {n} | no result |" + " |" * 11)
            fails.append(f"{n}: no result from wrk")
            continue
        errs = errors(r)
        if errs:
            fails.append(f"{n}: {errs} client errors")
        out.append(f"| {n} | {r['requests']:,} | {rps(r):,.0f} "
                   f"| {errs:,} | {r['status']:,} | {sockets(r)} "
                   f"| {ms(r['p50_us'])} | {ms(r['p99_us'])} | {ms(r['p999_us'])} | {ms(r['max_us'])} "
                   f"| {sum(s.values()) if s is not None else '—':,} | {s.get('unknown', 0) if s is not None else '—'} "
                   f"| {bad if bad is not None else '—'} |")
    out.append("")

    # the score header, as the origin received it
    bad_total, lines_total = 0, 0
    for n, s in sc.items():
        if s is None:
            continue
        lines_total += sum(s.values())
        valid = sum(c for v, c in s.items() if re.fullmatch(r"[1-9][0-9]?", v))
        other = sum(s.values()) - valid - s.get("unknown", 0)
        bad_total += other
        r = dict(rows).get(n)
        if r and sum(s.values()) < r["requests"]:
            fails.append(f"{n}: the origin logged {sum(s.values())} requests, wrk counted {r['requests']}")
    for n, s in sc.items():
        if s is None:
            continue
        top = ", ".join(f"`{v}` × {c:,}" for v, c in s.most_common(4))
        out.append(f"- origin saw `x-holdfast-bot-score` ({n}): {top}")
    if lines_total == 0:
        fails.append("the origin logged no requests (score header not checked)")
    elif bad_total:
        fails.append(f"{bad_total} requests reached the origin without a score in 1..99 or `unknown`")
    out.append(f"- score header: every request 1–99 or `unknown`, never absent, never `0`: "
               f"{'PASS' if lines_total and not bad_total else 'FAIL'}")

    # the writer, and what the edge made of it
    if writes:
        kinds = collections.Counter(k for _, k, _, _ in writes)
        goods = [v for _, k, v, _ in writes if k == "good"]
        span = (writes[-1][0] - writes[0][0]) / 1000
        out.append(f"- writer: {len(writes)} files in {span:.1f} s — "
                   + ", ".join(f"{kinds[k]} {k}" for k in ("good", "double", "truncated", "empty", "not_utf8", "too_large") if kinds[k])
                   + (f"; good versions {goods[0]}…{goods[-1]}" if goods else ""))
        rm = mx.get("replay")
        if rm is None:
            fails.append("no /metrics after the replay")
        else:
            want = collections.Counter()
            for k, c in kinds.items():
                if k in EXPECT:
                    want[EXPECT[k]] += c
            got = {l["reason"]: int(v) for l, v in series(rm, "holdfast_artifact_rejected_total", artifact=ART)}
            base = {l["reason"]: int(v) for l, v in series(mx.get("steady"), "holdfast_artifact_rejected_total", artifact=ART)}
            reasons = sorted(set(want) | {k for k, v in got.items() if v})
            out.append("")
            out.append("| `holdfast_artifact_rejected_total` reason | count (/metrics) | bad files written |")
            out.append("|---|---:|---:|")
            for reason in reasons:
                g = got.get(reason, 0) - base.get(reason, 0)
                out.append(f"| {reason} | {g} | {want.get(reason, 0)} |")
                if g != want.get(reason, 0):
                    fails.append(f"rejected {reason}: {g} counted, {want.get(reason, 0)} bad files written")
            out.append("")
            ver = one(rm, "holdfast_artifact_version", artifact=ART)
            last_good = goods[-1] if goods else None
            ok = ver is not None and ver == last_good
            if not ok:
                fails.append(f"active version {ver}, last good file written {last_good}")
            loads = {l["result"]: int(v) for l, v in series(rm, "holdfast_artifact_loads_total", artifact=ART)}
            out.append(f"- `holdfast_artifact_version{{artifact=\"{ART}\"}}` = {ver}; last good file written: "
                       f"{last_good}: {'PASS' if ok else 'FAIL'}. Loads since start: "
                       + ", ".join(f"{k} {v}" for k, v in sorted(loads.items()))
                       + f" (applied = {len(goods)} good files + the start)")
            calls = one(rm, "holdfast_module_calls_total", module="bot")
            errs = series(rm, "holdfast_module_errors_total", module="bot")
            errs = ", ".join(f"{l['kind']} {int(v)}" for l, v in sorted(errs, key=lambda x: x[0]["kind"]))
            mo = module(status(os.path.join(raw, "replay.status.json")))
            out.append(f"- bot module since start (warm-up, steady, replay): {calls} calls, errors: {errs} — an error is the "
                       f"`unknown` score (fail_policy open); state at the end: {(mo or {}).get('state', '?')}"
                       + (f"; last error: {mo['last_error']['detail']}" if mo and mo.get("last_error") else ""))

    # restart with a bad file on disk
    rs = read(os.path.join(raw, "restart.txt"))
    if rs is not None:
        lines = rs.split()
        code = lines[-1] if lines else "?"
        bad_v = lines[2] if len(lines) > 2 else "?"
        a = artifact(status(os.path.join(raw, "restart.status.json")))
        act = (a or {}).get("active") or {}
        goods = [v for _, k, v, _ in writes if k == "good"]
        ok = act.get("source") == "lkg" and goods and act.get("version") == goods[-1] and code == "200"
        if not ok:
            fails.append("restart did not come up on the last-known-good copy")
        out.append(f"- restart with a doubled file (version {bad_v}) on disk: HTTP {code}, active version "
                   f"{act.get('version', '?')} from `{act.get('source', '?')}`: {'PASS' if ok else 'FAIL'}")
    out.append("")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    out, fails = [], []
    overhead(d, out, fails)
    replay(d, out, fails)
    env = read(os.path.join(d, "env.txt")) or ""
    la = re.findall(r"load average at (start|end): (\S+).*machine busy at \w+: (\d+)%", env)
    if la:
        out.append("Other work on the machine (1 s sample of all CPUs with nothing of ours running; "
                   "1-min load average): " + ", ".join(f"{w} {b} % busy, load {v}" for w, v, b in la)
                   + ". Other builds on these 2 CPUs make the numbers noisy: trust ratios within a run, "
                   "and the per-repeat spread.")
        out.append("")
    if os.path.exists(os.path.join(d, "raw", "replay.main.txt")):
        out.append("Replay invariants: " + ("all PASS" if not fails else "FAIL — " + "; ".join(fails)))
    write_results(d, out)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
