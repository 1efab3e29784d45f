#!/usr/bin/env python3
"""results.md and the verdict of a bench/soak.sh run: `soak_report.py DIR DURATION`.

Reads DIR/samples.tsv (RSS, fds, threads, connections every SAMPLE s), the clients' outputs
(wrk.txt, h2load.txt, ws.txt, tls.tsv), reloads.tsv, artifacts.tsv, flaps.tsv and
holdfast.log; writes DIR/results.md; exits 1 when the verdict fails. The windows compared
are 1/6 to 1/3 of the run (minutes 10-20 of an hour) and its last sixth (minutes 50-60).
"""

import os
import re
import sys
from pathlib import Path

# SOAK_RSS_TOLERANCE / SOAK_FD_SLACK widen them for short runs (a minute cannot tell the
# allocator and the origin pools warming up from a leak; the hour can).
RSS_TOLERANCE = float(os.environ.get("SOAK_RSS_TOLERANCE", "0.10"))
FD_TOLERANCE = 0.10
FD_SLACK = int(os.environ.get("SOAK_FD_SLACK", "8"))  # a few connections more or less is not a leak


def read_tsv(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()]


def num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def kv(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}


def main() -> int:
    out, duration = Path(sys.argv[1]), int(sys.argv[2])
    loads = set(os.environ.get("LOADS", "wrk,h2,tls,ws").split(","))
    rows = read_tsv(out / "samples.tsv")
    header, samples = (rows[0], rows[1:]) if rows else ([], [])
    col = {name: i for i, name in enumerate(header)}

    def series(name: str, lo: float, hi: float) -> list[float]:
        vals = []
        for r in samples:
            t, v = num(r[0]), num(r[col[name]]) if name in col and len(r) > col[name] else None
            if t is not None and v is not None and lo <= t <= hi:
                vals.append(v)
        return vals

    base_lo, base_hi = duration / 6, duration / 3
    last_lo, last_hi = duration * 5 / 6, duration
    scaled = duration != 3600
    checks: list[tuple[str, bool, str]] = []

    died = (out / "died.txt").read_text().strip() if (out / "died.txt").exists() else ""
    checks.append(("holdfast ran to the end", not died, died or "yes"))

    rss_b, rss_l = mean(series("rss_kib", base_lo, base_hi)), mean(series("rss_kib", last_lo, last_hi))
    if rss_b and rss_l is not None:
        change = (rss_l - rss_b) / rss_b
        checks.append(("RSS flat", change <= RSS_TOLERANCE,
                       f"{rss_b / 1024:.1f} MiB -> {rss_l / 1024:.1f} MiB ({change:+.1%}, limit +{RSS_TOLERANCE:.0%})"))
    else:
        checks.append(("RSS flat", False, "too few samples in the windows"))
    fd_b, fd_l = mean(series("fds", base_lo, base_hi)), mean(series("fds", last_lo, last_hi))
    if fd_b is not None and fd_l is not None:
        limit = fd_b + max(fd_b * FD_TOLERANCE, FD_SLACK)
        checks.append(("open fds flat", fd_l <= limit,
                       f"{fd_b:.1f} -> {fd_l:.1f} (limit {limit:.1f}: +10 % or +{FD_SLACK})"))
    else:
        checks.append(("open fds flat", False, "too few samples in the windows"))

    wrk_text = (out / "wrk.txt").read_text() if (out / "wrk.txt").exists() else ""
    wrk_line = next((ln for ln in wrk_text.splitlines() if ln.startswith("SOAK requests")), "")
    wrk = kv(wrk_line)
    sample = next((ln for ln in wrk_text.splitlines() if ln.startswith("SOAK first edge")), "")
    h2_text = (out / "h2load.txt").read_text() if (out / "h2load.txt").exists() else ""
    h2m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", h2_text)
    h2r = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", h2_text)
    h2_5xx = int(h2m.group(4)) if h2m else -1
    tls = read_tsv(out / "tls.tsv")
    tls_5xx = sum(1 for r in tls if len(r) > 2 and r[2].startswith("5"))
    tls_fail = sum(1 for r in tls if len(r) > 2 and r[2] in ("000", ""))
    edge5xx = wrk.get("edge5xx", -1)
    ok_5xx = ((bool(wrk_line) and edge5xx == 0) or "wrk" not in loads) \
        and (h2_5xx == 0 or "h2" not in loads) and tls_5xx == 0
    checks.append(("no edge-made 5xx", ok_5xx,
                   f"wrk {edge5xx if wrk_line else 'no result'} (origin-made 503s on /oops: "
                   f"{wrk.get('origin5xx', 0)}), h2load {h2_5xx if h2m else 'no result'}, TLS curl {tls_5xx}"))

    log = (out / "holdfast.log").read_text(errors="replace") if (out / "holdfast.log").exists() else ""
    panics = [ln for ln in log.splitlines() if "panic" in ln.lower()]
    checks.append(("no panics in the log", not panics, f"{len(panics)} lines" + (f": {panics[0][:160]}" if panics else "")))

    reloads = read_tsv(out / "reloads.tsv")
    bad_reloads = [r for r in reloads if len(r) < 3 or r[2] != "200"]
    checks.append(("every reload applied", not bad_reloads,
                   f"{len(reloads) - len(bad_reloads)} of {len(reloads)}" + (f"; first refused: {bad_reloads[0]}" if bad_reloads else "")))

    ws_text = (out / "ws.txt").read_text() if (out / "ws.txt").exists() else ""
    ws = kv(next((ln for ln in ws_text.splitlines() if ln.startswith("WS ")), ""))
    checks.append(("WebSocket sessions without failure", "ws" not in loads or bool(ws) and ws.get("failures", 1) == 0 and ws.get("sessions", 0) > 0,
                   f"{ws.get('sessions', 0)} sessions, {ws.get('messages', 0)} echoes, {ws.get('failures', '?')} failures"
                   + ("; " + ws_text.splitlines()[1].strip() if ws.get("failures") and len(ws_text.splitlines()) > 1 else "")))
    checks.append(("new TLS connections answered", "tls" not in loads or bool(tls) and tls_fail == 0,
                   f"{len(tls) - tls_fail} of {len(tls)} (curl, a new handshake each)"))

    arts = read_tsv(out / "artifacts.tsv")
    flaps = read_tsv(out / "flaps.tsv")
    downs = sum(1 for r in flaps if len(r) > 1 and r[1] == "down")

    md = ["## Soak", ""]
    if scaled:
        md.append(f"{duration} s run: the windows are scaled from an hour's minutes 10-20 and 50-60 to "
                  f"{base_lo:.0f}-{base_hi:.0f} s and {last_lo:.0f}-{last_hi:.0f} s.")
    else:
        md.append("One hour: minutes 10-20 against minutes 50-60.")
    md += ["", "| check | verdict | figures |", "|---|---|---|"]
    md += [f"| {name} | {'PASS' if ok else 'FAIL'} | {detail} |" for name, ok, detail in checks]
    md += ["", f"Load: wrk {wrk.get('requests', 0)} requests (2xx {wrk.get('s2xx', 0)}, 429 {wrk.get('s429', 0)}, "
           f"other 4xx {wrk.get('s4xx', 0)}; socket errors: connect {wrk.get('connect', 0)}, read {wrk.get('read', 0)}, "
           f"write {wrk.get('write', 0)}, timeout {wrk.get('timeout', 0)}; p99 {wrk.get('p99_us', 0) / 1000:.1f} ms, "
           f"max {wrk.get('max_us', 0) / 1000:.1f} ms); "
           f"h2load (TLS, h2) {h2r.group(1) + ' requests, ' + h2r.group(4) + ' succeeded, ' + h2r.group(6) + ' errored' if h2r else 'no result'}; "
           f"{len(tls)} new TLS connections; WebSocket {ws.get('sessions', 0)} sessions. "
           f"Changes: {len(reloads)} reloads, {len(arts)} artifact updates, {downs} origin flaps."]
    if sample:
        md += ["", "First edge-made 5xx: `" + sample[len("SOAK first edge 5xx: "):] + "`"]
    md += ["", "Samples (every row of samples.tsv up to 20, evenly spaced; tasks: Holdfast exposes no "
           "task count, threads are the OS threads):", "",
           "| t s | RSS MiB | peak RSS MiB | fds | threads | connections active | connections total | TCP established | cache objects |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    step = max(1, (len(samples) + 19) // 20)
    shown = samples[::step]
    if samples and shown[-1] is not samples[-1]:
        shown.append(samples[-1])
    for r in shown:
        r = r + ["-"] * (9 - len(r))
        rss = f"{float(r[1]) / 1024:.1f}" if num(r[1]) is not None else r[1]
        hwm = f"{float(r[2]) / 1024:.1f}" if num(r[2]) is not None else r[2]
        md.append(f"| {r[0]} | {rss} | {hwm} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} | {r[8]} |")
    failed = [name for name, ok, _ in checks if not ok]
    md += ["", "VERDICT: " + ("PASS" if not failed else "FAIL (" + ", ".join(failed) + ")")]
    (out / "results.md").write_text("\n".join(md) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
