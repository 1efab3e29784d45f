"""Shared code of the report scripts of bench/failover.sh, bot.sh and shield.sh
(failover_report.py, bot_report.py, shield_report.py): reading a result folder's files (wrk
output with the one summary line of a bench/*.lua script, Prometheus /metrics, /status JSON,
the shared harness's results.tsv / runs.tsv), number formatting, the overhead table's
columns, and writing results.md.
"""
import csv
import json
import os
import re
import statistics

# the wrk error counts that are client errors (status: non-2xx responses)
ERR_KEYS = ("status", "connect", "read", "write", "timeout")


# ---- files ---------------------------------------------------------------------------------
def read(path):
    """The text of a file, or None if there is none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def summary_line(path, tag):
    """The `TAG k=v ...` line a bench/*.lua script writes at the end of a wrk output
    (FAILOVER: failover.lua, SHIELD: shield.lua) as a dict of ints, or None."""
    for line in (read(path) or "").splitlines():
        if line.startswith(tag + " "):
            return {k: int(v) for k, v in (kv.split("=", 1) for kv in line.split()[1:])}
    return None


def metrics(path):
    """{(name, frozenset(labels)): value} of a Prometheus text file, or None."""
    text = read(path)
    if text is None:
        return None
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)$", line.strip())
        if not m or line.startswith("#"):
            continue
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def series(ms, name, **want):
    """[(labels dict, value)] of the series of `name` whose labels include `want`."""
    res = []
    for (n, labels), v in (ms or {}).items():
        d = dict(labels)
        if n == name and all(d.get(k) == x for k, x in want.items()):
            res.append((d, v))
    return res


def one(ms, name, **want):
    """The sum of those series as an int, or None when there is none."""
    s = series(ms, name, **want)
    return int(sum(v for _, v in s)) if s else None


def status(path):
    """The /status JSON of a Holdfast, or None."""
    text = read(path)
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError:
        return None


def load_overhead(d):
    """The shared harness's results of the overhead part, DIR/overhead/: ({label: row of
    results.tsv}, [rows of runs.tsv]), or (None, None) when it did not run."""
    o = os.path.join(d, "overhead")
    try:
        with open(os.path.join(o, "results.tsv")) as f:
            res = {r["label"]: r for r in csv.DictReader(f, delimiter="\t")}
        with open(os.path.join(o, "runs.tsv")) as f:
            runs = list(csv.DictReader(f, delimiter="\t"))
    except FileNotFoundError:
        return None, None
    return res, runs


# ---- numbers -------------------------------------------------------------------------------
def ms(us):
    """Microseconds as milliseconds, 2 decimals; — for None."""
    return "—" if us is None else f"{us / 1000:.2f}"


def fnum(x, p=2):
    """x with p decimals; n/a for None and NaN."""
    return "n/a" if x is None or x != x else f"{x:.{p}f}"


def errors(r):
    """Client errors of a wrk summary (0 for None)."""
    return sum(r[k] for k in ERR_KEYS) if r else 0


def rps(r):
    """Requests per second of a wrk summary."""
    return r["requests"] * 1e6 / max(r["duration_us"], 1)


def sockets(r):
    """connect/read/write/timeout of a wrk summary."""
    return f"{r['connect']}/{r['read']}/{r['write']}/{r['timeout']}"


def wrk_desc(env, duration_key):
    """`wrk -t1 -cN, S s per run, <rate>` from env.txt (DURATION_KEY=S ... CONNS=N RATE=R),
    or None."""
    m = re.search(duration_key + r"=(\d+).*CONNS=(\d+) RATE=(\d+)", env)
    if not m:
        return None
    rate = "as fast as possible" if m.group(3) == "0" else f"paced at ~{m.group(3)} req/s"
    return f"wrk -t1 -c{m.group(2)}, {m.group(1)} s per run, {rate}"


# ---- the overhead table (the shared harness's results.tsv) ----------------------------------
def overhead_desc(env, duration_key):
    """How the overhead runs were made, from env.txt (REPEAT=.. DURATION_KEY=.. WARMUP=..
    CONNS=..)."""
    m = re.search(r"REPEAT=(\d+) " + duration_key + r"=(\d+).*WARMUP=(\d+) CONNS=(\d+)", env)
    return (f"wrk -t1 -c{m.group(4)}, {m.group(2)} s × {m.group(1)} (order rotated every repeat), "
            f"warm-up {m.group(3)} s, medians" if m else "medians")


# the columns of a results.tsv row, after the target's own (overhead_cells)
OVERHEAD_HEAD = ("req/s | p50 ms | p99 ms | CPU-ms / 1k req | CPU/req vs nginx | target CPU % "
                 "| loadgen CPU0 % | rps spread % | errors")
OVERHEAD_ALIGN = "---:|" * 9


def num(r, k):
    """Column k of a results.tsv row as a float (NaN when empty)."""
    return float(r[k]) if r.get(k) not in (None, "", "nan") else float("nan")


def overhead_cells(r):
    """The OVERHEAD_HEAD cells of a results.tsv row."""
    return (f"{num(r, 'rps'):,.0f} | {fnum(num(r, 'p50_ms'))} | {fnum(num(r, 'p99_ms'))} "
            f"| {fnum(num(r, 'cpu_ms_per_1k'), 1)} | {fnum(num(r, 'cpu_per_req_vs_base'))} "
            f"| {fnum(num(r, 'target_cpu_pct'), 0)} | {fnum(num(r, 'loadgen_cpu_pct'), 0)} "
            f"| {fnum(num(r, 'rps_spread_pct'), 1)} | {r['errors']}")


def versus(res, runs, label, base):
    """LABEL over BASE: (CPU per request, median of the per-repeat ratios; those ratios in
    repeat order; CPU per request, ratio of the medians; p99; req/s), or None without BASE's
    CPU."""
    x, b = res.get(label), res.get(base)
    if not (x and b and num(b, "cpu_ms_per_1k") > 0):
        return None
    cpu = num(x, "cpu_ms_per_1k") / num(b, "cpu_ms_per_1k")
    p99 = num(x, "p99_ms") / num(b, "p99_ms") if num(b, "p99_ms") > 0 else float("nan")
    rate = num(x, "rps") / num(b, "rps") if num(b, "rps") > 0 else float("nan")
    per = {}
    for r in runs:
        per.setdefault(r["rep"], {})[r["label"]] = r
    reps = [float(v[label]["cpu_ms_per_1k"]) / float(v[base]["cpu_ms_per_1k"])
            for _, v in sorted(per.items(), key=lambda kv: int(kv[0]))
            if label in v and base in v and float(v[base]["cpu_ms_per_1k"]) > 0]
    return (statistics.median(reps) if reps else cpu), reps, cpu, p99, rate


# ---- output --------------------------------------------------------------------------------
def write_results(d, out):
    """Write the lines OUT as DIR/results.md and print them."""
    text = "\n".join(out) + "\n"
    with open(os.path.join(d, "results.md"), "w") as f:
        f.write(text)
    print(text, end="")
