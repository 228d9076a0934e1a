#!/bin/bash
# make bench-e2e: hospital -> cloud through the real tunnel, next to the same
# load without a tunnel, so that the tunnel's own cost is visible (issue 11).
# A benchmark, not a test: figures depend on the machine and nothing here is
# asserted against a target. docs/performance.md has the method and figures.
#
# The lab is tests/e2e/e2e-lib.sh's: three namespaces, the appliance rendered
# from the shipped example (DH 21), the hospital's charon, the cloud's
# https-sink. The load is mllp-load in the hospital namespace, one source
# address (the kernel's, 203.0.113.65: a hospital's interface engine is one
# machine), to the example's `lab` integration (MLLP release 2, ack: commit,
# order: patient), 8 feeds x 200 patients, 1 KiB messages.
#
#   (t) tunnel     203.0.113.65 -> 203.0.113.1:9960 through IKEv2/ESP
#                  (kernel-libipsec: ESP in user space, see
#                  ../shared/notes/strongswan-here.md), the appliance's bridge
#   (l) loopback   the same load inside the edge namespace to a second
#                  mllp-bridge on 127.0.0.1 with the same integration
#                  settings (`gate: open`, no tunnel), the same spool
#                  directory and the same upstream (the cloud's sink)
# Each first at a fixed BENCH_E2E_RATE msg/s for the ACK latency at a site's
# pace, on a fresh spool, then at full speed (BENCH_CONNS connections,
# pipelined, BENCH_SECS). In that order because the full-speed run leaves a
# backlog that the bridge is still forwarding upstream for a minute.
#
# No capture runs during the loads: tcpdump would take CPU from the two the
# bridge, charon and the load share. The leak check is `make e2e`'s job.
#
# Environment: BUILD (build), BENCH_SECS (10), BENCH_CONNS (32),
# BENCH_E2E_RATE (500), BENCH_KEEP=1 keeps the temp dir.
set -u
BUILD=${BUILD:-build}
SECS=${BENCH_SECS:-10}
CONNS=${BENCH_CONNS:-32}
RATE=${BENCH_E2E_RATE:-500}
KEEP=${BENCH_KEEP:+1}
[ -n "$KEEP" ] && export KEEP # lib.sh keeps $TMP
. tests/e2e/e2e-lib.sh

LOOP_PORT=9960
MIX="--feeds 8 --patients 200 -s 1024"
SRC=203.0.113.65 # the one address of the hospital's interface engine
declare -A ROW=()

note() { echo "# bench-e2e: $*" >&2; }

# load NAME NS TARGET ARGS...: mllp-load in NS; its summary line in ROW[NAME].
load() {
	local name=$1 ns=$2 target=$3
	shift 3
	note "$name: mllp-load -t $target $*"
	ROW[$name]=$(ip netns exec "$ns" "$BIN_ABS/mllp-load" -t "$target" $MIX "$@" \
		2>"$TMP/load-$name.err")
	note "$name: ${ROW[$name]:-no summary: $(head -n 3 "$TMP/load-$name.err")}"
}

field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p; s/^$1=\([^[:space:]]*\).*/\1/p" <<<"${ROW[$2]:-}" | head -n 1; }

# The second bridge's config: the rendered example's `lab` integration
# (mllp, ack, order, max_in_flight, dedup, upstream) on loopback, gate open.
loop_conf() {
	python3 - "$AP_CONF" "$TMP/loop.yaml" "$TMP/loop-spool.db" <<'EOF'
import re, sys
src, dst, spool = sys.argv[1:]
text = open(src).read()
m = re.search(r"(?ms)^  - name: lab\n.*?(?=^  - name: |^\S|\Z)", text)
if not m:
    sys.exit("loop_conf: no lab integration in " + src)
lab = m.group(0)
for old, new in [(r"listen: 203\.0\.113\.1:9960", "listen: 127.0.0.1:9960"),
                 (r"sources: \[[^\]]*\]", "sources: [127.0.0.0/8]")]:
    lab, k = re.subn(old, new, lab)
    if k != 1:
        sys.exit("loop_conf: %r not in the lab integration" % old)
out = ("# bench-e2e: the example's lab integration on loopback, no tunnel\n"
       "gate: open\nspool: { path: %s }\nobservability: { listen: 127.0.0.1:9101 }\n"
       "integrations:\n%s" % (spool, lab))
open(dst, "w").write(out)
EOF
}

run_tunnel() {
	e2e_start
	ap_status
	ESP_ALG=$(ap_q "child('$E2E_TUNNEL', '$E2E_CHILD')['esp']")
	load t-rate "$NS_HOSP" "$E2E_LAB" --source $SRC -c "$CONNS" -r "$RATE" -d "$SECS"
	load t-full "$NS_HOSP" "$E2E_LAB" --source $SRC -c "$CONNS" -p 8 -d "$SECS"
	e2e_stop
}

run_loopback() {
	local pid
	loop_conf || return 1
	chmod 644 "$TMP/loop.yaml"
	ip netns exec "$NS_EDGE" "$BIN_ABS/mllp-bridge" -c "$TMP/loop.yaml" \
		>"$TMP/loop-bridge.log" 2>&1 </dev/null &
	pid=$!
	PIDS="$PIDS $pid"
	if ! wait_until 10 "ip netns exec $NS_EDGE bash -c 'exec 3<>/dev/tcp/127.0.0.1/$LOOP_PORT' 2>/dev/null"; then
		note "loopback bridge did not start: $(tail -n 3 "$TMP/loop-bridge.log")"
		return 1
	fi
	load l-rate "$NS_EDGE" "127.0.0.1:$LOOP_PORT" --source 127.0.0.1 -c "$CONNS" -r "$RATE" -d "$SECS"
	load l-full "$NS_EDGE" "127.0.0.1:$LOOP_PORT" --source 127.0.0.1 -c "$CONNS" -p 8 -d "$SECS"
	kill "$pid" && wait "$pid" 2>/dev/null
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

report() {
	local r
	printf '\nmllp-edge e2e bench, %s, %s, %s CPUs; ESP %s (kernel-libipsec), DH %s\n' \
		"$(date -u +%Y-%m-%dT%H:%MZ)" "$(uname -r)" "$(nproc)" "${ESP_ALG:-?}" "$E2E_DH"
	printf '%-34s %10s %10s %10s %10s  %s\n' scenario msg/s p50_ms p99_ms max_ms "sent/acked/errors"
	for r in t-full l-full t-rate l-rate; do
		printf '%-34s %10s %10s %10s %10s  %s\n' "$(label "$r")" "$(field rate "$r")" \
			"$(field p50 "$r" | tr -d ms)" "$(field p99 "$r" | tr -d ms)" \
			"$(field max "$r" | tr -d ms)" \
			"$(field sent "$r")/$(field acked "$r")/$(field errors "$r")"
	done
	printf 'tunnel / loopback, full speed: %s of the msg/s\n' \
		"$(ratio "$(field rate t-full)" "$(field rate l-full)")"
}

label() {
	case $1 in
	t-full) echo "(t) tunnel, full speed" ;;
	l-full) echo "(l) loopback, full speed" ;;
	t-rate) echo "(t) tunnel, $RATE msg/s" ;;
	l-rate) echo "(l) loopback, $RATE msg/s" ;;
	esac
}

e2e_setup 21
e2e_capture_stop # see the header: no capture under load
run_tunnel
run_loopback
report
finish
