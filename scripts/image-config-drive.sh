#!/bin/sh
# /usr/lib/mllp-edge/config-drive in the VM image (scripts/image.sh puts it
# there; mllp-edge-config-drive.service runs it at every boot, before the
# network and the appliance start). docs/image.md describes the drive.
#
# The image carries no site configuration. A hypervisor hands it in as a
# second disk: any file system labelled MLLP-CFG. Its etc/ tree is copied
# over /etc (appliance.yaml, the PSK, certificates, systemd-networkd
# .network files, ...), owned by root with the modes it has on the drive
# (0640 files of etc/appliance/ get the group mllp-bridge, below);
# then every unit named in the drive's file `start` (one a line) is started.
# Every boot, so that a changed drive takes effect at the next boot.
# Without a drive nothing changes.
set -eu

LABEL=MLLP-CFG
MNT=/run/mllp-edge/config

log() { echo "config-drive: $*"; }

# blkid probes the block devices itself: no wait for udev's by-label links.
dev=$(blkid -L "$LABEL" 2>/dev/null) || { log "no drive labelled $LABEL: /etc unchanged"; exit 0; }
mkdir -p "$MNT"
mount -o ro "$dev" "$MNT"
trap 'umount "$MNT" 2>/dev/null || true' EXIT

if [ -d "$MNT/etc" ]; then
	# --no-preserve=ownership: uids on the drive mean nothing here.
	cp -R --no-preserve=ownership "$MNT/etc/." /etc/
	log "copied $(find "$MNT/etc" -type f | wc -l) files from $dev to /etc"
fi
# Ownership by mode, as a drive cannot name this image's uids: a file of
# etc/appliance/ with mode 0640 on the drive is for the bridge, which runs
# as mllp-bridge (its TLS key, bearer tokens, client keys): root:mllp-bridge.
# Everything else stays root's; the tunnel secrets are 0600 whatever the
# drive said (the supervisor reads them as root).
if [ -d "$MNT/etc/appliance" ]; then
	find "$MNT/etc/appliance" -type f -perm 0640 | while read -r f; do
		chgrp mllp-bridge "/etc/appliance/${f#"$MNT/etc/appliance/"}"
	done
fi
for f in /etc/appliance/*.psk; do
	[ -e "$f" ] && chmod 0600 "$f"
done
# Only when the drive brings units: a reload this early in boot is slow.
if [ -d "$MNT/etc/systemd/system" ]; then
	systemctl daemon-reload
	log "reloaded systemd for the drive's units"
fi
if [ -f "$MNT/start" ]; then
	grep -v '^[[:space:]]*\(#\|$\)' "$MNT/start" | while read -r unit; do
		log "starting $unit"
		systemctl --no-block start "$unit"
	done
fi
