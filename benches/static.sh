#!/usr/bin/env bash
# Static files: ferroxy vs nginx, side by side, in one run, on this machine.
#
#   bash benches/static.sh                        # 3 x 5 s of wrk, 5 x 100 MiB, 2000 traced GETs
#   ROUNDS=5 DURATION=10 BIG_RUNS=9 SYSCALL_REQS=5000 bash benches/static.sh
#   FERROXY=path/to/build bash benches/static.sh  # another binary (default target/release/ferroxy)
#   STRICT=1 bash benches/static.sh               # exit 1 when a target below is missed
#   SERVERS=nginx bash benches/static.sh          # one server only (e.g. before ferroxy has routes)
#   NGINX_OPEN_FILE_CACHE=1 bash benches/static.sh  # let nginx cache open descriptors
#
# A temp directory holds 4k.bin (4096 random bytes) and 100m.bin (100 MiB).
# ferroxy serves it with a route { "prefix": "/static/", "root": DIR } and
# nginx with `location /static/ { alias DIR/; }`: same files, same root,
# both with sendfile(2). ferroxy's upstream points at a port nothing listens
# on, so a request that is not served from the root answers 502 and is seen.
#
# What is measured, for each server:
#   0. correctness first: GET /static/4k.bin is 200 with the exact 4096
#      bytes, /static/100m.bin is 200 with 104857600 bytes, and a Range
#      request (bytes=0-99) is 206 with 100 bytes. Any miss stops the run
#      with a message: a fast wrong answer is not a benchmark.
#   1. small files: wrk -t1 -c50 keep-alive GETs of the 4 KiB file for
#      DURATION seconds, ROUNDS times -> median requests/s and p99 latency.
#      Here the cost is per request (parse, open, stat, headers, sendfile,
#      close), not per byte.
#   2. a big file: curl downloads the 100 MiB file BIG_RUNS times from
#      each -> median MiB/s; and the server's resident memory (VmRSS) before and after, and
#      its peak (VmHWM, reset first through /proc/PID/clear_refs) during the
#      downloads. With sendfile the bytes go from the page cache to the
#      socket inside the kernel, so RSS must stay flat: a server that reads
#      the file into its own buffers would grow by its buffer size or more.
#   3. syscalls per request: `strace -f -c -p PID` is attached to the server
#      while a small Python client sends exactly SYSCALL_REQS sequential
#      keep-alive GETs of the 4 KiB file over one connection; total syscalls
#      divided by requests, and the most frequent calls per request. This is
#      the number that explains (1): on loopback, a static request's time is
#      mostly syscalls. (strace slows the server down a lot; only the counts
#      are used, never the time.) One accept and one close are included, i.e.
#      about 0.002 calls per request at the default count.
#
# Why nginx runs with one worker and no open_file_cache: ferroxy serves
# everything from one event loop on one thread, so nginx gets one worker
# (worker_processes 1, master_process off): one loop against one loop on
# the same pinned CPU. open_file_cache would let nginx keep descriptors of
# recently served files and trust them for open_file_cache_valid (60 s),
# serving a replaced file's old bytes meanwhile. ferroxy keeps descriptors
# too (src/files/cache.rs) but checks each hit with one fstatat, so it is
# never stale: it pays 1 syscall where nginx without the cache pays 3
# (open, fstat, close), and that difference is the point of the row.
# NGINX_OPEN_FILE_CACHE=1 turns the cache on to show what it is worth.
# sendfile on + tcp_nopush on is nginx's usual tuning for static files
# (headers and the start of the body leave in full packets).
#
# CPUs, as the project's referee (../shared/bench/run.sh) pins them: with 2
# or more CPUs both servers run on CPU 1 (taskset) and every load generator
# (wrk, curl, the Python client, strace) on CPU 0, so the server under test
# never fights its own load for a core. Everything listens on 127.0.0.1;
# every process started is stopped, and the temp dir removed, on exit.
#
# Reading the table: one row per figure, ferroxy | nginx | ratio, where
# ratio = ferroxy / nginx. Higher is better for requests/s and MiB/s, lower
# is better for p99, RSS and syscalls/request. Targets (checked below the
# table; enforced with STRICT=1): 4 KiB requests/s >= 1.2x nginx, 100 MiB
# MiB/s >= nginx, syscalls per request <= nginx. Compare ratios, not
# absolute numbers across machines or runs: the 100 MiB figure in
# particular is a loopback memory-copy speed, and it varies from run to run.
# Runs of (1) and (2) are interleaved (the order rotates each round) and the
# median is kept, so drift on the machine hits both columns alike. Still,
# nginx measured against a second copy of itself on a busy 2-CPU VM came out
# at 0.81x to 0.99x in requests/s and 0.69x to 1.30x in MiB/s (a 100 MiB
# download takes only ~50 ms here): a ratio near a target deserves ROUNDS=5
# DURATION=10 BIG_RUNS=15 before it is believed.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
BIG_RUNS=${BIG_RUNS:-5}
SYSCALL_REQS=${SYSCALL_REQS:-2000}
STRICT=${STRICT:-0}
SERVERS=${SERVERS:-ferroxy nginx}
NGINX_OPEN_FILE_CACHE=${NGINX_OPEN_FILE_CACHE:-0}
PORT_BASE=${PORT_BASE:-18380}
FERROXY_PORT=$PORT_BASE
NGINX_PORT=$((PORT_BASE + 1))
DEAD_UPSTREAM_PORT=$((PORT_BASE + 2)) # nothing listens here
BIG_BYTES=$((100 * 1024 * 1024))
export PATH="$PATH:/usr/sbin:/sbin"

for s in $SERVERS; do
    case "$s" in ferroxy|nginx) ;; *) echo "SERVERS: unknown server '$s' (ferroxy, nginx)" >&2; exit 2 ;; esac
done
has() { [[ " $SERVERS " == *" $1 "* ]]; }

# ---- tools (only what is missing is installed, as the other scripts do)
missing=()
for pair in wrk:wrk nginx:nginx strace:strace curl:curl taskset:util-linux python3:python3; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]} (Debian packages)..." >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

FERROXY=${FERROXY:-target/release/ferroxy}
if has ferroxy && [ ! -x "$FERROXY" ]; then
    echo "$FERROXY not found: cargo build --release" >&2
    cargo build --release --quiet
fi

# ---- temp dir + cleanup (by pid: only what this script started)
TMP=$(mktemp -d /tmp/ferroxy-static.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
die() { echo "" >&2; echo "static.sh: FAILED: $*" >&2; exit 1; }

PIN_LOAD="taskset -c 0"
PIN_SERVER="taskset -c 1"
if [ "$(nproc)" -lt 2 ]; then
    echo "warning: only $(nproc) CPU; servers and load share it (figures not comparable)" >&2
    PIN_LOAD=""; PIN_SERVER=""
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- the files
ROOT="$TMP/root"
mkdir -p "$ROOT"
chmod 755 "$ROOT"
head -c 4096 /dev/urandom >"$ROOT/4k.bin"
head -c "$BIG_BYTES" /dev/urandom >"$ROOT/100m.bin"
chmod 644 "$ROOT"/*.bin
cat "$ROOT/100m.bin" >/dev/null # in the page cache before anyone serves it

# ---- the servers
if [ "$NGINX_OPEN_FILE_CACHE" = 1 ]; then
    OFC="open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;"
else
    OFC="open_file_cache off;"
fi
cat >"$TMP/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $TMP/nginx.pid; error_log $TMP/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/n.body; proxy_temp_path $TMP/n.proxy;
  fastcgi_temp_path $TMP/n.fcgi; uwsgi_temp_path $TMP/n.uwsgi; scgi_temp_path $TMP/n.scgi;
  sendfile on; tcp_nopush on;
  keepalive_requests 100000;
  $OFC
  server { listen 127.0.0.1:$NGINX_PORT; location /static/ { alias $ROOT/; } }
}
EOF
cat >"$TMP/ferroxy.json" <<EOF
{
  "listen": "127.0.0.1:$FERROXY_PORT",
  "upstreams": [ { "host": "127.0.0.1", "port": $DEAD_UPSTREAM_PORT } ],
  "timeouts": { "connect_ms": 1000, "read_ms": 15000, "write_ms": 15000, "total_ms": 30000 },
  "limits": { "max_client_conns": 10000, "max_conns_per_upstream": 1000 },
  "logging": { "level": "warn" },
  "routes": [ { "prefix": "/static/", "root": "$ROOT" } ]
}
EOF

declare -A PID PORT LOG
PORT[ferroxy]=$FERROXY_PORT
PORT[nginx]=$NGINX_PORT
LOG[ferroxy]=$TMP/ferroxy.log
LOG[nginx]=$TMP/nginx.err
if has nginx; then
    $PIN_SERVER "$NGINX" -c "$TMP/nginx.conf" 2>>"$TMP/nginx.err" & PID[nginx]=$!; PIDS+=(${PID[nginx]})
fi
if has ferroxy; then
    $PIN_SERVER "$FERROXY" --config "$TMP/ferroxy.json" 2>"$TMP/ferroxy.log" & PID[ferroxy]=$!; PIDS+=(${PID[ferroxy]})
fi

# Wait for each port; a server that exits instead (a config it refuses) is
# reported with its log. (taskset execs the server: $! is the server's pid.)
for s in $SERVERS; do
    up=0
    for _ in $(seq 1 100); do
        if ! kill -0 "${PID[$s]}" 2>/dev/null; then break; fi
        if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:${PORT[$s]}/"; then up=1; break; fi
        sleep 0.1
    done
    if ((!up)); then
        echo "---- $s log:" >&2; tail -n 20 "${LOG[$s]}" >&2 || true
        if [ "$s" = ferroxy ]; then
            die "ferroxy did not start on 127.0.0.1:${PORT[$s]} with a \"routes\" config (log above).
  Does this build know static routes ({ \"prefix\": \"/static/\", \"root\": DIR })?
  ($FERROXY is only built when missing: an old one needs cargo build --release.)
  Measure nginx alone meanwhile with: SERVERS=nginx bash benches/static.sh"
        fi
        die "$s did not start on 127.0.0.1:${PORT[$s]} (log above)"
    fi
done

# ---- 0. correctness
check() { # $1 = server; fails the run on any wrong answer
    local s=$1 url="http://127.0.0.1:${PORT[$1]}/static" got
    got=$(curl -s -o "$TMP/$s.4k" -w '%{http_code} %{size_download}' --max-time 10 "$url/4k.bin" || echo "000 0")
    if [ "$got" != "200 4096" ]; then
        local hint=""
        if [ "$s" = ferroxy ]; then
            hint="
  ferroxy did not serve the file from its root: a 502 means the request was
  proxied to the (dead) upstream, i.e. this build does not match the
  /static/ route yet ($FERROXY is only built when missing: cargo build --release).
  Measure nginx alone meanwhile: SERVERS=nginx bash benches/static.sh"
        fi
        die "$s: GET /static/4k.bin answered '$got' (status, bytes); expected '200 4096'.$hint"
    fi
    cmp -s "$TMP/$s.4k" "$ROOT/4k.bin" || die "$s: GET /static/4k.bin: 4096 bytes, but not the file's bytes"
    got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 30 "$url/100m.bin" || echo "000 0")
    [ "$got" = "200 $BIG_BYTES" ] || die "$s: GET /static/100m.bin answered '$got'; expected '200 $BIG_BYTES'"
    got=$(curl -s -o "$TMP/$s.range" -r 0-99 -w '%{http_code} %{size_download}' --max-time 10 "$url/4k.bin" || echo "000 0")
    [ "$got" = "206 100" ] || die "$s: GET /static/4k.bin with Range: bytes=0-99 answered '$got'; expected '206 100'"
    cmp -s "$TMP/$s.range" <(head -c 100 "$ROOT/4k.bin") || die "$s: the 206 body is not bytes 0-99 of the file"
    echo "$s: 200/4096 (bytes match), 200/$BIG_BYTES, Range 206/100: ok" >&2
}
for s in $SERVERS; do check "$s"; done

# ---- 1. 4 KiB at keep-alive with wrk
# ROUNDS interleaved runs, the order rotating each round, median kept: drift
# on the machine (other tenants, CPU clocks) then hits both columns alike.
declare -A RPS P99 MIBS RSS_BEFORE RSS_PEAK RSS_AFTER PEAK_KIND SYS_PER TOP
to_ms() { sed -E 's/([0-9.]+)us/\1 0.001/; s/([0-9.]+)ms/\1 1/; s/([0-9.]+)s$/\1 1000/' | awk '{printf "%.3f\n", $1*$2}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
read -r -a LIST <<<"$SERVERS"
order() { # $1 = round: the servers, rotated by the round number
    local k
    for k in $(seq 0 $((${#LIST[@]} - 1))); do echo "${LIST[$(( (k + $1) % ${#LIST[@]} ))]}"; done
}
for s in $SERVERS; do # warm-up
    $PIN_LOAD wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:${PORT[$s]}/static/4k.bin" >/dev/null 2>&1
    : >"$TMP/$s.rps"; : >"$TMP/$s.p99"
done
for round in $(seq 1 "$ROUNDS"); do
    for s in $(order "$round"); do
        echo "$s: wrk -t1 -c$CONNS -d${DURATION}s /static/4k.bin (round $round/$ROUNDS)..." >&2
        out=$($PIN_LOAD wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT[$s]}/static/4k.bin" 2>&1)
        if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
            echo "$out" >&2
            die "$s: wrk saw errors or non-2xx answers for /static/4k.bin (above)"
        fi
        awk '/Requests\/sec/ {printf "%.0f\n", $2}' <<<"$out" >>"$TMP/$s.rps"
        awk '$1 == "99%" {print $2}' <<<"$out" | to_ms >>"$TMP/$s.p99"
    done
done
for s in $SERVERS; do
    RPS[$s]=$(median <"$TMP/$s.rps")
    P99[$s]=$(median <"$TMP/$s.p99")
done

# ---- 2. 100 MiB with curl, and the server's memory
# Interleaved too: run i downloads from every server before run i + 1.
kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }
for s in $SERVERS; do
    pid=${PID[$s]}
    RSS_BEFORE[$s]=$(kib VmRSS "$pid")
    # "5" resets the peak (VmHWM) to the current RSS, so VmHWM afterwards is
    # the peak during the downloads, not since start-up (Linux >= 4.0, root
    # or the same user).
    if echo 5 >"/proc/$pid/clear_refs" 2>/dev/null; then PEAK_KIND[$s]=during; else PEAK_KIND[$s]=lifetime; fi
    : >"$TMP/$s.big"
done
echo "$BIG_RUNS x GET /static/100m.bin from each server..." >&2
for run in $(seq 1 "$BIG_RUNS"); do
    for s in $(order "$run"); do
        got=$($PIN_LOAD curl -s -o /dev/null --max-time 60 -w '%{http_code} %{size_download} %{time_total}' \
            "http://127.0.0.1:${PORT[$s]}/static/100m.bin" || echo "000 0 0")
        read -r code size secs <<<"$got"
        [ "$code $size" = "200 $BIG_BYTES" ] || die "$s: GET /static/100m.bin answered '$code $size' during the runs"
        awk -v b="$size" -v t="$secs" 'BEGIN {printf "%.1f\n", b / 1048576 / t}' >>"$TMP/$s.big"
    done
done
for s in $SERVERS; do
    pid=${PID[$s]}
    MIBS[$s]=$(median <"$TMP/$s.big")
    RSS_PEAK[$s]=$(kib VmHWM "$pid")
    RSS_AFTER[$s]=$(kib VmRSS "$pid")
done

# ---- 3. syscalls per request under strace
# Exactly N sequential keep-alive GETs over one connection; every answer is
# read whole and checked.
cat >"$TMP/client.py" <<'EOF'
import http.client, sys
port, n, want = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
done = 0
for _ in range(n):
    c.request("GET", "/static/4k.bin")
    r = c.getresponse()
    body = r.read()
    if r.status != 200 or len(body) != want:
        sys.exit(f"request {done + 1}: status {r.status}, {len(body)} bytes")
    if r.will_close:
        sys.exit(f"request {done + 1}: the server closed the keep-alive connection")
    done += 1
c.close()
print(done)
EOF
for s in $SERVERS; do
    echo "$s: strace -f -c while $SYSCALL_REQS keep-alive GETs..." >&2
    $PIN_LOAD strace -f -c -o "$TMP/$s.strace" -p "${PID[$s]}" 2>"$TMP/$s.strace.err" & spid=$!
    PIDS+=($spid)
    for _ in $(seq 1 100); do grep -q attached "$TMP/$s.strace.err" 2>/dev/null && break; sleep 0.05; done
    grep -q attached "$TMP/$s.strace.err" || { cat "$TMP/$s.strace.err" >&2; die "strace could not attach to $s (pid ${PID[$s]})"; }
    sleep 0.2 # every thread attached
    n=$($PIN_LOAD python3 "$TMP/client.py" "${PORT[$s]}" "$SYSCALL_REQS" 4096) || die "$s: the counting client failed"
    [ "$n" = "$SYSCALL_REQS" ] || die "$s: the counting client got $n answers, expected $SYSCALL_REQS"
    sleep 0.2 # the server's last calls after the client closed (read 0, close)
    kill -INT "$spid"; wait "$spid" 2>/dev/null || true
    # Lines: % time, seconds, usecs/call, calls, [errors], syscall.
    awk '$1 ~ /^[0-9.]+$/ && $NF != "total" {print $4, $NF}' "$TMP/$s.strace" | sort -k1,1nr >"$TMP/$s.calls"
    [ -s "$TMP/$s.calls" ] || { cat "$TMP/$s.strace" >&2; die "$s: strace counted nothing"; }
    total=$(awk '{t += $1} END {print t}' "$TMP/$s.calls")
    SYS_PER[$s]=$(awk -v t="$total" -v n="$n" 'BEGIN {printf "%.2f", t / n}')
    TOP[$s]=$(head -n 8 "$TMP/$s.calls" | awk -v n="$n" '$1 / n >= 0.01 {printf "%s %.2f, ", $2, $1 / n}' | sed 's/, $//')
done

# ---- the table
ratio() { # $1 = array name
    local -n a=$1
    if has ferroxy && has nginx; then
        awk -v f="${a[ferroxy]}" -v n="${a[nginx]}" 'BEGIN {if (n + 0 == 0) print "-"; else printf "%.2fx", f / n}'
    else echo "-"; fi
}
val() { local -n a=$1; echo "${a[$2]:--}"; }
row() { # $1 = label, $2 = array name
    printf '| %-36s | %12s | %12s | %7s |\n' "$1" "$(val "$2" ferroxy)" "$(val "$2" nginx)" "$(ratio "$2")"
}
peak_label="peak RSS during them, KiB (VmHWM)"
for s in $SERVERS; do [ "${PEAK_KIND[$s]}" = during ] || peak_label="peak RSS since start, KiB (VmHWM)"; done

printf '\nstatic files: ferroxy vs nginx, %s, %s CPUs (%s), nginx %s\n' \
    "$(date -u +%Y-%m-%d)" "$(nproc)" \
    "$(awk -F: '/model name/ {gsub(/^ /, "", $2); print $2; exit}' /proc/cpuinfo)" \
    "$("$NGINX" -v 2>&1 | sed 's|.*/||')"
printf 'nginx: 1 worker, sendfile on, tcp_nopush on, %s\n' "$OFC"
printf 'median of %s x %ss of wrk -t1 -c%s, of %s downloads of 100 MiB; %s GETs under strace\n\n' \
    "$ROUNDS" "$DURATION" "$CONNS" "$BIG_RUNS" "$SYSCALL_REQS"
printf '| %-36s | %12s | %12s | %7s |\n' "" ferroxy nginx ratio
printf '|%s|%s|%s|%s|\n' "--------------------------------------" "--------------" "--------------" "---------"
row "4 KiB, wrk -c$CONNS: requests/s" RPS
row "4 KiB: p99 latency, ms" P99
row "100 MiB: MiB/s (median of $BIG_RUNS)" MIBS
row "RSS before the 100 MiB GETs, KiB" RSS_BEFORE
row "$peak_label" RSS_PEAK
row "RSS after them, KiB" RSS_AFTER
row "syscalls per 4 KiB request" SYS_PER
echo
for s in $SERVERS; do printf 'top syscalls per request, %s: %s\n' "$s" "${TOP[$s]}"; done

# ---- targets
if has ferroxy && has nginx; then
    missed=0
    target() { # $1 = description, $2 = awk condition on f (ferroxy) and n (nginx), $3 = array name
        local -n a=$3
        if awk -v f="${a[ferroxy]}" -v n="${a[nginx]}" "BEGIN {exit !($2)}"; then
            printf 'target met:    %s\n' "$1"
        else
            printf 'target MISSED: %s\n' "$1"; missed=1
        fi
    }
    echo
    target "4 KiB requests/s >= 1.2x nginx" "f >= 1.2 * n" RPS
    target "100 MiB MiB/s >= nginx" "f >= n" MIBS
    target "syscalls per request <= nginx" "f <= n" SYS_PER
    if ((missed)) && [ "$STRICT" = 1 ]; then
        echo "STRICT=1: a target was missed" >&2
        exit 1
    fi
fi
