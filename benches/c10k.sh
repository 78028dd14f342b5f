#!/usr/bin/env bash
# 10,000 concurrent keep-alive clients through one ferroxy worker.
#
#   bash benches/c10k.sh                      # 10000 connections, 10 s
#   CONNS=20000 SECONDS_PER_RUN=20 bash benches/c10k.sh
#
# wrk opens CONNS keep-alive connections to ferroxy (release build, one
# worker), which forwards to one nginx upstream ("hello\n") over at most
# 4000 upstream connections: with 10,000 requests in flight the rest wait
# in ferroxy's queue (max_conns_per_upstream), so connect_ms, which bounds
# that wait, is 5 s here rather than the seed's 1 s. Printed:
# requests/s, latency percentiles, and ferroxy's RSS before, at the peak
# (VmHWM) and after: the memory 10,000 connections cost. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-10000}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
PORT_BASE=${PORT_BASE:-18280}
UPSTREAM_PORT=$PORT_BASE
FERROXY_PORT=$((PORT_BASE + 1))

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    echo "installing wrk and nginx (Debian packages)..." >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq wrk nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# Each connection is a descriptor in wrk and two in ferroxy's process
# (client side; upstream connections are pooled and few).
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS + 1000)) ]; then
    echo "the open-file limit ($(ulimit -n)) is too low for $CONNS connections" >&2
    exit 1
fi

cargo build --release --quiet
TMP=$(mktemp -d /tmp/ferroxy-c10k.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

cat >"$TMP/upstream.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $TMP/up.pid; error_log $TMP/up.err warn;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $TMP/b; proxy_temp_path $TMP/p; fastcgi_temp_path $TMP/f;
  uwsgi_temp_path $TMP/u; scgi_temp_path $TMP/s;
  server { listen 127.0.0.1:$UPSTREAM_PORT; location / { return 200 "hello\n"; } } }
EOF
cat >"$TMP/ferroxy.json" <<EOF
{ "listen": "127.0.0.1:$FERROXY_PORT",
  "upstreams": [{ "host": "127.0.0.1", "port": $UPSTREAM_PORT }],
  "timeouts": { "connect_ms": 5000, "read_ms": 15000, "write_ms": 15000, "total_ms": 30000 },
  "limits": { "max_client_conns": $((CONNS + 100)), "max_conns_per_upstream": 4000 },
  "logging": { "level": "warn" } }
EOF

"$NGINX" -c "$TMP/upstream.conf" & PIDS+=($!)
target/release/ferroxy --config "$TMP/ferroxy.json" 2>"$TMP/ferroxy.log" & FERROXY_PID=$!
PIDS+=($FERROXY_PID)
for _ in $(seq 1 50); do
    curl -s -o /dev/null "http://127.0.0.1:$FERROXY_PORT/" && break
    sleep 0.1
done

rss() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$FERROXY_PID/status"; }
echo 5 >"/proc/$FERROXY_PID/clear_refs" 2>/dev/null || true
BEFORE=$(rss VmRSS)

OUT=$(wrk -t2 -c"$CONNS" -d"${SECONDS_PER_RUN}s" --timeout 10s --latency "http://127.0.0.1:$FERROXY_PORT/" 2>&1)
PEAK=$(rss VmHWM)
AFTER=$(rss VmRSS)

echo "$OUT"
printf '\n%s connections, %s s, %s, %s CPUs\n' "$CONNS" "$SECONDS_PER_RUN" "$(date -u +%Y-%m-%d)" "$(nproc)"
printf 'requests/s: %s\n' "$(awk '/Requests\/sec/ {print $2}' <<<"$OUT")"
printf 'p50 / p99:  %s / %s\n' "$(awk '$1 == "50%" {print $2}' <<<"$OUT")" "$(awk '$1 == "99%" {print $2}' <<<"$OUT")"
printf 'ferroxy RSS: %s KiB before, %s KiB peak, %s KiB after (%s bytes per connection at the peak)\n' \
    "$BEFORE" "$PEAK" "$AFTER" "$(( (PEAK - BEFORE) * 1024 / CONNS ))"
grep -c . "$TMP/ferroxy.log" >/dev/null && { echo "ferroxy log (warnings):"; tail -5 "$TMP/ferroxy.log"; } || true
