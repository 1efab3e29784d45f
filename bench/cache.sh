#!/usr/bin/env bash
# Cache benchmark, two parts (see bench/README.md, "Cache"):
#   hits   cache-hit throughput and CPU per request: Holdfast with cache on, nginx
#          proxy_cache and Varnish (all storing /1k and /100k for 10 min), nginx without a
#          cache as the baseline column; the shared harness's run.sh (wrk -t1 -cCONNS, CPU-ms
#          per 1,000 requests of each process tree, REPEAT runs, order rotated).
#   zipf   a mixed workload: Zipf-distributed keys (/1k?k=N over ZIPF_KEYS keys, exponent
#          ZIPF_S) with the same memory budget MEMORY for every cache (Holdfast
#          cache.memory, nginx proxy_cache max_size, Varnish -s malloc), each started cold
#          and sent the same ZIPF_REQUESTS requests (at most ZIPF_DURATION s: wrk runs that
#          long even when the script stops earlier); reports hit
#          ratio and origin requests (= misses) per target.
#
# usage: bench/cache.sh [--no-build]
# env:   PARTS=hits,zipf  NO_BUILD=1  HOLDFAST_BIN  DURATION=10  REPEAT=3  WARMUP=2  CONNS=64
#        ZIPF_REQUESTS=200000  ZIPF_DURATION=60 (cap)  ZIPF_KEYS=20000  ZIPF_S=1.0  MEMORY=8  (MiB)
#        ACCESS_LOG=0  WRK_TIMEOUT=2s  PORT_BASE=18490  SHARED_BENCH  BENCH_STATE
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
case " $* " in *" -h "*|*" --help "*) sed -n '2,18p' "$0"; exit 0 ;; esac
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$HERE/common.sh"
parse_args "$@"

PARTS=${PARTS:-hits,zipf}
DURATION=${DURATION:-10}; REPEAT=${REPEAT:-3}; WARMUP=${WARMUP:-2}; CONNS=${CONNS:-64}
ZIPF_REQUESTS=${ZIPF_REQUESTS:-200000}; ZIPF_DURATION=${ZIPF_DURATION:-60}; ZIPF_KEYS=${ZIPF_KEYS:-20000}; ZIPF_S=${ZIPF_S:-1.0}; MEMORY=${MEMORY:-8}
ACCESS_LOG=${ACCESS_LOG:-0}; WRK_TIMEOUT=${WRK_TIMEOUT:-2s}; STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-30}
PORT_BASE=${PORT_BASE:-18490}
HOLDFAST_BIN=${HOLDFAST_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/holdfast}
PATH_=/1k
export ZIPF_KEYS ZIPF_S ZIPF_REQUESTS

O_PORT=$PORT_BASE
declare -A PORT=([nginx]=$((PORT_BASE + 1)) [nginx-cache]=$((PORT_BASE + 2)) [varnish-hit]=$((PORT_BASE + 3))
                 [holdfast-cache]=$((PORT_BASE + 4)))
declare -A ADMIN=([holdfast-cache]=$((PORT_BASE + 5)))

for part in ${PARTS//,/ }; do case "$part" in hits|zipf) ;; *) die "unknown part '$part' in PARTS (hits, zipf)" ;; esac; done
[[ "$DURATION" =~ ^[1-9][0-9]*$ && "$ZIPF_DURATION" =~ ^[1-9][0-9]*$ && "$WARMUP" =~ ^[0-9]+$ \
   && "$REPEAT" =~ ^[1-9][0-9]*$ && "$CONNS" =~ ^[1-9][0-9]*$ && "$MEMORY" =~ ^[1-9][0-9]*$ ]] \
  || die "DURATION, ZIPF_DURATION, WARMUP, REPEAT, CONNS, MEMORY: whole numbers"
command -v varnishd >/dev/null || die "varnishd not installed (the shared setup.sh installs it)"

D="$STATE/cache"
mkdir -p "$D"
build_holdfast "build it or set HOLDFAST_BIN"
setup_ports "$O_PORT" "${PORT[@]}" "${ADMIN[@]}"

start_origin() { # sets ORIGIN_PID; serves /1k and /100k (any query string: the same file)
  start_origin_nginx "$D/origin" "$O_PORT" QUIT origin
  head -c 102400 /dev/zero | tr '\0' 'x' > "$D/origin/html/100k"
}

# MEM: the memory budget in MiB (zipf), or a large one (hits)
nginx_cache_conf() { # DIR PORT MEM
  nginx_conf "$1" <<EOC
  proxy_cache_path $1/cache levels=1:2 keys_zone=bench:10m max_size=${3}m inactive=60m use_temp_path=off;
  upstream origin { server $HOST:$O_PORT; keepalive 256; keepalive_requests 1000000; keepalive_timeout 300s; }
  server {
    listen $HOST:$2 backlog=4096;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_valid 200 10m;
      proxy_cache_lock on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
EOC
}

holdfast_cache_conf() { # DIR PORT ADMIN MEM
  O_PORT=$O_PORT holdfast_conf "$2" "$3" "$1"
  cat <<EOC
# the origin sends no freshness; like proxy_cache_valid / beresp.ttl in the others
response_headers = { set = { "Cache-Control" = "max-age=600" } }
cache = { enabled = true, memory = "${4}MiB", max_object_size = "1MiB" }
EOC
}

start_target() { # NAME MEM; sets PROXY_PID
  local name=$1 mem=$2 d="$D/$1"
  rm -rf "$d"; mkdir -p "$d/tmp" "$d/cache"
  case "$name" in
    nginx)
      nginx_proxy_conf "$d" "${PORT[nginx]}" > "$d/nginx.conf"
      start_nginx "$d" "$TARGET_CPU" QUIT nginx ;;
    nginx-cache)
      nginx_cache_conf "$d" "${PORT[$name]}" "$mem" > "$d/nginx.conf"
      start_nginx "$d" "$TARGET_CPU" QUIT nginx-cache ;;
    varnish-hit)
      cat > "$d/default.vcl" <<EOC
vcl 4.1;
backend default { .host = "$HOST"; .port = "$O_PORT"; }
sub vcl_backend_response { set beresp.ttl = 10m; set beresp.grace = 1m; }
sub vcl_deliver { if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; } }
EOC
      chmod 755 "$d"; chmod 644 "$d/default.vcl"
      spawn "$d" "$TARGET_CPU" TERM varnishd -F -n "$d/work" -a "$HOST:${PORT[$name]}" -T "$HOST:0" \
        -f "$d/default.vcl" -s "malloc,${mem}m" -p thread_pools=1 -p thread_pool_min=100 -p thread_pool_max=1000 ;;
    holdfast-cache)
      holdfast_cache_conf "$d" "${PORT[$name]}" "${ADMIN[$name]}" "$mem" > "$d/holdfast.toml"
      "$HOLDFAST_BIN" check "$d/holdfast.toml" > "$d/check.txt" 2>&1 \
        || { cat "$d/check.txt" >&2; die "holdfast check rejects $d/holdfast.toml"; }
      start_holdfast "$d" ;;
  esac
  wait_200 "$name" "$STARTED_PID" "${PORT[$name]}" "$d/stdout.log"
  PROXY_PID=$STARTED_PID
}

new_results_dir
{
  env_head "proxies on CPU $TARGET_CPU, wrk + origin on CPU $LOADGEN_CPU"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'); varnish: $(varnishd -V 2>&1 | head -1); $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
  echo "PARTS=$PARTS REPEAT=$REPEAT DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS"
  echo "ZIPF_REQUESTS=$ZIPF_REQUESTS ZIPF_DURATION=$ZIPF_DURATION ZIPF_KEYS=$ZIPF_KEYS ZIPF_S=$ZIPF_S MEMORY=${MEMORY}MiB ACCESS_LOG=$ACCESS_LOG"
  machine_load start
} > "$out/env.txt"

part_hits() {
  local o="$out/hits" px_n px_c px_v px_h
  mkdir -p "$o"
  start_origin
  start_target nginx 1024;          px_n=$PROXY_PID
  start_target nginx-cache 1024;    px_c=$PROXY_PID
  start_target varnish-hit 256;     px_v=$PROXY_PID
  start_target holdfast-cache 256;  px_h=$PROXY_PID
  cp "$D/holdfast-cache/holdfast.toml" "$out/raw/hits-holdfast.toml"
  # fill every cache before measuring (the warm-up then only measures hits)
  for n in nginx-cache varnish-hit holdfast-cache; do
    for p in /1k /100k; do curl -s -o /dev/null "http://$HOST:${PORT[$n]}$p"; done
  done
  log "hits: nginx, nginx-cache, varnish-hit, holdfast-cache; /1k and /100k; $REPEAT x ${WARMUP}s + ${DURATION}s each"
  PATH_=/1k,/100k shared_run "$o" "$DURATION" \
    --label nginx --port "${PORT[nginx]}" --pid "$px_n" \
    --label nginx-cache --port "${PORT[nginx-cache]}" --pid "$px_c" \
    --label varnish-hit --port "${PORT[varnish-hit]}" --pid "$px_v" \
    --label holdfast-cache --port "${PORT[holdfast-cache]}" --pid "$px_h"
  scrape "${ADMIN[holdfast-cache]}" "$out/raw/hits-holdfast"
  stop "$px_h"; stop "$px_v"; stop "$px_c" QUIT; stop "$px_n" QUIT; stop "$ORIGIN_PID" QUIT
}

part_zipf() {
  local n px line
  start_origin
  {
    echo
    echo "## Zipf mixed workload: ${ZIPF_REQUESTS} requests from cold over ${ZIPF_KEYS} keys of 1 KiB, s=${ZIPF_S}, ${MEMORY} MiB per cache, wrk -t1 -c$CONNS"
    echo
    echo "| target | requests | hits | misses (origin requests) | other | hit ratio |"
    echo "|---|---:|---:|---:|---:|---:|"
  } > "$out/zipf.md"
  for n in nginx-cache varnish-hit holdfast-cache; do
    start_target "$n" "$MEMORY"; px=$PROXY_PID
    log "zipf: $n ${ZIPF_DURATION}s"
    PATH_=/1k wrk_lua zipf.lua "$ZIPF_DURATION" "$CONNS" "${PORT[$n]}" "$out/raw/zipf-$n.txt" || true
    [ "$n" = holdfast-cache ] && scrape "${ADMIN[$n]}" "$out/raw/zipf-holdfast"
    stop "$px" "$([ "$n" = nginx-cache ] && echo QUIT || echo TERM)"
    line=$(grep '^zipf hits' "$out/raw/zipf-$n.txt" || echo "zipf hits 0 misses 0 other 0")
    awk -v n="$n" '{ h = $3; m = $5; o = $7; t = h + m + o;
      printf "| %s | %d | %d | %d | %d | %.1f%% |\n", n, t, h, m, o, (h + m > 0 ? 100 * h / (h + m) : 0) }' \
      <<< "$line" >> "$out/zipf.md"
  done
  stop "$ORIGIN_PID" QUIT
}

for part in ${PARTS//,/ }; do
  case "$part" in
    hits) part_hits ;;
    zipf) part_zipf ;;
  esac
done
machine_load end >> "$out/env.txt"
{
  [ -f "$out/hits/results.md" ] && { echo "## Cache hits (baseline: nginx without a cache)"; echo; cat "$out/hits/results.md"; }
  [ -f "$out/zipf.md" ] && cat "$out/zipf.md"
} > "$out/results.md"
print_results "$out" "results.md, env.txt, hits/, zipf.md, raw/"
