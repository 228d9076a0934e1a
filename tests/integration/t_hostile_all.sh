#!/bin/bash
# Every hostile and careless peer at once, while a well-behaved sender sends
# throughout (issue 8): 16 flooders of empty frames that read their answers,
# 2,000 idle connections, 50 half-open frames, a slow sender, a 100 MiB
# frame and 10 MiB of random bytes. The well-behaved sender's every answer
# is right, its p99 stays under 100 ms (asserted loosely: the exact figure
# is the bench's), the bridge's peak memory stays under 128 MiB and its log
# under 1 MB, and everything acknowledged reaches the upstream.
. tests/integration/lib.sh
# Memory is asserted: under AddressSanitizer (make check-asan) freed memory
# would sit in its quarantine and count as the bridge's.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0

MLLP=10955 UP=18455 OBS_PORT=19155
SECS=8
CONF=$TMP/bridge.yaml
lab_conf "$CONF" $MLLP $UP $OBS_PORT
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
start_sink up $UP || exit 1
start_bridge "$CONF" $MLLP || exit 1
kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$BRIDGE_PID/status"; }

# The hostile peers run niced: they stand for machines of their own, and on
# these two cores their shell pipelines must not starve the bridge or the
# well-behaved sender of CPU.
# peer MODE FILE: one connection; sends FILE (all at once, or byte by byte
# with "slow"), reads and keeps its answers, holds on until the end.
cat >"$TMP/peer.sh" <<'EOP'
exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
cat <&3 >"$4" &
if [ "$2" = slow ]; then
	while IFS= read -r -n1 -d '' ch; do printf '%s' "$ch" >&3; sleep 0.005; done <"$3"
else
	cat "$3" >&3
fi
sleep "$5"
EOP
peer() {
	nice -n 10 bash "$TMP/peer.sh" "$MLLP" "$1" "$2" "${3:-/dev/null}" "$SECS" >/dev/null 2>&1 &
	PIDS="$PIDS $!"
}
yes $'\x0b\x1c\x0d' | tr -d '\n' | head -c $((4 << 20)) >"$TMP/empties"
{ printf '\x0b'; head -c $((100 << 20)) /dev/zero; } >"$TMP/huge"
head -c $((10 << 20)) /dev/urandom >"$TMP/random"
printf '\x0bMSH|^~\\&|' >"$TMP/half"
{ printf '\x0b'; hl7_msg SLOW1; printf '\x1c\x0d'; } >"$TMP/slow.mllp"

"$BIN/mllp-load" -t 127.0.0.1:$MLLP -c 1 -r 100 -d "$SECS" -s 512 --bind-from 127.0.0.9 \
	--acked "$TMP/acked" --id-prefix GOOD >"$TMP/good.out" 2>&1 &
GOOD=$!
PIDS="$PIDS $GOOD"
sleep 0.5
for i in $(seq 1 16); do peer fast "$TMP/empties"; done
nice -n 10 "$BIN/mllp-load" --idle 2000 --bind-from 127.0.3.1 -t 127.0.0.1:$MLLP -d "$SECS" \
	>/dev/null 2>&1 &
PIDS="$PIDS $!"
for i in $(seq 1 50); do peer fast "$TMP/half"; done
peer slow "$TMP/slow.mllp" "$TMP/slow.out"
peer fast "$TMP/huge"
peer fast "$TMP/random"
wait "$GOOD"
out=$(cat "$TMP/good.out")
echo "# $out"
p99=$(sed -n 's/.* p99=\([0-9.]*\)ms.*/\1/p' <<<"$out")
expect "the well-behaved sender got every answer right" \
	bash -c "grep -q ' nak=0 unacked=0 errors=0 ' <<<'$out' && test \$(sort -u '$TMP/acked' | wc -l) -ge $((SECS * 90))"
expect "... with a p99 under 100 ms (${p99:-?} ms)" awk -v p="${p99:-1e9}" 'BEGIN {exit !(p < 100)}'
expect "the slow sender was answered" wait_until 10 'grep -q "MSA|AA|SLOW1" "$TMP/slow.out"'
expect "the 100 MiB frame was refused at max_frame" \
	test "$(metric mllp_oversize_frames_total)" -ge 1
hwm=$(kib VmHWM)
expect "the bridge's peak memory stayed under 128 MiB (${hwm:-?} KiB)" test "${hwm:-999999}" -lt 131072
expect "its log stayed under 1 MB ($(wc -c <"$TMP/bridge.log") bytes)" \
	test "$(wc -c <"$TMP/bridge.log")" -lt 1000000
expect "everything acknowledged reached the upstream" wait_until 20 \
	'test "$(sort -u "$TMP/acked" | comm -23 - <(cut -f11 "$TMP/up/requests.log" | sort -u) | wc -l)" -eq 0'
finish
