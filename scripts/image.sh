#!/bin/bash
# scripts/image.sh BUILD: the appliance's VM image, BUILD/image/mllp-edge.qcow2
# (`make image`; docs/image.md). Root, Debian 12 host.
#
#   1. the Debian 12 root file system (mmdebstrap, Debian's mirror only),
#      cached as BUILD/image/base-KEY.tar: KEY hashes the suite, mirrors and
#      package list, so a rebuild with the same list reuses it (IMAGE_REFRESH=1
#      rebuilds it, e.g. for security updates)
#   2. a fresh tree from it, `make install DESTDIR=tree` (the programs,
#      rootfs/, the docs), the image's own files (config drive, network
#      default, boot loader config), users and enabled units
#   3. mkfs.ext4 -d tree (no mount), one MBR partition, extlinux in it
#      (a loop mount of the partition for `extlinux --install` only), the
#      syslinux MBR: a disk any BIOS hypervisor boots by itself
#   4. qemu-img convert -c to qcow2
# Prints the time of each step and the sizes at the end.
set -euo pipefail

BUILD=${1:-build}
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT=$(realpath -m "$BUILD/image")
SUITE=bookworm
MIRRORS=(
	"deb http://deb.debian.org/debian bookworm main"
	"deb http://deb.debian.org/debian bookworm-updates main"
	"deb http://deb.debian.org/debian-security bookworm-security main"
)
# What the appliance runs on: the kernel (with ESP and XFRM), systemd with
# networkd, charon with kernel-netlink (strongswan-charon) and the openssl
# and gcm plugins (libstrongswan-standard-plugins: ecp521 and AES-GCM; only
# a Recommends, so named), swanctl, nftables, and the libraries the programs
# link (the runtime side of the Makefile's PKGS).
PKGS=(
	linux-image-amd64 initramfs-tools systemd systemd-sysv udev kmod
	iproute2 nftables procps ca-certificates
	strongswan-charon strongswan-swanctl libstrongswan-standard-plugins
	libevent-2.1-7 libevent-openssl-2.1-7 libcurl4 libsqlite3-0 libyaml-0-2
	libssl3 libjansson4 libssh-4
)
# Manual pages and translations are of no use on an appliance without a
# shell user; copyright files stay.
DPKG_OPTS=(
	--dpkgopt='path-exclude=/usr/share/man/*'
	--dpkgopt='path-exclude=/usr/share/locale/*'
	--dpkgopt='path-include=/usr/share/locale/locale.alias'
	--dpkgopt='path-exclude=/usr/share/doc/*'
	--dpkgopt='path-include=/usr/share/doc/*/copyright'
	--dpkgopt='path-include=/usr/share/doc/mllp-edge/*'
)
DISK_SIZE=2G     # sparse: qcow2 stores only what is used
PART_START=2048  # sectors: the partition at 1 MiB, as fdisk aligns it

T0=$(date +%s)
step() { echo "image: [$(($(date +%s) - T0)) s] $*"; }
die() { echo "image: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (mmdebstrap --mode=root, mkfs of a tree with root's files, a loop mount)"
sh scripts/image-deps.sh

mkdir -p "$OUT"
key=$( {
	echo "$SUITE"
	printf '%s\n' "${MIRRORS[@]}" "${PKGS[@]}" "${DPKG_OPTS[@]}"
} | sha256sum | cut -c1-16)
base=$OUT/base-$key.tar
if [ -n "${IMAGE_REFRESH:-}" ] || [ ! -s "$base" ]; then
	step "mmdebstrap $SUITE (${#PKGS[@]} packages) -> $base"
	rm -f "$OUT"/base-*.tar "$OUT"/base-*.tar.tmp
	mmdebstrap --quiet --variant=apt --mode=root --format=tar \
		--include="$(IFS=,; echo "${PKGS[*]}")" "${DPKG_OPTS[@]}" \
		"$SUITE" "$base.tmp" "${MIRRORS[@]}" || die "mmdebstrap failed"
	mv "$base.tmp" "$base"
else
	step "cached root file system $base"
fi

tree=$OUT/tree
rm -rf "$tree"
mkdir -p "$tree"
tar --numeric-owner -xpf "$base" -C "$tree"
step "make install DESTDIR=$tree"
make --no-print-directory -s BUILD="$BUILD" install DESTDIR="$tree" >/dev/null

step "the image's own files, users, units"
install -D -m 0755 scripts/image-config-drive.sh "$tree/usr/lib/mllp-edge/config-drive"
cat >"$tree/usr/lib/systemd/system/mllp-edge-config-drive.service" <<'EOF'
# Copies the site configuration from a drive labelled MLLP-CFG into /etc
# (docs/image.md), before the network and the appliance start.
[Unit]
Description=mllp-edge site configuration from the config drive
DefaultDependencies=no
After=local-fs.target systemd-udev-trigger.service
Before=network-pre.target systemd-networkd.service appliance.service nftables.service sysinit.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/mllp-edge/config-drive

[Install]
WantedBy=sysinit.target
EOF
# Any interface without a site .network file asks DHCP, so that a fresh
# VM is reachable; the drive's files (lower numbers) take precedence.
cat >"$tree/usr/lib/systemd/network/90-mllp-edge-dhcp.network" <<'EOF'
[Match]
Type=ether

[Network]
DHCP=ipv4
EOF
echo mllp-edge >"$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmllp-edge\n' >"$tree/etc/hosts"
# The bridge's user (supervisor.bridge_user) and the group allowed on the
# control socket (supervisor.control_group), from the shipped sysusers.d
# file, as the package makes them on a host (the image's own sysusers).
chroot "$tree" systemd-sysusers mllp-edge.conf || die "systemd-sysusers mllp-edge.conf failed"
{ chroot "$tree" getent passwd mllp-bridge && chroot "$tree" getent group appliance; } >/dev/null ||
	die "systemd-sysusers made no mllp-bridge user or appliance group"
# The firewall: nftables.service loads /etc/nftables.conf at boot, before
# the network; the shipped ruleset is included the way docs/deploy.md tells
# an operator to. Its OUTER_IF, "eth0", is the image's first NIC: the
# kernel names the NICs (net.ifnames=0 below), eth0, eth1, ... in the
# order it finds them (PCI order; docs/image.md says what that means on
# other hypervisors than qemu).
cat >"$tree/etc/nftables.conf" <<'EOF'
#!/usr/sbin/nft -f
# The appliance image's firewall (docs/image.md; the ruleset: docs/deploy.md).
flush ruleset
include "/etc/nftables.d/mllp-edge.nft"
EOF
grep -q '^define OUTER_IF = "eth0"$' "$tree/etc/nftables.d/mllp-edge.nft" ||
	die "the shipped ruleset's OUTER_IF is no longer \"eth0\", the image's first NIC"
# The supervisor starts its own charon: the package's charon must not run.
systemctl --root="$tree" --quiet mask strongswan-starter.service
systemctl --root="$tree" --quiet enable systemd-networkd.service nftables.service \
	mllp-edge-config-drive.service appliance.service
[ -s "$tree/etc/machine-id" ] && : >"$tree/etc/machine-id" # each VM makes its own
rm -rf "$tree/var/lib/apt/lists/"* "$tree/var/cache/apt/"*.bin

step "file system and disk"
raw=$OUT/disk.raw part=$OUT/root.ext4
rm -f "$raw" "$part"
truncate -s "$DISK_SIZE" "$raw"
echo "start=$PART_START, type=83, bootable" | sfdisk -q "$raw"
part_sectors=$(sfdisk -l -o Sectors "$raw" | tail -n 1 | tr -d ' ')
truncate -s $((part_sectors * 512)) "$part"
uuid=$(cat /proc/sys/kernel/random/uuid)
kver=$(basename "$(ls "$tree"/boot/vmlinuz-*)" | sed 's/^vmlinuz-//')
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" >"$tree/etc/fstab"
mkdir -p "$tree/boot/extlinux"
# /vmlinuz and /initrd.img are the symlinks Debian moves on every kernel
# update, so the menu stays right after one. Serial console first: a
# hypervisor's log gets the boot; tty0 stays for a VGA console.
# net.ifnames=0: the kernel's names, eth0 the first NIC whatever the
# hypervisor (the firewall's OUTER_IF), not ens3 (qemu) or ens192 (VMware).
cat >"$tree/boot/extlinux/extlinux.conf" <<EOF
SERIAL 0 115200
DEFAULT mllp-edge
TIMEOUT 10
PROMPT 0
LABEL mllp-edge
	LINUX /vmlinuz
	INITRD /initrd.img
	APPEND root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8 net.ifnames=0
EOF
# Syslinux 6.04 reads neither 64-bit ext4 nor the newer checksum and orphan
# features that bookworm's mke2fs sets by default.
mkfs.ext4 -q -L mllp-edge-root -U "$uuid" -O '^64bit,^metadata_csum,^orphan_file' \
	-d "$tree" "$part" || die "mkfs.ext4 -d failed"
mnt=$(mktemp -d)
# errexit holds in the trap too: neither may fail the build
trap 'umount "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true' EXIT
mount -o loop "$part" "$mnt"
extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1 || die "extlinux --install failed"
umount "$mnt"
rmdir "$mnt"
trap - EXIT
dd if="$part" of="$raw" bs=1M seek=$((PART_START / 2048)) conv=notrunc,sparse status=none
dd if=/usr/lib/EXTLINUX/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
rm -f "$part"

tree_size=$(du -sh "$tree" | cut -f1)
rm -rf "$tree"

step "qcow2"
qemu-img convert -c -f raw -O qcow2 "$raw" "$OUT/mllp-edge.qcow2.tmp"
mv "$OUT/mllp-edge.qcow2.tmp" "$OUT/mllp-edge.qcow2"
rm -f "$raw"
step "done: $OUT/mllp-edge.qcow2 $(du -h --apparent-size "$OUT/mllp-edge.qcow2" | cut -f1)" \
	"(kernel $kver, tree $tree_size, base tarball $(du -h "$base" | cut -f1))"
