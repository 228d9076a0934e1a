#!/bin/bash
# The supervisor's run-time audit (invariant 5) on a `source: swanctl`
# tunnel, which `appliance -n` cannot check (appliance.yaml names no
# proposals for it): the edge's swanctl.conf and the hospital's both offer
# only DH 15 (modp3072), which charon accepts and the appliance forbids.
#
#   DH 15  the IKE_SA does get established (both charons' logs say so with
#          the MODP_3072 proposal, so the audit had something to see); the
#          supervisor terminates it: sa_audit_terminated, last_error, down,
#          appliance_tunnel_up 0; and the gate stays closed: mllp_gate_cidrs
#          0, no gate change, no MLLP connection accepted, nothing of the
#          hospital's reaches the upstream.
#   DH 21  both swanctl.conf files switched to ecp521 and reloaded: the
#          tunnel comes up, stays up for 5 s, the gate opens, and last_error
#          still shows the audit (history).
#
# Topology and helpers: appliance-lib.sh. The namespaces carry this
# scenario's own suffix, ports are private to them, files are in mktemp
# directories: it can run beside the other t_appliance_* scenarios.
CH_SUFFIX=${CH_SUFFIX:-audit-$$}
. "$(dirname "$0")/appliance-lib.sh"

ap_setup
S=hospital-x
G15_IKE=aes256-sha256-modp3072 G15_ESP=aes256gcm16-modp3072
DH21_IKE=aes256gcm16-prfsha384-ecp521 DH21_ESP=aes256gcm16-ecp521
EDGE_CONF=$TMP/edge-swanctl
EDGE_LOG=$AP_DIR/charon.log
PEER_LOG=${CH_DIR[peer]}/charon.log

# since LINE FILE: FILE from line LINE + 1 on.
since() { tail -n "+$(($1 + 1))" "$2" 2>/dev/null; }
lines() { wc -l <"$1" 2>/dev/null || echo 0; }
audit_lines() { grep -E "event=sa_audit_terminated .*tunnel=$S sa=ike dh=MODP_3072" "$@"; }
# established_with LOG GROUP: the first IKE_SA of $S that LOG shows both
# selecting an IKE proposal with GROUP and established (its unique id).
established_with() {
	local id
	for id in $(grep -E "<$S\|[0-9]+> selected proposal: IKE:[^ ]*/$2\$" "$1" |
		sed -E "s/.*<$S\|([0-9]+)>.*/\1/"); do
		grep -q "<$S|$id> IKE_SA $S\[$id\] established" "$1" && { echo "$id"; return 0; }
	done
	return 1
}
# hospital_try ID: one MLLP message from 203.0.113.65, 1 s for the answer,
# 2 s in all (a SYN sent into an SA that is deleted meanwhile would wait for
# the kernel's retries). Prints acked, unreachable, timeout or noanswer.
hospital_try() {
	local id=$1 out rc
	hl7_msg "$id" >"$TMP/msg-$id.hl7"
	out=$(timeout 2 ip netns exec "$NS_PEER" "$BIN_ABS/mllp-send" -b 203.0.113.65 -t 1000 \
		"203.0.113.1:$AP_MLLP" "$TMP/msg-$id.hl7" 2>&1)
	rc=$?
	echo "$id: exit $rc: $out" >>"$TMP/hospital.log"
	if grep -q "MSA|AA|$id" <<<"$out"; then
		echo acked
	elif [ "$rc" -eq 124 ]; then
		echo timeout
	elif grep -q 'cannot connect' <<<"$out"; then
		echo unreachable
	else
		echo noanswer
	fi
}

ap_peer_load "$S:$G15_IKE:$G15_ESP" ||
	fail "the hospital's swanctl --load-all (DH 15)" "$(tail -n 3 "$TMP/swanctl.log")"
ap_conf "$AP_CONF" "$(ap_tunnel "$S" swanctl)"
run_check "source: swanctl: appliance -n: the file is valid (it names no proposals to refuse)" 0 \
	'configuration is valid' "$APPLIANCE" -n -c "$AP_CONF"
ap_start || exit 1
expect "source: swanctl: listed, down, before anything is loaded" \
	ap_wait 10 "tun('$S')['source'] == 'swanctl' and not tun('$S')['up']"
changes0=$(ap_metric mllp_gate_changes_total)
refused0=$(ap_metric 'mllp_connections_refused_total{limit="gate"}')
expect "before DH 15: /metrics mllp_gate_cidrs 0 (changes so far: $changes0)" \
	test "$(ap_metric mllp_gate_cidrs)" = 0

# --- DH 15 from swanctl.conf ----------------------------------------------------
log0=$(lines "$AP_LOG")
ch_write_conf "$EDGE_CONF/swanctl.conf" gw "$S:$G15_IKE:$G15_ESP"
expect "DH 15: swanctl --load-all into the edge's charon (charon accepts modp3072)" \
	swanctl_load edge "$EDGE_CONF" >>"$TMP/swanctl.log" 2>&1
t15=$(date +%s.%N)
if wait_until 6 'since "$log0" "$AP_LOG" | audit_lines -q'; then
	echo "# note: DH 15: the supervisor initiated $S by itself"
else
	echo "# note: DH 15: no audit within 6 s of the load; swanctl --initiate"
	ch_swanctl edge --initiate --child "$S-net" --timeout 10 >>"$TMP/swanctl.log" 2>&1
fi
expect "DH 15: the supervisor logs event=sa_audit_terminated tunnel=$S sa=ike dh=MODP_3072" \
	wait_until 10 'since "$log0" "$AP_LOG" | audit_lines -q'

# The audit saw a real SA: charon established one with MODP_3072, and the
# edge (the supervisor's terminate) deleted it.
id15=$(established_with "$EDGE_LOG" MODP_3072)
expect "DH 15: the edge's charon.log: IKE_SA $S[${id15:-?}] established with proposal .../MODP_3072" \
	test -n "$id15"
grep -E "<$S\|${id15:-x}> (selected proposal: IKE|IKE_SA .* established|deleting IKE_SA)" \
	"$EDGE_LOG" | sed 's/^/#   edge: /'
# The responder logs its choice before the IKE_SA has a name ("<1>"), so
# its two lines are matched separately.
expect "DH 15: the hospital's charon.log: IKE proposal .../MODP_3072 selected and IKE_SA $S established" \
	eval 'grep -qE "selected proposal: IKE:.*/MODP_3072" "$PEER_LOG" &&
		grep -qE "<$S\|[0-9]+> IKE_SA $S\[[0-9]+\] established" "$PEER_LOG"'
expect "DH 15: the edge's charon deleted IKE_SA $S[${id15:-?}] (the terminate)" \
	wait_until 5 'grep -q "<$S|${id15:-x}> deleting IKE_SA $S\[${id15:-x}\]" "$EDGE_LOG"'
expect "DH 15: status: last_error names MODP_3072 and 'only 14 and 21 are allowed'" \
	ap_wait 5 "'MODP_3072' in tun('$S')['last_error'] and
		'only 14 and 21 are allowed' in tun('$S')['last_error']"
echo "# last_error: $(ap_q "tun('$S')['last_error']")"

# For 4 s: the status, /metrics and the hospital's MLLP attempts, every
# sample. Whatever the supervisor does meanwhile (it may initiate again),
# the tunnel never counts as up and the gate never opens.
n=0 bad_up="" bad_metric="" bad_cidrs="" results=""
end=$(($(date +%s) + 4))
while [ "$(date +%s)" -lt "$end" ]; do
	n=$((n + 1))
	ap_true "not tun('$S')['up']" || bad_up="$bad_up $n"
	[ "$(ap_metric "appliance_tunnel_up{tunnel=\"$S\"}")" = 0 ] || bad_metric="$bad_metric $n"
	[ "$(ap_metric mllp_gate_cidrs)" = 0 ] || bad_cidrs="$bad_cidrs $n"
	results="$results $(hospital_try "X$n")"
	sleep 0.1
done
expect "DH 15: status up: false at each of $n samples over 4 s${bad_up:+ (not at:$bad_up)}" \
	test -z "$bad_up"
expect "DH 15: /metrics appliance_tunnel_up{tunnel=\"$S\"} 0 at each sample${bad_metric:+ (not at:$bad_metric)}" \
	test -z "$bad_metric"
expect "DH 15: /metrics mllp_gate_cidrs 0 at each sample${bad_cidrs:+ (not at:$bad_cidrs)}" \
	test -z "$bad_cidrs"
changes15=$(ap_metric mllp_gate_changes_total)
opened=$(since "$log0" "$AP_LOG" | grep -cE 'event=gate_changed .*cidrs=[1-9]')
expect "DH 15: the gate never opened: mllp_gate_changes_total $changes0 -> $changes15, gate_changed with cidrs>0: $opened" \
	test "$changes15" = "$changes0" -a "$opened" -eq 0
refused15=$(ap_metric 'mllp_connections_refused_total{limit="gate"}')
accepted=$(since "$log0" "$AP_LOG" | grep -c 'proc=mllp-bridge event=conn_open ')
tally=$(tr ' ' '\n' <<<"$results" | grep . | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')
expect "DH 15: the hospital's $n MLLP attempts (${tally%, }): none ACKed" \
	test "$(tr ' ' '\n' <<<"$results" | grep -c '^acked$')" -eq 0
expect "DH 15: the bridge accepted none of them (conn_open: $accepted; refused limit=gate: $refused0 -> $refused15)" \
	test "$accepted" -eq 0
audits=$(since "$log0" "$AP_LOG" | audit_lines -c)
echo "# note: DH 15: $audits sa_audit_terminated and $(grep -c "IKE_SA $S\[[0-9]*\] established" "$EDGE_LOG") IKE_SAs established in $(awk -v a="$t15" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

# --- DH 21 on both sides ----------------------------------------------------------
# The hospital first accepts both groups, so that no attempt in between fails
# with NO_PROPOSAL_CHOSEN (that would replace last_error: a failure, not the
# history under test); then the edge offers DH 21 only; then the hospital too.
ap_peer_load "$S:$DH21_IKE,$G15_IKE:$DH21_ESP,$G15_ESP" ||
	fail "the hospital's swanctl --load-all (DH 21 and 15)" "$(tail -n 3 "$TMP/swanctl.log")"
ch_write_conf "$EDGE_CONF/swanctl.conf" gw "$S:$DH21_IKE:$DH21_ESP"
expect "DH 21: swanctl --load-all into the edge's charon" \
	swanctl_load edge "$EDGE_CONF" >>"$TMP/swanctl.log" 2>&1
if ap_wait 6 "tun('$S')['up']" 2>/dev/null; then
	echo "# note: DH 21: the supervisor initiated $S by itself"
else
	echo "# note: DH 21: $S not up within 6 s of the load; swanctl --initiate"
	ch_swanctl edge --initiate --child "$S-net" --timeout 10 >>"$TMP/swanctl.log" 2>&1
fi
expect "DH 21: the tunnel is up (IKE ESTABLISHED, ECP_521, group 21; child INSTALLED)" \
	ap_wait 20 "tun('$S')['up'] and tun('$S')['ike']['state'] == 'ESTABLISHED' and
		tun('$S')['ike']['dh'] == 'ECP_521' and tun('$S')['ike']['dh_group'] == 21 and
		child('$S', '$S-net')['state'] == 'INSTALLED'"
expect "DH 21: the hospital's swanctl.conf with DH 21 only: swanctl --load-all" \
	ap_peer_load "$S:$DH21_IKE:$DH21_ESP"
ap_status
up_since=$(ap_q "tun('$S')['since_unix']")
err_unix=$(ap_q "tun('$S')['last_error_unix']")
log21=$(lines "$AP_LOG") edge21=$(lines "$EDGE_LOG")
n=0 bad=""
for n in $(seq 10); do
	sleep 0.5
	ap_true "tun('$S')['up'] and tun('$S')['ike']['dh_group'] == 21 and
		tun('$S')['since_unix'] == $up_since" || bad="$bad $n"
done
expect "DH 21: stays up for 5 s: up, group 21, since $up_since at each of 10 samples${bad:+ (not at:$bad)}" \
	test -z "$bad"
expect "DH 21: no sa_audit_terminated, tunnel_down or tunnel_initiate in the supervisor's log meanwhile" \
	test "$(since "$log21" "$AP_LOG" | grep -cE "event=(sa_audit_terminated|tunnel_down|tunnel_initiate) .*tunnel=$S")" -eq 0
expect "DH 21: the edge's charon deleted no IKE_SA meanwhile" \
	test "$(since "$edge21" "$EDGE_LOG" | grep -c "deleting IKE_SA $S")" -eq 0
expect "DH 21: last_error still shows the audit (MODP_3072, only 14 and 21 are allowed), same time" \
	ap_true "'MODP_3072' in tun('$S')['last_error'] and
		'only 14 and 21 are allowed' in tun('$S')['last_error'] and
		tun('$S')['last_error_unix'] == $err_unix"
expect "DH 21: /metrics appliance_tunnel_up{tunnel=\"$S\"} 1" \
	test "$(ap_metric "appliance_tunnel_up{tunnel=\"$S\"}")" = 1
expect "DH 21: /metrics appliance_sa_dh_group{tunnel=\"$S\",sa=\"ike\"} 21" \
	test "$(ap_metric "appliance_sa_dh_group{tunnel=\"$S\",sa=\"ike\"}")" = 21
expect "DH 21: /metrics mllp_gate_cidrs 1 (the gate opens once the SA is allowed)" \
	test "$(ap_metric mllp_gate_cidrs)" = 1
expect "DH 21: a message from the hospital is ACKed" hospital_send A21
expect "DH 21: ... and reaches the upstream" wait_until 10 'sink_has A21'
leaked=$(cut -f11 "$TMP/up/requests.log" 2>/dev/null | grep -x 'X[0-9]*' | tr '\n' ' ')
expect "none of the messages sent while DH 15 was the only proposal reached the upstream${leaked:+ (got: $leaked)}" \
	test -z "$leaked"
ap_stop "audit"
finish
