#!/usr/bin/env bash
# Binary upgrades under load: client errors and latency while the edge is replaced by its
# own binary N times (default 20), Holdfast (`holdfast upgrade`: sockets handed over with
# SCM_RIGHTS, old process drains) against nginx's binary upgrade (USR2 to the master, then
# QUIT to the old master once the new one runs), in the same run, same origin, same wrk load.
#
#   bench/upgrade.sh [--no-build]      NO_BUILD=1 HOLDFAST_BIN=… to use another binary
#   UPGRADES=20 SECONDS_=40 CONNS=50 THREADS=2 to change the load
#
# Prints one table: wrk's socket errors (connect, read, write, timeout), non-2xx answers,
# p99 and max latency, requests, and how many upgrades completed. Needs nginx and wrk
# (Debian: nginx-light or nginx, wrk). Everything runs on 127.0.0.1; every process started
# here is stopped by pid at exit.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case "${1:-}" in
  --help|-h) sed -n '2,14p' "$0"; exit 0 ;;
  --no-build) NO_BUILD=1 ;;
  "") ;;
  *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac
UPGRADES=${UPGRADES:-20}; DUR=${SECONDS_:-40}; CONNS=${CONNS:-50}; THREADS=${THREADS:-2}
BIN=${HOLDFAST_BIN:-$ROOT/target/release/holdfast}
for t in nginx wrk curl; do command -v "$t" >/dev/null || { echo "$t is missing (apt-get install nginx wrk curl)" >&2; exit 1; }; done
if [ "${NO_BUILD:-0}" != 1 ]; then (cd "$ROOT" && cargo build --release --locked -p holdfast); fi
[ -x "$BIN" ] || { echo "no binary at $BIN (build it, or set HOLDFAST_BIN)" >&2; exit 1; }

D=$(mktemp -d /tmp/bench-upgrade.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
            for f in "$D"/edge/nginx.pid "$D"/edge/nginx.pid.oldbin "$D"/origin/nginx.pid "$D"/holdfast.pid; do
              [ -s "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
O=$(free_port); N=$(free_port); H=$(free_port); A=$(free_port)
# nginx re-executes its argv[0] on USR2: start it by its absolute path.
NGINX=$(command -v nginx)

# ---- the origin: nginx answering a small 200 ----
mkdir -p "$D/origin" "$D/edge"
cat > "$D/origin/nginx.conf" <<CONF
worker_processes 1; pid $D/origin/nginx.pid; error_log $D/origin/error.log; daemon on;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:$O; location / { return 200 "ok\n"; } } }
CONF
"$NGINX" -c "$D/origin/nginx.conf" -p "$D/origin"

# ---- nginx as the edge (its binary upgrade: USR2, then QUIT the old master) ----
cat > "$D/edge/nginx.conf" <<CONF
worker_processes 2; pid $D/edge/nginx.pid; error_log $D/edge/error.log; daemon on;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  upstream o { server 127.0.0.1:$O; keepalive 64; }
  server { listen 127.0.0.1:$N; location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
"$NGINX" -c "$D/edge/nginx.conf" -p "$D/edge"
wait_http "http://127.0.0.1:$N/"

# A process that exited but was not reaped (a zombie: PID 1 of a container may never reap the
# old master, which nginx's new master re-parents to) counts as gone.
gone() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0; [[ -z "$st" || "$st" == Z* ]]; }
nginx_upgrade() {
  local old new=""; old=$(cat "$D/edge/nginx.pid")
  kill -USR2 "$old"
  for _ in $(seq 200); do
    new=$(cat "$D/edge/nginx.pid" 2>/dev/null || true)
    [ -s "$D/edge/nginx.pid.oldbin" ] && [ -n "$new" ] && [ "$new" != "$old" ] && break
    sleep 0.05
  done
  [ -n "$new" ] && [ "$new" != "$old" ] || { echo "nginx: no new master (see $D/edge/error.log)" >&2; return 1; }
  kill -QUIT "$old"
  for _ in $(seq 400); do gone "$old" && return 0; sleep 0.05; done
  echo "nginx: old master $old still running" >&2; return 1
}

# ---- Holdfast ----
cat > "$D/holdfast.toml" <<CONF
[edge]
listen = ["127.0.0.1:$H"]
threads = 2
access_log = "off"
drain_timeout = "10s"
[admin]
listen = "127.0.0.1:$A"
[[pools]]
name = "o"
servers = ["127.0.0.1:$O"]
[[routes]]
name = "all"
match = { path_prefix = "/" }
pools = ["o"]
CONF
HOLDFAST_LOG=warn "$BIN" run --config "$D/holdfast.toml" 2>"$D/holdfast.log" &
echo $! > "$D/holdfast.pid"; PIDS+=("$!")
wait_http "http://127.0.0.1:$H/"

holdfast_upgrade() {
  local out; out=$("$BIN" upgrade --config "$D/holdfast.toml") || { echo "holdfast upgrade failed" >&2; return 1; }
  # The new process's pid, for the clean-up.
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])["new_pid"])' "$out" > "$D/holdfast.pid"
}

# ---- one run: wrk for DUR seconds, UPGRADES upgrades spread over it ----
run() { # NAME PORT UPGRADE_FN
  local name=$1 port=$2 fn=$3 done_=0 gap
  gap=$(python3 -c "print(($DUR - 4) / $UPGRADES)")
  wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$port/" > "$D/$name.wrk" 2>&1 &
  local wrk=$!
  sleep 2
  for _ in $(seq "$UPGRADES"); do
    "$fn" && done_=$((done_ + 1))
    sleep "$gap"
  done
  wait "$wrk"
  echo "$done_" > "$D/$name.upgrades"
}

echo "load before: $(uptime)"
run holdfast "$H" holdfast_upgrade
run nginx "$N" nginx_upgrade
echo "load after:  $(uptime)"

python3 - "$D" "$UPGRADES" <<'PY'
import re, sys
d, want = sys.argv[1], sys.argv[2]
def ms(v):
    n, u = float(re.match(r"[\d.]+", v).group()), re.search(r"[a-z]+$", v).group()
    return n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[u]
print(f"{'edge':10} {'upgrades':>9} {'requests':>10} {'sock.err':>9} {'non-2xx':>8} {'p99 ms':>8} {'max ms':>8}")
for name in ("holdfast", "nginx"):
    t = open(f"{d}/{name}.wrk").read()
    req = int(re.search(r"(\d+) requests in", t).group(1))
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    errs = sum(map(int, e.groups())) if e else 0
    detail = "(c/r/w/t " + "/".join(e.groups()) + ")" if e else ""
    n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    p99 = ms(re.search(r"99%\s+(\S+)", t).group(1))
    mx = ms(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", t).group(1))
    ups = open(f"{d}/{name}.upgrades").read().strip()
    print(f"{name:10} {ups+'/'+want:>9} {req:>10} {errs:>9} {int(n2.group(1)) if n2 else 0:>8} {p99:>8.2f} {mx:>8.2f} {detail}")
PY
