#!/bin/bash
# The appliance VM's role in `make image-test` (/etc/mllp-vmtest/run, started
# by mllp-vmtest.service from the config drive). appliance.service runs as
# the image enables it; this only watches and reports. Everything goes to
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

say "BEGIN role=appliance kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
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
say "END role=appliance after=$(since)s"
sync
systemctl poweroff
