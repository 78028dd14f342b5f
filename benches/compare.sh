#!/usr/bin/env bash
# ferroxy vs nginx, side by side, in one run, on this machine.
#
#   bash benches/compare.sh                 # 3 rounds x 5 s per proxy, c50
#   ROUNDS=5 SECONDS_PER_RUN=10 CONNS=500 bash benches/compare.sh
#
# One nginx upstream answers "hello\n" with keep-alive. In front of it, in
# turn: nothing (direct), nginx as a reverse proxy (keep-alive pool of 32,
# the usual tuning), and ferroxy (release build, seed config). wrk drives
# each with the same load; rounds are interleaved so drift on the machine
# hits every column alike. Everything listens on 127.0.0.1 only.
#
# With 2 cores: the proxy under test runs on CPU 1, the upstream and wrk
# on CPU 0 (taskset), as the project's referee harness does. Compare the
# ratio column, not absolute figures across runs or machines.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
CONNS=${CONNS:-50}
PORT_BASE=${PORT_BASE:-18180}
UPSTREAM_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
FERROXY_PORT=$((PORT_BASE + 2))

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need taskset; then
    echo "installing wrk and nginx (Debian packages)..." >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq wrk nginx util-linux >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

cargo build --release --quiet
FERROXY=target/release/ferroxy

TMP=$(mktemp -d /tmp/ferroxy-compare.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

PIN_LOAD="taskset -c 0"
PIN_PROXY="taskset -c 1"
if [ "$(nproc)" -lt 2 ]; then PIN_LOAD=""; PIN_PROXY=""; fi

nginx_conf() { # $1 = name, $2 = server block
    cat >"$TMP/$1.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $TMP/$1.pid; error_log $TMP/$1.err warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $TMP/$1.body; proxy_temp_path $TMP/$1.proxy;
  fastcgi_temp_path $TMP/$1.fcgi; uwsgi_temp_path $TMP/$1.uwsgi; scgi_temp_path $TMP/$1.scgi;
  keepalive_requests 1000000;
  $2
}
EOF
}

nginx_conf upstream "server { listen 127.0.0.1:$UPSTREAM_PORT; location / { return 200 \"hello\\n\"; } }"
nginx_conf proxy "upstream up { server 127.0.0.1:$UPSTREAM_PORT; keepalive 32; }
  server { listen 127.0.0.1:$NGINX_PORT; location / {
    proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\";
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme; add_header Via \"1.1 nginx\"; } }"
cat >"$TMP/ferroxy.json" <<EOF
{ "listen": "127.0.0.1:$FERROXY_PORT",
  "upstreams": [{ "host": "127.0.0.1", "port": $UPSTREAM_PORT }],
  "timeouts": { "connect_ms": 1000, "read_ms": 15000, "write_ms": 15000, "total_ms": 30000 },
  "limits": { "max_client_conns": 20000, "max_conns_per_upstream": 1024 },
  "logging": { "level": "warn" } }
EOF

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
$PIN_LOAD "$NGINX" -c "$TMP/upstream.conf" & PIDS+=($!)
$PIN_PROXY "$NGINX" -c "$TMP/proxy.conf" & PIDS+=($!)
$PIN_PROXY "$FERROXY" --config "$TMP/ferroxy.json" 2>"$TMP/ferroxy.log" & PIDS+=($!)

for port in $UPSTREAM_PORT $NGINX_PORT $FERROXY_PORT; do
    for _ in $(seq 1 50); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/"; then break; fi
        sleep 0.1
    done
done

declare -A RPS P50 P99
run() { # $1 = label, $2 = port
    local out
    out=$($PIN_LOAD wrk -t1 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency "http://127.0.0.1:$2/" 2>&1)
    RPS[$1]+="$(awk '/Requests\/sec/ {print $2}' <<<"$out") "
    P50[$1]+="$(awk '$1 == "50%" {print $2}' <<<"$out") "
    P99[$1]+="$(awk '$1 == "99%" {print $2}' <<<"$out") "
}

# Warm-up, then interleaved rounds (the order rotates each round).
for port in $UPSTREAM_PORT $NGINX_PORT $FERROXY_PORT; do
    $PIN_LOAD wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1
done
LABELS=(direct nginx ferroxy)
PORTS=($UPSTREAM_PORT $NGINX_PORT $FERROXY_PORT)
for round in $(seq 1 "$ROUNDS"); do
    for k in 0 1 2; do
        i=$(( (k + round) % 3 ))
        run "${LABELS[$i]}" "${PORTS[$i]}"
    done
    echo "round $round/$ROUNDS done" >&2
done

# Median of the rounds; latencies converted to milliseconds.
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
to_ms() { sed -E 's/([0-9.]+)us/\1 0.001/; s/([0-9.]+)ms/\1 1/; s/([0-9.]+)s$/\1 1000/' | awk '{printf "%.3f\n", $1*$2}'; }
med_ms() { tr ' ' '\n' | grep -v '^$' | to_ms | median; }

printf '\nferroxy vs nginx, %s, %s CPUs (%s), wrk -t1 -c%s, %s x %ss, median\n\n' \
    "$(date -u +%Y-%m-%d)" "$(nproc)" \
    "$(awk -F: '/model name/ {gsub(/^ /, "", $2); print $2; exit}' /proc/cpuinfo)" \
    "$CONNS" "$ROUNDS" "$SECONDS_PER_RUN"
printf '| %-8s | %12s | %9s | %9s |\n' "" "requests/s" "p50 ms" "p99 ms"
printf '|%s|%s|%s|%s|\n' "----------" "--------------" "-----------" "-----------"
for label in "${LABELS[@]}"; do
    printf '| %-8s | %12.0f | %9s | %9s |\n' "$label" \
        "$(median <<<"${RPS[$label]}")" "$(med_ms <<<"${P50[$label]}")" "$(med_ms <<<"${P99[$label]}")"
done
ratio=$(awk -v f="$(median <<<"${RPS[ferroxy]}")" -v n="$(median <<<"${RPS[nginx]}")" 'BEGIN {printf "%.2f", f / n}')
printf '\nferroxy / nginx requests/s: %sx\n' "$ratio"
