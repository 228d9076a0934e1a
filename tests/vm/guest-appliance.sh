#!/bin/bash
# The appliance VM's role in `make image-test` (/etc/mllp-vmtest/run, started
# by mllp-vmtest.service from the config drive). appliance.service runs as
# the image enables it, with the image's firewall, strongswan.conf and
# sysctl settings; this watches and reports, and acts once: a TCP connect
# to a hospital address no SA covers, which the firewall must keep in
# (out_mllp_clear). Everything goes to
# the second serial port (/dev/ttyS1), which the host reads and asserts on:
# "VMTEST KEY value" lines and "TAG| line" blocks of command output. The
# host decides pass or fail; this script only says what it saw.
set -u
OUT=/dev/ttyS1
VICI=unix:///run/charon.vici
# swanctl reads the swanctl section of the appliance's own file
export STRONGSWAN_CONF=/etc/appliance/strongswan.conf
T0=$(date +%s.%N)
say() { echo "VMTEST $*" >"$OUT"; }
block() {
	local tag=$1
	shift
	{ "$@" 2>&1 || echo "(exit $?)"; } | sed "s/^/$tag| /" >"$OUT"
}
since() { awk -v t0="$T0" -v t="$(date +%s.%N)" 'BEGIN { printf "%.1f", t - t0 }'; }
# /metrics through bash's /dev/tcp: the image has no HTTP client. The
# timeout: a server that keeps the connection open would block cat.
metrics() {
	timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9100 &&
		printf "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3 &&
		cat <&3'
}
# metric NAME: the sum of NAME's samples (labelled or not); empty when
# /metrics is unreadable or has none
metric() {
	metrics 2>/dev/null | awk -v m="$1" 'index($1, m) == 1 && (length($1) == length(m) ||
		substr($1, length(m) + 1, 1) == "{") { s += $NF; n++ } END { if (n) print s }'
}

# counters: the firewall's named counters, "NAME PACKETS" a line
counters() {
	nft list counters table inet mllp_edge | awk '$1 == "counter" { n = $2 } $1 == "packets" { print n, $2 }'
}
# counter NAME: one counter's packets (empty when the table is unreadable)
counter() { counters 2>/dev/null | awk -v n="$1" '$1 == n { print $2 }'; }

say "BEGIN role=appliance kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
# The image's own setup, as booted: the firewall that nftables.service
# loaded from /etc/nftables.conf, its counters before any tunnel, the
# kernel settings of the shipped sysctl file, the users of the shipped
# sysusers file. The tunnel needs ~10 s more: these come first.
say "NFT service=$(systemctl is-active nftables.service)"
block nft-boot sh -c 'nft list table inet mllp_edge | grep -E "^table |iifname|counter name"'
block counters-boot counters
block sysctl sysctl net.ipv4.ip_local_port_range net.ipv4.conf.all.rp_filter \
	net.ipv4.conf.default.rp_filter net.ipv4.conf.eth0.rp_filter \
	net.ipv4.conf.all.accept_redirects net.ipv4.conf.eth0.accept_redirects \
	net.ipv4.conf.all.send_redirects net.ipv4.conf.all.log_martians
block users sh -c 'getent passwd mllp-bridge; getent group appliance; stat -c "spool %U %G %a" /var/lib/appliance'
# the tunnel: appliancectl's view (up: IKE_SA established, child installed)
up=""
for _ in $(seq 1 240); do
	if appliancectl status --json 2>/dev/null | grep -q '"up": *true'; then
		up=1
		break
	fi
	sleep 1
done
say "TUNNEL up=${up:-no} after=$(since)s uptime=$(cut -d' ' -f1 /proc/uptime)"
# the hospital's message: delivered upstream (the sink answered 2xx)
delivered=""
for _ in $(seq 1 180); do
	d=$(metric mllp_delivered_total)
	if [ -n "$d" ] && [ "${d%.*}" -ge 1 ]; then
		delivered=$d
		break
	fi
	sleep 1
done
say "DELIVERED count=${delivered:-none} after=$(since)s"
# The message came in through the tunnel (in_mllp_ipsec) and its ACK went
# out through it (out_mllp_clear unmoved): before the appliance's own
# cleartext attempt below.
block counters-delivered counters
# The hospital's cleartext SYN to the MLLP port (after its message): wait
# for in_mllp_clear to move, so that the dumps below see it.
clear=""
for _ in $(seq 1 60); do
	c=$(counter in_mllp_clear)
	if [ -n "$c" ] && [ "$c" -ge 1 ]; then
		clear=$c
		break
	fi
	sleep 1
done
say "CLEAR-SEEN in_mllp_clear=${clear:-none} after=$(since)s"
# MLLP toward a hospital address no CHILD_SA covers (203.0.113.200, in
# HOSPITAL_NETS, not in the tunnel's remote_ts): a route exists, so only
# the firewall's output rule (rt ipsec missing) keeps it in.
ip route add 203.0.113.200/32 via 198.51.100.2 dev eth0
block out-route ip route get 203.0.113.200
block out-clear timeout 5 bash -c 'exec 3<>/dev/tcp/203.0.113.200/9960 && echo connected'
block counters-end counters
block status appliancectl status --json
# the keys are this run's, but a report has no use for them
block xfrm-state sh -c "ip -s xfrm state | sed -E 's/0x[0-9a-f]{32,}/(key)/'"
block xfrm-policy ip xfrm policy
block sas swanctl --list-sas --uri "$VICI"
block stats swanctl --stats --uri "$VICI"
block links ip -o link
block modules sh -c 'lsmod | grep -E "^(esp4|xfrm|af_key|tun)\b"'
block metrics bash -c "$(declare -f metrics); metrics | grep -E '^(mllp_delivered_total|mllp_acks_total|mllp_gate_cidrs|appliance_)'"
# The CHILD_SA made with IKE_AUTH did no DH: its PFS group shows only at a
# rekey, which rekey-check forces (after the dumps above: the SAs change).
block rekey appliancectl rekey-check hospital-a
block units systemctl --no-pager --failed
block df df -h /
# the config drive's part of the boot (this role runs inside the boot
# transaction, so systemd-analyze has no total yet)
block boot journalctl -b -o short-monotonic --no-pager -u mllp-edge-config-drive.service
block journal journalctl --no-pager -b -u appliance.service -n 60
# charon's start script and anything swanctl unloaded (whole boot: these
# lines come early and fall out of the 60 above)
block start-script journalctl --no-pager -b -o cat -u appliance.service --grep 'start script|swanctl:|unloaded'
say "END role=appliance after=$(since)s"
sync
systemctl poweroff
