# Shared helpers for the scenario tests. Sourced by tests/integration/t_*.sh.
#
# Every process a scenario starts is recorded and stopped by PID on exit;
# every scenario works in its own temporary directory.
set -u

BUILD=${BUILD:-build}
BIN=$BUILD/bin
SAMPLES=${SAMPLES:-../shared/samples}
[ -d "$SAMPLES" ] || SAMPLES=$(cd "$(dirname "$0")/../.." && pwd)/../shared/samples
CERTS=$BUILD/test-certs
TMP=$(mktemp -d /tmp/mllp-it.XXXXXX)
PIDS=""
FAILS=0
MOUNTS=""

# stop_pids: every process this scenario started (PIDS), by PID, then
# waited for; PIDS is emptied.
stop_pids() {
	for p in $PIDS; do
		kill "$p" 2>/dev/null
	done
	for p in $PIDS; do
		wait "$p" 2>/dev/null
	done
	PIDS=""
}

cleanup() {
	stop_pids
	for m in $MOUNTS; do
		umount "$m" 2>/dev/null
	done
	# Under check-asan the programs' own sanitizer reports land in their
	# logs: any report fails the scenario.
	san='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:'
	if cat "$TMP"/*.log "$TMP"/*.out 2>/dev/null | grep -qE "$san"; then
		echo "not ok - sanitizer report from a program this scenario ran:"
		cat "$TMP"/*.log "$TMP"/*.out 2>/dev/null | grep -E -A8 "$san" | head -n 40
		FAILS=$((FAILS + 1))
	fi
	if [ "$FAILS" -eq 0 ] && [ -z "${KEEP:-}" ]; then
		rm -rf "$TMP"
	else
		echo "# scenario files kept in $TMP"
		exit 1
	fi
}
trap cleanup EXIT

sh tests/tools/mkcerts.sh "$CERTS" || exit 1

ok() { echo "ok - $1"; }
fail() {
	echo "not ok - $1${2:+: $2}"
	FAILS=$((FAILS + 1))
}

# expect NAME COMMAND...: ok when COMMAND succeeds.
expect() {
	local what=$1
	shift
	if "$@"; then ok "$what"; else fail "$what"; fi
}

# wait_until SECONDS 'CONDITION': evaluates the shell condition every 0.1 s
# (quote it, so that command substitutions inside run at each poll).
wait_until() {
	local limit=$(($1 * 10)) i
	shift
	i=0
	while [ $i -lt $limit ]; do
		eval "$*" 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# start_sink NAME PORT [ARGS...]: an HTTPS receiver recording into $TMP/NAME.
start_sink() {
	local name=$1 port=$2
	shift 2
	mkdir -p "$TMP/$name"
	"$BIN/https-sink" --listen "127.0.0.1:$port" --cert "$CERTS/server.pem" \
		--key "$CERTS/server.key" --record "$TMP/$name" "$@" \
		>"$TMP/$name.out" 2>&1 &
	SINK_PID=$!
	PIDS="$PIDS $SINK_PID"
	wait_until 10 'grep -q listening "$TMP/$name.out"' || {
		echo "# sink $name did not start:"
		cat "$TMP/$name.out"
		return 1
	}
}

stop_pid() {
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}

# start_bridge CONFIG PORT: runs the bridge, waits for its MLLP port.
start_bridge() {
	export CONF OBS_PORT # for helpers run under bash -c
	"$BIN/mllp-bridge" -c "$1" 2>>"$TMP/bridge.log" &
	BRIDGE_PID=$!
	PIDS="$PIDS $BRIDGE_PID"
	wait_until 10 "port_open 127.0.0.1 $2" || {
		echo "# bridge did not start:"
		tail -n 20 "$TMP/bridge.log"
		return 1
	}
}

# Body of the i-th request the sink recorded, and a field of requests.log:
# 1 seq 2 method 3 path 4 idempotency-key 5 x-forwarded-for 6 integration
# 7 content-type 8 date 9 authorization 10 length 11 msh-10 12 status
sink_field() { cut -f "$2" "$TMP/$1/requests.log" 2>/dev/null; }
sink_count() { [ -f "$TMP/$1/requests.log" ] && wc -l <"$TMP/$1/requests.log" || echo 0; }

# metric NAME: the sum of NAME's samples on /metrics. An unreachable
# /metrics, or no sample of NAME, is no number: it prints "unreadable" (so
# `test ... -eq` fails, and $((...)) aborts the scenario under set -u),
# says why on stderr and returns 1.
metric() {
	local out
	if ! out=$(curl -sf --max-time 5 "http://127.0.0.1:$OBS_PORT/metrics"); then
		echo "not ok - metric $1: /metrics on 127.0.0.1:$OBS_PORT is unreachable" >&2
		echo unreadable
		return 1
	fi
	if ! grep -qE "^$1" <<<"$out"; then
		echo "not ok - metric $1: no such sample on /metrics" >&2
		echo unreadable
		return 1
	fi
	grep -E "^$1" <<<"$out" | awk '{s += $NF} END {print s + 0}'
}

# lab_conf FILE MLLP UP OBS [KEY: VALUE...]: a bridge with one integration,
# lab, on 127.0.0.1:MLLP for 127.0.0.0/8, posting to the sink on UP, its
# /metrics on OBS, `gate: open` (no tunnels); each further argument is one
# more key of the integration.
lab_conf() {
	local file=$1 mllp=$2 up=$3 obs=$4
	shift 4
	{
		printf 'gate: open\n' # no tunnels: the bridge alone, as before issue 9
		printf 'spool: %s\nobservability: { listen: 127.0.0.1:%s }\n' "$TMP/spool.db" "$obs"
		printf 'integrations:\n  - name: lab\n    listen: 127.0.0.1:%s\n' "$mllp"
		printf '    sources: [127.0.0.0/8]\n'
		for kv in "$@"; do printf '    %s\n' "$kv"; done
		printf '    upstream: { url: "https://localhost:%s/v1", ca_file: %s, timeout: 5s }\n' \
			"$up" "$CERTS/ca.pem"
	} >"$file"
}

spool() { "$BIN/mllp-bridge" -c "$CONF" spool "$@"; }

# One HL7 message with the given control id and sending facility.
hl7_msg() {
	printf 'MSH|^~\\&|APP|%s|REDOX|CLOUD|20261129120000||ADT^A01^ADT_A01|%s|P|2.5.1\rPID|1||%s^^^H^MR||TEST^PATIENT\r' \
		"${2:-LAB}" "$1" "$1"
}

# hl7_batch ID...: an HL7 batch file (FHS, BHS, one ORU^R01 per MSH-10 ID,
# BTS with the message count, FTS), segments ended by CR.
hl7_batch() {
	printf 'FHS|^~\\&|LAB|HOSP|EDGE|CLOUD|20261201080000\r'
	printf 'BHS|^~\\&|LAB|HOSP|EDGE|CLOUD|20261201080000\r'
	for id in "$@"; do
		printf 'MSH|^~\\&|LAB|HOSP|EDGE|CLOUD|20261201080000||ORU^R01^ORU_R01|%s|P|2.5.1\r' "$id"
		printf 'PID|1||MRN-%s^^^HOSP^MR||PATIENT^%s\rOBX|1|NM|GLU||%s|mg/dL\r' "$id" "$id" "${#id}"
	done
	printf 'BTS|%s\rFTS|1\r' "$#"
}

# ---- the outbound path (t_outbound*.sh) ------------------------------------

# start_recv NAME PORT [ARGS...]: mllp-recv on 127.0.0.1:PORT, its log in
# $TMP/NAME.rlog (arrivals, opened connections, answers) and each message in
# $TMP/NAME.d/SEQ.hl7; its PID in RECV_PID.
start_recv() {
	local name=$1 port=$2
	shift 2
	mkdir -p "$TMP/$name.d"
	"$BIN/mllp-recv" -l "127.0.0.1:$port" -o "$TMP/$name.rlog" -d "$TMP/$name.d" \
		--idle-log --answer-log "$@" >"$TMP/$name.out" 2>&1 &
	RECV_PID=$!
	PIDS="$PIDS $RECV_PID"
	wait_until 10 'grep -q listening "$TMP/$name.out"' || {
		echo "# receiver $name did not start:"
		cat "$TMP/$name.out"
		return 1
	}
}

# arrivals NAME: the MSH-10 of each message receiver NAME got, in order;
# nmsg NAME: how many.
arrivals() { awk '$1 ~ /^[0-9]+$/ {print $4}' "$TMP/$1.rlog" 2>/dev/null; }
nmsg() { arrivals "$1" | wc -l; }

# outbound_conf_head UPSTREAM_PORT: the first lines of an outbound scenario's
# configuration, up to its destinations: the bridge alone (gate: open), the
# spool in $TMP, /metrics on $OBS_PORT, fast retries, and the integration the
# bridge needs, inb on 127.0.0.1:$MLLP, posting to UPSTREAM_PORT (unused).
outbound_conf_head() {
	cat <<-EOF
		gate: open # no tunnels: the bridge alone
		spool: $TMP/spool.db
		observability: { listen: 127.0.0.1:$OBS_PORT }
		retry: { initial: 100ms, max: 400ms }
		integrations:
		  - name: inb
		    listen: 127.0.0.1:$MLLP
		    sources: [127.0.0.0/8]
		    upstream: { url: "https://localhost:$1/v1", ca_file: $CERTS/ca.pem }
	EOF
}

# start_obridge: mllp-bridge -c $CONF, up once its HTTPS listener
# (127.0.0.1:$HTTPS) answers; its PID in BRIDGE_PID.
start_obridge() {
	"$BIN/mllp-bridge" -c "$CONF" 2>>"$TMP/bridge.log" &
	BRIDGE_PID=$!
	PIDS="$PIDS $BRIDGE_PID"
	wait_until 10 "port_open 127.0.0.1 $HTTPS" || {
		echo "not ok - the bridge did not start"
		tail -n 20 "$TMP/bridge.log"
		exit 1
	}
}

# lap LABEL: milliseconds since $T0, for the log.
lap() { echo "# $1: $((($(date +%s%N) - T0) / 1000000)) ms"; }

export BIN TMP
export -f spool sink_count sink_field metric

finish() {
	[ "$FAILS" -eq 0 ]
	exit $?
}
