#!/bin/bash
# Hostile and careless senders (issue 8), as far as built: a peer that
# floods empty frames and never reads its answers holds a bounded amount of
# the bridge's memory (its reader pauses at MLLP_IN_UNSENT_MAX unread answer
# bytes), a well-behaved sender beside it is still answered at once, and
# the log does not grow with the flood. Before, that peer grew the bridge by
# about 66 bytes per byte it sent, and wrote a log line per frame.
. tests/integration/lib.sh

MLLP=10956 UP=18456 OBS_PORT=19156
FLOOD_MIB=6
CONF=$TMP/bridge.yaml
cat >"$CONF" <<EOF
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 5s }
EOF
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
finish
