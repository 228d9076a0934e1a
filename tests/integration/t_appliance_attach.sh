#!/bin/bash
# The supervisor attached to a charon it does not run (`charon: {start:
# false}`), and a reload that drops a tunnel.
#
# A. Attach. The scenario starts the edge's charon itself (charon-lib's
#    charon_start: its own strongswan.conf and vici socket in $TMP/edgec),
#    then the supervisor on that socket: it starts no charon (status
#    started false, pid 0; the scenario's charon is the only one), loads
#    hospital-a into it (swanctl --list-conns), the tunnel comes up with
#    DH 21 and a hospital message is ACKed and reaches the upstream. The
#    charon is SIGKILLed: the supervisor says disconnected, the tunnel down,
#    the gate closed (mllp_gate_cidrs 0), and starts no charon of its own.
#    The scenario starts the charon again, same configuration: the supervisor
#    reconnects, loads hospital-a into the fresh charon (its log says so) and
#    brings the tunnel up by itself; messages flow again. SIGTERM: exit 0,
#    the scenario's charon still runs.
# B. Reload unloads what the file no longer has, attached and with the
#    supervisor's own charon: two tunnels to the one hospital, distinct
#    identities and selectors (hospital-a 203.0.113.1/32 <-> .64/27,
#    hospital-b 203.0.113.1/32 <-> .96/27; the hospital's swanctl.conf offers
#    .64/26 for both, charon narrows), both up, a message through each. The
#    file is rewritten without hospital-b, SIGHUP: hospital-b's connection
#    leaves list-conns and its SA list-sas (the hospital's too), status lists
#    hospital-a only, the gate has one CIDR; hospital-a stays up throughout
#    (same since_unix, same IKE_SA and CHILD_SA unique ids, up at every
#    sample) and carries a message afterwards. Attached, a connection the
#    operator loaded with swanctl before the supervisor started (operator-x)
#    is never unloaded.
#    Fails today (4 checks, both modes): the supervisor sends unload-conn
#    for hospital-b but terminates none of its SAs; charon's unload-conn
#    leaves SAs of a connection loaded with start_action none alone, so
#    hospital-b's IKE_SA and CHILD_SA stay ESTABLISHED/INSTALLED on both
#    charons (DPD keeps them alive), outside status and the gate.
#
# Topology and helpers: appliance-lib.sh (plus 203.0.113.97 on the
# hospital's lo, a sender inside hospital-b's selectors). Own namespace
# suffix, private ports, mktemp directories: it can run beside the other
# t_appliance_* scenarios.
CH_SUFFIX=${CH_SUFFIX:-attach-$$}
. "$(dirname "$0")/appliance-lib.sh"

ap_setup
ip -n "$NS_PEER" addr add 203.0.113.97/32 dev lo
A=hospital-a B=hospital-b
DH21_IKE=aes256gcm16-prfsha384-ecp521 DH21_ESP=aes256gcm16-ecp521
EC=edgec # charon-lib's name for the edge charon this scenario runs
EC_DIR=$TMP/edgec
EC_VICI=unix://$EC_DIR/charon.vici
ch_step "setup"

# ab_conf FILE MODE SOURCES TUNNEL_YAML...: ap_conf's file, with the charon
# section for MODE (attach: start false on $EC_VICI; own: ap_conf's, the
# supervisor starts charon) and the integration's sources (comma-separated).
ab_conf() {
	local file=$1 mode=$2 sources=$3
	shift 3
	ap_conf "$file" "$@"
	if [ "$mode" = attach ]; then
		awk -v vici="$EC_VICI" '
			/^charon:/ { print "charon:"; print "  start: false"; print "  vici: " vici; skip = 1; next }
			skip && /^  / { next }
			{ skip = 0; print }' "$file" >"$file.tmp" && mv "$file.tmp" "$file"
	fi
	sed -i "s|^    sources: \[203.0.113.64/26\]\$|    sources: [${sources//,/, }]|" "$file"
	chmod 644 "$file"
}
# tunnel_ts NAME RTS: ap_tunnel's DH 21 tunnel with remote_ts RTS.
tunnel_ts() {
	ap_tunnel "$1" appliance "$DH21_IKE" "$DH21_ESP" |
		sed "s|remote_ts: \[203.0.113.64/26\]|remote_ts: [$2]|"
}
# edge_swanctl MODE ARGS...: swanctl against the edge's charon.
edge_swanctl() {
	local mode=$1
	shift
	if [ "$mode" = attach ]; then ch_swanctl "$EC" "$@"; else ch_swanctl edge "$@"; fi
}
# conn_names MODE: the connections loaded in the edge's charon, one a line.
conn_names() { edge_swanctl "$1" --list-conns 2>>"$TMP/swanctl.log" | sed -n 's/^\([^ ][^:]*\): .*/\1/p'; }
# sa_names MODE: the IKE_SAs in the edge's charon (NAME #ID STATE), one a line.
sa_names() {
	edge_swanctl "$1" --list-sas 2>>"$TMP/swanctl.log" |
		sed -n 's/^\([^ ][^:]*\): #\([0-9]*\), \([A-Z_]*\),.*/\1 #\2 \3/p'
}
# ike_id MODE NAME / child_id MODE NAME CHILD: unique ids of the installed SAs.
ike_id() { sa_names "$1" | awk -v n="$2" '$1 == n && $3 == "ESTABLISHED" { print $2 }' | paste -sd' '; }
child_id() {
	edge_swanctl "$1" --list-sas --ike "$2" 2>>"$TMP/swanctl.log" |
		sed -n "s/^  *$3: #\([0-9]*\), reqid [0-9]*, INSTALLED,.*/#\1/p" | paste -sd' '
}
# hospital_try ID SRC: one MLLP message, 2 s in all; acked or not.
hospital_try() {
	local id=$1 src=$2 out
	hl7_msg "$id" >"$TMP/msg-$id.hl7"
	out=$(timeout 3 ip netns exec "$NS_PEER" "$BIN_ABS/mllp-send" -b "$src" -t 1500 \
		"203.0.113.1:$AP_MLLP" "$TMP/msg-$id.hl7" 2>&1)
	echo "$id from $src: $out" >>"$TMP/hospital.log"
	grep -q "MSA|AA|$id" <<<"$out"
}
gone() { ! kill -0 "$1" 2>/dev/null || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
count_in_log() { grep -c "$1" "$AP_LOG"; }

# ===== A. attach ==================================================================
ap_peer_load "$A:$DH21_IKE:$DH21_ESP" ||
	fail "the hospital's swanctl --load-all" "$(tail -n 3 "$TMP/swanctl.log")"
charon_start "$EC" "$NS_GW" "$EC_DIR"
EC_PID=${CH_PID[$EC]}
ab_conf "$AP_CONF" attach 203.0.113.64/26 "$(ap_tunnel "$A" appliance "$DH21_IKE" "$DH21_ESP")"
run_check "attach: appliance -n: charon {start: false, vici: $EC_VICI} is valid" 0 \
	'configuration is valid' "$APPLIANCE" -n -c "$AP_CONF"
ch_step "A: edge charon $EC_PID started by the scenario"

ap_start || exit 1
expect "attach: the tunnel comes up (IKE ESTABLISHED, ECP_521, group 21; child INSTALLED)" \
	ap_wait 20 "tun('$A')['up'] and tun('$A')['ike']['state'] == 'ESTABLISHED' and
		tun('$A')['ike']['dh'] == 'ECP_521' and tun('$A')['ike']['dh_group'] == 21 and
		child('$A', '$A-net')['state'] == 'INSTALLED'"
ch_step "A: tunnel up"
expect "attach: status: charon connected on $EC_VICI, started false, pid 0" \
	ap_true "s['charon']['connected'] and s['charon']['vici'] == '$EC_VICI' and
		s['charon']['started'] is False and s['charon']['pid'] == 0"
charons=$(pids_named "$NS_GW" charon | tr '\n' ' ')
expect "attach: the only charon in the edge namespace is the scenario's ($EC_PID; running: $charons)" \
	test "$charons" = "$EC_PID "
grep -q 'event=charon_started' "$AP_LOG" && fail "attach: the supervisor logged charon_started" \
	"$(grep -m1 'event=charon_started' "$AP_LOG")"
conns=$(conn_names attach | tr '\n' ' ')
expect "attach: swanctl --list-conns on the scenario's charon: $A, loaded by the supervisor (got: $conns)" \
	test "$conns" = "$A "
expect "attach: ... with its child $A-net (203.0.113.1/32 <-> 203.0.113.64/26)" \
	eval 'edge_swanctl attach --list-conns 2>/dev/null | grep -A3 "^  $A-net: TUNNEL" | grep -q "remote: *203.0.113.64/26"'
expect "attach: /metrics mllp_gate_cidrs 1" \
	wait_until 10 'test "$(ap_metric mllp_gate_cidrs)" = 1'
expect "attach: a message from the hospital (203.0.113.65) is ACKed" wait_until 10 'hospital_send AT1'
expect "attach: ... and reaches the upstream" wait_until 10 'sink_has AT1'
BRIDGE_PID=$(ap_q "s['bridge']['pid']")

# --- the edge's charon SIGKILLed ----------------------------------------------------
connected0=$(count_in_log 'event=charon_connected')
cp "$EC_DIR/charon.log" "$EC_DIR/charon-1.log"
kill -KILL "$EC_PID"
wait "$EC_PID" 2>/dev/null
unset "CH_PID[$EC]"
t_kill=$(ch_now)
ch_step "A: edge charon $EC_PID SIGKILLed"
expect "charon killed: status charon.connected false, $A down" \
	ap_wait 10 "not s['charon']['connected'] and not tun('$A')['up']"
expect "charon killed: the supervisor logs charon_disconnected" \
	wait_until 5 'grep -q "event=charon_disconnected" "$AP_LOG"'
expect "charon killed: /metrics mllp_gate_cidrs 0" \
	wait_until 5 'test "$(ap_metric mllp_gate_cidrs)" = 0'
expect "charon killed: /metrics appliance_tunnel_up{tunnel=\"$A\"} 0" \
	wait_until 5 "test \"\$(ap_metric 'appliance_tunnel_up{tunnel=\"$A\"}')\" = 0"
expect "charon killed: a message from the hospital is not ACKed" eval '! hospital_try AT-DOWN 203.0.113.65'
# For 2 s: still disconnected, no charon of the supervisor's own, bridge up.
bad=""
for n in $(seq 8); do
	ap_true "not s['charon']['connected'] and not s['charon']['started'] and
		s['charon']['pid'] == 0 and not tun('$A')['up'] and s['bridge']['running']" || bad="$bad s$n"
	[ -z "$(pids_named "$NS_GW" charon)" ] || bad="$bad p$n"
	sleep 0.25
done
expect "charon killed: for 2 s disconnected, down, no charon in the edge namespace (the supervisor starts none), the bridge runs${bad:+ (not at:$bad)}" \
	test -z "$bad"
expect "charon killed: the bridge was not restarted (pid $BRIDGE_PID)" \
	ap_true "s['bridge']['pid'] == $BRIDGE_PID and s['bridge']['restarts'] == 0"

# --- the edge's charon started again, same configuration ------------------------------
charon_start "$EC" "$NS_GW" "$EC_DIR"
EC_PID2=${CH_PID[$EC]}
ch_step "A: edge charon started again ($EC_PID2), $(awk -v a="$t_kill" -v b="$(ch_now)" 'BEGIN { printf "%.1f", b - a }') s after the kill"
expect "charon back: the supervisor reconnects (status connected, charon_connected logged again)" \
	ap_wait 15 "s['charon']['connected']"
expect "charon back: charon_connected logged a second time" \
	test "$(count_in_log 'event=charon_connected')" -gt "$connected0"
expect "charon back: the fresh charon got $A from the supervisor (its log: added vici connection: $A)" \
	wait_until 10 'grep -q "added vici connection: $A\$" "$EC_DIR/charon.log"'
conns=$(conn_names attach | tr '\n' ' ')
expect "charon back: swanctl --list-conns on the fresh charon: $A (got: $conns)" test "$conns" = "$A "
expect "charon back: the tunnel is up again by itself (ECP_521, group 21; child INSTALLED)" \
	ap_wait 20 "tun('$A')['up'] and tun('$A')['ike']['dh_group'] == 21 and
		child('$A', '$A-net')['state'] == 'INSTALLED'"
ch_step "A: tunnel up again"
expect "charon back: the fresh charon established $A itself (its log)" \
	grep -q "IKE_SA $A\[[0-9]*\] established" "$EC_DIR/charon.log"
expect "charon back: status started false, pid 0; the scenario's charon ($EC_PID2) is the only one" \
	eval 'ap_true "not s[\"charon\"][\"started\"] and s[\"charon\"][\"pid\"] == 0" &&
		test "$(pids_named "$NS_GW" charon | tr "\n" " ")" = "$EC_PID2 "'
expect "charon back: /metrics mllp_gate_cidrs 1" \
	wait_until 10 'test "$(ap_metric mllp_gate_cidrs)" = 1'
expect "charon back: a message from the hospital is ACKed" wait_until 10 'hospital_send AT2'
expect "charon back: ... and reaches the upstream" wait_until 10 'sink_has AT2'

ap_stop "attach" kept
expect "attach: after SIGTERM the scenario's charon ($EC_PID2) still runs and answers" \
	eval '! gone "$EC_PID2" && ch_swanctl "$EC" --stats >/dev/null 2>&1'
ch_step "A: supervisor stopped"

# ===== B. reload unloads what the file no longer has ======================================
ap_peer_load "$A:$DH21_IKE:$DH21_ESP" "$B:$DH21_IKE:$DH21_ESP" ||
	fail "the hospital's swanctl --load-all ($A, $B)" "$(tail -n 3 "$TMP/swanctl.log")"
A_RTS=203.0.113.64/27 B_RTS=203.0.113.96/27

# reload_case MODE: MODE attach (the scenario's fresh charon, with the
# operator's connection operator-x) or own (the supervisor starts charon).
reload_case() {
	local m=$1 conf=$AP_DIR/ab-$1.yaml conf_a=$AP_DIR/a-$1.yaml
	local conns sas since ike cid bad n log0 elog elog0
	if [ "$m" = attach ]; then
		# A fresh charon (no SA, nothing loaded), then the operator's own
		# connection, loaded with swanctl before the supervisor starts.
		ch_stop "$EC"
		charon_start "$EC" "$NS_GW" "$EC_DIR"
		mkdir -p "$TMP/operator"
		cat >"$TMP/operator/swanctl.conf" <<EOF
connections {
	operator-x {
		version = 2
		local_addrs = 198.51.100.1
		remote_addrs = 198.51.100.99
		proposals = $DH21_IKE
		local { auth = psk
			id = gw-operator-x.mllp.test }
		remote { auth = psk
			id = peer-operator-x.mllp.test }
		children {
			operator-x-net {
				local_ts = 10.99.0.1/32
				remote_ts = 10.99.1.0/24
				esp_proposals = $DH21_ESP
				start_action = none
			}
		}
	}
}
EOF
		expect "B/$m: the operator loads operator-x into the edge's charon with swanctl" \
			swanctl_load "$EC" "$TMP/operator" >>"$TMP/swanctl.log" 2>&1
		elog=$EC_DIR/charon.log
	else
		elog=$AP_DIR/charon.log
	fi
	ab_conf "$conf" "$m" "203.0.113.64/27,203.0.113.96/27" \
		"$(tunnel_ts "$A" "$A_RTS")" "$(tunnel_ts "$B" "$B_RTS")"
	ab_conf "$conf_a" "$m" "203.0.113.64/27" "$(tunnel_ts "$A" "$A_RTS")"
	run_check "B/$m: appliance -n: $A ($A_RTS) and $B ($B_RTS) to the one hospital" 0 \
		'configuration is valid' "$APPLIANCE" -n -c "$conf"
	run_check "B/$m: appliance -n: the file without $B" 0 \
		'configuration is valid' "$APPLIANCE" -n -c "$conf_a"
	cp "$conf" "$AP_CONF"
	ap_start || return 1
	expect "B/$m: both tunnels come up (DH 21; $A-net remote_ts $A_RTS, $B-net remote_ts $B_RTS)" \
		ap_wait 20 "all(tun(n)['up'] and tun(n)['ike']['dh_group'] == 21 for n in ('$A', '$B')) and
			child('$A', '$A-net')['state'] == 'INSTALLED' and child('$B', '$B-net')['state'] == 'INSTALLED' and
			child('$A', '$A-net')['remote_ts'] == ['$A_RTS'] and child('$B', '$B-net')['remote_ts'] == ['$B_RTS']"
	ch_step "B/$m: both tunnels up"
	if [ "$m" = attach ]; then
		expect "B/$m: status charon started false" ap_true "not s['charon']['started']"
	else
		expect "B/$m: status charon started true" ap_true "s['charon']['started']"
	fi
	conns=$(conn_names "$m" | sort | tr '\n' ' ')
	if [ "$m" = attach ]; then
		expect "B/$m: list-conns: $A, $B and the operator's operator-x (got: $conns)" \
			test "$conns" = "$A $B operator-x "
	else
		expect "B/$m: list-conns: $A, $B (got: $conns)" test "$conns" = "$A $B "
	fi
	sas=$(sa_names "$m" | awk '{print $1, $3}' | sort | tr '\n' ' ')
	expect "B/$m: list-sas: $A and $B ESTABLISHED (got: $sas)" \
		test "$sas" = "$A ESTABLISHED $B ESTABLISHED "
	expect "B/$m: /metrics mllp_gate_cidrs 2" wait_until 10 'test "$(ap_metric mllp_gate_cidrs)" = 2'
	expect "B/$m: a message from 203.0.113.65 (through $A) is ACKed" wait_until 10 "hospital_send ${m}A1"
	expect "B/$m: a message from 203.0.113.97 (through $B) is ACKed" \
		wait_until 10 "hospital_send ${m}B1 203.0.113.97"
	expect "B/$m: ... both reach the upstream" wait_until 10 "sink_has ${m}A1 && sink_has ${m}B1"
	ap_status
	since=$(ap_q "tun('$A')['since_unix']")
	ike=$(ike_id "$m" "$A") cid=$(child_id "$m" "$A" "$A-net")
	echo "# B/$m: $A since $since, IKE_SA $ike, CHILD_SA $cid"

	# --- the file without hospital-b, SIGHUP ----------------------------------------
	cp "$conf_a" "$AP_CONF"
	log0=$(wc -l <"$AP_LOG") elog0=$(wc -l <"$elog")
	kill -HUP "$AP_PID"
	ch_step "B/$m: SIGHUP without $B"
	bad="" n=0
	for n in $(seq 12); do
		ap_true "tun('$A')['up'] and tun('$A')['since_unix'] == $since" || bad="$bad $n"
		sleep 0.25
	done
	expect "B/$m: $A up with since $since at each of 12 samples over 3 s after the SIGHUP${bad:+ (not at:$bad)}" \
		test -z "$bad"
	expect "B/$m: the supervisor logs reloaded" \
		wait_until 5 "tail -n +$((log0 + 1)) '$AP_LOG' | grep -q 'event=reloaded'"
	expect "B/$m: $B's connection leaves the edge's list-conns" \
		wait_until 10 "! conn_names $m | grep -qx '$B'"
	conns=$(conn_names "$m" | sort | tr '\n' ' ')
	if [ "$m" = attach ]; then
		expect "B/$m: list-conns: $A and the operator's operator-x, never unloaded (got: $conns)" \
			test "$conns" = "$A operator-x "
	else
		expect "B/$m: list-conns: $A only (got: $conns)" test "$conns" = "$A "
	fi
	if wait_until 6 "! sa_names $m | grep -q '^$B '"; then
		ok "B/$m: $B's SA leaves the edge's list-sas"
	else
		fail "B/$m: $B's SA leaves the edge's list-sas" "still there after 6 s: $(sa_names "$m" | tr '\n' ';')"
	fi
	expect "B/$m: $B's SA leaves the hospital's list-sas too" \
		wait_until 6 "! ch_swanctl peer --list-sas 2>/dev/null | grep -q '^$B: #'"
	expect "B/$m: status lists $A only, up" \
		ap_wait 10 "[t['name'] for t in s['tunnels']] == ['$A'] and tun('$A')['up']"
	expect "B/$m: $A kept its IKE_SA $ike and CHILD_SA $cid, since $since" \
		eval 'test "$(ike_id "$m" "$A")" = "$ike" -a "$(child_id "$m" "$A" "$A-net")" = "$cid" -a -n "$ike" -a -n "$cid" &&
			ap_true "tun(\"$A\")[\"since_unix\"] == $since"'
	expect "B/$m: no tunnel_down or tunnel_initiate for $A since the SIGHUP" \
		test "$(tail -n "+$((log0 + 1))" "$AP_LOG" | grep -cE "event=(tunnel_down|tunnel_initiate) .*tunnel=$A( |\$)")" -eq 0
	expect "B/$m: the edge's charon deleted no $A SA since the SIGHUP" \
		test "$(tail -n "+$((elog0 + 1))" "$elog" | grep -cE "deleting (IKE_SA|CHILD_SA) $A")" -eq 0
	expect "B/$m: /metrics mllp_gate_cidrs 1" wait_until 10 'test "$(ap_metric mllp_gate_cidrs)" = 1'
	expect "B/$m: a message from 203.0.113.65 (through $A) is ACKed after the reload" \
		wait_until 10 "hospital_send ${m}A2"
	expect "B/$m: ... and reaches the upstream" wait_until 10 "sink_has ${m}A2"
	expect "B/$m: a message from 203.0.113.97 ($B's side) is no longer ACKed" \
		eval "! hospital_try ${m}B2 203.0.113.97"
	if [ "$m" = attach ]; then
		ap_stop "B/$m" kept
	else
		ap_stop "B/$m"
	fi
	ch_step "B/$m: done"
}

reload_case attach
ch_stop "$EC"
reload_case own
finish
