#!/bin/bash
# Demonstration of charon-lib.sh: two real charons (kernel-libipsec) in network
# namespaces; DH 21 and DH 14 tunnels from the gateway, traffic through each
# with nc, then a modp1024-only peer failing with NO_PROPOSAL_CHOSEN.
# Run as root: bash tests/integration/charon-demo.sh   (CH_KEEP=1 keeps files)
# Exit status 0 when every check passed.
set -u
. "$(dirname "$0")/charon-lib.sh"

DEMO_FAILS=0
check() { # check DESCRIPTION COMMAND...
	local d=$1
	shift
	if "$@"; then
		echo "ok - $d"
	else
		echo "not ok - $d"
		DEMO_FAILS=$((DEMO_FAILS + 1))
	fi
}

DH21=dh21:aes256gcm16-prfsha384-ecp521:aes256gcm16-ecp521
DH14=dh14:aes256gcm16-prfsha256-modp2048:aes256gcm16-modp2048

# child_bytes NAME IKE: total ESP bytes in+out of IKE_SA IKE's CHILD_SAs
child_bytes() {
	ch_swanctl "$1" --list-sas --ike "$2" --raw 2>/dev/null |
		grep -o 'bytes-[a-z]*=[0-9]*' | awk -F= '{ t += $2 } END { print t + 0 }'
}

sa_installed() { ch_swanctl "$1" --list-sas --ike "$2" 2>/dev/null | grep -q INSTALLED; }

# tunnel_case CONN GROUP PORT
tunnel_case() {
	local conn=$1 group=$2 port=$3 sas
	ch_step "--- $conn ($group) ---"
	check "$conn: initiate from gateway" \
		ch_swanctl gw --initiate --child "$conn-net" --timeout 10 >"$CH_TMP/init-$conn.out" 2>&1
	ch_step "$conn: initiate (IKE_SA_INIT + IKE_AUTH)"
	sas=$(ch_swanctl gw --list-sas --ike "$conn")
	echo "$sas" | sed 's/^/    /'
	check "$conn: CHILD_SA INSTALLED" grep -q "INSTALLED" <<<"$sas"
	check "$conn: IKE_SA negotiated $group" grep -q "/$group\$" <<<"$sas"
	check "$conn: peer shows INSTALLED too" sa_installed peer "$conn"
	ch_step "$conn: list-sas"
	# The CHILD_SA made in IKE_AUTH does no DH exchange; the esp_proposals
	# group (PFS) is only negotiated by CREATE_CHILD_SA: force a rekey.
	check "$conn: rekey CHILD_SA (PFS with $group)" \
		ch_swanctl gw --rekey --child "$conn-net" >/dev/null 2>&1
	# The old CHILD_SA stays listed as DELETED for delete_rekeyed_delay
	# (5 s by default); the reply comes when the rekey is complete.
	sas=$(ch_swanctl gw --list-sas --ike "$conn")
	ch_step "$conn: rekey CHILD_SA"
	echo "$sas" | sed 's/^/    /'
	check "$conn: CHILD_SA INSTALLED with ESP:.../$group" \
		grep -q "INSTALLED, .*ESP:.*/$group" <<<"$sas"
	local before after
	before=$(child_bytes gw "$conn")
	check "$conn: nc 203.0.113.1 -> 203.0.113.65:$port through the tunnel" ch_nc_through "$port"
	after=$(child_bytes gw "$conn")
	echo "    CHILD_SA ESP bytes in+out before: $before; after: $after"
	check "$conn: ESP byte counters grew" test "$after" -gt "$before"
	ch_step "$conn: nc through tunnel"
	check "$conn: terminate" \
		ch_swanctl gw --terminate --ike "$conn" --timeout 5 >/dev/null 2>&1
	ch_step "$conn: terminate"
}

# --- setup ------------------------------------------------------------------
ch_step "start"
netns_setup
ch_step "netns_setup ($NS_GW, $NS_PEER)"
charon_start gw "$NS_GW" "$CH_TMP/gw"
ch_step "charon_start gw (PID ${CH_PID[gw]}) -> vici answers"
charon_start peer "$NS_PEER" "$CH_TMP/peer"
ch_step "charon_start peer (PID ${CH_PID[peer]}) -> vici answers"
check "gw PID is charon itself" \
	test "$(readlink /proc/"${CH_PID[gw]}"/exe)" = "$CH_CHARON"

ch_write_conf "$CH_TMP/gw-conf/swanctl.conf" gw "$DH21" "$DH14"
ch_write_conf "$CH_TMP/peer-conf/swanctl.conf" peer "$DH21" "$DH14"
ch_write_conf "$CH_TMP/peer-modp1024/swanctl.conf" peer \
	dh14:aes256gcm16-prfsha256-modp1024:aes256gcm16-modp1024
check "swanctl_load gw" swanctl_load gw "$CH_TMP/gw-conf" >/dev/null
check "swanctl_load peer" swanctl_load peer "$CH_TMP/peer-conf" >/dev/null
ch_step "swanctl_load gw + peer"

# No route to the hospital side without the tunnel.
check "no tunnel: nc 203.0.113.65 fails" \
	sh -c "! ip netns exec $NS_GW nc -z -w 1 -s 203.0.113.1 203.0.113.65 7 2>/dev/null"
ch_step "nc without tunnel"

tunnel_case dh21 ECP_521 5021
tunnel_case dh14 MODP_2048 5014

# --- modp1024-only peer -----------------------------------------------------
ch_step "--- modp1024-only peer ---"
check "swanctl_load peer (modp1024 only)" \
	swanctl_load peer "$CH_TMP/peer-modp1024" >/dev/null
gwlines=$(wc -l <"$CH_TMP/gw/charon.log")
peerlines=$(wc -l <"$CH_TMP/peer/charon.log")
out=$(ch_swanctl gw --initiate --child dh14-net --timeout 10 2>&1)
st=$?
echo "$out" | tail -n 2 | sed 's/^/    /'
check "modp1024 peer: initiate fails" test "$st" -ne 0
check "modp1024 peer: NO_PROPOSAL_CHOSEN in gateway charon.log" \
	sh -c "tail -n +$((gwlines + 1)) $CH_TMP/gw/charon.log | grep -q NO_PROPOSAL_CHOSEN"
tail -n +$((peerlines + 1)) "$CH_TMP/peer/charon.log" |
	grep -e 'no acceptable' -e 'proposals' | sed 's/^/    peer: /'
tail -n +$((gwlines + 1)) "$CH_TMP/gw/charon.log" |
	grep NO_PROPOSAL_CHOSEN | sed 's/^/    gw:   /'
check "modp1024 peer: no CHILD_SA" eval '! sa_installed gw dh14'
ch_step "modp1024 peer rejected"

# --- cleanup ----------------------------------------------------------------
GW_PID=${CH_PID[gw]} PEER_PID=${CH_PID[peer]}
[ "$DEMO_FAILS" -eq 0 ] || CH_KEEP=1
charon_cleanup
trap - EXIT
ch_step "cleanup"
check "namespaces gone" sh -c "! ip netns list | grep -q -e $NS_GW -e $NS_PEER"
check "charons gone" sh -c "! kill -0 $GW_PID 2>/dev/null && ! kill -0 $PEER_PID 2>/dev/null"
[ -n "${CH_KEEP:-}" ] || check "temp dir gone" test ! -e "$CH_TMP"
if [ "$DEMO_FAILS" -ne 0 ]; then
	echo "# $DEMO_FAILS check(s) failed"
	exit 1
fi
echo "# all checks passed"
