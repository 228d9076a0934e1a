#!/bin/bash
# Lanes: order where it is needed, parallelism everywhere else. One source
# address throughout (a hospital's interface engine is one address).
#   - order: feed runs feeds in parallel, each in order;
#   - order: patient lets other patients pass a retrying one, and a merge
#     (MRG) waits for everything before it for both patients;
#   - a replayed dead letter goes back into its lane before newer messages;
#   - a restart keeps every lane's order;
#   - a byte-identical resend carries the same Idempotency-Key, and with
#     dedup it is answered without being stored twice;
#   - ack: upstream: connections from one address do not wait for each other.
. tests/integration/lib.sh

MLLP=10968 UP=18448 OBS_PORT=19148
CONF=$TMP/bridge.yaml

# msg CTRL FACILITY PATIENT [PRIOR]: an ADT message; with PRIOR, an A40
# merge of PRIOR into PATIENT (MRG-1).
msg() {
	local mrg=""
	[ -n "${4:-}" ] && mrg="MRG|$4^^^H^MR\r"
	printf "MSH|^~\\\\&|ADT|%s|REDOX|CLOUD|20261130120000||ADT^A01^ADT_A01|%s|P|2.5.1\rPID|1||%s^^^H^MR||TEST^PATIENT\r$mrg" \
		"$2" "$1" "$3" >"$TMP/$1.hl7"
}

# config ORDER [EXTRA...]: one integration, commit mode unless told.
config() {
	local order=$1
	shift
	cat >"$CONF" <<EOF
gate: open # no tunnels: the bridge alone
spool: $TMP/spool.db
observability: { listen: 127.0.0.1:$OBS_PORT }
retry: { initial: 400ms, max: 800ms }
integrations:
  - name: lab
    listen: 127.0.0.1:$MLLP
    sources: [127.0.0.0/8]
    order: $order
$(for x in "$@"; do echo "    $x"; done)
    upstream: { url: "https://localhost:$UP/v1", ca_file: $CERTS/ca.pem, timeout: 5s }
EOF
}

# seq_of SINK CTRL [STATUS]: the sink's sequence number of the first request
# for CTRL (with that status, when given); empty when there was none.
seq_of() {
	awk -F'\t' -v c="$2" -v s="${3:-}" '$11 == c && (s == "" || $12 == s) {print $1; exit}' \
		"$TMP/$1/requests.log"
}

# in_order SINK CTRL...: the first 2xx of each CTRL came in this order.
in_order() {
	local sink=$1 prev=0 s
	shift
	for c in "$@"; do
		s=$(seq_of "$sink" "$c" 200)
		[ -n "$s" ] && [ "$s" -gt "$prev" ] || return 1
		prev=$s
	done
}

restart_clean() {
	stop_pid "$BRIDGE_PID"
	[ -n "${SINK_PID:-}" ] && stop_pid "$SINK_PID"
	rm -f "$TMP"/spool.db*
}

# --- feeds run in parallel, each in order ------------------------------
config feed
start_bridge "$CONF" $MLLP || exit 1
start_sink feeds $UP --delay-ms 200 || exit 1
for f in 1 2 3 4; do
	for i in 1 2 3 4 5; do msg "F$f-$i" "FAC$f" "P$f$i"; done
done
t0=$(date +%s%N)
for f in 1 2 3 4; do
	"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP"/F$f-?.hl7 >"$TMP/feeds$f.out" &
	pids="${pids:-} $!"
done
wait $pids
expect "20 messages from 4 feeds acknowledged" test "$(cat "$TMP"/feeds?.out | grep -c 'MSA|AA|')" -eq 20
expect "all 20 delivered" wait_until 10 'test "$(metric mllp_delivered_total)" -eq 20'
ms=$((($(date +%s%N) - t0) / 1000000))
# One lane would take 20 x 200 ms; four lanes about a quarter of that.
expect "the 4 feeds were delivered in parallel ($ms ms for 20 x 200 ms)" test "$ms" -lt 3000
expect "each feed in order" bash -c "$(declare -f seq_of in_order); TMP=$TMP
	in_order feeds F1-1 F1-2 F1-3 F1-4 F1-5 && in_order feeds F2-1 F2-2 F2-3 F2-4 F2-5 &&
	in_order feeds F3-1 F3-2 F3-3 F3-4 F3-5 && in_order feeds F4-1 F4-2 F4-3 F4-4 F4-5"
expect "mllp_lanes is back to 0 once delivered" test "$(metric mllp_lanes)" -eq 0

# --- patients: others pass a retrying patient; a merge waits for both ---
restart_clean
config patient
start_bridge "$CONF" $MLLP || exit 1
start_sink patients $UP --fail-first 1 || exit 1
msg PA-1 FAC PA
msg PB-1 FAC PB PA # merge PA into PB: waits for PA-1
msg PC-1 FAC PC
msg PB-2 FAC PB
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP"/PA-1.hl7 "$TMP"/PB-1.hl7 "$TMP"/PC-1.hl7 "$TMP"/PB-2.hl7 >"$TMP/patients.out"
expect "4 patient messages acknowledged" test "$(grep -c 'MSA|AA|' "$TMP/patients.out")" -eq 4
expect "all 4 delivered" wait_until 10 'test "$(metric mllp_delivered_total)" -eq 4'
expect "the first attempt of PA-1 was refused with 503" test "$(seq_of patients PA-1 503)" = 1
expect "another patient went ahead while PA-1 waited to retry" \
	bash -c "$(declare -f seq_of in_order); TMP=$TMP; in_order patients PC-1 PA-1"
expect "the merge waited for the prior patient's message, and PB-2 for the merge" \
	bash -c "$(declare -f seq_of in_order); TMP=$TMP; in_order patients PA-1 PB-1 PB-2"

# --- a replayed dead letter goes back before newer messages -------------
restart_clean
config feed
start_bridge "$CONF" $MLLP || exit 1
start_sink dead $UP --status 422 || exit 1
msg DX FAC DX
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/DX.hl7" >/dev/null
expect "DX is a dead letter" wait_until 10 'test "$(metric mllp_dead_letters_total)" -eq 1'
stop_pid "$SINK_PID"
msg DY FAC DY
msg DZ FAC DZ
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/DY.hl7" "$TMP/DZ.hl7" >/dev/null
expect "DY is retrying at the head of the lane" wait_until 10 'test "$(metric mllp_upstream_retries_total)" -ge 1'
spool replay --all-dead >/dev/null
expect "the replay is picked up" wait_until 5 'test "$(metric mllp_replayed_total)" -eq 1'
start_sink replayed $UP || exit 1
expect "all three delivered after the replay" wait_until 10 'test "$(metric mllp_delivered_total)" -eq 3'
expect "the replayed DX came before the newer DZ (after DY, which was retrying)" \
	bash -c "$(declare -f seq_of in_order); TMP=$TMP; in_order replayed DY DX DZ"

# --- a restart keeps every lane's order ---------------------------------
restart_clean
config patient
start_bridge "$CONF" $MLLP || exit 1
for i in 1 2 3; do for p in A B C; do msg "R$p-$i" FAC "R$p"; done; done
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP"/R?-1.hl7 "$TMP"/R?-2.hl7 "$TMP"/R?-3.hl7 >"$TMP/restart.out"
expect "9 messages acknowledged with the upstream down" test "$(grep -c 'MSA|AA|' "$TMP/restart.out")" -eq 9
kill -9 "$BRIDGE_PID"
wait "$BRIDGE_PID" 2>/dev/null
PIDS=$(echo "$PIDS" | tr ' ' '\n' | grep -vx "$BRIDGE_PID" | tr '\n' ' ')
start_bridge "$CONF" $MLLP || exit 1
expect "the lanes are loaded from the spool" test "$(metric mllp_lanes)" -eq 3
start_sink restarted $UP --delay-ms 50 || exit 1
expect "all 9 delivered after the restart" wait_until 10 'test "$(metric mllp_delivered_total)" -eq 9'
expect "each patient's messages in order across the restart" \
	bash -c "$(declare -f seq_of in_order); TMP=$TMP; in_order restarted RA-1 RA-2 RA-3 &&
		in_order restarted RB-1 RB-2 RB-3 && in_order restarted RC-1 RC-2 RC-3"

# --- a resend is the same message ----------------------------------------
restart_clean
config feed
start_bridge "$CONF" $MLLP || exit 1
start_sink keys $UP || exit 1
msg K1 FAC K1
msg K2 FAC K1
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/K1.hl7" "$TMP/K1.hl7" "$TMP/K2.hl7" >/dev/null
expect "3 requests" wait_until 10 'test "$(sink_count keys)" -eq 3'
k=$(awk -F'\t' '{print $11, $4}' "$TMP/keys/requests.log")
expect "a byte-identical resend carries the same Idempotency-Key" \
	test "$(grep -c '^K1 ' <<<"$k")" -eq 2 -a "$(grep '^K1 ' <<<"$k" | cut -d' ' -f2 | sort -u | wc -l)" -eq 1
expect "another message another key" \
	test "$(cut -d' ' -f2 <<<"$k" | sort -u | wc -l)" -eq 2

restart_clean
config feed "dedup: 10m"
start_bridge "$CONF" $MLLP || exit 1
start_sink dedup $UP || exit 1
out=$("$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/K1.hl7" "$TMP/K1.hl7" "$TMP/K2.hl7")
expect "dedup: the resend is answered AA like the original" test "$(grep -c 'MSA|AA|K1' <<<"$out")" -eq 2
expect "dedup: ... and not stored twice" wait_until 10 'test "$(metric mllp_delivered_total)" -eq 2'
expect "dedup: counted in mllp_duplicates_total" test "$(metric mllp_duplicates_total)" -eq 1
expect "dedup: the upstream got each message once" test "$(sink_count dedup)" -eq 2

# --- ack: upstream: connections from one address do not wait for each other
restart_clean
config feed "ack: upstream"
start_bridge "$CONF" $MLLP || exit 1
start_sink sync $UP --delay-ms 1000 || exit 1
msg U1 FAC U1
msg U2 FAC U2
t0=$(date +%s%N)
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/U1.hl7" >"$TMP/u1.out" &
p1=$!
"$BIN/mllp-send" 127.0.0.1:$MLLP "$TMP/U2.hl7" >"$TMP/u2.out" &
p2=$!
wait $p1 $p2
ms=$((($(date +%s%N) - t0) / 1000000))
expect "ack: upstream, one address, two connections: both answered after the upstream" \
	bash -c "grep -q 'MSA|AA|U1' '$TMP/u1.out' && grep -q 'MSA|AA|U2' '$TMP/u2.out'"
expect "... at the same time, not one after the other ($ms ms, upstream takes 1000 ms)" \
	test "$ms" -lt 1800
finish
