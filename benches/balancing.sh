#!/usr/bin/env bash
# What each `balancing` strategy costs, in CPU instructions per request.
#
#   bash benches/balancing.sh            # 2000 and 6000 requests per strategy
#   SMALL=1000 LARGE=4000 bash benches/balancing.sh
#
# Two nginx upstreams answer "hello\n" with keep-alive. ferroxy (release
# build) runs under `valgrind --tool=callgrind` in front of them, once per
# strategy and run length; one keep-alive client sends sequential GETs and
# then ferroxy is stopped with SIGTERM, so callgrind writes its total. The
# cost per request is the difference between a long and a short run divided
# by the difference in requests: start-up and shutdown cancel out.
# Instructions, not seconds: the count is repeatable whatever else the
# machine is doing. Loopback only; every process it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

SMALL=${SMALL:-2000}
LARGE=${LARGE:-6000}
PORT_BASE=${PORT_BASE:-18280}
UP_A=$PORT_BASE
UP_B=$((PORT_BASE + 1))
PROXY_PORT=$((PORT_BASE + 2))

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx && [ ! -x /usr/sbin/nginx ] || ! need valgrind; then
    echo "installing nginx and valgrind (Debian packages)..." >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq nginx valgrind >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# FERROXY=path/to/another/build compares an older binary (one that knows no
# `balancing` field: STRATEGIES=default omits it).
if [ -z "${FERROXY:-}" ]; then
    cargo build --release --quiet
    FERROXY=target/release/ferroxy
fi
STRATEGIES=${STRATEGIES:-round_robin least_conn ip_hash}

TMP=$(mktemp -d /tmp/ferroxy-balancing.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

for port in $UP_A $UP_B; do
    cat >"$TMP/up$port.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $TMP/up$port.pid; error_log $TMP/up$port.err warn;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path $TMP/b$port; proxy_temp_path $TMP/p$port;
  fastcgi_temp_path $TMP/f$port; uwsgi_temp_path $TMP/u$port; scgi_temp_path $TMP/s$port;
  server { listen 127.0.0.1:$port; location / { return 200 "hello\n"; } }
}
EOF
    "$NGINX" -c "$TMP/up$port.conf" & PIDS+=($!)
done

# One keep-alive connection, N sequential requests, each answer read whole.
cat >"$TMP/client.py" <<'EOF'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/")
        c.getresponse().read()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the proxy never answered")
for _ in range(n - 1):
    c.request("GET", "/")
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"status {r.status}")
EOF

# Instructions for one run of `n` requests with strategy `$1`.
measure() {
    local strategy=$1 n=$2 out="$TMP/cg.$1.$2"
    cat >"$TMP/ferroxy.json" <<EOF
{ "listen": "127.0.0.1:$PROXY_PORT",
  "upstreams": [{ "host": "127.0.0.1", "port": $UP_A }, { "host": "127.0.0.1", "port": $UP_B }],
  $( [ "$strategy" = default ] || echo "\"balancing\": \"$strategy\"," )
  "timeouts": { "connect_ms": 1000, "read_ms": 15000, "write_ms": 15000, "total_ms": 30000 },
  "limits": { "max_client_conns": 1000, "max_conns_per_upstream": 100 },
  "logging": { "level": "warn" } }
EOF
    valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no \
        "$FERROXY" --config "$TMP/ferroxy.json" 2>"$TMP/vg.log" &
    local pid=$!
    python3 "$TMP/client.py" "$PROXY_PORT" "$n"
    kill -TERM "$pid"
    wait "$pid" || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

printf '\nbalancing cost, %s, ferroxy under callgrind, %s vs %s sequential keep-alive GETs\n\n' \
    "$(date -u +%Y-%m-%d)" "$SMALL" "$LARGE"
printf '| %-12s | %14s | %10s |\n' "balancing" "Ir per request" "vs default"
printf '|%s|%s|%s|\n' "--------------" "----------------" "------------"
base=""
for strategy in $STRATEGIES; do
    small=$(measure "$strategy" "$SMALL")
    large=$(measure "$strategy" "$LARGE")
    per=$(awk -v a="$small" -v b="$large" -v n="$SMALL" -v m="$LARGE" 'BEGIN {printf "%.0f", (b - a) / (m - n)}')
    [ -z "$base" ] && base=$per
    printf '| %-12s | %14s | %9.1f%% |\n' "$strategy" "$per" \
        "$(awk -v p="$per" -v b="$base" 'BEGIN {print (p - b) * 100 / b}')"
done
