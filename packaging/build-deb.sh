#!/bin/sh
# Builds $BUILD/mllp-edge_VERSION_ARCH.deb with dpkg-deb alone (no
# debhelper): `make install DESTDIR=` lays the tree, so the package holds
# exactly what the VM image holds, whatever rootfs/ carries.
#
#   BUILD=build sh packaging/build-deb.sh      (what `make deb` runs)
#
# The version is the programs' own (`appliance -V`, `mllp-bridge -V`, both
# compiled from the file VERSION): one number for what the binaries print
# and what dpkg records; the two must agree. Depends is what dpkg-shlibdeps finds in the binaries, so it follows
# the libraries they really link against.
set -eu

BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top"

die() {
	echo "build-deb: $*" >&2
	exit 1
}

for p in dpkg-deb dpkg-shlibdeps strip; do
	command -v "$p" >/dev/null 2>&1 || die "$p is missing (Debian packages dpkg-dev, binutils)"
done

ver_a=$("$BUILD/bin/appliance" -V | awk '{print $2}')
ver_b=$("$BUILD/bin/mllp-bridge" -V | awk '{print $2}')
[ -n "$ver_a" ] || die "appliance -V printed no version"
[ "$ver_a" = "$ver_b" ] || die "appliance is $ver_a but mllp-bridge is $ver_b: one release, one version"
version=$ver_a
arch=$(dpkg --print-architecture)

# dpkg-shlibdeps wants a debian/control and the binaries inside
# debian/PACKAGE; the work directory gives it both.
work=$BUILD/pkg
root=$work/debian/mllp-edge
rm -rf "$work"
mkdir -p "$root"
"$MAKE" --no-print-directory BUILD="$BUILD" DESTDIR="$top/$root" install >/dev/null

# A clone made under umask 002 would carry group-writable files into the
# package; everything is root's and written by root alone.
chmod -R go-w "$root"
find "$root" -type d -exec chmod 0755 {} +

# Debian's place for a package's licence and history; the docs are already
# in usr/share/doc/mllp-edge (make install).
doc=$root/usr/share/doc/mllp-edge
install -m 0644 "$here/deb/copyright" "$doc/copyright"
sed "s/@VERSION@/$version/; s/@DATE@/$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")/" \
	"$here/deb/changelog.in" | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
# The attach-mode configuration (charon: {start: false}) the container uses
# is also the one for a Debian host whose own strongSwan keeps running.
install -D -m 0644 "$here/container/appliance.yaml" "$doc/examples/appliance-attach.yaml"

# The debug information stays in the build tree; the package carries what
# runs (mllp-bridge: 1.1 MB -> about 0.3 MB).
bins=""
for f in "$root"/usr/sbin/* "$root"/usr/bin/*; do
	if [ -f "$f" ]; then
		strip --strip-unneeded --remove-section=.comment "$f"
		bins="$bins -e${f#"$work"/}"
	fi
done
[ -n "$bins" ] || die "no programs in $root/usr/sbin, usr/bin"
printf 'Source: mllp-edge\n\nPackage: mllp-edge\nArchitecture: any\n' >"$work/debian/control"
# It finds a binary's package by the DEBIAN directory above it.
mkdir -p "$root/DEBIAN"
# shellcheck disable=SC2086
shlibs=$(cd "$work" && dpkg-shlibdeps -O $bins | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no libraries"

# The system users: systemd-sysusers reads the package's own sysusers.d
# file when there is one (rootfs/ may ship it); postinst falls back to
# adduser. Either way the same user and groups come out.
sysusers=""
if [ -d "$root/usr/lib/sysusers.d" ]; then
	sysusers=$(cd "$root" && grep -l 'mllp-bridge' usr/lib/sysusers.d/*.conf 2>/dev/null |
		sed 's|^|/|' | tr '\n' ' ') || true
fi

# Every file under /etc is the operator's to edit: dpkg keeps their
# changes on upgrade and asks before replacing one.
(cd "$root" && find etc -type f | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
[ -s "$root/DEBIAN/conffiles" ] || rm -f "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
	-e "s/@DEPENDS@/$shlibs/" "$here/deb/control.in" >"$root/DEBIAN/control"
sed "s|@SYSUSERS@|$sysusers|" "$here/deb/postinst" >"$root/DEBIAN/postinst"
cp "$here/deb/prerm" "$here/deb/postrm" "$root/DEBIAN/"
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control"
if [ -f "$root/DEBIAN/conffiles" ]; then chmod 0644 "$root/DEBIAN/conffiles"; fi
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z |
	xargs -0 md5sum | sed 's| \./| |') >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

deb=$BUILD/mllp-edge_${version}_$arch.deb
# --root-owner-group: every file root:root in the archive, whoever built it.
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
