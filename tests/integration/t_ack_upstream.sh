#!/bin/bash
# ack: upstream: the answer waits for the upstream. An HL7 ACK in a 2xx is
# relayed; a 2xx without one gives AA; a 4xx gives AE with the status; an
# unreachable upstream gives an honest "stored, will be delivered".
. tests/integration/lib.sh

MLLP=10964 UP=18444 OBS_PORT=19144
CONF=$TMP/bridge.yaml
cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
retry: { initial: 5s, max: 5s }
integrations:
  - name: sync
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.1]
    ack: upstream
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 1s }
EOF
start_bridge "$CONF" $MLLP || exit 1
S=$SAMPLES

start_sink acking $UP --ack || exit 1
out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/adt_a01_v251.hl7")
expect "the upstream's HL7 ACK is relayed as is" grep -q '^MSH|^~\\&|CLOUD|CLOUD|.*MSA|AA|NW000123' <<<"$out"
expect "the message was stored and delivered before the answer" \
	test "$(sink_count acking)" -eq 1
stop_pid "$SINK_PID"

start_sink plain $UP || exit 1
out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/adt_a01_v251.hl7")
expect "a 2xx without an HL7 body gives our own AA" grep -q '^MSH|^~\\&|REDOX|CLOUD|EPIC|.*MSA|AA|NW000123' <<<"$out"
stop_pid "$SINK_PID"

start_sink refusing $UP --status 422 || exit 1
out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/adt_a01_v251.hl7")
expect "a permanent 4xx gives AE" grep -q 'MSA|AE|NW000123' <<<"$out"
expect "... with the HTTP status in ERR" grep -q 'ERR|.*HTTP 422' <<<"$out"
out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/oru_r01_enhanced_ack.hl7")
expect "enhanced mode: a permanent 4xx gives CE" grep -q 'MSA|CE|LAB55501' <<<"$out"
stop_pid "$SINK_PID"

# Nobody listening: the sender hears the truth — stored, will be delivered.
out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/oru_r01_enhanced_ack.hl7")
expect "enhanced mode, upstream unreachable: CA (stored, will be delivered)" \
	grep -q 'MSA|CA|LAB55501' <<<"$out"
out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$S/adt_a01_v251.hl7")
expect "original mode, upstream unreachable: AA with a warning ERR saying so" \
	bash -c "grep -q 'MSA|AA|NW000123' <<<'$out' && grep -q 'ERR|.*|W|.*retried' <<<'$out'"
start_sink late $UP --delay-ms 3000 || exit 1
t0=$(date +%s%N)
out=$("$BIN/mllp-send" -t 5000 127.0.0.1:$MLLP "$S/adt_a01_v251.hl7")
ms=$((($(date +%s%N) - t0) / 1000000))
expect "a slow upstream: the answer comes at the timeout (1 s), not later ($ms ms)" \
	bash -c "grep -q 'MSA|AA|NW000123' <<<'$out' && test $ms -lt 2500"
expect "undelivered messages are still in the spool" \
	test "$(metric 'mllp_spool_depth')" -ge 2
finish
