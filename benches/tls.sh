#!/usr/bin/env bash
# TLS termination: ferroxy (rustls + aws-lc-rs) vs nginx and HAProxy (both on
# OpenSSL), side by side, in one run, on this machine.
#
#   bash benches/tls.sh                          # 3 rounds x 5 s of each load
#   ROUNDS=5 DURATION=10 bash benches/tls.sh
#   FERROXY=path/to/build bash benches/tls.sh    # another binary (default target/release/ferroxy)
#   SERVERS="ferroxy nginx" bash benches/tls.sh  # a subset of: ferroxy nginx haproxy
#   STRICT=1 bash benches/tls.sh                 # exit 1 when a target below is missed
#   NEW_PROCS=4 bash benches/tls.sh              # parallel s_time clients for the full-handshake row
#
# Each server terminates TLS on 127.0.0.1 and proxies plain HTTP/1.1 to the
# same upstreams: two nginx instances answering `return 200 "hello\n"`, each
# with one worker, on the load CPU, as the referee (../shared/bench/run.sh)
# starts them. nginx and HAProxy are set up as the referee sets them up for
# its plain-HTTP rows (nginx: worker_processes 1, master_process off, upstream
# keepalive 32; HAProxy: nbthread 1, http-reuse safe), with a TLS listener
# instead of a plain one (and nginx sends Host $host, not $http_host: the
# latter is empty for s_time's HTTP/1.0 request and the upstream says 400). ferroxy gets the referee's config (max_client_conns
# 20000, max_conns_per_upstream 1024) plus a "tls" listener and a metrics one.
# One ECDSA P-256 self-signed certificate, made at run time in the temp dir,
# is served by all three (TLS 1.2 and 1.3, ALPN http/1.1, session tickets on
# everywhere, each library's default cipher and group order: with OpenSSL
# clients that is TLS_AES_256_GCM_SHA384 over X25519 for all three).
#
# What is measured, for each server:
#   0. correctness first: curl (verifying the certificate against the one we
#      made) GETs https://127.0.0.1:PORT/ and must get 200 "hello" over
#      TLS 1.3, and again with TLS 1.2 forced; the answer to s_time's request
#      (GET / HTTP/1.0) must be a 200 and its size is recorded for (2). Any
#      miss stops the run: a fast wrong answer is not a benchmark.
#   1. keep-alive: wrk -t1 -c50 --latency for DURATION s, ROUNDS times ->
#      median requests/s and median p99. One handshake per connection, then
#      the cost is AEAD record encryption plus proxying.
#   2. new connections, FULL handshakes: NEW_PROCS `openssl s_time -new`
#      clients in parallel for DURATION s; each opens a connection, does a
#      full handshake (no session is offered), sends GET / HTTP/1.0, reads
#      the answer until the server closes, and starts over. -> connections/s
#      (all clients' connections / wall time). Why not wrk -H 'Connection:
#      close': wrk keeps the session in its SSL object across reconnects
#      (SSL_clear) and so RESUMES almost every handshake (ferroxy's metrics
#      counted 99.6% resumed); h2load resumes too (and with Connection: close
#      and -D it does not stop). s_time -new is in the openssl package and its
#      handshakes are full (checked each run, below the table, with ferroxy's
#      counters). s_time does not look at the status line, so every client's
#      bytes per connection must equal the size of the 200 answer from (0).
#      BEWARE: an OpenSSL 3.0 client spends ~600 us of CPU per full handshake,
#      several times what the servers spend, so the load CPU saturates first
#      (see "load CPU busy") and this row's connections/s come out nearly equal
#      for all servers; the server's CPU per connection (3) is the figure that
#      compares the three TLS stacks.
#   2b. new connections, RESUMED: wrk -t1 -c50 -H 'Connection: close' (which
#      resumes, see above) -> connections/s and p99.
#   3. proxy CPU: utime + stime of the server (all threads, and children if
#      any) from /proc/PID/stat, before and after every run, divided by the
#      requests (connections) the run completed -> CPU us per request; and
#      the same ticks divided by the run's wall time -> % of its core busy.
#
# Targets (checked below the table; enforced with STRICT=1): keep-alive c50
# requests/s >= the better of nginx and HAProxy and p99 <= the better of the
# two; full-handshake connections/s >= nginx's (the load CPU caps that row:
# see 2).
#
# CPUs, as the referee pins them: with 2 or more CPUs the server under test
# runs on CPU 1 (taskset) and the load (wrk, s_time, curl) and the upstreams
# on CPU 0. Runs are interleaved (the order rotates each round) and the median
# kept, so drift on the machine hits every column alike. Everything listens on
# 127.0.0.1; every process started is stopped, and the temp dir (certificate
# and key included) removed, on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
NEW_PROCS=${NEW_PROCS:-4}
STRICT=${STRICT:-0}
SERVERS=${SERVERS:-ferroxy nginx haproxy}
PORT_BASE=${PORT_BASE:-18480}
export PATH="$PATH:/usr/sbin:/sbin"
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "DURATION: whole seconds (s_time takes no fractions)" >&2; exit 2; }

for s in $SERVERS; do
    case "$s" in ferroxy|nginx|haproxy) ;; *) echo "SERVERS: unknown server '$s' (ferroxy, nginx, haproxy)" >&2; exit 2 ;; esac
done
has() { [[ " $SERVERS " == *" $1 "* ]]; }

# ---- tools (only what is missing is installed; nginx is needed for the upstreams)
missing=()
for pair in wrk:wrk nginx:nginx haproxy:haproxy openssl:openssl curl:curl taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]} (Debian packages)..." >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

FERROXY=${FERROXY:-target/release/ferroxy}
if has ferroxy && [ ! -x "$FERROXY" ]; then
    echo "$FERROXY not found: cargo build --release" >&2
    cargo build --release --quiet
fi

# ---- temp dir + cleanup (by pid: only what this script started)
TMP=$(mktemp -d /tmp/ferroxy-tls.XXXXXX)
chmod 755 "$TMP"
PIDS=() CLIENTS=() # servers (the whole run); s_time clients (while they run)
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    for pid in "${CLIENTS[@]}" "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
die() { echo "" >&2; echo "tls.sh: FAILED: $*" >&2; exit 1; }

CPU_LOAD=0 CPU_SERVER=1
if [ "$(nproc)" -lt 2 ]; then
    echo "warning: only $(nproc) CPU; servers and load share it (figures not comparable)" >&2
    CPU_SERVER=0
fi
PIN_LOAD="taskset -c $CPU_LOAD"
PIN_SERVER="taskset -c $CPU_SERVER"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

declare -A PORT PID LOG
UP_A=$PORT_BASE UP_B=$((PORT_BASE + 1))
FERROXY_PLAIN=$((PORT_BASE + 2)) METRICS=$((PORT_BASE + 3))
PORT[ferroxy]=$((PORT_BASE + 4)) PORT[nginx]=$((PORT_BASE + 5)) PORT[haproxy]=$((PORT_BASE + 6))
for p in $(seq "$PORT_BASE" $((PORT_BASE + 6))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "127.0.0.1:$p is taken (set PORT_BASE)"; fi
done

# ---- the certificate: one ECDSA P-256 key, self-signed, for all three
CERT=$TMP/cert.pem KEY=$TMP/key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$KEY" -out "$CERT" 2>"$TMP/openssl-req.log" || { cat "$TMP/openssl-req.log" >&2; die "openssl req"; }
cat "$CERT" "$KEY" >"$TMP/haproxy.pem" # HAProxy wants both in one file
chmod 600 "$KEY" "$TMP/haproxy.pem"

# ---- the upstreams (as the referee's), then the three servers
for name in up-a up-b; do
    mkdir -p "$TMP/$name"
    port=$UP_A; [ "$name" = up-b ] && port=$UP_B
    cat >"$TMP/$name/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $TMP/$name/nginx.pid; error_log $TMP/$name/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off; server_tokens off;
  keepalive_timeout 300s; keepalive_requests 100000000;
  client_body_temp_path $TMP/$name/client_temp;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { default_type text/plain; return 200 "hello\n"; }
  }
}
EOF
    $PIN_LOAD "$NGINX" -p "$TMP/$name" -c "$TMP/$name/nginx.conf" -e "$TMP/$name/error.log" 2>"$TMP/$name/stderr.log" &
    PIDS+=("$!")
done

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $TMP/nginx/nginx.pid; error_log $TMP/nginx/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
  access_log off;
  keepalive_timeout 75s; keepalive_requests 100000000;
  client_body_temp_path $TMP/nginx/client_temp; proxy_temp_path $TMP/nginx/proxy_temp;
  upstream backends {
    server 127.0.0.1:$UP_A; server 127.0.0.1:$UP_B;
    keepalive 32; keepalive_requests 100000000; keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:${PORT[nginx]} ssl; server_name localhost;
    ssl_certificate $CERT; ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets on;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host; # referee: \$http_host, empty for s_time (HTTP/1.0, no Host)
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header Via "1.1 nginx";
      proxy_connect_timeout 1s; proxy_read_timeout 15s; proxy_send_timeout 15s;
    }
  }
}
EOF
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 9000
defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse safe
    timeout connect 1s
    timeout client 60s
    timeout server 15s
    timeout http-request 10s
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:${PORT[haproxy]} ssl crt $TMP/haproxy.pem alpn http/1.1 ssl-min-ver TLSv1.2
    http-request set-header X-Forwarded-Proto https
    http-request add-header Via "1.1 haproxy"
    default_backend be
backend be
    balance roundrobin
    server s0 127.0.0.1:$UP_A
    server s1 127.0.0.1:$UP_B
EOF
cat >"$TMP/ferroxy.json" <<EOF
{
  "listen": "127.0.0.1:$FERROXY_PLAIN",
  "tls": { "listen": "127.0.0.1:${PORT[ferroxy]}", "certificates": [ { "cert": "$CERT", "key": "$KEY" } ] },
  "metrics": { "listen": "127.0.0.1:$METRICS" },
  "upstreams": [ { "host": "127.0.0.1", "port": $UP_A }, { "host": "127.0.0.1", "port": $UP_B } ],
  "timeouts": { "connect_ms": 1000, "read_ms": 15000, "write_ms": 15000, "total_ms": 120000 },
  "limits": { "max_client_conns": 20000, "max_conns_per_upstream": 1024 },
  "logging": { "level": "warn" }
}
EOF
LOG[ferroxy]=$TMP/ferroxy.log LOG[nginx]=$TMP/nginx/error.log LOG[haproxy]=$TMP/haproxy.log
# (taskset execs the server: $! is the server's pid.)
if has ferroxy; then
    $PIN_SERVER "$FERROXY" --config "$TMP/ferroxy.json" 2>"${LOG[ferroxy]}" & PID[ferroxy]=$!; PIDS+=("$!")
fi
if has nginx; then
    $PIN_SERVER "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "${LOG[nginx]}" 2>"$TMP/nginx/stderr.log" & PID[nginx]=$!; PIDS+=("$!")
fi
if has haproxy; then
    $PIN_SERVER "$HAPROXY" -db -f "$TMP/haproxy.cfg" >"${LOG[haproxy]}" 2>&1 & PID[haproxy]=$!; PIDS+=("$!")
fi

CURL=(curl -s --max-time 5 --cacert "$CERT")
for p in $UP_A $UP_B; do
    for _ in $(seq 1 100); do "${CURL[@]}" -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done
    "${CURL[@]}" -o /dev/null "http://127.0.0.1:$p/" || die "upstream nginx on 127.0.0.1:$p did not start ($(tail -n 3 "$TMP"/up-*/error.log))"
done
for s in $SERVERS; do
    up=0
    for _ in $(seq 1 100); do
        kill -0 "${PID[$s]}" 2>/dev/null || break
        if "${CURL[@]}" -o /dev/null "https://127.0.0.1:${PORT[$s]}/"; then up=1; break; fi
        sleep 0.1
    done
    if ((!up)); then
        echo "---- $s log:" >&2; tail -n 20 "${LOG[$s]}" >&2 || true
        die "$s did not answer on https://127.0.0.1:${PORT[$s]}/ (log above)"
    fi
done

# ---- 0. correctness
declare -A ANSWER_BYTES SESSION
for s in $SERVERS; do
    url="https://127.0.0.1:${PORT[$s]}/"
    for v in 1.3 1.2; do
        got=$("${CURL[@]}" -v --tlsv"$v" --tls-max "$v" -o "$TMP/$s.body" \
            -w '%{http_code} %{http_version} verify=%{ssl_verify_result}' "$url" 2>"$TMP/$s.curl" || true)
        [ "$got" = "200 1.1 verify=0" ] || { cat "$TMP/$s.curl" >&2; die "$s: TLS $v GET / answered '$got'; expected '200 1.1 verify=0'"; }
        grep -q "SSL connection using TLSv$v" "$TMP/$s.curl" || die "$s: curl did not report TLSv$v"
        grep -qE 'ALPN.*accepted.*http/1\.1' "$TMP/$s.curl" || die "$s: ALPN http/1.1 not accepted"
        [ "$(cat "$TMP/$s.body")" = hello ] || die "$s: TLS $v body is '$(head -c 80 "$TMP/$s.body")', not the upstream's 'hello'"
    done
    # s_time's exact request; its answer's size is what every s_time
    # connection must read in (2).
    printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 openssl s_client -quiet -connect "127.0.0.1:${PORT[$s]}" \
        >"$TMP/$s.http10" 2>/dev/null || true
    head -n 1 "$TMP/$s.http10" | grep -q '^HTTP/1\.[01] 200' || die "$s: GET / HTTP/1.0 answered '$(head -n 1 "$TMP/$s.http10")'"
    ANSWER_BYTES[$s]=$(wc -c <"$TMP/$s.http10")
    SESSION[$s]=$(openssl s_client -connect "127.0.0.1:${PORT[$s]}" -alpn http/1.1 -brief </dev/null 2>&1 |
        awk -F': ' '/^Ciphersuite/ {c = $2} /^Server Temp Key/ {k = $2} /^Signature type/ {g = $2} END {print c ", " k ", " g}')
    echo "$s: 200 'hello' over TLSv1.3 and TLSv1.2 (cert verified, ALPN http/1.1); ${SESSION[$s]}; HTTP/1.0 answer ${ANSWER_BYTES[$s]} bytes: ok" >&2
done

# ---- helpers
CLK_TCK=$(getconf CLK_TCK)
ticks() { # $1 = pid: utime + stime of the process (all threads) and of its children
    local p t=0
    for p in "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        [ -r "/proc/$p/stat" ] && t=$((t + $(sed -E 's/.*\) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
    done
    echo "$t"
}
cpu_load() { awk -v c="cpu$CPU_LOAD" '$1 == c {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
now_ns() { date +%s%N; }
to_ms() { sed -E 's/([0-9.]+)us/\1 0.001/; s/([0-9.]+)ms/\1 1/; s/([0-9.]+)s$/\1 1000/' | awk '{printf "%.3f\n", $1*$2}'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
tls_counters() { # ferroxy's handshake counters: "total resumed", and reason=count lines in $1
    local m
    m=$(curl -s --max-time 5 "http://127.0.0.1:$METRICS/metrics") || die "ferroxy: GET /metrics on 127.0.0.1:$METRICS failed"
    awk '/^ferroxy_tls_handshake_failures_total/ {sub(/.*reason="/, ""); sub(/"}/, ""); print $1, $2}' <<<"$m" >"$1"
    awk '/^ferroxy_tls_handshakes_total/ {t += $NF} /^ferroxy_tls_resumed_handshakes_total/ {r = $NF} END {print t + 0, r + 0}' <<<"$m"
}
declare -A HS # row -> "full resumed", and failure deltas in $TMP/fail.ROW
read -r -a LIST <<<"$SERVERS"
order() { # $1 = round: the servers, rotated by the round number
    local k
    for k in $(seq 0 $((${#LIST[@]} - 1))); do echo "${LIST[$(( (k + $1) % ${#LIST[@]} ))]}"; done
}
# measure ROW SERVER: runs the load of ROW against SERVER once and appends
# "rate p99_ms cpu_us_per_item server_busy_pct load_busy_pct" to $TMP/SERVER.ROW
measure() {
    local row=$1 s=$2 url="https://127.0.0.1:${PORT[$2]}/" t0 t1 c0 c1 l0 l1 out n p99=- i k bytes b0 b1 a0 a1
    t0=$(ticks "${PID[$s]}"); c0=$(cpu_load); l0=$(now_ns)
    case "$row" in
        ka|res)
            local hdr=()
            [ "$row" = res ] && hdr=(-H 'Connection: close')
            out=$($PIN_LOAD wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "$url" 2>&1)
            l1=$(now_ns); t1=$(ticks "${PID[$s]}"); c1=$(cpu_load)
            grep -q 'Non-2xx' <<<"$out" && { echo "$out" >&2; die "$s: wrk saw non-2xx answers (row $row, above)"; }
            if grep -q 'Socket errors' <<<"$out"; then
                [ "$row" = ka ] && { echo "$out" >&2; die "$s: wrk saw socket errors at keep-alive (above)"; }
                echo "$s: wrk $(grep 'Socket errors' <<<"$out" | sed 's/^ *//') (row $row)" >>"$TMP/notes"
            fi
            n=$(awk '/requests in/ {print $1}' <<<"$out")
            p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | to_ms)
            ;;
        new)
            for i in $(seq 1 "$NEW_PROCS"); do
                $PIN_LOAD openssl s_time -connect "127.0.0.1:${PORT[$s]}" -new -www / -time "$DURATION" \
                    >"$TMP/st.$i" 2>&1 &
                CLIENTS+=("$!")
            done
            for i in "${!CLIENTS[@]}"; do
                wait "${CLIENTS[$i]}" || { cat "$TMP/st.$((i + 1))" >&2; die "$s: openssl s_time -new failed (above)"; }
            done
            CLIENTS=()
            l1=$(now_ns); t1=$(ticks "${PID[$s]}"); c1=$(cpu_load)
            n=0
            for i in $(seq 1 "$NEW_PROCS"); do
                read -r k bytes < <(awk '/real seconds/ {print $1, $7}' "$TMP/st.$i")
                [ -n "${k:-}" ] || { cat "$TMP/st.$i" >&2; die "$s: no count from s_time (above)"; }
                [ "$bytes" = "${ANSWER_BYTES[$s]}" ] ||
                    die "$s: s_time read $bytes bytes per connection, not the ${ANSWER_BYTES[$s]} of the 200 answer: some answers were not 200"
                n=$((n + k))
            done
            ;;
    esac
    ((n > 0)) || die "$s: no request completed (row $row)"
    read -r b0 a0 <<<"$c0"; read -r b1 a1 <<<"$c1"
    awk -v n="$n" -v p="$p99" -v dt=$((t1 - t0)) -v hz="$CLK_TCK" -v ns=$((l1 - l0)) \
        -v lb=$((b1 - b0)) -v la=$((a1 - a0)) 'BEGIN {
            printf "%.0f %s %.1f %.0f %.0f\n", n / (ns / 1e9), p, dt / hz * 1e6 / n,
                100 * dt / hz / (ns / 1e9), (la ? 100 * lb / la : 0) }' >>"$TMP/$s.$row"
}
run_row() { # $1 = row, $2 = label
    local row=$1 s round h0="" h1 a0 a1 r0 r1
    if has ferroxy; then h0=$(tls_counters "$TMP/fail0.$row"); fi
    for round in $(seq 1 "$ROUNDS"); do
        for s in $(order "$round"); do
            echo "$s: $2 (round $round/$ROUNDS)..." >&2
            measure "$row" "$s"
        done
    done
    if has ferroxy; then
        h1=$(tls_counters "$TMP/fail1.$row")
        read -r a0 r0 <<<"$h0"; read -r a1 r1 <<<"$h1"
        HS[$row]="$((a1 - a0 - r1 + r0)) full, $((r1 - r0)) resumed"
        paste -d' ' "$TMP/fail0.$row" "$TMP/fail1.$row" | awk '$4 > $2 {printf "%s %d, ", $1, $4 - $2}' | sed 's/, $//' >"$TMP/fail.$row"
    fi
}

# ---- warm-up, then the rows
for s in $SERVERS; do
    $PIN_LOAD wrk -t1 -c"$CONNS" -d1s "https://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1
done
: >"$TMP/notes"
started=$(date +%s)
run_row ka "wrk -t1 -c$CONNS -d${DURATION}s keep-alive"
run_row new "$NEW_PROCS x openssl s_time -new -time $DURATION (full handshakes)"
run_row res "wrk -t1 -c$CONNS -d${DURATION}s -H 'Connection: close' (resumed handshakes)"

# ---- the table
declare -A V
for s in $SERVERS; do
    for row in ka new res; do
        for col in 1 2 3 4 5; do
            V[$s.$row.$col]=$(awk -v c=$col '$c != "-" {print $c}' "$TMP/$s.$row" | median)
        done
    done
done
cell() { echo "${V[$1.$2.$3]:--}"; }
ratio() { # ferroxy / $1 for row $2 column $3
    awk -v f="${V[ferroxy.$2.$3]:-}" -v o="${V[$1.$2.$3]:-}" 'BEGIN {if (f == "" || o + 0 == 0) print "-"; else printf "%.2fx", f / o}'
}
line() { # $1 = label, $2 = row, $3 = column
    printf '| %-46s | %9s | %9s | %9s | %9s | %9s |\n' "$1" "$(cell ferroxy "$2" "$3")" "$(cell nginx "$2" "$3")" \
        "$(cell haproxy "$2" "$3")" "$(ratio nginx "$2" "$3")" "$(ratio haproxy "$2" "$3")"
}
printf '\nTLS termination: ferroxy vs nginx vs HAProxy, %s, %s CPUs (%s)\n' "$(date -u +%Y-%m-%d)" "$(nproc)" \
    "$(awk -F: '/model name/ {gsub(/^ /, "", $2); print $2; exit}' /proc/cpuinfo)"
printf '%s (rustls, aws-lc-rs); nginx %s and HAProxy %s on %s; clients: wrk %s, %s\n' \
    "$(if has ferroxy; then "$FERROXY" --version; else echo ferroxy; fi)" "$("$NGINX" -v 2>&1 | sed 's|.*/||')" \
    "$("$HAPROXY" -v | awk 'NR == 1 {print $3}')" "$("$HAPROXY" -vv | awk -F': ' '/Running on OpenSSL/ {print $2}')" \
    "$(wrk -v 2>&1 | awk 'NR == 1 {print $2}')" "$(openssl version | awk '{print $1, $2}')"
printf 'ECDSA P-256 cert; '; for s in $SERVERS; do printf '%s: %s; ' "$s" "${SESSION[$s]}"; done; echo
printf 'servers on CPU %s, load + upstreams (2 x nginx) on CPU %s; median of %s rounds x %ss\n\n' \
    "$CPU_SERVER" "$CPU_LOAD" "$ROUNDS" "$DURATION"
printf '| %-46s | %9s | %9s | %9s | %9s | %9s |\n' "" ferroxy nginx HAProxy f/nginx f/HAProxy
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" "-----------" "-----------" "-----------" "-----------" "-----------"
line "keep-alive c$CONNS: requests/s" ka 1
line "keep-alive c$CONNS: p99 latency, ms" ka 2
line "keep-alive: server CPU us per request" ka 3
line "keep-alive: server CPU busy, % of its core" ka 4
line "keep-alive: load CPU $CPU_LOAD busy, %" ka 5
line "full handshake x$NEW_PROCS (s_time -new): conns/s" new 1
line "full handshake: server CPU us per connection" new 3
line "full handshake: server CPU busy, %" new 4
line "full handshake: load CPU $CPU_LOAD busy, %" new 5
line "resumed, wrk -c$CONNS Connection: close: conns/s" res 1
line "resumed: p99 latency, ms" res 2
line "resumed: server CPU us per connection" res 3
line "resumed: server CPU busy, %" res 4
line "resumed: load CPU $CPU_LOAD busy, %" res 5
echo
if has ferroxy; then
    for row in ka new res; do
        case $row in ka) label="keep-alive" ;; new) label="full-handshake (s_time -new)" ;; res) label="resumed (wrk Connection: close)" ;; esac
        printf 'ferroxy handshakes during the %s row: %s; failures: %s\n' "$label" "${HS[$row]}" "$(if [ -s "$TMP/fail.$row" ]; then cat "$TMP/fail.$row"; else echo none; fi)"
    done
    [ -z "$(cat "$TMP"/fail.*)" ] || echo "(every wrk run first probes the port with a bare TCP connect + close: 1 eof each;
 a wrk run that stops mid-handshake leaves more eof/io_error, up to $CONNS per run)"
fi
[ -s "$TMP/notes" ] && sort "$TMP/notes" | uniq -c | sed 's/^ */note: x/'
printf 'rows took %ss\n' "$(($(date +%s) - started))"

# ---- targets
if has ferroxy && { has nginx || has haproxy; }; then
    missed=0
    best_rps=0 best_p99="" names=()
    for s in nginx haproxy; do
        has "$s" || continue
        names+=("$s")
        best_rps=$(awk -v a="$best_rps" -v b="${V[$s.ka.1]}" 'BEGIN {print (b > a ? b : a)}')
        best_p99=$(awk -v a="$best_p99" -v b="${V[$s.ka.2]}" 'BEGIN {print (a == "" || b < a ? b : a)}')
    done
    target() { # $1 = description, $2 = awk condition on f and o
        if awk -v f="$3" -v o="$4" "BEGIN {exit !($2)}"; then printf 'target met:    %s\n' "$1"
        else printf 'target MISSED: %s\n' "$1"; missed=1; fi
    }
    echo
    target "keep-alive c$CONNS requests/s >= best of ${names[*]} ($best_rps)" "f >= o" "${V[ferroxy.ka.1]}" "$best_rps"
    target "keep-alive c$CONNS p99 <= best of ${names[*]} ($best_p99 ms)" "f <= o" "${V[ferroxy.ka.2]}" "$best_p99"
    if has nginx; then
        target "full-handshake connections/s >= nginx (${V[nginx.new.1]})" "f >= o" "${V[ferroxy.new.1]}" "${V[nginx.new.1]}"
    fi
    if ((missed)) && [ "$STRICT" = 1 ]; then
        echo "STRICT=1: a target was missed" >&2
        exit 1
    fi
fi
