#!/bin/bash
# e2e_upstream_down (issue 11, scenario 5): the cloud upstream down for a
# while during an inbound stream.
#
# mllp-load in the hospital sends a steady stream (one connection, one
# patient, so one lane) through the tunnel to the lab integration (MLLP
# release 2, ack: commit). Mid-stream the cloud's https-sink is stopped (by
# PID). While it is down:
#   - the hospital keeps getting commit ACKs (/metrics
#     mllp_acks_total{integration="lab",code="R2_ACK"} grows), never a NAK;
#   - the spool grows (mllp_spool_depth{integration="lab"} rises between two
#     samples; appliancectl status --json shows the same depth), nothing is
#     delivered (mllp_delivered_total unchanged), the bridge retries
#     (event=upstream_retry ... "Connection refused");
# then the sink is started again (a fresh one, recording into a second
# directory, since a new sink numbers its requests from 1 again), the spool
# drains to 0 and every message the hospital got a commit ACK for is at the
# cloud exactly in send order and byte-exact (the two recordings read one
# after the other; a request resent because the first sink died before
# answering carries the same Idempotency-Key). The leak check runs in
# e2e_stop.
#
# Run alone: BUILD=build bash tests/e2e/e2e_upstream_down.sh (root).
. "$(dirname "$0")/e2e-lib.sh"

T0=$(now_ms)
N=300 RATE=30 SIZE=600 PREFIX=UD
SINK2=$TMP/cloud-sink2

e2e_setup
e2e_start
T_UP=$(now_ms)

depth() { ap_metric 'mllp_spool_depth{integration="lab"}'; }
acks() { ap_metric_re '^mllp_acks_total\{.*integration="lab".*code="R2_ACK"|^mllp_acks_total\{.*code="R2_ACK".*integration="lab"'; }
naks() { ap_metric_re '^mllp_acks_total\{.*integration="lab".*code="R2_NAK"|^mllp_acks_total\{.*code="R2_NAK".*integration="lab"'; }
delivered() { ap_metric 'mllp_delivered_total{integration="lab"}'; }
at_sink() { awk -F'\t' -v p="$PREFIX-" '$3 == "/v1/hl7/lab" && index($11, p) == 1' "$1/requests.log" 2>/dev/null | grep -c .; }

sink_pids=$(pids_named "$NS_CLOUD" https-sink)
e2e_expect "setup: exactly one https-sink runs in the cloud namespace (PID ${sink_pids:-none})" \
	test -n "$sink_pids" -a "$(wc -w <<<"$sink_pids")" = 1 || { e2e_stop; finish; }
SINK_PID=$sink_pids

# --- the stream ---------------------------------------------------------------------------
t0=$(date +%s)
ip netns exec "$NS_HOSP" "$BIN_ABS/mllp-load" -t "$E2E_LAB" -c 1 -n "$N" -r "$RATE" -p 8 \
	-s "$SIZE" --bind-from 203.0.113.65 --id-prefix "$PREFIX" --patients 1 \
	--acked "$TMP/acked.txt" -T 30 >"$TMP/load.out" 2>"$TMP/load.err" &
LOAD=$!
e2e_expect "before: the stream reaches the cloud (>= 20 messages at the sink)" \
	wait_until 20 'test "$(at_sink "$E2E_SINK")" -ge 20' || { wait "$LOAD"; e2e_stop; finish; }

# --- the upstream goes down ------------------------------------------------------------------------
T_KILL=$(now_ms)
ch_kill_pid "$SINK_PID"
expect "down: the sink (PID $SINK_PID) is gone" eval '! kill -0 "$SINK_PID" 2>/dev/null'
n_sink1=$(at_sink "$E2E_SINK")
sleep 1
d1=$(depth) a1=$(acks) v1=$(delivered)
sleep 3
d2=$(depth) a2=$(acks) v2=$(delivered)
echo "# down: spool depth $d1 -> $d2, R2 ACKs $a1 -> $a2, delivered $v1 -> $v2"
expect "down: the hospital keeps getting commit ACKs (R2_ACK $a1 -> $a2 in 3 s)" \
	test "$a2" -ge "$((a1 + RATE))"
expect "down: no commit NAK (R2_NAK $(naks))" test "$(naks)" = 0
expect "down: the spool grows (mllp_spool_depth{integration=\"lab\"} $d1 -> $d2)" \
	test "$d1" -ge 1 -a "$d2" -ge "$((d1 + RATE))"
expect "down: nothing is delivered meanwhile (mllp_delivered_total $v1 -> $v2)" test "$v1" -ge 20 -a "$v2" = "$v1"
# the bridge reports its status to the supervisor about once a second
expect "down: appliancectl status --json: integration lab's depth reaches $d2 too" \
	ap_wait 5 "integ('lab')['depth'] >= $d2"
expect "down: the sink recorded nothing after it was stopped ($n_sink1 -> $(at_sink "$E2E_SINK"))" \
	test "$(at_sink "$E2E_SINK")" = "$n_sink1"
expect "down: the bridge retries (event=upstream_retry integration=lab ... Connection refused)" \
	grep -q 'event=upstream_retry integration=lab .*error="Connection refused' "$AP_LOG"

# --- the upstream comes back ----------------------------------------------------------------------
mkdir -p "$SINK2"
T_BACK=$(now_ms)
ns_bg "$NS_CLOUD" "$BIN_ABS/https-sink" --listen "$E2E_UPSTREAM" --tls policy --ack \
	--cert "$E2E_DIR/pki/cloud.pem" --key "$E2E_DIR/pki/cloud.key" --record "$SINK2" \
	>"$TMP/sink2.out" 2>&1 </dev/null
e2e_expect "back: https-sink listens again on $E2E_UPSTREAM" \
	wait_until 10 'grep -q listening "$TMP/sink2.out"'
wait "$LOAD"
t1=$(date +%s)
line=$(cat "$TMP/load.out")
echo "# mllp-load: $line"
expect "back: mllp-load: $N sent, $N commit-ACKed, 0 NAK/unacked/errors" \
	grep -qE "^sent=$N acked=$N nak=0 unacked=0 errors=0 " <<<"$line"
expect "back: the spool drains to 0" wait_until 40 'test "$(depth)" = 0'
T_DRAINED=$(now_ms)
expect "back: mllp_delivered_total grew by every message stored since ($v2 -> $(delivered), >= $v2 + $d2)" \
	test "$(delivered)" -ge "$((v2 + d2))"

# e2e-lib's load_verify: in send order (first arrival of each control id,
# the first sink's recording then the second's), byte-exact (the body
# rebuilt from mllp-load's format), and a request seen twice carries the
# same Idempotency-Key.
why=$(load_verify "$SIZE" "$t0" "$t1" "$PREFIX" "$TMP/acked.txt" "$E2E_SINK" "$SINK2")
rc=$?
echo "# at the cloud: $(head -n 1 <<<"$why")"
why=$(sed -n 2p <<<"$why")
expect "back: all $N at the cloud, in send order, byte-exact, one Idempotency-Key each${why:+: $why}" \
	test "$rc" = 0 -a -z "$why"
expect "back: the second sink received the backlog (>= $d2 of them)" test "$(at_sink "$SINK2")" -ge "$d2"

T_END=$(now_ms)
echo "# timing: setup+up $(((T_UP - T0) / 1000)) s; upstream down $((T_BACK - T_KILL)) ms; back -> drained $((T_DRAINED - T_BACK)) ms; total $(((T_END - T0) / 1000)) s"
e2e_stop
finish
