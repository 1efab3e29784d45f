#!/usr/bin/env python3
"""Tables for bench/failover.sh: reads DIR/raw/<proxy>-<phase>-<rep>.{main,probe}.txt (wrk
output with the FAILOVER line of failover.lua), writes DIR/runs.tsv and DIR/results.md and
prints the latter.

usage: failover_report.py DIR [--baseline nginx]
"""
import argparse
import os
import re
import statistics

from report_common import ERR_KEYS, errors, metrics, ms, one, read, rps, sockets, summary_line, wrk_desc, write_results


def ratio(x, base):
    if x is None or base is None:
        return "—"
    if base == 0:
        return "= (0)" if x == 0 else "— (nginx 0)"
    return f"{x / base:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--baseline", default="nginx")
    args = ap.parse_args()
    raw = os.path.join(args.dir, "raw")

    runs = {}   # (proxy, phase) -> list of (rep, main, probe, tag)
    order_p, order_ph = [], []
    for fn in sorted(os.listdir(raw)):
        m = re.match(r"^([a-z0-9_]+)-([a-z]+)-(\d+)\.main\.txt$", fn)
        if not m:
            continue
        proxy, phase, rep = m.group(1), m.group(2), int(m.group(3))
        tag = f"{proxy}-{phase}-{rep}"
        main_r = summary_line(os.path.join(raw, fn), "FAILOVER")
        probe_r = summary_line(os.path.join(raw, tag + ".probe.txt"), "FAILOVER")
        runs.setdefault((proxy, phase), []).append((rep, main_r, probe_r, tag))
        if proxy not in order_p:
            order_p.append(proxy)
        if phase not in order_ph:
            order_ph.append(phase)
    # the order failover.sh ran them in, if env.txt says
    env = read(os.path.join(args.dir, "env.txt")) or ""
    m = re.search(r"PROXIES=(\S+)", env)
    if m:
        order_p = [p for p in m.group(1).split(",") if p in order_p] + [p for p in order_p if p not in m.group(1).split(",")]
    m = re.search(r"PHASES=(\S+)", env)
    if m:
        order_ph = [p for p in m.group(1).split(",") if p in order_ph] + [p for p in order_ph if p not in m.group(1).split(",")]

    cols = ["proxy", "phase", "rep", "requests", "rps", "non2xx", "connect", "read", "write", "timeout",
            "errors", "p50_ms", "p99_ms", "p999_ms", "max_ms",
            "probe_requests", "probe_errors", "probe_p99_ms", "probe_p999_ms", "probe_max_ms"]
    with open(os.path.join(args.dir, "runs.tsv"), "w") as f:
        f.write("\t".join(cols) + "\n")
        for (proxy, phase), lst in runs.items():
            for rep, r, p, _ in lst:
                if not r:
                    f.write(f"{proxy}\t{phase}\t{rep}" + "\t" * (len(cols) - 3) + "\n")
                    continue
                row = [proxy, phase, rep, r["requests"], round(rps(r)),
                       r["status"], r["connect"], r["read"], r["write"], r["timeout"], errors(r),
                       ms(r["p50_us"]), ms(r["p99_us"]), ms(r["p999_us"]), ms(r["max_us"])]
                row += ([p["requests"], errors(p), ms(p["p99_us"]), ms(p["p999_us"]), ms(p["max_us"])]
                        if p else [""] * 5)
                f.write("\t".join(str(x) for x in row) + "\n")

    def agg(proxy, phase):
        lst = [(rep, r, p, tag) for rep, r, p, tag in runs.get((proxy, phase), []) if r]
        if not lst:
            return None
        a = {"n": len(lst)}
        a["requests"] = sum(r["requests"] for _, r, _, _ in lst)
        a["rps"] = statistics.median(rps(r) for _, r, _, _ in lst)
        for k in ERR_KEYS:
            a[k] = sum(r[k] + (p[k] if p else 0) for _, r, p, _ in lst)
        a["errors"] = sum(a[k] for k in ERR_KEYS)
        for k in ("p50_us", "p99_us", "p999_us"):
            a[k] = statistics.median(r[k] for _, r, _, _ in lst)
        probes = [p for _, _, p, _ in lst if p]
        a["probe_p99_us"] = statistics.median(p["p99_us"] for p in probes) if probes else None
        a["probe_p999_us"] = statistics.median(p["p999_us"] for p in probes) if probes else None
        a["probe_requests"] = sum(p["requests"] for p in probes)
        a["max_us"] = max([r["max_us"] for _, r, _, _ in lst] + [p["max_us"] for p in probes])
        if proxy == "holdfast":
            s = f = b = 0
            have = False
            for _, _, _, tag in lst:
                mt = metrics(os.path.join(raw, tag + ".metrics.txt"))
                x = one(mt, "holdfast_upstream_retries_total", outcome="succeeded")
                y = one(mt, "holdfast_upstream_retries_total", outcome="failed")
                z = one(mt, "holdfast_upstream_retry_budget_exhausted_total")
                if x is not None or y is not None:
                    have = True
                s += x or 0
                f += y or 0
                b += z or 0
            a["retries"] = (s, f, b) if have else None
        return a

    out = []
    reps = max((len(v) for v in runs.values()), default=0)
    out.append(f"Failover: {', '.join(order_p)} in front of origins A + B; "
               f"{reps} repeat(s) per row" + (" (errors and requests summed, latencies: median of the runs, max: max)" if reps > 1 else "") + ".")
    desc = wrk_desc(env, "DURATION")
    if desc:
        out.append(desc + ".")
    out.append("")
    titles = {
        "switch": "### switch: A is killed (SIGKILL) half-way through the run",
        "dead": "### dead: A killed before the run (after warm-up and SETTLE s), dead throughout",
        "base": "### base: A and B both up (no kill)",
    }
    for phase in order_ph:
        out.append(titles.get(phase, f"### {phase}"))
        out.append("")
        rows = {p: agg(p, phase) for p in order_p}
        base = rows.get(args.baseline)
        if phase == "switch":
            out.append("| proxy | requests | req/s | client errors | non-2xx | connect/read/write/timeout | errors vs nginx "
                       "| p99 ms switch window | p99.9 ms switch window | p99 switch vs nginx | p99 ms whole run | max ms |")
            out.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        else:
            out.append("| proxy | requests | req/s | client errors | non-2xx | connect/read/write/timeout | errors vs nginx "
                       "| p50 ms | p99 ms | p99.9 ms | p99 vs nginx | max ms |")
            out.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for p in order_p:
            a = rows[p]
            if not a:
                out.append(f"| {p} | no result |" + " |" * 10)
                continue
            sock = sockets(a)
            head = f"| {p} | {a['requests']:,} | {a['rps']:,.0f} | {a['errors']:,} | {a['status']:,} | {sock} | {ratio(a['errors'], base and base['errors'])} "
            if phase == "switch":
                out.append(head + f"| {ms(a['probe_p99_us'])} | {ms(a['probe_p999_us'])} "
                           f"| {ratio(a['probe_p99_us'], base and base['probe_p99_us'])} | {ms(a['p99_us'])} | {ms(a['max_us'])} |")
            else:
                out.append(head + f"| {ms(a['p50_us'])} | {ms(a['p99_us'])} | {ms(a['p999_us'])} "
                           f"| {ratio(a['p99_us'], base and base['p99_us'])} | {ms(a['max_us'])} |")
        hf = rows.get("holdfast")
        if hf and hf.get("retries"):
            s, f, b = hf["retries"]
            out.append("")
            out.append(f"holdfast retries: {s} succeeded, {f} failed, {b} refused by the budget")
        out.append("")
    out.append("client errors = wrk's non-2xx responses + socket errors (connect, read, write, timeout), "
               "main run + probe. The switch window is a second wrk (PROBE_CONNS connections) running from 1 s "
               "before to 2 s after the kill; whole run = the main wrk's p99 over the full run.")
    write_results(args.dir, out)


if __name__ == "__main__":
    main()
