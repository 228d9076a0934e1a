#!/bin/sh
# Installs the host packages that `make image` and `make image-test` need,
# like scripts/deps.sh: only what is missing, so a second run is offline.
# They are not in deps.sh on purpose: `make check` neither builds nor boots
# the image.
#
#   mmdebstrap          the Debian 12 root file system, from Debian's mirror
#   extlinux, syslinux-common  the boot loader and its MBR (mbr.bin)
#   fdisk (sfdisk)      the disk's partition table
#   e2fsprogs           mkfs.ext4 -d: the file system straight from a tree
#   qemu-utils          qemu-img: raw -> qcow2
#   qemu-system-x86     the test's two VMs (TCG: no KVM on these machines)
#   tcpdump             the test reads the outer link's capture
set -eu

exec sh "$(dirname "$0")/deps.sh" image-deps mmdebstrap extlinux syslinux-common fdisk e2fsprogs \
	qemu-utils qemu-system-x86 tcpdump
