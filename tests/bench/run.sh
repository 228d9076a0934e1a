#!/bin/sh
# `make bench`: mllp-bridge throughput and latency, next to this machine's own
# MLLP ceiling (mllp-load --echo). See docs/performance.md for the method.
#
#   (a) echo ceiling       mllp-load against mllp-load --echo, no storage
#   (b) ack: commit        bridge ACKs after the spool fsync; forwards to (c)'s nginx
#   (c) ack: upstream      bridge ACKs after nginx answered the POST
#   (d) latency @ rate     commit mode at a fixed 5,000 msg/s
#   (e) idle connections   bridge RSS before/after 10,000 idle connections
#   (f) TLS handshakes     per 1,000 upstream requests, from the bridge's /metrics
#
# A scenario that cannot run prints FAILED and the rest go on. No timing is
# asserted: figures depend on the machine. Every process started here is
# stopped by PID on exit.
#
# Environment: BUILD (build), BENCH_SECS (10), BENCH_IDLE (10000),
# BENCH_KEEP=1 keeps the temp dir (logs, configs) for inspection.
set -u

BUILD=${BUILD:-build}
LOAD=$BUILD/bin/mllp-load
BRIDGE=$BUILD/bin/mllp-bridge
SECS=${BENCH_SECS:-10}
IDLE=${BENCH_IDLE:-10000}
CONNS=32
SIZE=1024
RATE=5000
HOST=127.0.0.1
ECHO_PORT=10990
BRIDGE_PORT=10991
TLS_PORT=18443
METRICS_PORT=19100
SENDERS=127.0.0.2      # --bind-from: one source address per connection
IDLE_SENDERS=127.1.0.1 # idle connections, away from the load senders
READY_TIMEOUT=10       # seconds for a server to accept connections
DRAIN_TIMEOUT=20       # seconds for the commit-mode spool to drain upstream

here=$(dirname "$0")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mllp-bench.XXXXXX") || exit 1
rows=$tmp/rows
extra=$tmp/extra
: >"$rows"
: >"$extra"
pids=""
ref_rate=""

log() {
	printf '%s\n' "$*" >&2
}

# start NAME CMD...: runs CMD in the background, output in $tmp/NAME.{out,err}.
start() {
	name=$1
	shift
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	last_pid=$!
	pids="$pids $last_pid"
}

# stop PID: SIGTERM, SIGKILL after 5 s, and forget it.
stop() {
	[ -n "$1" ] || return 0
	if kill -TERM "$1" 2>/dev/null; then
		n=0
		while kill -0 "$1" 2>/dev/null && [ $n -lt 50 ]; do
			sleep 0.1
			n=$((n + 1))
		done
		kill -KILL "$1" 2>/dev/null
	fi
	wait "$1" 2>/dev/null
	rest=""
	for p in $pids; do
		[ "$p" = "$1" ] || rest="$rest $p"
	done
	pids=$rest
}

cleanup() {
	for p in $pids; do
		stop "$p"
	done
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		log "bench: kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# port_open PORT: a TCP connection to HOST:PORT succeeds.
port_open() {
	"$LOAD" --idle 1 -t "$HOST:$1" -d 0 >/dev/null 2>&1
}

# wait_port PORT PID: polls until PORT accepts, PID dies, or READY_TIMEOUT.
wait_port() {
	n=0
	while [ $n -lt $((READY_TIMEOUT * 20)) ]; do
		port_open "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
		n=$((n + 1))
	done
	return 1
}

# field KEY FILE: value of KEY=VALUE in mllp-load's summary line.
field() {
	awk -v k="$1" '{ for (i = 1; i <= NF; i++) { n = index($i, "=");
		if (n && substr($i, 1, n - 1) == k) v = substr($i, n + 1) } } END { print v }' "$2"
}

# fail_row ROW REASON: throughput rows (a)-(d) and resource rows (e)-(f)
# are reported in two sections.
fail_row() {
	case $1 in
	"(e)"* | "(f)"*) printf '%s\tFAILED (%s)\n' "$1" "$2" >>"$extra" ;;
	*) printf '%s\tFAILED\t%s\n' "$1" "$2" >>"$rows" ;;
	esac
	log "bench: $1: FAILED: $2"
}

# load ROW NAME ARGS...: runs mllp-load and records a table row.
load() {
	row=$1
	name=$2
	shift 2
	log "bench: $row: mllp-load $*"
	"$LOAD" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
	rc=$?
	out=$tmp/$name.out
	cat "$out" >&2
	head -n 5 "$tmp/$name.err" >&2
	if [ ! -s "$out" ]; then
		fail_row "$row" "mllp-load exited $rc without a summary"
		return 1
	fi
	if [ $rc -ne 0 ]; then
		fail_row "$row" "sent=$(field sent "$out") acked=$(field acked "$out") nak=$(field nak "$out") unacked=$(field unacked "$out") errors=$(field errors "$out")"
		return 1
	fi
	printf '%s\t%s\t%s\t%s\t%s\n' "$row" "$(field rate "$out")" "$(field p50 "$out")" \
		"$(field p99 "$out")" "$(field max "$out")" >>"$rows"
}

load_args() {
	echo "-c $CONNS -s $SIZE --bind-from $SENDERS -d $SECS"
}

# ---- (a) echo ceiling ------------------------------------------------------

scenario_echo() {
	row="(a) echo ceiling"
	if port_open $ECHO_PORT; then
		fail_row "$row" "port $ECHO_PORT already in use"
		return
	fi
	start echo "$LOAD" --echo "$HOST:$ECHO_PORT"
	echo_pid=$last_pid
	if ! wait_port $ECHO_PORT "$echo_pid"; then
		fail_row "$row" "echo server did not start: $(head -n 1 "$tmp/echo.err")"
	elif load "$row" load-a -t "$HOST:$ECHO_PORT" $(load_args); then
		ref_rate=$(field rate "$tmp/load-a.out")
	fi
	stop "$echo_pid"
}

# ---- TLS receiver (nginx) --------------------------------------------------

make_certs() {
	if [ -f tests/tools/mkcerts.sh ]; then
		sh tests/tools/mkcerts.sh "$tmp" && return 0
	fi
	# Fallback while mkcerts.sh is not there: an EC CA and a localhost leaf.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=bench CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
		-addext "basicConstraints=critical,CA:TRUE" >/dev/null 2>&1 &&
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-subj "/CN=localhost" -keyout "$tmp/server.key" -out "$tmp/server.csr" \
			>/dev/null 2>&1 &&
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
			>"$tmp/server.ext" &&
		openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
			-CAcreateserial -days 2 -extfile "$tmp/server.ext" -out "$tmp/server.pem" \
			>/dev/null 2>&1
}

nginx_pid=""
start_nginx() {
	if ! command -v nginx >/dev/null 2>&1; then
		log "bench: nginx not installed (apt-get install nginx-light)"
		return 1
	fi
	if port_open $TLS_PORT; then
		log "bench: port $TLS_PORT already in use"
		return 1
	fi
	make_certs || {
		log "bench: could not create certificates"
		return 1
	}
	mkdir -p "$tmp/www" # empty document root: see nginx.conf.in
	sed -e "s#@DIR@#$tmp#g" -e "s#@PORT@#$TLS_PORT#g" "$here/nginx.conf.in" >"$tmp/nginx.conf"
	start nginx nginx -c "$tmp/nginx.conf" -p "$tmp/"
	nginx_pid=$last_pid
	if ! wait_port $TLS_PORT "$nginx_pid"; then
		log "bench: nginx did not start: $(cat "$tmp/nginx.err" "$tmp/nginx-error.log" 2>/dev/null | head -n 3)"
		return 1
	fi
	# The receiver must answer a POST with 200, or every upstream figure is void.
	if command -v curl >/dev/null 2>&1; then
		code=$(head -c $SIZE /dev/zero | curl -s -o /dev/null -w '%{http_code}' \
			--cacert "$tmp/ca.pem" --data-binary @- "https://localhost:$TLS_PORT/v1/hl7")
		[ "$code" = 200 ] || {
			log "bench: nginx answered a POST with '$code', not 200"
			return 1
		}
	fi
}

# ---- the bridge ------------------------------------------------------------

bridge_pid=""
# start_bridge MODE: commit or upstream, fresh spool each time.
start_bridge() {
	cfg=$tmp/bridge-$1.yaml
	cat >"$cfg" <<EOF
spool: $tmp/spool-$1.db
observability: { listen: $HOST:$METRICS_PORT }
integrations:
  - name: bench
    listen: $HOST:$BRIDGE_PORT
    sources: [127.0.0.0/8]
    ack: $1
    upstream:
      url: https://localhost:$TLS_PORT/v1/hl7
      ca_file: $tmp/ca.pem
      timeout: 10s
EOF
	if port_open $BRIDGE_PORT || port_open $METRICS_PORT; then
		log "bench: port $BRIDGE_PORT or $METRICS_PORT already in use"
		return 1
	fi
	start "bridge-$1" "$BRIDGE" -c "$cfg"
	bridge_pid=$last_pid
	wait_port $BRIDGE_PORT "$bridge_pid" && return 0
	log "bench: mllp-bridge ($1) did not start: $(head -n 3 "$tmp/bridge-$1.err")"
	stop "$bridge_pid"
	bridge_pid=""
	return 1
}

# metric NAME: the sum over all label sets of NAME on /metrics ("" if none).
metric() {
	command -v curl >/dev/null 2>&1 || return 0
	curl -s --max-time 2 "http://$HOST:$METRICS_PORT/metrics" | awk -v m="$1" '
		$1 == m || index($1, m "{") == 1 { s += $NF; found = 1 }
		END { if (found) printf "%.0f\n", s }'
}

# handshakes LABEL: (f) from the running bridge.
handshakes() {
	conns=$(metric mllp_upstream_connections_total)
	reqs=$(metric mllp_upstream_requests_total)
	if [ -z "$conns" ] || [ -z "$reqs" ] || [ "$reqs" -eq 0 ]; then
		fail_row "(f) TLS handshakes, $1" "no mllp_upstream_* metrics on :$METRICS_PORT"
		return
	fi
	printf '%s\t%s\n' "(f) TLS handshakes, $1" \
		"$(awk -v c="$conns" -v r="$reqs" 'BEGIN {
			printf "%.3f per 1000 requests (%d connections, %d requests)", c * 1000 / r, c, r }')" \
		>>"$extra"
}

# Commit mode ACKs before forwarding: let the spool drain so (d) and (f)
# see a quiet bridge; the drain time says how far forwarding lags ACKing.
wait_drain() {
	want=0
	for f in "$tmp/load-d.out" "$tmp/load-b.out" "$tmp/load-b2.out"; do
		[ -s "$f" ] && want=$((want + $(field acked "$f")))
	done
	[ "$want" -gt 0 ] || return 0
	t0=$(date +%s)
	while [ $(($(date +%s) - t0)) -lt $DRAIN_TIMEOUT ]; do
		got=$(metric mllp_upstream_requests_total)
		[ -n "$got" ] || return 0
		if [ "$got" -ge "$want" ]; then
			log "bench: spool drained upstream $(($(date +%s) - t0)) s after the load ended"
			return 0
		fi
		sleep 0.5
	done
	log "bench: spool not drained after $DRAIN_TIMEOUT s ($got of $want forwarded)"
}

# group_commit LABEL: rows per commit and the mean commit time (fsync
# included) so far, from the running bridge's /metrics.
group_commit() {
	command -v curl >/dev/null 2>&1 || return 0
	curl -s --max-time 2 "http://$HOST:$METRICS_PORT/metrics" | awk -v label="$1" '
		$1 == "mllp_spool_commits_total" { c = $2 }
		$1 == "mllp_spool_commit_rows_total" { r = $2 }
		$1 == "mllp_spool_commit_seconds_sum" { t = $2 }
		END { if (c > 0) printf "%s\t%.1f rows per commit, %.2f ms per commit (fsync included), %d commits\n",
			label, r / c, t * 1000 / c, c }' >>"$extra"
}

rss_kib() {
	awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

# (e): RSS of the bridge before and after IDLE idle connections.
scenario_idle() {
	row="(e) idle connections"
	before=$(rss_kib "$bridge_pid")
	start idle "$LOAD" --idle "$IDLE" -t "$HOST:$BRIDGE_PORT" --bind-from $IDLE_SENDERS -d 120
	idle_pid=$last_pid
	n=0
	while ! grep -q '^open=' "$tmp/idle.out" && kill -0 "$idle_pid" 2>/dev/null &&
		[ $n -lt 600 ]; do
		sleep 0.05
		n=$((n + 1))
	done
	# The kernel completes handshakes before the bridge accepts them: wait
	# until the bridge's RSS stops moving.
	after=$(rss_kib "$bridge_pid")
	n=0
	while [ $n -lt 20 ]; do
		sleep 0.25
		now=$(rss_kib "$bridge_pid")
		[ "$now" = "$after" ] && break
		after=$now
		n=$((n + 1))
	done
	opened=$(sed -n 's/^open=\([0-9]*\).*/\1/p' "$tmp/idle.out")
	stop "$idle_pid"
	if [ -z "$before" ] || [ -z "$after" ] || [ "${opened:-0}" -ne "$IDLE" ]; then
		fail_row "$row" "opened ${opened:-0} of $IDLE: $(head -n 1 "$tmp/idle.err")"
		return
	fi
	printf '%s\t%s\n' "$row" "$(awk -v b="$before" -v a="$after" -v n="$IDLE" 'BEGIN {
		printf "%.2f KiB per connection (VmRSS %d -> %d KiB, %d connections)",
			(a - b) / n, b, a, n }')" >>"$extra"
}

scenario_commit() {
	if ! start_bridge commit; then
		fail_row "(b) bridge ack: commit" "mllp-bridge did not start"
		fail_row "(d) commit @$RATE msg/s" "mllp-bridge did not start"
		fail_row "(e) idle connections" "mllp-bridge did not start"
		return
	fi
	# Latency first, on a fresh bridge with an empty spool: the full-speed
	# runs below leave a backlog the forwarder works off for minutes.
	load "(d) commit @$RATE msg/s" load-d -t "$HOST:$BRIDGE_PORT" $(load_args) -r $RATE
	scenario_idle
	load "(b) bridge ack: commit" load-b -t "$HOST:$BRIDGE_PORT" $(load_args)
	group_commit "(g) group commit, (d)+(b)"
	# The same with 8 frames in flight per connection: the batch is no
	# longer capped by the 32 connections, which shows what group commit
	# buys on this disk.
	load "(b2) commit, pipeline 8" load-b2 -t "$HOST:$BRIDGE_PORT" $(load_args) -p 8
	group_commit "(g) group commit, (d)+(b)+(b2)"
	wait_drain
	handshakes commit
	stop "$bridge_pid"
}

scenario_upstream() {
	if ! start_bridge upstream; then
		fail_row "(c) bridge ack: upstream" "mllp-bridge did not start"
		return
	fi
	load "(c) bridge ack: upstream" load-c -t "$HOST:$BRIDGE_PORT" $(load_args)
	handshakes upstream
	stop "$bridge_pid"
}

# ---- report ----------------------------------------------------------------

report() {
	printf '\nmllp-edge bench, %s, %s, %s CPUs, spool on %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
		"$(uname -r)" "$(nproc)" "$(stat -f -c %T "$tmp")"
	printf 'load: %s connections (one source address each), %s-byte ADT^A01, pipeline 1, %s s\n\n' \
		$CONNS $SIZE "$SECS"
	sort -t '	' -k1,1 "$rows" | awk -F '\t' -v ref="$ref_rate" '
		BEGIN { printf "%-26s %10s %9s %9s %9s %7s\n", "scenario", "msg/s", "p50", "p99", "max", "vs (a)" }
		$2 == "FAILED" { printf "%-26s FAILED (%s)\n", $1, $3; next }
		{ r = (ref > 0) ? sprintf("%.2f", $2 / ref) : "-"
		  printf "%-26s %10s %9s %9s %9s %7s\n", $1, $2, $3, $4, $5, r }'
	echo
	sort "$extra" | awk -F '\t' '{ printf "%-30s %s\n", $1, $2 }'
	return 0
}

main() {
	if [ ! -x "$LOAD" ]; then
		log "bench: $LOAD is missing (make $LOAD)"
		exit 1
	fi
	# The bridge inherits this: 10,000 idle connections need descriptors.
	ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
	scenario_echo
	if [ ! -x "$BRIDGE" ]; then
		for r in "(b) bridge ack: commit" "(c) bridge ack: upstream" \
			"(d) commit @$RATE msg/s" "(e) idle connections" \
			"(f) TLS handshakes"; do
			fail_row "$r" "$BRIDGE not built"
		done
	elif ! start_nginx; then
		fail_row "(b) bridge ack: commit" "no TLS receiver"
		fail_row "(c) bridge ack: upstream" "no TLS receiver"
	else
		scenario_commit
		scenario_upstream
	fi
	report
}

main
