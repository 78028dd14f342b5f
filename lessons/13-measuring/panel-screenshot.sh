#!/usr/bin/env bash
# Screenshot of ferroxy's metrics panel (GET / on the metrics listener) in
# headless Chromium, after a little traffic of every kind, for the README
# and lesson 13.
#
#   lessons/13-measuring/panel-screenshot.sh [OUT.png]
#
# Default OUT is lessons/13-measuring/panel.png. It starts
# target/release/ferroxy --demo with a throwaway config (proxy on
# 127.0.0.1:18080, demo upstreams on 19001 and 19002, metrics on 19090; not
# the ports of config.json, so a proxy you already run is not disturbed),
# sends bounded traffic with curl (and ab, if installed), takes the shot
# while a few slow requests are still in flight, and stops everything it
# started, however it exits. Loopback only.
#
# Needs curl; builds ferroxy if target/release/ferroxy is missing; installs
# Debian's chromium with apt-get if it is missing (as root).

set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/panel.png}
case $out in /*) ;; *) out="$PWD/$out" ;; esac

proxy_port=18080
metrics_port=19090
upstream_ports=(19001 19002)
# Added by a reload halfway through; nothing listens there, so the health
# checks mark it down and the panel shows an upstream out of rotation.
missing_port=19003
base="http://127.0.0.1:$proxy_port"
panel="http://127.0.0.1:$metrics_port/"

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "chromium is not installed; run: sudo apt-get install -y chromium" >&2
        exit 1
    fi
    echo "installing chromium..." >&2
    apt-get install -y chromium >/dev/null 2>&1 ||
        { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi
if [ ! -x "$root/target/release/ferroxy" ]; then
    (cd "$root" && cargo build --release)
fi

work=$(mktemp -d)
pids=()
cleanup() {
    # Only what this script started, by pid.
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for port in "$proxy_port" "$metrics_port" "${upstream_ports[@]}" "$missing_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "127.0.0.1:$port is already in use; stop whatever listens there first" >&2
        exit 1
    fi
done

# read_ms is 3 s here (15 s in config.json), so one /delay/3500 makes a 504
# and the panel has a timeout to show.
write_config() { # $1: extra upstream lines
cat >"$work/config.json" <<EOF
{
  "listen": "127.0.0.1:$proxy_port",
  "upstreams": [
    { "host": "127.0.0.1", "port": ${upstream_ports[0]} },
    { "host": "127.0.0.1", "port": ${upstream_ports[1]} }$1
  ],
  "health": { "path": "/healthz", "interval_ms": 300, "timeout_ms": 200, "fails": 2, "passes": 2 },
  "timeouts": { "connect_ms": 1000, "read_ms": 3000, "write_ms": 15000, "total_ms": 30000 },
  "limits": { "max_client_conns": 1000, "max_conns_per_upstream": 100 },
  "logging": { "level": "warn" },
  "metrics": { "listen": "127.0.0.1:$metrics_port" }
}
EOF
}
write_config ""

"$root/target/release/ferroxy" --config "$work/config.json" --demo 2>"$work/ferroxy.log" &
pids+=($!)
for _ in $(seq 50); do
    curl -sf -o /dev/null "${panel}metrics" && break
    sleep 0.1
done
if ! curl -sf -o /dev/null "${panel}metrics"; then
    echo "ferroxy did not start; its log:" >&2
    cat "$work/ferroxy.log" >&2
    exit 1
fi

echo "traffic..." >&2
# 504: the demo answers after 3.5 s, read_ms fires at 3 s. In the
# background, so the rest of the traffic runs meanwhile.
curl -s -o /dev/null -m 10 "$base/delay/3500" &
slow=$!
pids+=("$slow")
# curl's [1-N] globbing sends N requests on one keep-alive connection.
# Spread over several seconds, so the panel's charts have a shape.
for second in 1 2 3 4 5 6; do
    curl -s -o /dev/null "$base/echo/$second/[1-$((second * 60))]"
    sleep 1
done
curl -s -o /dev/null "$base/delay/50?n=[1-20]"
curl -s -o /dev/null "$base/status/404?n=[1-25]"
curl -s -o /dev/null "$base/status/502?n=[1-8]"
for _ in 1 2 3; do
    # No Host header: the proxy's own 400.
    curl -s -o /dev/null -m 2 -H 'Host:' --http1.1 "$base/no-host" || true
done
if command -v ab >/dev/null 2>&1; then
    ab -q -k -n 5000 -c 20 "$base/bytes/2000" >/dev/null 2>&1 || true
fi
wait "$slow" || true
# The reload adds an upstream nobody listens on: its checks fail (connect
# refused) and it goes down; the two that stay keep their state.
write_config ",
    { \"host\": \"127.0.0.1\", \"port\": $missing_port }"
kill -HUP "${pids[0]}"
sleep 1.5
# A few requests still in flight when the shot is taken (shorter than
# read_ms): active upstream connections and open clients on the panel.
for _ in 1 2 3 4 5; do
    curl -s -o /dev/null -m 10 "$base/delay/2500" &
    pids+=($!)
done
sleep 0.5

echo "screenshot of $panel..." >&2
mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$work/chromium" --window-size=1100,1150 \
    --screenshot="$out" "$panel" >"$work/chromium.log" 2>&1 || {
    echo "chromium failed; its log:" >&2
    cat "$work/chromium.log" >&2
    exit 1
}
echo "wrote $out" >&2
