#!/bin/bash
# Upstream down, then back: everything queued is delivered, in order per
# sender, across a restart; nothing is deleted before a 2xx; 5xx is retried,
# 4xx is dead-lettered and can be replayed by an operator.
. tests/integration/lib.sh

MLLP=10963 UP=18443 OBS_PORT=19143
CONF=$TMP/bridge.yaml
cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
retry: { initial: 100ms, max: 500ms }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 2s }
EOF
start_bridge "$CONF" $MLLP || exit 1

# Three senders (distinct source addresses), 30 messages each, upstream down.
for s in 2 3 4; do
	for i in $(seq -w 1 30); do hl7_msg "S$s-$i" >"$TMP/s$s-$i.hl7"; done
	"$BIN/mllp-send" -b 127.0.0.$s 127.0.0.1:$MLLP "$TMP"/s$s-*.hl7 >"$TMP/acks$s" &
	senders="${senders:-} $!"
done
wait $senders
expect "all 90 messages acknowledged while the upstream is down" \
	test "$(cat "$TMP"/acks? | grep -c 'MSA|AA|')" -eq 90
expect "the spool holds all 90" test "$(metric 'mllp_spool_depth')" -eq 90
expect "the oldest age is reported" \
	bash -c "curl -s http://127.0.0.1:$OBS_PORT/metrics | awk '/^mllp_spool_oldest_age_seconds/ {exit !(\$2 > 0)}'"

# Restart the bridge while the upstream is still down: nothing is lost.
stop_pid "$BRIDGE_PID"
start_bridge "$CONF" $MLLP || exit 1
expect "after a restart the spool still holds all 90" test "$(metric 'mllp_spool_depth')" -eq 90

start_sink up $UP --fail-first 5 || exit 1
expect "the upstream comes back: all 90 delivered" \
	wait_until 30 'test "$(metric mllp_delivered_total)" -eq 90'
expect "503s were retried" test "$(metric mllp_upstream_retries_total)" -ge 1
for s in 2 3 4; do
	got=$(awk -F'\t' -v p="S$s-" '$12 == 200 && index($11, p) == 1 {print $11}' \
		"$TMP/up/requests.log" | tr '\n' ' ')
	want=$(seq -w 1 30 | sed "s/^/S$s-/" | tr '\n' ' ')
	expect "sender 127.0.0.$s: delivered in the order received" test "$got" = "$want"
done
retried_keys_stable() {
	awk -F'\t' '$12 == 503 {print $11, $4}' "$TMP/up/requests.log" | while read -r id key; do
		awk -F'\t' -v id="$id" -v k="$key" '$11 == id && $12 == 200 && $4 == k {f = 1}
			END {exit !f}' "$TMP/up/requests.log" || return 1
	done
}
expect "a retried message keeps its Idempotency-Key" retried_keys_stable
expect "the spool is empty" test "$(metric 'mllp_spool_depth')" -eq 0
stop_pid "$SINK_PID"

# A permanent refusal goes to dead letter; an operator replays it.
start_sink refuse $UP --status 400 || exit 1
hl7_msg DEAD1 >"$TMP/dead.hl7"
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/dead.hl7" >/dev/null
expect "a 400 moves the message to dead letter" \
	wait_until 10 'spool list --state dead | grep -q DEAD1'
expect "the dead row records the status" bash -c "spool list --state dead | grep DEAD1 | grep -q 'HTTP 400'"
sleep 1
expect "a dead letter is not retried" test "$(sink_count refuse)" -eq 1
stop_pid "$SINK_PID"
start_sink fixed $UP || exit 1
expect "spool replay --all-dead succeeds" spool replay --all-dead
expect "the replayed message is delivered" wait_until 10 'grep -q DEAD1 "$TMP/fixed/requests.log"'

# An outage seen by many lanes at once (100 feeds) is not a sign that the
# upstream closes its connections: the bridge keeps HTTP/2 for it.
stop_pid "$SINK_PID"
"$BIN/mllp-load" -t 127.0.0.1:$MLLP -c 4 -n 100 --feeds 100 --patients 1 -s 256 \
	--id-prefix OUT >"$TMP/outage.out" 2>&1
expect "100 messages from 100 feeds acknowledged during the outage" \
	grep -q 'acked=100 nak=0' "$TMP/outage.out"
expect "more than 64 attempts failed" \
	wait_until 10 'test "$(metric "mllp_upstream_responses_total{integration=\\\"lab\\\",class=\\\"error\\\"}")" -gt 64'
expect "an outage does not make the bridge give up HTTP/2" \
	test "$(metric mllp_upstream_http2_avoided)" -eq 0
finish
