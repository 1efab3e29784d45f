#!/usr/bin/env bash
# Differential smuggling run: every raw case of bench/smuggling/corpus/ (make_corpus.py
# writes them) against Holdfast, nginx and HAProxy, each in front of one recording origin
# (run.py), on loopback. Prints per target how many cases were rejected, forwarded
# normalised, aborted at the origin (client answered, origin's partial request cut),
# forwarded ambiguous, or hung (with a partial request at the origin), then those cases
# with the reason. The TSV of every verdict goes to
# $BENCH_STATE/smuggling/results.tsv, what the origin received per case to
# $BENCH_STATE/smuggling/origin/.
#
# usage: bench/smuggling/run.sh [--no-build]
# env:   PROXIES=holdfast,nginx,haproxy  TIMEOUT=2 (s a client waits for its answer)
#        ONLY=SUBSTRING (cases whose name contains it)  STRICT=holdfast (exit 1 if that
#        target forwarded any case ambiguously; .ci/run uses it)  PORT_BASE=18400 (origin, holdfast,
#        holdfast admin, nginx, haproxy)  HOLDFAST_BIN (default target/release/holdfast,
#        else target/debug/holdfast)  NO_BUILD=1  SHARED_BENCH  BENCH_STATE
set -euo pipefail

SMUG="$(cd "$(dirname "$0")" && pwd)"
HERE="$(cd "$SMUG/.." && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,16p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=../common.sh
source "$HERE/common.sh"   # log, die, launch, stop_tree, wait_port, nginx_common; clean-up by PID
parse_args "$@"

PROXIES=${PROXIES:-holdfast,nginx,haproxy}
TIMEOUT=${TIMEOUT:-2}; ONLY=${ONLY:-}; STRICT=${STRICT:-}; PORT_BASE=${PORT_BASE:-18400}
ORIGIN=$PORT_BASE
declare -A PORT=([holdfast]=$((PORT_BASE + 1)) [nginx]=$((PORT_BASE + 3)) [haproxy]=$((PORT_BASE + 4)))
ADMIN=$((PORT_BASE + 2))
if [ -z "${HOLDFAST_BIN:-}" ]; then
  HOLDFAST_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast
  [ -x "$HOLDFAST_BIN" ] || [ "$NO_BUILD" != 1 ] || HOLDFAST_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/holdfast
fi
D=$BENCH_STATE/smuggling
rm -rf "$D"; mkdir -p "$D/tmp"
case ",$PROXIES," in *,holdfast,*) build_holdfast "build it, or set HOLDFAST_BIN / NO_BUILD=0" ;; esac
for p in "$ORIGIN" "$ADMIN" "${PORT[@]}"; do port_listening "$p" && die "port $p already in use (set PORT_BASE)"; done
[ -d "$SMUG/corpus" ] || python3 "$SMUG/make_corpus.py"

cat >"$D/holdfast.toml" <<EOF
[edge]
listen = ["127.0.0.1:${PORT[holdfast]}"]
threads = 1
access_log = "off"

[admin]
listen = "127.0.0.1:$ADMIN"

[[pools]]
name = "origin"
servers = ["127.0.0.1:$ORIGIN"]

[[routes]]
name = "all"
match = { path_prefix = "/" }
pool = "origin"
EOF

# nginx as commonly deployed in front of an application: HTTP/1.1 upstream, the client's
# host as Host ($host: from the absolute target, else the Host field), defaults otherwise
# (underscores_in_headers off, ignore_invalid_headers on, request buffering on).
{ nginx_common "$D"; cat <<EOF
http {
$(nginx_http_common "$D")
  server {
    listen 127.0.0.1:${PORT[nginx]};
    location / {
      proxy_pass http://127.0.0.1:$ORIGIN;
      proxy_http_version 1.1;
      proxy_set_header Host \$host;
      proxy_set_header Connection "";
    }
  }
}
EOF
} >"$D/nginx.conf"

cat >"$D/haproxy.cfg" <<EOF
global
  maxconn 1000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-request 10s
frontend fe
  bind 127.0.0.1:${PORT[haproxy]}
  default_backend be
backend be
  server origin 127.0.0.1:$ORIGIN
EOF

targets=()
for p in ${PROXIES//,/ }; do
  case $p in
    holdfast) pid=$(launch "$D/holdfast.pid" "$D/holdfast.log" 0-1 "$HOLDFAST_BIN" run --config "$D/holdfast.toml") ;;
    nginx)    pid=$(launch "$D/nginx.pid.launch" "$D/nginx.log" 0-1 nginx -c "$D/nginx.conf" -e "$D/error.log") ;;
    haproxy)  pid=$(launch "$D/haproxy.pid" "$D/haproxy.log" 0-1 haproxy -f "$D/haproxy.cfg") ;;
    *) die "unknown proxy $p (holdfast, nginx, haproxy)" ;;
  esac
  track "$pid" TERM
  wait_port "${PORT[$p]}" 30 || die "$p did not listen on ${PORT[$p]} (see $D/$p.log)"
  targets+=(--target "$p=${PORT[$p]}")
done

log "running $(ls "$SMUG/corpus" | wc -l) cases against $PROXIES (timeout ${TIMEOUT}s per case)"
python3 "$SMUG/run.py" --origin "$ORIGIN" "${targets[@]}" --timeout "$TIMEOUT" \
  --out "$D/results.tsv" --dump "$D/origin" ${ONLY:+--only "$ONLY"} ${STRICT:+--strict "$STRICT"} \
  || rc=$?
log "every verdict: $D/results.tsv; what the origin received per case: $D/origin/"
exit "${rc:-0}"
