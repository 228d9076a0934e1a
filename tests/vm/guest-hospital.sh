#!/bin/bash
# The hospital VM's role in `make image-test` (/etc/mllp-vmtest/run): the
# same image, as the customer's side. Its appliance.service is stopped: this
# VM runs a plain charon (kernel-netlink, strongswan-hospital.conf) as the
# customer's VPN gateway, the LIS's sender (mllp-send from 203.0.113.65)
# and, on a second link, the cloud's HTTPS receiver (https-sink on
# 198.51.100.130:8443). Reports on /dev/ttyS1 like guest-appliance.sh; the
# host decides.
set -u
D=/etc/mllp-vmtest
OUT=/dev/ttyS1
VICI=unix:///run/hospital.vici
SINK=/run/sink
# charon and swanctl: this role's own file
export STRONGSWAN_CONF=$D/strongswan.conf
T0=$(date +%s.%N)
say() { echo "VMTEST $*" >"$OUT"; }
block() {
	local tag=$1
	shift
	{ "$@" 2>&1 || echo "(exit $?)"; } | sed "s/^/$tag| /" >"$OUT"
}
since() { awk -v t0="$T0" -v t="$(date +%s.%N)" 'BEGIN { printf "%.1f", t - t0 }'; }

say "BEGIN role=hospital kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
# This VM is not an appliance; the image's nftables ruleset (if rootfs/
# ships a strict one) is the appliance's, not a hospital gateway's.
systemctl stop appliance.service
nft flush ruleset
mkdir -p "$SINK"
"$D/https-sink" --listen 198.51.100.130:8443 --tls policy --cert "$D/sink.pem" --key "$D/sink.key" \
	--record "$SINK" >/run/sink.out 2>&1 </dev/null &
/usr/lib/ipsec/charon >/run/charon.out 2>&1 </dev/null &
for _ in $(seq 1 50); do
	swanctl --stats --uri "$VICI" >/dev/null 2>&1 && break
	sleep 0.2
done
block load swanctl --load-all --file "$D/swanctl.conf" --uri "$VICI"
# the appliance initiates; wait for the CHILD_SA here
sa=""
for _ in $(seq 1 240); do
	if swanctl --list-sas --uri "$VICI" 2>/dev/null | grep -q 'INSTALLED'; then
		sa=1
		break
	fi
	sleep 1
done
say "CHILD_SA installed=${sa:-no} after=$(since)s uptime=$(cut -d' ' -f1 /proc/uptime)"
# The bridge opens its gate a moment after the CHILD_SA is up (the
# supervisor tells it): until then the connection is refused or closed
# unanswered, so a few attempts, each one logged.
for i in $(seq 1 20); do
	if ack=$("$D/mllp-send" -b 203.0.113.65 -t 10000 203.0.113.1:9960 "$D/msg.hl7" 2>&1); then
		say "SENT attempt=$i after=$(since)s"
		break
	fi
	say "SEND-FAILED attempt=$i: $(head -c 200 <<<"$ack" | tr '\n' ' ')"
	ack=""
	sleep 2
done
block ack echo "$ack"
# MLLP in clear: from the outer address (outside the CHILD_SA's
# 203.0.113.64/26, so no ESP) to the appliance's MLLP port, which charon's
# route (table 220) sends to 198.51.100.1. The appliance's firewall drops
# the SYN (in_mllp_clear): the connect times out, not refused.
block clear-route ip route get 203.0.113.1 from 198.51.100.2
c0=$(date +%s%N)
clear=$("$D/mllp-send" -b 198.51.100.2 -t 4000 203.0.113.1:9960 "$D/msg.hl7" 2>&1)
rc=$?
say "CLEAR rc=$rc ms=$((($(date +%s%N) - c0) / 1000000)) $(head -c 200 <<<"$clear" | tr '\n' ' ')"
# the message at the cloud's receiver
for _ in $(seq 1 120); do
	[ -s "$SINK/bodies/1" ] && break
	sleep 1
done
say "SINK after=$(since)s bodies=$(find "$SINK/bodies" -type f 2>/dev/null | wc -l)"
if [ -s "$SINK/bodies/1" ]; then
	say "BODY1 $(base64 -w0 "$SINK/bodies/1")"
fi
block requests cat "$SINK/requests.log"
block tls cat "$SINK/connections.log"
block xfrm-state sh -c "ip -s xfrm state | sed -E 's/0x[0-9a-f]{32,}/(key)/'"
block sas swanctl --list-sas --uri "$VICI"
block sink-out cat /run/sink.out
# Stay up for the appliance's own checks (its rekey-check needs this
# charon): until its shutdown deletes the IKE SA (the appliance powers off
# after its report), at most 180 s.
for _ in $(seq 1 180); do
	swanctl --list-sas --uri "$VICI" 2>/dev/null | grep -q 'hospital-a: #' || break
	sleep 1
done
say "PEER-GONE after=$(since)s ike_sas=$(swanctl --list-sas --uri "$VICI" 2>/dev/null | grep -c 'hospital-a: #')"
say "END role=hospital after=$(since)s"
sync
systemctl poweroff
