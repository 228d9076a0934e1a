#!/bin/bash
# Hostile and careless senders (issue 8), as far as built: a peer that
# floods empty frames and never reads its answers holds a bounded amount of
# the bridge's memory (its reader pauses at MLLP_IN_UNSENT_MAX unread answer
# bytes), a well-behaved sender beside it is still answered at once, and
# the log does not grow with the flood. Before, that peer grew the bridge by
# about 66 bytes per byte it sent, and wrote a log line per frame.
. tests/integration/lib.sh
# Memory is asserted: under AddressSanitizer (make check-asan) freed memory
# would sit in its quarantine and count as the bridge's.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0

MLLP=10956 UP=18456 OBS_PORT=19156
FLOOD_MIB=6
CONF=$TMP/bridge.yaml
lab_conf "$CONF" $MLLP $UP $OBS_PORT
start_sink up $UP || exit 1
start_bridge "$CONF" $MLLP || exit 1
kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$BRIDGE_PID/status"; }
hwm0=$(kib VmHWM)
expect "the bridge's peak memory is readable ($hwm0 KiB)" test -n "$hwm0"

# Empty frames (SB EB CR), written and never read back; the writer blocks
# once the bridge stops reading, so it runs in the background.
(
	exec 3<>"/dev/tcp/127.0.0.1/$MLLP"
	yes $'\x0b\x1c\x0d' | tr -d '\n' | head -c $((FLOOD_MIB << 20)) >&3
	sleep 30
) 2>/dev/null &
FLOOD=$!
PIDS="$PIDS $FLOOD"
expect "the flooder's reader is paused: answers pile up no further" \
	wait_until 10 'test "$(metric "mllp_acks_total{integration=\"lab\",code=\"AR\"}")" -gt 300'
sleep 1
ar1=$(metric 'mllp_acks_total{integration="lab",code="AR"}')
sleep 1
ar2=$(metric 'mllp_acks_total{integration="lab",code="AR"}')
# The kernel's socket buffers hold a few MiB of answers before the bridge's
# own bound (64 KiB) comes into play; what matters is that it stops.
frames=$(((FLOOD_MIB << 20) / 3))
expect "... and stays paused ($ar1 then $ar2 answers, of $frames frames sent)" \
	test "$ar2" -eq "$ar1" -a "$ar2" -lt $((frames / 4))
hl7_msg GOOD1 >"$TMP/good.hl7"
t0=$(date +%s%N)
out=$("$BIN/mllp-send" -t 2000 127.0.0.1:$MLLP "$TMP/good.hl7")
ms=$((($(date +%s%N) - t0) / 1000000))
expect "a well-behaved sender beside it is answered AA ($ms ms)" \
	bash -c "grep -q 'MSA|AA|GOOD1' <<<'$out' && test $ms -lt 1000"
hwm1=$(kib VmHWM)
expect "the bridge's peak memory grew by less than 32 MiB ($hwm0 -> $hwm1 KiB)" \
	test $((hwm1 - hwm0)) -lt 32768
stop_pid "$FLOOD"

# Logs that cannot flood: LOG_RATE_BURST lines per (event, peer), then one
# a second; the count of what was dropped comes with the next line.
rejected=$(grep -c 'event=frame_rejected' "$TMP/bridge.log")
expect "$ar2 refusals, $rejected of them logged" test "$rejected" -le 12
sleep 1.2
printf '\x0b\x1c\x0d' >"$TMP/empty.mllp"
"$BIN/mllp-send" -r -t 1000 127.0.0.1:$MLLP "$TMP/empty.mllp" >/dev/null
expect "the next refusal is logged with the count of those dropped" \
	bash -c "grep -E 'event=log_suppressed kind=frame_rejected peer=127.0.0.1 suppressed=[0-9]+' \
		'$TMP/bridge.log' | awk -F'suppressed=' '{s += \$2} END {exit !(s >= $ar2 - 12)}'"
expect "the log stays small ($(wc -c <"$TMP/bridge.log") bytes)" \
	test "$(wc -c <"$TMP/bridge.log")" -lt 65536

# --- connection limits: per source, in total, and out of descriptors -----
stop_pid "$BRIDGE_PID"
sed -i '1i connections: { max: 50, per_source: 20 }' "$CONF"
start_bridge "$CONF" $MLLP || exit 1
refused() { metric "mllp_connections_refused_total{limit=\"$1\"}"; }
"$BIN/mllp-load" --idle 30 -t 127.0.0.1:$MLLP -d 4 >"$TMP/idle1.out" 2>&1 &
IDLE1=$!
PIDS="$PIDS $IDLE1"
expect "30 connections from one address: 20 kept, 10 refused (connections.per_source)" \
	wait_until 5 'test "$(refused per_source)" -eq 10 -a "$(metric mllp_connections_open)" -eq 20'
out=$("$BIN/mllp-send" -b 127.0.0.2 -t 2000 127.0.0.1:$MLLP "$TMP/good.hl7")
expect "another address is still served" grep -q 'MSA|AA|GOOD1' <<<"$out"
"$BIN/mllp-load" --idle 40 --bind-from 127.0.1.1 -t 127.0.0.1:$MLLP -d 3 >"$TMP/idle2.out" 2>&1 &
IDLE2=$!
PIDS="$PIDS $IDLE2"
expect "40 more from 40 addresses: open stops at 50 (connections.max)" \
	wait_until 5 'test "$(refused max)" -eq 10 -a "$(metric mllp_connections_open)" -eq 50'
expect "the refusals are logged, rate-limited per address" \
	test "$(grep -c 'event=connection_refused' "$TMP/bridge.log")" -le 30
wait "$IDLE1" "$IDLE2"
expect "when they close, the count follows" wait_until 5 'test "$(metric mllp_connections_open)" -eq 0'
stop_pid "$BRIDGE_PID"

# Out of descriptors: 200 connections against a bridge allowed 64 files.
sed -i '1d' "$CONF"
(ulimit -n 64 && exec "$BIN/mllp-bridge" -c "$CONF") 2>>"$TMP/bridge.log" &
BRIDGE_PID=$!
PIDS="$PIDS $BRIDGE_PID"
wait_until 10 "port_open 127.0.0.1 $MLLP" || fail "the bridge under ulimit -n 64 did not start"
cpu0=$(awk '{print $14 + $15}' "/proc/$BRIDGE_PID/stat")
"$BIN/mllp-load" --idle 200 --bind-from 127.0.2.1 -t 127.0.0.1:$MLLP -d 3 >"$TMP/idle3.out" 2>&1 &
IDLE3=$!
PIDS="$PIDS $IDLE3"
# /metrics itself needs a descriptor: the log tells while they are short.
expect "out of descriptors, accepting pauses" \
	wait_until 5 'grep -q "event=accept_paused error=\"Too many open files\"" "$TMP/bridge.log"'
sleep 2
cpu1=$(awk '{print $14 + $15}' "/proc/$BRIDGE_PID/stat")
expect "... instead of spinning: $((cpu1 - cpu0)) ticks of CPU in about 2 s" test $((cpu1 - cpu0)) -lt 50
expect "... and says so a few times, not millions ($(grep -c 'event=accept_paused' "$TMP/bridge.log"))" \
	test "$(grep -c 'event=accept_paused' "$TMP/bridge.log")" -le 20
wait "$IDLE3"
out=$("$BIN/mllp-send" -t 3000 127.0.0.1:$MLLP "$TMP/good.hl7")
expect "once descriptors are free again, a new sender is answered" grep -q 'MSA|AA|GOOD1' <<<"$out"
expect "... /metrics answers again and counted the pauses" \
	wait_until 5 'test "$(metric mllp_accept_pauses_total)" -gt 0'
expect "... and every one of the 200 was accepted in the end" \
	test "$(metric mllp_connections_total)" -ge 200
finish
