#!/bin/bash
# The supervisor's own kill -9 under load (issue 9; invariants 1 and 2).
# The hospital sends through the tunnel with mllp-load (4 connections from
# 203.0.113.65-68, reconnecting, every ACKed control id written down). The
# supervisor is SIGKILLed mid-load: its bridge sees the link close and exits
# by itself, charon goes on. A new supervisor on the same file re-attaches
# to that charon (or replaces it cleanly: exactly one charon afterwards) and
# starts a fresh bridge; the tunnel is up, the load is served again, and
# every message that was ACKed, before or after, reaches the upstream.
# Topology: appliance-lib.sh.
. "$(dirname "$0")/appliance-lib.sh"

ap_setup "$BIN_ABS/mllp-load"
T=hospital-a
DH21_IKE=aes256gcm16-prfsha384-ecp521 DH21_ESP=aes256gcm16-ecp521
ap_peer_load "$T:$DH21_IKE:$DH21_ESP" ||
	fail "the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
ap_conf "$AP_CONF" "$(ap_tunnel "$T" appliance "$DH21_IKE" "$DH21_ESP")"

ap_start || exit 1
expect "the tunnel is up" \
	ap_wait 20 "tun('$T')['up'] and child('$T', '$T-net')['state'] == 'INSTALLED' and s['bridge']['running']"
expect "a first message from the hospital is ACKed" wait_until 10 'hospital_send F1'
CHARON_PID=$(ap_q "s['charon']['pid']")
BRIDGE_PID=$(ap_q "s['bridge']['pid']")
echo "# charon $CHARON_PID, bridge $BRIDGE_PID, supervisor $AP_PID"

LOAD_SECS=24
: >"$TMP/acked"
ns_bg "$NS_PEER" "$BIN_ABS/mllp-load" -t "203.0.113.1:$AP_MLLP" -c 4 -p 2 -r 300 -d "$LOAD_SECS" \
	-s 512 --bind-from 203.0.113.65 --reconnect --acked "$TMP/acked" --id-prefix K \
	>"$TMP/load.out" 2>&1 </dev/null
LOAD_PID=$NS_BG_PID
t0=$(date +%s)
expect "the load is being ACKed before the crash" wait_until 10 'test "$(grep -c . "$TMP/acked")" -ge 50'
sleep 2
before=$(grep -c . "$TMP/acked")

# --- kill -9 ------------------------------------------------------------------------
ap_kill9
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
expect "supervisor SIGKILLed: its bridge ($BRIDGE_PID) exits by itself" wait_until 15 "gone $BRIDGE_PID"
expect "supervisor SIGKILLed: charon ($CHARON_PID) keeps running" eval "! gone $CHARON_PID"
sleep 1

# --- restart -----------------------------------------------------------------------------
ap_start || exit 1
expect "restart: a fresh bridge runs, the tunnel is up" \
	ap_wait 30 "s['bridge']['running'] and s['bridge']['pid'] != $BRIDGE_PID and
		tun('$T')['up'] and child('$T', '$T-net')['state'] == 'INSTALLED' and s['charon']['connected']"
# one_charon: the edge namespace runs exactly one charon, the one status names
# (a supervisor that replaces charon may need a moment to stop the old one).
one_charon() {
	ap_status || return 1
	charons=$(pids_named "$NS_GW" charon | tr '\n' ' ')
	[ "$charons" = "$(ap_q "s['charon']['pid']") " ]
}
one_charon
wait_until 10 one_charon
NEW_CHARON=$(ap_q "s['charon']['pid']")
if [ "$NEW_CHARON" = "$CHARON_PID" ]; then
	echo "# note: the new supervisor re-attached to charon $CHARON_PID (started: $(ap_q "s['charon']['started']"))"
else
	echo "# note: the new supervisor runs charon $NEW_CHARON, the old one was $CHARON_PID"
fi
expect "restart: exactly one charon in the edge namespace, the one status names ($NEW_CHARON; running: $charons)" \
	one_charon
expect "restart: exactly one bridge in the edge namespace" \
	test "$(pids_named "$NS_GW" mllp-bridge | grep -c .)" -eq 1
expect "restart: the load is ACKed again" \
	wait_until 20 "test \"\$(grep -c . '$TMP/acked')\" -ge $((before + 50))"

left=$((LOAD_SECS + 10 - ($(date +%s) - t0)))
expect "the load generator finished" wait_until "$((left > 5 ? left : 5))" "gone $LOAD_PID"
wait "$LOAD_PID" 2>/dev/null
echo "# mllp-load: $(tail -n 1 "$TMP/load.out")"
acked=$(sort -u "$TMP/acked" | grep -c .)
expect "messages were ACKed across the crash ($before before, $acked in all)" test "$acked" -ge $((before + 100))
expect "the spool drains (status: lab depth 0)" ap_wait 60 "integ('lab')['depth'] == 0"
cut -f11 "$TMP/up/requests.log" | sort -u >"$TMP/received"
missing=$(sort -u "$TMP/acked" | comm -23 - "$TMP/received")
expect "every ACKed message reached the upstream (missing $(grep -c . <<<"$missing") of $acked: $(head -n 5 <<<"$missing" | tr '\n' ' '))" \
	test -z "$missing"
dups_same_key() {
	! awk -F'\t' '{print $11 "\t" $4}' "$TMP/up/requests.log" | sort -u | cut -f1 | uniq -d | grep -q .
}
expect "duplicates, if any, carry the same Idempotency-Key" dups_same_key

# SIGTERM: the bridge always goes; charon goes when this supervisor says it
# started it, and stays (an attached charon) otherwise.
started=$(ap_q "s['charon']['started']")
if [ "$started" = true ]; then
	ap_stop "after the restart"
else
	echo "# note: the new supervisor says it did not start charon $NEW_CHARON: SIGTERM leaves it"
	ap_stop "after the restart" kept
fi
finish
