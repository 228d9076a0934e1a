#!/bin/sh
# `make bench`: mllp-bridge throughput and latency, next to this machine's own
# MLLP ceiling (mllp-load --echo) and next to a Node forwarder without storage.
# See docs/performance.md for the method, the rows and the targets.
#
#   (a) echo ceiling       mllp-load against mllp-load --echo, no storage
#   (b) ack: commit        bridge ACKs after the spool fsync; one source address,
#                          and again from 32 addresses
#   (c) ack: upstream      bridge ACKs after nginx answered the POST; one
#                          address, 32 addresses, and forwarder.js for the ratio
#   (d) latency @ rate     commit mode at a fixed 5,000 msg/s
#   (e) idle connections   bridge RSS before/after 10,000 idle connections
#   (f) TLS handshakes     per 1,000 upstream requests, from the bridge's /metrics
#   (w) WAN                nginx behind delay-proxy (10 ms each way): messages
#                          delivered per second, order feed/patient/sender, and
#                          forwarder.js through the same proxy
#   (n) nginx variants     plain, early answer, GOAWAY after 1000, close per
#                          response: delivered per second and duplicate requests
#   (h) flood              one sender at 100 msg/s alone, then beside 16 peers
#                          flooding empty frames: its p50/p99
#   file channels          then tests/bench/files.sh (SFTP pull, batch, push
#                          and the loop stall, issue 14; about 25 minutes,
#                          needs root and sshd; BENCH_FILES=0 skips it)
#
# Every load carries 8 feeds x 200 patients (mllp-load --feeds --patients).
# A scenario that cannot run prints FAILED (reason) and the rest go on. No
# timing is asserted: figures depend on the machine; the last table says
# which targets this run met. Every process started here is stopped by PID
# on exit.
#
# Environment: BUILD (build), BENCH_SECS (10), BENCH_IDLE (10000),
# BENCH_N (20000 messages per delivery run), BENCH_DELIVER_TIMEOUT (30 s),
# BENCH_ORDER (patient: the bridge's order in (b)-(d) and (n)),
# BENCH_NODE (/usr/bin/node), BENCH_KEEP=1 keeps the temp dir (logs, configs).
set -u

BUILD=${BUILD:-build}
LOAD=$BUILD/bin/mllp-load
BRIDGE=$BUILD/bin/mllp-bridge
PROXY=$BUILD/bin/delay-proxy
NODE=${BENCH_NODE:-/usr/bin/node}
SECS=${BENCH_SECS:-10}
IDLE=${BENCH_IDLE:-10000}
CONNS=32
SIZE=1024
RATE=5000
FEEDS=8
PATIENTS=200
MIX="--feeds $FEEDS --patients $PATIENTS"
ORDER=${BENCH_ORDER:-patient}
N=${BENCH_N:-20000}                          # messages per delivery run, (w) and (n)
DELIVER_TIMEOUT=${BENCH_DELIVER_TIMEOUT:-30} # seconds from first send to last delivery
WAN_CONNS=16
WAN_DELAY_MS=10 # one way: 20 ms round trip
HOST=127.0.0.1
ECHO_PORT=10990
BRIDGE_PORT=10991
NODE_PORT=10992
PROXY_PORT=18450
TLS_PORT=18443
METRICS_PORT=19100
SENDERS=127.0.0.2      # --bind-from for the 32-address rows: one per connection
IDLE_SENDERS=127.1.0.1 # idle connections, away from the load senders
READY_TIMEOUT=10       # seconds for a server to accept connections
DRAIN_TIMEOUT=20       # seconds for the commit-mode spool to drain upstream

here=$(dirname "$0")
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mllp-bench.XXXXXX") || exit 1
rows=$tmp/rows
extra=$tmp/extra
deliv=$tmp/delivered # rows of (w) and (n)
results=$tmp/results # "key value" lines for the targets table
: >"$rows"
: >"$extra"
: >"$deliv"
: >"$results"
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

# fail_row ROW REASON: throughput rows (a)-(d), delivery rows (w) and (n),
# and resource rows (e)-(g) are reported in three sections.
fail_row() {
	case $1 in
	"(e)"* | "(f)"* | "(g)"*) printf '%s\tFAILED (%s)\n' "$1" "$2" >>"$extra" ;;
	"(w"* | "(n"*) printf '%s\tFAILED\t%s\n' "$1" "$2" >>"$deliv" ;;
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

# res KEY VALUE: a figure for the targets table.
res() {
	printf '%s %s\n' "$1" "$2" >>"$results"
}

# load_args [many]: the common load, from one source address (the hospital's
# interface engine), or with "many" from 32 (one per connection).
load_args() {
	echo "-c $CONNS -s $SIZE $MIX -d $SECS${1:+ --bind-from $SENDERS}"
}

now() {
	date +%s.%N
}

# since T0: seconds elapsed, fractional.
since() {
	awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f\n", b - a }'
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
	elif load "$row" load-a -t "$HOST:$ECHO_PORT" $(load_args many); then
		ref_rate=$(field rate "$tmp/load-a.out")
	fi
	stop "$echo_pid"
}

# ---- TLS receiver (nginx) --------------------------------------------------

certs_made=0
make_certs() {
	[ $certs_made = 1 ] && return 0
	certs_made=1
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

# nginx_variant NAME: the sed program that makes variant NAME of nginx.conf.in
# (the tags are explained at the top of that file).
nginx_variant() {
	case $1 in
	plain) echo '' ;;
	early) echo '/#READ$/d; s/#EARLY //' ;;
	goaway) echo '/#RAISED$/d' ;;
	close) echo 's/#CLOSE //' ;;
	*) return 1 ;;
	esac
}

nginx_pid=""
nginx_log=""
nginx_runs=0
# start_nginx VARIANT: a fresh nginx with its own access log ($nginx_log);
# on failure $why says why.
start_nginx() {
	why=""
	if ! command -v nginx >/dev/null 2>&1; then
		why="nginx not installed (apt-get install nginx-light)"
	elif port_open $TLS_PORT; then
		why="port $TLS_PORT already in use"
	elif ! make_certs; then
		why="could not create certificates"
	fi
	if [ -n "$why" ]; then
		log "bench: $why"
		return 1
	fi
	nginx_runs=$((nginx_runs + 1))
	conf=$tmp/nginx-$1.$nginx_runs.conf
	nginx_log=$tmp/access-$1.$nginx_runs.log
	mkdir -p "$tmp/www" # empty document root: see nginx.conf.in
	sed -e "s#@DIR@#$tmp#g" -e "s#@PORT@#$TLS_PORT#g" -e "s#@LOG@#$nginx_log#g" \
		-e "$(nginx_variant "$1")" "$here/nginx.conf.in" >"$conf"
	start "nginx-$1.$nginx_runs" nginx -c "$conf" -p "$tmp/"
	nginx_pid=$last_pid
	if ! wait_port $TLS_PORT "$nginx_pid"; then
		why="nginx did not start: $(cat "$tmp/nginx-$1.$nginx_runs.err" "$tmp/nginx-error.log" 2>/dev/null | head -n 3)"
		log "bench: $why"
		stop_nginx
		return 1
	fi
	# The receiver must answer a POST with 200, or every upstream figure is void.
	if command -v curl >/dev/null 2>&1; then
		code=$(head -c $SIZE /dev/zero | curl -s -o /dev/null -w '%{http_code}' \
			--cacert "$tmp/ca.pem" -H 'Idempotency-Key: bench-probe' \
			--data-binary @- "https://localhost:$TLS_PORT/v1/hl7")
		if [ "$code" != 200 ]; then
			why="nginx answered a POST with '$code', not 200"
			log "bench: $why"
			stop_nginx
			return 1
		fi
	fi
}

stop_nginx() {
	stop "$nginx_pid"
	nginx_pid=""
}

# duplicates LOG: after nginx stopped (its log is then complete), the POSTs
# whose Idempotency-Key nginx saw before, and the number of POSTs. The
# start-up probe (key bench-probe) is not counted.
duplicates() {
	awk '$4 != "-" && $4 != "bench-probe" { n++; if (seen[$4]++) d++ }
		END { printf "%d %d\n", d, n }' "$1" 2>/dev/null
}

# ---- delay-proxy and forwarder.js --------------------------------------------

proxy_pid=""
# start_proxy NAME: delay-proxy on PROXY_PORT in front of nginx.
start_proxy() {
	why=""
	if [ ! -x "$PROXY" ]; then
		why="$PROXY is missing (make $PROXY)"
	elif port_open $PROXY_PORT; then
		why="port $PROXY_PORT already in use"
	else
		start "proxy-$1" "$PROXY" --listen "$HOST:$PROXY_PORT" --to "$HOST:$TLS_PORT" \
			--delay-ms $WAN_DELAY_MS
		proxy_pid=$last_pid
		wait_port $PROXY_PORT "$proxy_pid" && return 0
		why="delay-proxy did not start: $(head -n 1 "$tmp/proxy-$1.err")"
		stop_proxy
	fi
	log "bench: $why"
	return 1
}

stop_proxy() {
	stop "$proxy_pid"
	proxy_pid=""
}

node_pid=""
# start_node NAME URL: forwarder.js on NODE_PORT, posting to URL.
start_node() {
	why=""
	if [ ! -x "$NODE" ]; then
		why="$NODE is missing (apt-get install nodejs)"
	elif port_open $NODE_PORT; then
		why="port $NODE_PORT already in use"
	else
		start "node-$1" "$NODE" "$here/forwarder.js" --listen "$HOST:$NODE_PORT" \
			--upstream "$2" --ca "$tmp/ca.pem"
		node_pid=$last_pid
		wait_port $NODE_PORT "$node_pid" && return 0
		why="forwarder.js did not start: $(head -n 1 "$tmp/node-$1.err")"
		stop_node
	fi
	log "bench: $why"
	return 1
}

stop_node() {
	stop "$node_pid"
	node_pid=""
}

# ---- the bridge ------------------------------------------------------------

bridge_pid=""
# start_bridge NAME MODE ORDER URL: a bridge with a fresh spool, `ack: MODE`,
# `order: ORDER` (none: the bridge's default) and its upstream at URL. On
# failure $why holds the bridge's own words (a refused config, say).
start_bridge() {
	cfg=$tmp/bridge-$1.yaml
	{
		printf 'gate: open\n' # no tunnels: the bridge alone
		printf 'spool: %s\n' "$tmp/spool-$1.db"
		printf 'observability: { listen: %s }\n' "$HOST:$METRICS_PORT"
		# (e) holds IDLE connections: above connections.max's default.
		printf 'connections: { max: %s }\n' $((IDLE + 1000))
		printf 'integrations:\n  - name: bench\n'
		printf '    listen: %s\n    sources: [127.0.0.0/8]\n' "$HOST:$BRIDGE_PORT"
		printf '    ack: %s\n' "$2"
		[ "$3" = none ] || printf '    order: %s\n' "$3"
		printf '    upstream:\n      url: %s\n      ca_file: %s\n      timeout: 10s\n' \
			"$4" "$tmp/ca.pem"
	} >"$cfg"
	why=""
	if [ ! -x "$BRIDGE" ]; then
		why="$BRIDGE not built"
	elif port_open $BRIDGE_PORT || port_open $METRICS_PORT; then
		why="port $BRIDGE_PORT or $METRICS_PORT already in use"
	else
		start "bridge-$1" "$BRIDGE" -c "$cfg"
		bridge_pid=$last_pid
		wait_port $BRIDGE_PORT "$bridge_pid" && return 0
		why="mllp-bridge did not start: $(head -n 3 "$tmp/bridge-$1.err" | tr '\n' ' ')"
		stop_bridge
	fi
	log "bench: $why"
	return 1
}

stop_bridge() {
	stop "$bridge_pid"
	bridge_pid=""
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

# Commit mode ACKs before forwarding: let the spool drain so (f) sees a
# quiet bridge; the drain time says how far forwarding lags ACKing.
wait_drain() {
	want=0
	for f in "$tmp/load-d.out" "$tmp/load-b.out" "$tmp/load-bm.out" "$tmp/load-b2.out"; do
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

LOCAL_URL=https://localhost:$TLS_PORT/v1/hl7
WAN_URL=https://localhost:$PROXY_PORT/v1/hl7

scenario_commit() {
	if ! start_bridge commit commit "$ORDER" "$LOCAL_URL"; then
		for r in "(b) commit, 1 address" "(b) commit, 32 addresses" \
			"(b2) commit, pipeline 8" "(d) commit @$RATE msg/s" "(e) idle connections"; do
			fail_row "$r" "$why"
		done
		return
	fi
	# Latency first, on a fresh bridge with an empty spool: the full-speed
	# runs below leave a backlog the forwarder works off for minutes.
	load "(d) commit @$RATE msg/s" load-d -t "$HOST:$BRIDGE_PORT" $(load_args) -r $RATE &&
		res d_p99 "$(field p99 "$tmp/load-d.out" | tr -d ms)"
	scenario_idle
	load "(b) commit, 1 address" load-b -t "$HOST:$BRIDGE_PORT" $(load_args) &&
		res b_rate "$(field rate "$tmp/load-b.out")"
	group_commit "(g) group commit, (d)+(b)"
	load "(b) commit, 32 addresses" load-bm -t "$HOST:$BRIDGE_PORT" $(load_args many)
	# The same with 8 frames in flight per connection: the batch is no
	# longer capped by the 32 connections, which shows what group commit
	# buys on this disk.
	load "(b2) commit, pipeline 8" load-b2 -t "$HOST:$BRIDGE_PORT" $(load_args) -p 8
	group_commit "(g) group commit, (d)+(b)+(b2)"
	wait_drain
	handshakes commit
	stop_bridge
}

scenario_upstream() {
	if start_bridge upstream upstream "$ORDER" "$LOCAL_URL"; then
		load "(c) upstream, 1 address" load-c -t "$HOST:$BRIDGE_PORT" $(load_args) &&
			res c_rate "$(field rate "$tmp/load-c.out")"
		handshakes upstream
		stop_bridge
	else
		fail_row "(c) upstream, 1 address" "$why"
	fi
	if start_bridge upstream-many upstream "$ORDER" "$LOCAL_URL"; then
		load "(c) upstream, 32 addresses" load-cm -t "$HOST:$BRIDGE_PORT" $(load_args many)
		stop_bridge
	else
		fail_row "(c) upstream, 32 addresses" "$why"
	fi
	# The comparison line: the same load through a forwarder that stores
	# nothing and ACKs after the 2xx, as upstream mode does.
	if start_node local "$LOCAL_URL"; then
		load "(c) upstream, node forwarder" load-cn -t "$HOST:$NODE_PORT" $(load_args) &&
			res c_node "$(field rate "$tmp/load-cn.out")"
		stop_node
	else
		fail_row "(c) upstream, node forwarder" "$why"
	fi
}

# ---- (h) a well-behaved sender beside 16 flooders --------------------------

# flooder FILE: one connection that sends FILE and reads (and drops) the
# answers, niced: it stands for a machine of its own, and must not take the
# two cores from the bridge and the sender measured.
flooder() {
	nice -n 10 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
		cat <&3 >/dev/null & cat "$2" >&3; sleep "$3"' "$HOST" "$BRIDGE_PORT" "$1" "$SECS" \
		>/dev/null 2>&1 &
	pids="$pids $!"
	flooders="$flooders $!"
}

# One sender at 100 msg/s, alone and then beside 16 peers flooding empty
# frames (4 MiB each) and reading their answers, on a fresh bridge.
scenario_flood() {
	if ! start_bridge flood commit "$ORDER" "$LOCAL_URL"; then
		fail_row "(h) 1 sender, alone" "$why"
		return
	fi
	load "(h) 1 sender, alone" load-h -t "$HOST:$BRIDGE_PORT" -c 1 -s $SIZE -r 100 \
		-d "$SECS" --bind-from 127.0.0.9 && res h_p99 "$(field p99 "$tmp/load-h.out" | tr -d ms)"
	yes "$(printf '\013\034\015')" | tr -d '\n' | head -c $((4 << 20)) >"$tmp/empties"
	flooders=""
	for i in $(seq 1 16); do flooder "$tmp/empties"; done
	load "(h2) 1 sender, 16 flooders" load-h2 -t "$HOST:$BRIDGE_PORT" -c 1 -s $SIZE -r 100 \
		-d "$SECS" --bind-from 127.0.0.9 && res h2_p99 "$(field p99 "$tmp/load-h2.out" | tr -d ms)"
	for p in $flooders; do stop "$p"; done
	stop_bridge
}

# ---- delivered per second: (w) and (n) ------------------------------------

# deliver ROW NAME LOAD-ARGS...: sends N messages to the running bridge and
# polls its mllp_delivered_total (every 50 ms) until all acknowledged
# messages were delivered, or DELIVER_TIMEOUT after the first send. Sets
# d_rate (delivered/s from first send to last delivery, or to the timeout),
# d_ack (ACK p99) and d_note. Returns 1 (row FAILED) when it cannot measure.
deliver() {
	drow=$1
	dname=$2
	shift 2
	d_rate="" d_ack="" d_note=""
	base=$(metric mllp_delivered_total)
	if [ -z "$base" ]; then
		fail_row "$drow" "no mllp_delivered_total on :$METRICS_PORT/metrics"
		return 1
	fi
	log "bench: $drow: mllp-load -n $N $*"
	t0=$(now)
	"$LOAD" -n "$N" -d "$DELIVER_TIMEOUT" "$@" >"$tmp/$dname.out" 2>"$tmp/$dname.err" &
	lpid=$!
	pids="$pids $lpid"
	want=$N
	got=0
	done_at=""
	while :; do
		if [ -n "$lpid" ] && ! kill -0 "$lpid" 2>/dev/null; then
			stop "$lpid" # reaps it
			lpid=""
			want=$(field acked "$tmp/$dname.out")
			want=${want:-0}
		fi
		cur=$(metric mllp_delivered_total)
		got=$((${cur:-$base} - base))
		el=$(since "$t0")
		if [ "$want" -gt 0 ] && [ "$got" -ge "$want" ] && [ -z "$lpid" ]; then
			done_at=$el
			break
		fi
		[ -z "$lpid" ] && [ "$want" -eq 0 ] && break
		awk -v e="$el" -v t="$DELIVER_TIMEOUT" 'BEGIN { exit !(e >= t) }' && break
		sleep 0.05
	done
	[ -n "$lpid" ] && stop "$lpid"
	cat "$tmp/$dname.out" >&2
	head -n 5 "$tmp/$dname.err" >&2
	acked=$(field acked "$tmp/$dname.out")
	if [ "${acked:-0}" -eq 0 ]; then
		fail_row "$drow" "nothing acknowledged: $(head -n 1 "$tmp/$dname.err")"
		return 1
	fi
	d_ack=$(field p99 "$tmp/$dname.out")
	[ "$acked" -lt "$N" ] && d_note="acked $acked of $N; "
	if [ -n "$done_at" ]; then
		d_rate=$(awk -v n="$got" -v t="$done_at" 'BEGIN { printf "%.0f", n / t }')
		d_note="$d_note$got in ${done_at} s"
	else
		d_rate=$(awk -v n="$got" -v t="$el" 'BEGIN { printf "%.0f", n / t }')
		d_note="${d_note}partial: $got of $acked delivered in $el s"
	fi
	log "bench: $drow: $d_rate delivered/s ($d_note)"
	return 0
}

# deliv_row ROW RATE ACK-P99 NOTE: after nginx stopped, with its duplicates.
deliv_row() {
	set -- "$1" "$2" "$3" "$4" $(duplicates "$nginx_log")
	if [ -z "${6:-}" ] || [ "$6" -eq 0 ]; then
		fail_row "$1" "nginx logged no request"
		return 1
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$5" "$6" "$4" >>"$deliv"
	dups=$5
}

# wan_bridge ROW ORDER: 8 feeds x 200 patients on 16 connections from one
# address, commit mode, upstream 20 ms away.
wan_bridge() {
	ok=1
	if ! start_nginx plain; then
		fail_row "$1" "$why"
		return
	fi
	if ! start_proxy "$2"; then
		fail_row "$1" "$why"
	elif ! start_bridge "wan-$2" commit "$2" "$WAN_URL"; then
		fail_row "$1" "$why"
	else
		deliver "$1" "load-w-$2" -t "$HOST:$BRIDGE_PORT" -c $WAN_CONNS -s $SIZE $MIX
		ok=$?
		stop_bridge
	fi
	stop_proxy
	stop_nginx
	[ -n "$why" ] || [ $ok -ne 0 ] && return
	deliv_row "$1" "$d_rate" "$d_ack" "$d_note" && res "wan_$2" "$d_rate"
}

# wan_node: the same load through forwarder.js; it ACKs after the 2xx, so
# its ACK rate over BENCH_SECS is its delivery rate.
wan_node() {
	row="(w4) WAN node forwarder"
	if ! start_nginx plain; then
		fail_row "$row" "$why"
		return
	fi
	ok=1
	if ! start_proxy node; then
		fail_row "$row" "$why"
	elif ! start_node wan "$WAN_URL"; then
		fail_row "$row" "$why"
	else
		log "bench: $row: mllp-load -c $WAN_CONNS $MIX -d $SECS"
		"$LOAD" -t "$HOST:$NODE_PORT" -c $WAN_CONNS -s $SIZE $MIX -d "$SECS" \
			>"$tmp/load-w-node.out" 2>"$tmp/load-w-node.err"
		cat "$tmp/load-w-node.out" >&2
		if [ -s "$tmp/load-w-node.out" ] && [ "$(field acked "$tmp/load-w-node.out")" -gt 0 ]; then
			ok=0
		else
			fail_row "$row" "mllp-load: $(head -n 1 "$tmp/load-w-node.err")"
		fi
		stop_node
	fi
	stop_proxy
	stop_nginx
	[ $ok -eq 0 ] || return
	f=$tmp/load-w-node.out
	deliv_row "$row" "$(field rate "$f")" "$(field p99 "$f")" \
		"ACK rate = delivery rate, $(field acked "$f") in $(field secs "$f") s" &&
		res wan_node "$(field rate "$f")"
}

scenario_wan() {
	wan_bridge "(w1) WAN order: feed" feed
	wan_bridge "(w2) WAN order: patient" patient
	wan_bridge "(w3) WAN order: sender" sender
	wan_node
}

# nginx_row ROW VARIANT: the commit-mode bridge at 0 ms against one variant.
nginx_row() {
	if ! start_nginx "$2"; then
		fail_row "$1" "$why"
		return
	fi
	ok=1
	if ! start_bridge "nginx-$2" commit "$ORDER" "$LOCAL_URL"; then
		fail_row "$1" "$why"
	else
		deliver "$1" "load-n-$2" -t "$HOST:$BRIDGE_PORT" -c $CONNS -s $SIZE $MIX
		ok=$?
		c=$(metric mllp_upstream_connections_total)
		r=$(metric mllp_upstream_requests_total)
		stop_bridge
	fi
	stop_nginx
	[ $ok -eq 0 ] || return
	deliv_row "$1" "$d_rate" "$d_ack" "$d_note; ${c:-?} TLS connections, ${r:-?} POSTs" &&
		res "n_$2" "$d_rate" && res "n_$2_dups" "$dups"
}

scenario_nginx() {
	nginx_row "(n1) nginx plain" plain
	nginx_row "(n2) nginx early answer" early
	nginx_row "(n3) nginx GOAWAY (defaults)" goaway
	nginx_row "(n4) nginx close-per-response" close
}

# ---- report ----------------------------------------------------------------

# target LABEL FIGURE MET: one line of the targets table; MET is yes, no,
# or empty when the figure is missing.
targets() {
	awk -v feeds=$FEEDS -v rtt=$((2 * WAN_DELAY_MS)) '
		NR == FNR { v[$1] = $2; next }
		function has(k) { return (k in v) && v[k] != "" }
		function line(label, fig, ok) {
			printf "%-44s %-28s %s\n", label, fig, ok == "" ? "n/a" : (ok ? "yes" : "no") }
		function ratio(a, b) { return has(a) && has(b) && v[b] > 0 }
		function variant(k, lab, pct, nodups,   p) {
			if (!ratio("n_" k, "n_plain")) { line(lab, "missing", ""); return }
			p = 100 * v["n_" k] / v["n_plain"]
			line(lab, sprintf("%.0f %%, %d dups", p, v["n_" k "_dups"]),
				p >= pct && (!nodups || v["n_" k "_dups"] == 0))
		}
		END {
			printf "%-44s %-28s %s\n", "target", "this run", "met?"
			line("(w2) WAN patient >= 2,000 msg/s", has("wan_patient") ? v["wan_patient"] " msg/s" : "missing",
				has("wan_patient") ? v["wan_patient"] >= 2000 : "")
			r = ratio("wan_patient", "wan_node") ? v["wan_patient"] / v["wan_node"] : ""
			line("(w2) WAN patient >= 2.5 x node", r == "" ? "missing" : sprintf("%.2f x", r), r == "" ? "" : r >= 2.5)
			want = 0.8 * feeds / (rtt / 1000)
			line(sprintf("(w1) WAN feed >= 0.8 x feeds/RTT = %.0f", want),
				has("wan_feed") ? v["wan_feed"] " msg/s" : "missing", has("wan_feed") ? v["wan_feed"] >= want : "")
			r = ratio("c_rate", "c_node") ? v["c_rate"] / v["c_node"] : ""
			line("(c) upstream mode >= 2.5 x node", r == "" ? "missing" : sprintf("%.2f x", r), r == "" ? "" : r >= 2.5)
			variant("early", "(n2) early answer >= 50 % of plain, 0 dups", 50, 1)
			variant("goaway", "(n3) GOAWAY >= 50 % of plain, 0 dups", 50, 1)
			variant("close", "(n4) close-per-response >= 35 % of plain", 35, 0)
			line("(b) commit, pipeline 1, 1 address >= 30,000", has("b_rate") ? v["b_rate"] " msg/s" : "missing",
				has("b_rate") ? v["b_rate"] >= 30000 : "")
			line("(d) p99 ACK at 5,000 msg/s <= 2 ms", has("d_p99") ? v["d_p99"] " ms" : "missing",
				has("d_p99") ? v["d_p99"] <= 2 : "")
			r = ratio("h2_p99", "h_p99") ? v["h2_p99"] / v["h_p99"] : ""
			fig = r == "" ? "missing" : sprintf("%.1f x (%s vs %s ms)", r, v["h2_p99"], v["h_p99"])
			line("(h2) p99 beside 16 flooders <= 5 x alone", fig, r == "" ? "" : r <= 5)
		}' "$results" /dev/null
}

report() {
	printf '\nmllp-edge bench, %s, %s, %s CPUs, spool on %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
		"$(uname -r)" "$(nproc)" "$(stat -f -c %T "$tmp")"
	printf 'load: %s connections from one source address unless the row says 32, %s-byte ADT^A01,\n' \
		$CONNS $SIZE
	printf '      %s feeds x %s patients, pipeline 1, %s s; bridge order: %s\n\n' \
		$FEEDS $PATIENTS "$SECS" "$ORDER"
	sort -t '	' -k1,1 "$rows" | awk -F '\t' -v ref="$ref_rate" '
		BEGIN { printf "%-30s %10s %9s %9s %9s %7s\n", "scenario", "msg/s", "p50", "p99", "max", "vs (a)" }
		$2 == "FAILED" { printf "%-30s FAILED (%s)\n", $1, $3; next }
		{ r = (ref > 0) ? sprintf("%.2f", $2 / ref) : "-"
		  printf "%-30s %10s %9s %9s %9s %7s\n", $1, $2, $3, $4, $5, r }'
	printf '\ndelivered per second: %s messages each, from first send to last delivery\n' "$N"
	printf '(w): 16 connections, commit mode, nginx %s ms away (delay-proxy); (n): 32 connections, 0 ms\n\n' \
		$((2 * WAN_DELAY_MS))
	sort -t '	' -k1,1 "$deliv" | awk -F '\t' '
		BEGIN { printf "%-30s %11s %8s %10s %6s %8s  %s\n", "scenario", "delivered/s", "vs node",
			"ACK p99", "dups", "POSTs", "note" }
		{ row[NR] = $0 }
		$2 != "FAILED" && $1 ~ /node/ { node = $2 }
		$2 != "FAILED" && $1 ~ /nginx plain/ { plain = $2 }
		END {
			for (i = 1; i <= NR; i++) {
				split(row[i], f, "\t")
				if (f[2] == "FAILED") {
					printf "%-30s FAILED (%s)\n", f[1], f[3]
					continue
				}
				cmp = "-"
				if (f[1] ~ /^\(w/ && node > 0) cmp = sprintf("%.2f", f[2] / node)
				if (f[1] ~ /^\(n/ && plain > 0) cmp = sprintf("%.0f %%", 100 * f[2] / plain)
				printf "%-30s %11s %8s %10s %6s %8s  %s\n", f[1], f[2], cmp, f[3], f[4], f[5], f[6]
			}
		}'
	printf '(for (n) rows the third column is %% of plain)\n\n'
	sort "$extra" | awk -F '\t' '{ printf "%-30s %s\n", $1, $2 }'
	echo
	targets
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
	if start_nginx plain; then
		scenario_commit
		scenario_upstream
		scenario_flood
		stop_nginx
	else
		for r in "(b) commit, 1 address" "(c) upstream, 1 address"; do
			fail_row "$r" "no TLS receiver: $why"
		done
	fi
	scenario_wan
	scenario_nginx
	report
	# File channels (issue 14): a real sshd in a namespace; its own ports,
	# addresses and report (docs/performance.md, "File channels").
	if [ "${BENCH_FILES:-1}" != 0 ]; then
		BUILD=$BUILD bash "$here/files.sh" || log "bench: files.sh failed"
	fi
}

main
