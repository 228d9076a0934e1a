#!/bin/bash
# The supervisor on real charons (issue 9), the tunnel's life when all goes
# well: appliance.yaml brings the tunnel up with DH 21 (status, /metrics, an
# HL7 message from the hospital through it to the upstream, rekey-check),
# a reload that fails validation changes nothing, a reload to DH 14 takes
# effect; the bridge killed with SIGKILL comes back; SIGTERM stops the
# bridge and charon; a `source: swanctl` tunnel loaded with swanctl --load-all
# is observed and audited. Topology: appliance-lib.sh.
. "$(dirname "$0")/appliance-lib.sh"

ap_setup
T=hospital-a
DH21_IKE=aes256gcm16-prfsha384-ecp521 DH21_ESP=aes256gcm16-ecp521
DH14_IKE=aes256gcm16-prfsha256-modp2048 DH14_ESP=aes256gcm16-modp2048
# The hospital accepts both groups.
ap_peer_load "$T:$DH21_IKE,$DH14_IKE:$DH21_ESP,$DH14_ESP" ||
	fail "the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
# An SFTP pull channel (issue 14) toward a hospital address with no server:
# its key is rotated through appliancectl and the real supervisor, and the
# bridge, running as nobody, must be able to read the new key.
SK=$AP_DIR/sftp
mkdir -p "$SK" && chmod 755 "$SK"
ssh-keygen -q -t ed25519 -N '' -C lab-files -f "$SK/lab.key" &&
	ssh-keygen -q -t ed25519 -N '' -C server -f "$SK/server" || exit 1
chgrp "$(id -gn nobody)" "$SK/lab.key" && chmod 0640 "$SK/lab.key"
AP_CONF_EXTRA="  - name: lab-files
    sftp:
      server: 203.0.113.66:22
      user: edge
      key: $SK/lab.key
      host_keys: [\"$(cut -d' ' -f1,2 "$SK/server.pub")\"]
      dir: /outbox
      interval: 1s
    upstream: { url: \"https://localhost:$AP_UP/v1/files\", ca_file: $CERTS_ABS/ca.pem }"
ap_conf "$AP_CONF" "$(ap_tunnel "$T" appliance "$DH21_IKE" "$DH21_ESP")"

# --- validation ----------------------------------------------------------------
run_check "appliance -n: the scenario's file is valid" 0 'configuration is valid' \
	"$APPLIANCE" -n -c "$AP_CONF"
BAD=$AP_DIR/bad.yaml
ap_conf "$BAD" "$(ap_tunnel "$T" appliance aes256-sha256-modp1024 "$DH21_ESP")"
badline=$(grep -n 'ike_proposals' "$BAD" | cut -d: -f1)
run_check "appliance -n: an IKE proposal with modp1024 is refused ($BAD:$badline: ...)" 1 \
	"^$BAD:$badline: " "$APPLIANCE" -n -c "$BAD"

# --- DH 21 from the YAML ----------------------------------------------------------
ap_start || exit 1
expect "DH 21: the tunnel comes up (IKE ESTABLISHED, ECP_521, group 21; child INSTALLED)" \
	ap_wait 20 "tun('$T')['up'] and tun('$T')['ike']['state'] == 'ESTABLISHED' and
		tun('$T')['ike']['dh_group'] == 21 and tun('$T')['ike']['dh'] == 'ECP_521' and
		child('$T', '$T-net')['state'] == 'INSTALLED'"
expect "status: the tunnel's source, algorithms and traffic selectors" \
	ap_true "tun('$T')['source'] == 'appliance' and tun('$T')['ike']['encr'] == 'AES_GCM_16-256' and
		tun('$T')['ike']['prf'] == 'PRF_HMAC_SHA2_384' and tun('$T')['since_unix'] > 1.7e9 and
		child('$T', '$T-net')['esp'] == 'AES_GCM_16-256' and
		child('$T', '$T-net')['local_ts'] == ['203.0.113.1/32'] and
		child('$T', '$T-net')['remote_ts'] == ['203.0.113.64/26']"
expect "status: the supervisor's pid and config" \
	ap_true "s['supervisor']['pid'] == $AP_PID and s['supervisor']['config'] == '$AP_CONF'"
expect "status: charon started by the supervisor, connected, on $AP_VICI" \
	ap_true "s['charon']['started'] and s['charon']['connected'] and s['charon']['vici'] == '$AP_VICI'"
CHARON_PID=$(ap_q "s['charon']['pid']")
expect "status: charon's pid ($CHARON_PID) is the charon in the edge namespace" \
	test "$(pids_named "$NS_GW" charon)" = "$CHARON_PID"
expect "the edge's charon uses the scenario's strongswan.conf (its log is there)" \
	grep -q 'IKE_SA hospital-a\[[0-9]*\] established' "$AP_DIR/charon.log"
BRIDGE_PID=$(ap_q "s['bridge']['pid']")
expect "status: the bridge runs (pid $BRIDGE_PID), restarts 0" \
	ap_true "s['bridge']['running'] and s['bridge']['restarts'] == 0 and s['bridge']['pid'] > 1"
expect "the bridge (pid $BRIDGE_PID) runs as nobody" \
	test "$(uid_of "$BRIDGE_PID")" = "65534 65534 65534 65534"
expect "status: the integration lab is reported" ap_true "integ('lab')['depth'] >= 0"

# --- SFTP key rotation through the supervisor (appliancectl sftp ...) -----------
run_check "appliancectl sftp keys: the channel's current key and its fingerprint" 0 \
	"lab-files \\(pull, edge@203.0.113.66:22\\):" "$APPCTL" -s "$AP_SOCK" sftp keys
run_check "appliancectl sftp rotate-key lab-files: a new Ed25519 key and its line for the server" 0 \
	'^ssh-ed25519 AAAA' "$APPCTL" -s "$AP_SOCK" sftp rotate-key lab-files
expect "<key>.next is root's, group nobody's, 0640: the bridge may read it, nobody else" \
	test "$(stat -c '%u %G %a' "$SK/lab.key.next")" = "0 $(id -gn nobody) 640"
expect "the bridge (as nobody) sees it at its next session: mllp_sftp_next_key_present 1" \
	wait_until 15 '[ "$(ap_metric "mllp_sftp_next_key_present{channel=\"lab-files\",direction=\"pull\"}")" = 1 ]'
run_check "a second rotate-key is refused while one is under way" 1 'rotation is under way' \
	"$APPCTL" -s "$AP_SOCK" sftp rotate-key lab-files
# from the private key itself: ssh-keygen -lf would read an old lab.key.pub
key_fpr() { ssh-keygen -y -f "$1" | ssh-keygen -lf - | cut -d' ' -f2; }
next_fpr=$(key_fpr "$SK/lab.key.next")
run_check "appliancectl sftp retire-key lab-files: the new key is the one in use" 0 \
	'is now the key in use' "$APPCTL" -s "$AP_SOCK" sftp retire-key lab-files
expect "<key> is the rotated key, <key>.next is gone" \
	test "$(key_fpr "$SK/lab.key")" = "$next_fpr" -a ! -e "$SK/lab.key.next"
run_check "appliancectl sftp rotate-key of an unknown channel: exit 1, says so" 1 \
	'no SFTP channel named nope' "$APPCTL" -s "$AP_SOCK" sftp rotate-key nope
expect "status: the heartbeat to lis (203.0.113.65:$AP_HEARTBEAT_PORT) through the tunnel is ok" \
	ap_wait 15 "[h for h in tun('$T')['heartbeats'] if h['destination'] == 'lis' and
		h['address'] == '203.0.113.65:$AP_HEARTBEAT_PORT' and h['state'] == 'ok']"
expect "status: pfs_check is never before any rekey-check" \
	ap_true "tun('$T')['pfs_check']['result'] == 'never'"
run_check "appliancectl status (the table) names the tunnel" 0 "$T" "$APPCTL" -s "$AP_SOCK" status
expect "the control socket is root's only (0600)" test "$(stat -c %a "$AP_SOCK")" = 600
run_check "appliancectl: no supervisor on the socket: exit 3" 3 . \
	"$APPCTL" -s "$AP_DIR/nothing.sock" status

expect "/metrics: appliance_tunnel_up{tunnel=\"$T\"} 1" \
	wait_until 10 "test \"\$(ap_metric 'appliance_tunnel_up{tunnel=\"$T\"}')\" = 1"
expect "/metrics: appliance_sa_dh_group{tunnel=\"$T\",sa=\"ike\"} 21" \
	test "$(ap_metric "appliance_sa_dh_group{tunnel=\"$T\",sa=\"ike\"}")" = 21
expect "/metrics: appliance_tunnel_last_change_seconds for $T" \
	test "$(ap_metric "appliance_tunnel_last_change_seconds{tunnel=\"$T\"}")" != unreadable
expect "/metrics: appliance_bridge_restarts_total 0" \
	test "$(ap_metric appliance_bridge_restarts_total)" = 0

expect "DH 21: a message from the hospital (203.0.113.65) is ACKed" hospital_send U21
expect "DH 21: ... and reaches the upstream" wait_until 10 'sink_has U21'
expect "DH 21: a second hospital address (203.0.113.67) is ACKed" hospital_send U21b 203.0.113.67

run_check "rekey-check $T: exit 0, ok" 0 '\<ok\>' "$APPCTL" -s "$AP_SOCK" rekey-check "$T"
expect "after the rekey the CHILD_SA has PFS group 21; pfs_check ok 21" \
	ap_wait 10 "child('$T', '$T-net')['dh_group'] == 21 and
		tun('$T')['pfs_check']['result'] == 'ok' and tun('$T')['pfs_check']['dh_group'] == 21"

expect "/metrics: appliance_sa_dh_group{tunnel=\"$T\",sa=\"child\"} 21 after the rekey" \
	wait_until 10 "test \"\$(ap_metric 'appliance_sa_dh_group{tunnel=\"$T\",sa=\"child\"}')\" = 21"

# --- a reload that fails validation changes nothing ---------------------------------
cp "$AP_CONF" "$AP_DIR/good21.yaml"
since=$(ap_q "tun('$T')['since_unix']")
cp "$BAD" "$AP_CONF"
lines=$(wc -l <"$AP_LOG")
kill -HUP "$AP_PID"
expect "SIGHUP with an invalid file: the supervisor logs why ($AP_CONF:$badline:)" \
	wait_until 10 "tail -n +$((lines + 1)) '$AP_LOG' | grep -q '$AP_CONF:$badline:'"
sleep 2
expect "SIGHUP with an invalid file: still running, the tunnel untouched (DH 21, same since)" \
	ap_true "tun('$T')['up'] and tun('$T')['ike']['dh_group'] == 21 and tun('$T')['since_unix'] == $since"
expect "SIGHUP with an invalid file: still served" hospital_send U21c

# --- reload to DH 14 --------------------------------------------------------------------
ap_conf "$AP_CONF" "$(ap_tunnel "$T" appliance "$DH14_IKE" "$DH14_ESP")"
kill -HUP "$AP_PID"
if ap_wait 8 "tun('$T')['up'] and tun('$T')['ike']['dh_group'] == 14" 2>/dev/null; then
	echo "# note: after SIGHUP the supervisor re-established $T with DH 14 by itself"
else
	# charon keeps an established IKE_SA on its old proposals (as swanctl
	# --load-conns does); the hospital ends it and the edge re-initiates.
	echo "# note: after SIGHUP $T kept its DH 21 SA; the hospital terminates it"
	ch_swanctl peer --terminate --ike "$T" --timeout 5 >>"$TMP/swanctl.log" 2>&1
fi
expect "DH 14: the tunnel is up from the reloaded YAML (MODP_2048, group 14)" \
	ap_wait 30 "tun('$T')['up'] and tun('$T')['ike']['dh_group'] == 14 and
		tun('$T')['ike']['dh'] == 'MODP_2048' and child('$T', '$T-net')['state'] == 'INSTALLED'"
expect "DH 14: /metrics appliance_sa_dh_group{tunnel=\"$T\",sa=\"ike\"} 14" \
	wait_until 10 "test \"\$(ap_metric 'appliance_sa_dh_group{tunnel=\"$T\",sa=\"ike\"}')\" = 14"
expect "DH 14: a message from the hospital is ACKed" hospital_send U14
expect "DH 14: ... and reaches the upstream" wait_until 10 'sink_has U14'
run_check "DH 14: rekey-check $T: exit 0, ok" 0 '\<ok\>' "$APPCTL" -s "$AP_SOCK" rekey-check "$T"
expect "DH 14: the rekeyed CHILD_SA has PFS group 14" \
	ap_wait 10 "child('$T', '$T-net')['dh_group'] == 14 and tun('$T')['pfs_check']['dh_group'] == 14"

# --- the bridge killed ------------------------------------------------------------------
BRIDGE_PID=$(ap_q "s['bridge']['pid']")
kill -KILL "$BRIDGE_PID"
expect "bridge SIGKILLed (pid $BRIDGE_PID): a new bridge runs, restarts 1" \
	ap_wait 15 "s['bridge']['running'] and s['bridge']['pid'] != $BRIDGE_PID and s['bridge']['restarts'] == 1"
NEW_BRIDGE=$(ap_q "s['bridge']['pid']")
expect "the new bridge ($NEW_BRIDGE) is the only one" \
	test "$(pids_named "$NS_GW" mllp-bridge)" = "$NEW_BRIDGE"
expect "the new bridge runs as nobody" test "$(uid_of "$NEW_BRIDGE")" = "65534 65534 65534 65534"
expect "after the bridge's restart a message from the hospital is ACKed" \
	wait_until 10 'hospital_send B1'
expect "... and reaches the upstream" wait_until 10 'sink_has B1'
expect "/metrics: appliance_bridge_restarts_total 1" \
	wait_until 10 'test "$(ap_metric appliance_bridge_restarts_total)" = 1'
expect "/metrics: the new bridge knows the tunnel is up" \
	test "$(ap_metric "appliance_tunnel_up{tunnel=\"$T\"}")" = 1
all_at_upstream() {
	local id
	for id in "$@"; do sink_has "$id" || return 1; done
}
expect "every message ACKed so far reached the upstream" all_at_upstream U21 U21b U21c U14 B1

ap_stop "DH 21/14"

# --- source: swanctl ------------------------------------------------------------------------
S=hospital-s
ap_peer_load "$S:$DH21_IKE:$DH21_ESP" ||
	fail "the hospital's swanctl --load-all ($S)" "$(tail -n 3 "$TMP/swanctl.log")"
ap_conf "$AP_CONF" "$(ap_tunnel "$S" swanctl)"
run_check "source: swanctl: the file is valid" 0 'configuration is valid' "$APPLIANCE" -n -c "$AP_CONF"
ap_start || exit 1
expect "source: swanctl: listed, down, before anything is loaded" \
	ap_wait 10 "tun('$S')['source'] == 'swanctl' and not tun('$S')['up']"
edge_conns() { ch_swanctl edge --list-conns 2>>"$TMP/swanctl.log"; }
conns=$(edge_conns)
expect "source: swanctl: the supervisor loaded no connection into charon (list-conns: $conns)" \
	test $? -eq 0 -a -z "$conns"
ch_write_conf "$TMP/edge-swanctl/swanctl.conf" gw "$S:$DH21_IKE:$DH21_ESP"
expect "source: swanctl: swanctl --load-all into the edge's charon" \
	swanctl_load edge "$TMP/edge-swanctl" >>"$TMP/swanctl.log" 2>&1
if ap_wait 6 "tun('$S')['up']" 2>/dev/null; then
	echo "# note: source: swanctl: the supervisor initiated $S itself"
else
	echo "# note: source: swanctl: the supervisor did not initiate $S; swanctl --initiate"
	ch_swanctl edge --initiate --child "$S-net" --timeout 10 >>"$TMP/swanctl.log" 2>&1
fi
expect "source: swanctl: observed up, DH 21, child INSTALLED" \
	ap_wait 20 "tun('$S')['up'] and tun('$S')['ike']['dh_group'] == 21 and
		child('$S', '$S-net')['state'] == 'INSTALLED'"
expect "source: swanctl: /metrics appliance_sa_dh_group{tunnel=\"$S\",sa=\"ike\"} 21" \
	wait_until 10 "test \"\$(ap_metric 'appliance_sa_dh_group{tunnel=\"$S\",sa=\"ike\"}')\" = 21"
expect "source: swanctl: the gate opens: a message from the hospital is ACKed" \
	wait_until 10 'hospital_send S1'
run_check "source: swanctl: audited: rekey-check $S: exit 0, ok" 0 '\<ok\>' \
	"$APPCTL" -s "$AP_SOCK" rekey-check "$S"
expect "source: swanctl: the rekeyed CHILD_SA has PFS group 21" \
	ap_wait 10 "child('$S', '$S-net')['dh_group'] == 21"
expect "source: swanctl: S1 reached the upstream" wait_until 10 'sink_has S1'
ap_stop "source: swanctl"
finish
