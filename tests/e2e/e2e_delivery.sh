#!/bin/bash
# Issue 11, scenarios 1 and 2: both directions deliver byte-exact, in order,
# with correct ACKs, for DH 21 and for DH 14, each on a clean topology
# (tests/e2e/e2e-lib.sh: hospital, edge, cloud namespaces; the appliance's
# config rendered from the shipped example). Captures run on both links the
# whole time and the leak check (e2e_stop) must pass: the hospital link
# carries only IKE, ESP and ARP, the cloud link only TLS on 8443.
#
# Per group:
#   - the negotiated IKE group is the one asked (status JSON: dh_group, dh);
#     a forced CHILD_SA rekey (appliancectl rekey-check) shows the same group
#     as PFS in ESP
#   - inbound: 200 messages with mllp-load from 203.0.113.65 (lab, MLLP
#     release 2: every one commit-ACKed), at the cloud in order, byte-exact;
#     one sample message to adt (ack: upstream) from 203.0.113.66: the
#     sender hears the cloud's AA, relayed
#   - outbound: 20 POSTs from the cloud for lis, at the LIS in post order,
#     byte-exact, each acked with the LIS's AA; one with Prefer: wait=5 gets
#     200 with the ACK
#
# Each group runs in its own process, this script again with the group as its
# argument (its own namespaces, its own EXIT-trap cleanup).
# Observed here (2 cores): ~5 s per group.
set -u
cd "$(dirname "$0")/../.." || exit 1

if [ $# -eq 0 ]; then
	rc=0
	for dh in 21 14; do
		echo "# --- DH $dh: a clean topology"
		bash "$0" "$dh" || rc=1
	done
	exit $rc
fi

dh=$1
CH_SUFFIX=dl$dh-$$
. tests/e2e/e2e-lib.sh
{
	e2e_setup "$dh"
	e2e_start
	[ "$dh" = 21 ] && want_dh=ECP_521 || want_dh=MODP_2048
	grp="tun('$E2E_TUNNEL')"
	expect "DH $dh: IKE negotiated group $dh ($want_dh), ESP $(ap_q "child('$E2E_TUNNEL', '$E2E_CHILD')['esp']")" \
		ap_true "${grp}['ike']['dh_group'] == $dh and ${grp}['ike']['dh'] == '$want_dh'"
	run_check "DH $dh: rekey-check: the CHILD_SA rekeyed with PFS" 0 '\<ok\>' \
		"$APPCTL" -s "$AP_SOCK" rekey-check "$E2E_TUNNEL"
	expect "DH $dh: the rekeyed CHILD_SA's PFS group is $dh" \
		ap_wait 10 "child('$E2E_TUNNEL', '$E2E_CHILD')['dh_group'] == $dh and
			${grp}['pfs_check']['dh_group'] == $dh"

	hospital_send_many 200 "IN$dh"

	# adt: ack: upstream, MLLP release 1: the sender hears the cloud's answer
	hl7_msg "ADT$dh-1" ADT >"$TMP/adt.hl7"
	out=$(ip netns exec "$NS_HOSP" "$BIN_ABS/mllp-send" -b 203.0.113.66 -t 10000 "$E2E_ADT" "$TMP/adt.hl7" 2>&1)
	expect "DH $dh: adt (ack: upstream): the sender hears the cloud's AA for ADT$dh-1" \
		grep -q "MSA|AA|ADT$dh-1" <<<"$out"
	expect "DH $dh: adt: the cloud has it byte-exact" \
		eval 'seq=$(sink_rows /v1/hl7/adt | awk -F"\t" "\$11 == \"ADT$dh-1\" { print \$1; exit }");
			test -n "$seq" && cmp -s "$E2E_SINK/bodies/$seq" "$TMP/adt.hl7"'

	cloud_post_many 20 "OB$dh"
	hl7_msg "SYNC$dh" CLOUD >"$TMP/sync.hl7"
	code=$(cloud_post "$TMP/sync.hl7" -H 'Prefer: wait=5')
	expect "DH $dh: POST with Prefer: wait=5: 200 with the LIS's ACK (MSA|AA|SYNC$dh; got $code)" \
		eval 'test "$code" = 200 && grep -q "MSA|AA|SYNC$dh" "$TMP/post.body"'

}
e2e_stop
finish
