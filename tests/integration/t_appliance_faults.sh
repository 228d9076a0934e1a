#!/bin/bash
# The supervisor on real charons (issue 9), when the hospital misbehaves:
# (a) it offers only modp1024: the tunnel stays down and status says
#     NO_PROPOSAL_CHOSEN;
# (b) its ESP proposal carries modp1024 as PFS group: the tunnel comes up
#     (the first CHILD_SA does no DH) and rekey-check catches it;
# (c) its charon is SIGKILLed and restarted: the tunnel comes back by itself
#     (dead peer detection every 2 s, then the supervisor re-initiates);
# (d) the tunnel's connection is unloaded from the appliance's own charon
#     (an operator's swanctl --load-all): the supervisor loads it again.
# Each case is one run of the supervisor against a fresh hospital charon.
# Topology: appliance-lib.sh.
. "$(dirname "$0")/appliance-lib.sh"

ap_setup
T=hospital-a
DH21_IKE=aes256gcm16-prfsha384-ecp521 DH21_ESP=aes256gcm16-ecp521
DH14_IKE=aes256gcm16-prfsha256-modp2048 DH14_ESP=aes256gcm16-modp2048
ap_conf "$AP_CONF" "$(ap_tunnel "$T" appliance "$DH21_IKE,$DH14_IKE" "$DH21_ESP,$DH14_ESP")"

# peer_fresh SPEC: a new hospital charon with only SPEC loaded.
peer_fresh() {
	ch_stop peer
	charon_start peer "$NS_PEER" "$CH_TMP/peer"
	ap_peer_load "$1" || fail "the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
}

# --- (a) the hospital offers only modp1024 ----------------------------------------------
peer_fresh "$T:aes256-sha256-modp1024:aes256gcm16-modp1024"
ap_start || exit 1
expect "(a) modp1024-only peer: status shows last_error NO_PROPOSAL_CHOSEN, tunnel down" \
	ap_wait 20 "tun('$T')['last_error'] == 'NO_PROPOSAL_CHOSEN' and not tun('$T')['up'] and
		tun('$T')['last_error_unix'] > 1.7e9"
expect "(a) no CHILD_SA reported installed" \
	ap_true "not [c for c in tun('$T').get('children') or [] if c.get('state') == 'INSTALLED']"
run_check "(a) appliancectl status (the table) shows NO_PROPOSAL_CHOSEN" 0 NO_PROPOSAL_CHOSEN \
	"$APPCTL" -s "$AP_SOCK" status
expect "(a) /metrics: appliance_tunnel_up{tunnel=\"$T\"} 0" \
	wait_until 10 "test \"\$(ap_metric 'appliance_tunnel_up{tunnel=\"$T\"}')\" = 0"
expect "(a) the hospital's charon refused the proposal (its log)" \
	grep -q 'no acceptable' "$CH_TMP/peer/charon.log"
sleep 3
expect "(a) it keeps trying (backoff): the hospital saw more than one IKE_SA_INIT" \
	test "$(grep -c 'received proposals' "$CH_TMP/peer/charon.log")" -ge 2
expect "(a) no IKE_SA established on the edge" eval "! grep -q 'established between' '$AP_DIR/charon.log'"
expect "(a) a message from the hospital is not served" eval '! hospital_send A1'
ap_stop "(a)"

# --- (b) the hospital's ESP proposal has modp1024 as PFS group -------------------------
: >"$AP_DIR/charon.log"
peer_fresh "$T:$DH21_IKE:aes256gcm16-modp1024"
ap_start || exit 1
expect "(b) weak-PFS peer: the tunnel comes up (IKE DH 21, child INSTALLED)" \
	ap_wait 20 "tun('$T')['up'] and tun('$T')['ike']['dh_group'] == 21 and
		child('$T', '$T-net')['state'] == 'INSTALLED'"
expect "(b) the first CHILD_SA did no DH (dh_group 0), pfs_check never" \
	ap_true "child('$T', '$T-net')['dh_group'] == 0 and tun('$T')['pfs_check']['result'] == 'never'"
expect "(b) the tunnel carries MLLP meanwhile" hospital_send B1
run_check "(b) rekey-check $T: exit 1, names NO_PROPOSAL_CHOSEN" 1 NO_PROPOSAL_CHOSEN \
	"$APPCTL" -s "$AP_SOCK" rekey-check "$T"
expect "(b) status: pfs_check failed with the reason" \
	ap_wait 5 "tun('$T')['pfs_check']['result'] == 'failed' and
		'NO_PROPOSAL_CHOSEN' in tun('$T')['pfs_check']['reason']"
expect "(b) the hospital's charon refused the PFS group (its log)" \
	grep -q 'no acceptable' "$CH_TMP/peer/charon.log"
ap_stop "(b)"

# --- (c) the hospital's charon is killed and restarted ------------------------------------
peer_fresh "$T:$DH21_IKE,$DH14_IKE:$DH21_ESP,$DH14_ESP"
ap_start || exit 1
expect "(c) the tunnel is up" \
	ap_wait 20 "tun('$T')['up'] and child('$T', '$T-net')['state'] == 'INSTALLED'"
expect "(c) a message from the hospital is ACKed" hospital_send C1
since0=$(ap_q "tun('$T')['since_unix']")
old=${CH_PID[peer]}
lines=$(wc -l <"$AP_LOG")
kill -KILL "$old"
wait "$old" 2>/dev/null
unset "CH_PID[peer]"
t0=$(date +%s.%N)
charon_start peer "$NS_PEER" "$CH_TMP/peer"
ap_peer_load "$T:$DH21_IKE,$DH14_IKE:$DH21_ESP,$DH14_ESP" ||
	fail "(c) the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
saw_down=no
end=$(($(date +%s) + 40))
while [ "$(date +%s)" -lt "$end" ]; do
	if ap_status; then
		ap_true "not tun('$T')['up']" && saw_down=yes
		ap_true "tun('$T')['up'] and tun('$T')['since_unix'] > $since0 and
			child('$T', '$T-net')['state'] == 'INSTALLED'" && break
	fi
	sleep 0.25
done
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
expect "(c) the tunnel came back by itself after the hospital's restart (${secs} s, down seen: $saw_down)" \
	ap_true "tun('$T')['up'] and tun('$T')['since_unix'] > $since0"
expect "(c) the supervisor logged the tunnel going down, then up" \
	eval "tail -n +$((lines + 1)) '$AP_LOG' | grep -E 'event=tunnel_(down|up) tunnel=$T' | tr '\n' ' ' |
		grep -q 'event=tunnel_down.*event=tunnel_up'"
expect "(c) the hospital's new charon has the IKE_SA" \
	eval "ch_swanctl peer --list-sas 2>/dev/null | grep -q ESTABLISHED"
expect "(c) a message from the hospital is ACKed again" wait_until 10 'hospital_send C2'
expect "(c) both reached the upstream" wait_until 10 'sink_has C1 && sink_has C2'
ap_stop "(c)"

# --- (d) the connection is unloaded from the appliance's charon behind its back --------
# As an operator's `swanctl --load-all` does to connections swanctl.conf does
# not hold: charon forgets the tunnel, its IKE_SA goes, and initiating fails
# with "not found" until the supervisor loads it again.
peer_fresh "$T:$DH21_IKE,$DH14_IKE:$DH21_ESP,$DH14_ESP"
ap_start || exit 1
expect "(d) the tunnel is up" \
	ap_wait 20 "tun('$T')['up'] and child('$T', '$T-net')['state'] == 'INSTALLED'"
since0=$(ap_q "tun('$T')['since_unix']")
# since_unix counts seconds: an SA that comes back within the second the
# first one came up would look unchanged, so the cut waits for the next one.
wait_until 3 '[ "$(date +%s)" -gt "$since0" ]'
lines=$(wc -l <"$AP_LOG")
expect "(d) unload-conn and terminate on the appliance's charon" \
	eval '"$BIN/vici" -s "$AP_VICI" unload-conn "$T" >/dev/null &&
		"$BIN/vici" -s "$AP_VICI" terminate --ike "$T" >/dev/null'
expect "(d) the tunnel came back" \
	ap_wait 40 "tun('$T')['up'] and tun('$T')['since_unix'] > $since0 and
		child('$T', '$T-net')['state'] == 'INSTALLED'"
expect "(d) the supervisor saw 'not found', then loaded the tunnel again" \
	eval "tail -n +$((lines + 1)) '$AP_LOG' | grep -E 'event=tunnel_(initiate_failed|reload) tunnel=$T' |
		tr '\n' ' ' | grep -q 'not found.*event=tunnel_reload'"
expect "(d) charon has the connection again" \
	eval '"$BIN/vici" -s "$AP_VICI" get-conns | grep -qw "$T"'
expect "(d) a message from the hospital is ACKed" wait_until 10 'hospital_send D1'
ap_stop "(d)"
finish
