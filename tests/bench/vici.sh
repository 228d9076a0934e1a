#!/bin/bash
# `make bench`, part two: the vici client against a real charon.
#
#   (g) codec       build + frame, and decode + tree + lookup, of a list-sa event
#   (h) queue       `version` commands queued on one connection (512 in flight)
#   (i) call        blocking vici_call() of `version`, one after the other
#   (j) stream      streamed list-sas (register, command, events, unregister)
#                   with one IKE_SA and one CHILD_SA up
#   (k) swanctl     `swanctl --stats`, a process per command, for comparison
#
# charon's CPU time (from /proc/PID/stat) is shown next to the client's, so
# the ratio says who the bottleneck is. Two charons run in network namespaces
# made here (tests/integration/charon-lib.sh) and are stopped by PID at the
# end. No timing is asserted.
#
# Environment: BUILD (build), BENCH_VICI_N (20000: queued commands; the
# others are scaled from it).
set -u
BUILD=${BUILD:-build}
BENCH=$BUILD/bin/vici-bench
N=${BENCH_VICI_N:-20000}
here=$(dirname "$0")
. "$here/../integration/charon-lib.sh"

fail() {
	echo "vici bench: FAILED ($*)"
	exit 1
}

[ -x "$BENCH" ] || fail "$BENCH is missing"
[ "$(id -u)" -eq 0 ] || fail "needs root for network namespaces"

TICK=$(getconf CLK_TCK)
charon_cpu_ms() { awk -v t="$TICK" '{ print ($14 + $15) * 1000 / t }' "/proc/$1/stat"; }

# row LABEL CMD...: runs CMD (printing vici-bench's key=value line, or
# nothing for a shell loop that prints its own), with charon's CPU time.
# An awk rule putting a vici-bench line's key=value fields into f[].
FIELDS='{ for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] } }'

ROWS=""
row() {
	local label=$1 before after out
	shift
	before=$(charon_cpu_ms "${CH_PID[gw]}")
	out=$("$@") || fail "$label: $out"
	after=$(charon_cpu_ms "${CH_PID[gw]}")
	ROWS+=$(awk -v l="$label" -v ch="$((${after%.*} - ${before%.*}))" "$FIELDS"'
		{ printf "%-34s %8d %8.2f %10d %10.1f %10.1f\n", l, f["ops"], f["secs"], f["per_sec"],
			f["cpu_ms"] * 1000 / f["ops"], ch * 1000 / f["ops"] }' <<<"$out")$'\n'
}

# cpu_ticks PID: CPU time of PID and of the children it waited for, in
# clock ticks.
cpu_ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"; }

# swanctl_loop N: N swanctl processes, timed like vici-bench does.
swanctl_loop() {
	local n=$1 me=$BASHPID t0 t1 c0 c1
	c0=$(cpu_ticks "$me")
	t0=$(date +%s%N)
	for _ in $(seq "$n"); do
		ch_swanctl gw --stats >/dev/null || return 1
	done
	t1=$(date +%s%N)
	c1=$(cpu_ticks "$me")
	awk -v n="$n" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v tick="$TICK" 'BEGIN {
		s = (t1 - t0) / 1e9
		printf "bench=swanctl ops=%d secs=%.3f per_sec=%.0f cpu_ms=%.0f\n", n, s, n / s, c * 1000 / tick }'
}

netns_setup
charon_start gw "$NS_GW" "$CH_TMP/gw"
charon_start peer "$NS_PEER" "$CH_TMP/peer"
DH21=dh21:aes256gcm16-prfsha384-ecp521:aes256gcm16-ecp521
ch_write_conf "$CH_TMP/gw-conf/swanctl.conf" gw "$DH21"
ch_write_conf "$CH_TMP/peer-conf/swanctl.conf" peer "$DH21"
swanctl_load gw "$CH_TMP/gw-conf" >/dev/null || fail "swanctl_load gw"
swanctl_load peer "$CH_TMP/peer-conf" >/dev/null || fail "swanctl_load peer"
ch_swanctl gw --initiate --child dh21-net --timeout 10 >/dev/null 2>&1 || fail "initiate"
URI=${CH_URI[gw]}

CODEC=$("$BENCH" codec $((N * 10))) || fail "codec"
row "(h) queue: version" "$BENCH" queue "$URI" "$N" version
row "(i) call: version" "$BENCH" call "$URI" $((N / 4)) version
row "(j) stream: list-sas (1 SA)" "$BENCH" stream "$URI" $((N / 10))
row "(k) swanctl --stats (a process)" swanctl_loop $((N / 100))

printf '\nvici bench, %s, %s CPUs, %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" \
	"$("$BUILD/bin/vici" -s "$URI" version | sed -n 's/^version = /charon /p')"
awk "$FIELDS"' {
	printf "(g) codec %-24s %8d msg/s  %6.2f us/msg  %s-byte list-sa event\n",
		f["bench"], f["per_sec"], f["cpu_ms"] * 1000 / f["ops"], f["bytes"]
}' <<<"$CODEC"
printf '\n%-34s %8s %8s %10s %10s %10s\n' "against charon" ops secs "per s" "client us" "charon us"
printf '%s' "$ROWS"
echo "(client us / charon us: CPU time per operation of this process / of charon)"
