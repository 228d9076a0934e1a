#!/bin/bash
# The Debian package (`make deb`) and the container's Dockerfile, from
# outside, in seconds:
#
# A. The archive: control fields (version = the programs' -V, the
#    architecture, Depends covering every library the programs link
#    against (DT_NEEDED, located by ldd, mapped to its package by dpkg -S,
#    independently of dpkg-shlibdeps), Recommends), every expected
#    path with its mode, root:root everywhere, nothing group/world-writable
#    or setuid, every rootfs/ file present, conffiles = exactly the files
#    under /etc, the maintainer scripts parse (sh -n, shellcheck).
# B. lintian (deps.sh installs it; about 2 s): no error, and only the
#    warnings allowed below, each with its reason.
# C. A real install into a throwaway copy of this machine: an overlay
#    (tmpfs upper) over /, chrooted, so dpkg checks Depends against real
#    packages and the maintainer scripts run for real without touching the
#    host. install (user, group, spool 0700, /etc/appliance 0750, nothing
#    enabled, the programs run, the shipped example fails only on the
#    secrets it names), reinstall over an edited conffile (kept), remove
#    (programs gone, conffile kept), purge (configuration gone, the spool
#    and its user kept).
# C2. The container's process tree from the installed package: the
#    supervisor chrooted into the copy, in a namespace of ours, with only
#    the capabilities the Dockerfile asks docker for (setpriv), attached to
#    a real charon's root-owned vici socket: the HEALTHCHECK command taken
#    from the Dockerfile succeeds, status says attached, the bridge runs as
#    mllp-bridge without capabilities, SIGTERM stops both and leaves charon;
#    without SETUID/SETGID the bridge is not started at all.
# D. The Dockerfile: tests/tools/dockerfile-check.py passes on it and fails
#    on broken copies; the container's example configuration passes the
#    programs' own -n check except for the secrets it names.
# E. Only with PKG_CHROOT=1 (`make deb-chroot`; 1-3 minutes, downloads
#    from the Debian mirror): the Dockerfile's build stage emulated (its
#    COPYs laid out, make, make deb); a minimal Debian 12 made by mmdebstrap
#    holding only the package's Depends, dpkg -i there and the programs
#    run, which proves that Depends is complete.
. tests/integration/lib.sh

PY=/usr/bin/python3
# shellcheck disable=SC2034 # lap (lib.sh) reads it
T0=$(date +%s%N)
OV=$TMP/ov    # tmpfs: the overlay's upper and work directories
ROOT=$TMP/root # the overlay: this machine, copy-on-write
MIN=$TMP/min   # the minimal chroot (PKG_CHROOT=1)

# Unmounts before lib.sh's cleanup removes $TMP: rm -rf must never walk
# into the overlay (it would only write whiteouts to the tmpfs, but it would
# walk the whole machine).
pkg_umount() {
	local m
	for m in "$ROOT/proc" "$ROOT" "$OV"; do
		mountpoint -q "$m" 2>/dev/null || continue
		umount "$m" 2>/dev/null || umount -l "$m"
	done
}
trap 'pkg_umount; cleanup' EXIT

# ---- A. the archive ----

if ! out=$(make --no-print-directory BUILD="$BUILD" deb 2>"$TMP/deb.err"); then
	fail "make deb" "$(tail -n 5 "$TMP/deb.err")"
	finish
fi
DEB=$(echo "$out" | tail -n 1)
[ -f "$DEB" ] || {
	fail "make deb names the package it built" "$out"
	finish
}
lap "make deb"
arch=$(dpkg --print-architecture)
ver=$("$BIN/appliance" -V | awk '{print $2}')
expect "file name is mllp-edge_${ver}_$arch.deb" \
	test "$(basename "$DEB")" = "mllp-edge_${ver}_$arch.deb"

field() { dpkg-deb -f "$DEB" "$1"; }
expect "Package: mllp-edge" test "$(field Package)" = mllp-edge
expect "Version is the programs' ($ver)" test "$(field Version)" = "$ver"
expect "Architecture: $arch" test "$(field Architecture)" = "$arch"
expect "Maintainer and Description present" \
	test -n "$(field Maintainer)" -a "$(field Description | wc -l)" -ge 5

DEPENDS=$(field Depends)
# "a (>= 1), b | c" -> one package name a line.
dep_names() { tr ',|' '\n\n' | sed 's/(.*//; s/^ *//; s/ *$//' | grep -v '^$'; }

mkdir -p "$TMP/x"
dpkg-deb -x "$DEB" "$TMP/x"
dpkg-deb -e "$DEB" "$TMP/x/DEBIAN"

# Every library a program links against (its DT_NEEDED entries, found
# where ldd finds them) comes from a package that Depends names.
missing=""
libs=0
for b in "$TMP"/x/usr/sbin/* "$TMP"/x/usr/bin/*; do
	ldd "$b" >"$TMP/ldd.out" 2>&1
	for lib in $(readelf -d "$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
		so=$(awk -v l="$lib" '$1 == l && $3 ~ /^\// {print $3}' "$TMP/ldd.out")
		[ -n "$so" ] || so=$(awk -v l="$lib" '$1 ~ "/" l "$" {print $1}' "$TMP/ldd.out")
		pkg=""
		[ -n "$so" ] && pkg=$(dpkg -S "$so" 2>/dev/null || dpkg -S "$(readlink -f "$so")" 2>/dev/null)
		pkg=${pkg%%:*}
		libs=$((libs + 1))
		if [ -z "$pkg" ]; then
			missing="$missing $lib(${so:-not-found})"
		elif ! dep_names <<<"$DEPENDS" | grep -qx "$pkg"; then
			missing="$missing $lib($pkg)"
		fi
	done
done
if [ "$libs" -ge 8 ] && [ -z "$missing" ]; then
	ok "Depends holds the package of each of the $libs libraries the programs need"
else
	fail "Depends holds every library's package" "libs=$libs missing:$missing; Depends: $DEPENDS"
fi
expect "Depends: adduser (postinst)" grep -qx adduser <(dep_names <<<"$DEPENDS")
for p in strongswan-charon strongswan-swanctl libstrongswan-standard-plugins nftables; do
	expect "Recommends: $p" grep -qx "$p" <(field Recommends | dep_names)
done

dpkg-deb -c "$DEB" >"$TMP/contents"
# path mode: "./usr/sbin/appliance -rwxr-xr-x"
awk '{print $6, $1, $2}' "$TMP/contents" >"$TMP/modes"
has() { # has PATH MODE: the archive holds PATH with MODE
	grep -qx "./$1 $2 root/root" "$TMP/modes"
}
for p in usr/sbin/appliance usr/sbin/mllp-bridge usr/bin/appliancectl usr/bin/vici; do
	expect "$p 0755" has "$p" -rwxr-xr-x
done
for p in usr/lib/systemd/system/appliance.service usr/lib/systemd/system/mllp-bridge.service \
	etc/appliance/appliance.yaml usr/share/doc/mllp-edge/copyright \
	usr/share/doc/mllp-edge/changelog.gz usr/share/doc/mllp-edge/README.md \
	usr/share/doc/mllp-edge/deploy.md usr/share/doc/mllp-edge/appliance.md \
	usr/share/doc/mllp-edge/config.md usr/share/doc/mllp-edge/examples/appliance-attach.yaml; do
	if has "$p" -rw-r--r--; then
		ok "$p 0644"
	else
		fail "$p 0644" "$(grep -F "/${p##*/} " "$TMP/modes" || echo absent)"
	fi
done
expect "every member root/root" test "$(awk '$2 != "root/root"' "$TMP/contents" | wc -l)" -eq 0
expect "nothing group- or world-writable, setuid or setgid" \
	test "$(awk 'substr($1,6,1) == "w" || substr($1,9,1) == "w" || $1 ~ /[sS]/' "$TMP/contents" | wc -l)" -eq 0
stripped() { local b; for b in "$TMP"/x/usr/sbin/* "$TMP"/x/usr/bin/*; do ! readelf -S "$b" | grep -q '\.symtab' || return 1; done; }
expect "programs stripped" stripped
# Whatever rootfs/ holds, the package holds.
absent=""
n=0
while IFS= read -r f; do
	n=$((n + 1))
	grep -qx "./${f#rootfs/} .*" "$TMP/modes" || absent="$absent ${f#rootfs/}"
done < <(find rootfs -type f -o -type l)
if [ "$n" -ge 3 ] && [ -z "$absent" ]; then
	ok "all $n files of rootfs/ in the package"
else
	fail "all files of rootfs/ in the package" "n=$n absent:$absent"
fi
(cd "$TMP/x" && find etc -type f | sed 's|^|/|' | sort) >"$TMP/etc-files"
expect "conffiles = the $(wc -l <"$TMP/etc-files") files under /etc" \
	cmp -s "$TMP/etc-files" <(sort "$TMP/x/DEBIAN/conffiles")
for s in postinst prerm postrm; do
	expect "$s 0755 and sh -n" bash -c "[ \"\$(stat -c %a '$TMP/x/DEBIAN/$s')\" = 755 ] && sh -n '$TMP/x/DEBIAN/$s'"
done
if command -v shellcheck >/dev/null; then
	expect "maintainer scripts: shellcheck" \
		shellcheck -s sh "$TMP/x/DEBIAN/postinst" "$TMP/x/DEBIAN/prerm" "$TMP/x/DEBIAN/postrm"
fi
# try-restart (an upgrade restarts what already ran) is the one allowed.
expect "postinst enables and starts nothing" \
	bash -c "! grep -Eq '^[[:space:]]*(systemctl|deb-systemd-invoke|deb-systemd-helper)[[:space:]]+(enable|start|restart|reload-or-restart)\\b' '$TMP/x/DEBIAN/postinst'"

# ---- B. lintian ----

# Allowed, and why:
#   no-manual-page: the documentation is the markdown in
#     /usr/share/doc/mllp-edge (each program also has -h); no man pages yet.
LINTIAN_ALLOWED="no-manual-page"
if ! command -v lintian >/dev/null; then
	fail "lintian" "not installed (scripts/deps.sh installs it)"
else
	t=$(date +%s%N)
	# --fail-on none: tags never change the exit status, so a non-zero
	# one means lintian itself could not run.
	if lintian --fail-on none --no-tag-display-limit "$DEB" >"$TMP/lintian.out" 2>&1; then
		echo "# lintian: $((($(date +%s%N) - t) / 1000000)) ms"
		bad=$(grep -E '^[EW]: ' "$TMP/lintian.out" | grep -vE ": ($(echo "$LINTIAN_ALLOWED" | tr ' ' '|')) ")
		if [ -z "$bad" ]; then ok "lintian: no error, warnings only $LINTIAN_ALLOWED"; else fail "lintian" "$bad"; fi
	else
		fail "lintian ran" "$(head -n 5 "$TMP/lintian.out")"
	fi
fi

# ---- C. install, reinstall, remove, purge in a copy of this machine ----

mkdir -p "$OV" "$ROOT"
if ! mount -t tmpfs -o size=512m tmpfs "$OV" || ! mkdir -p "$OV/u" "$OV/w" ||
	! mount -t overlay overlay -o "lowerdir=/,upperdir=$OV/u,workdir=$OV/w" "$ROOT"; then
	fail "overlay of / for the install" "mount failed"
	finish
fi
# Mounts below / do not show through the overlay: a fresh /dev/null and
# /proc (the sanitizer runtime of check-asan's programs reads it), and no
# /run/systemd (the scripts take their no-systemd branch).
rm -f "$ROOT/dev/null"
mknod -m 0666 "$ROOT/dev/null" c 1 3
mount -t proc proc "$ROOT/proc" || fail "/proc in the copy"
mkdir -p "$ROOT/tmp/pkg"
cp "$DEB" "$ROOT/tmp/pkg/"
IN() { chroot "$ROOT" "$@"; }
quiet() { "$@" >/dev/null; }
DEBIN=/tmp/pkg/$(basename "$DEB")

expect "the user is not on the host before (the copy is a copy)" bash -c '! getent passwd mllp-bridge >/dev/null'
if IN dpkg -i "$DEBIN" >"$TMP/install.out" 2>&1; then
	ok "dpkg -i"
else
	fail "dpkg -i" "$(tail -n 8 "$TMP/install.out")"
	finish
fi
lap "installed"
expect "dpkg: mllp-edge installed" test "$(IN dpkg-query -W -f='${Status}' mllp-edge)" = "install ok installed"
IFS=: read -r _ _ uid gid _ home shell < <(IN getent passwd mllp-bridge)
expect "user mllp-bridge: system uid, home /var/lib/appliance, nologin" \
	test -n "${uid:-}" -a "${uid:-0}" -gt 0 -a "${uid:-1000}" -lt 1000 -a "${home:-}" = /var/lib/appliance -a "${shell:-}" = /usr/sbin/nologin
expect "group mllp-bridge is its primary group" test "$(IN getent group mllp-bridge | cut -d: -f3)" = "${gid:-x}"
expect "group appliance (control_group of the example)" quiet IN getent group appliance
expect "/var/lib/appliance 700 mllp-bridge:mllp-bridge" \
	test "$(IN stat -c '%a %U:%G' /var/lib/appliance)" = "700 mllp-bridge:mllp-bridge"
expect "/etc/appliance 750 root:mllp-bridge (statoverride)" \
	test "$(IN stat -c '%a %U:%G' /etc/appliance)" = "750 root:mllp-bridge"
expect "postinst says it enabled nothing" grep -q 'installed, not enabled' "$TMP/install.out"
expect "no unit enabled" test -z "$(find "$ROOT/etc/systemd/system" -name 'appliance.service' -path '*.wants/*' 2>/dev/null)$(find "$ROOT/etc/systemd/system" -name 'mllp-bridge.service' -path '*.wants/*' 2>/dev/null)"
for p in /usr/sbin/appliance /usr/sbin/mllp-bridge; do
	expect "$p -V in the copy: $ver" test "$(IN "$p" -V | awk '{print $2}')" = "$ver"
done
expect "appliancectl without a supervisor: exit 3" bash -c "chroot '$ROOT' appliancectl -s /tmp/none.sock status >/dev/null 2>&1; [ \$? -eq 3 ]"
expect "vici without charon: exit 3" bash -c "chroot '$ROOT' vici -s unix:///tmp/none.vici version >/dev/null 2>&1; [ \$? -eq 3 ]"

# The units start programs the package (or the base system) holds.
for u in appliance mllp-bridge; do
	unit=$ROOT/usr/lib/systemd/system/$u.service
	[ -f "$unit" ] || unit=$ROOT/etc/systemd/system/$u.service
	if [ ! -f "$unit" ]; then
		fail "$u.service installed"
		continue
	fi
	bad=""
	for exe in $(sed -n 's/^Exec[A-Za-z]*=[-+@!:]*\([^ ]*\).*/\1/p' "$unit"); do
		[ -x "$ROOT$exe" ] || bad="$bad $exe"
	done
	expect "$u.service: every Exec*= program exists in the install${bad:+ (missing:$bad)}" test -z "$bad"
done

# The shipped example: only its secrets (which exist on no machine yet)
# are missing, for the supervisor (root) and for the bridge's user, who
# must be able to enter /etc/appliance and read the file.
check_conf() { # check_conf WHAT USERSPEC PROGRAM CONF
	local what=$1 spec=$2 prog=$3 conf=$4 out lines other
	out=$(chroot --userspec="$spec" "$ROOT" "$prog" -n -c "$conf" 2>&1)
	lines=$(grep -c . <<<"$out")
	other=$(grep -v ': cannot read /etc/appliance/[^:]*: No such file or directory$' <<<"$out" | grep .)
	if [ "$lines" -ge 3 ] && [ -z "$other" ]; then
		ok "$what: only the $lines secrets it names are missing"
	else
		fail "$what" "$(head -n 5 <<<"${other:-$out}")"
	fi
}
check_conf "appliance -n (root) on the installed example" root:root /usr/sbin/appliance /etc/appliance/appliance.yaml
check_conf "mllp-bridge -n as mllp-bridge on the installed example" mllp-bridge:mllp-bridge \
	/usr/sbin/mllp-bridge /etc/appliance/appliance.yaml

# ---- C2. the container's process tree, from the package ----
# The image runs `appliance -c` as root holding only SETUID, SETGID and KILL
# (docker run --cap-drop ALL --cap-add ...), attached to the host's charon
# through a mounted vici socket. Here: the installed package in the copy,
# chrooted into a namespace of our own that holds the example's tunnel-side
# address, setpriv's bounding set as docker's capability set, and a real
# charon started outside the copy whose vici socket is made inside the
# copy's /run, as a bind mount would show it.
NS=pkg-$$
SUP="" CHPID=""
pkg_stop() {
	local p
	for p in $SUP $CHPID; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	SUP="" CHPID=""
	ip netns del "$NS" 2>/dev/null
	return 0
}
trap 'pkg_stop; pkg_umount; cleanup' EXIT
ip netns add "$NS" && ip -n "$NS" link set lo up && ip -n "$NS" addr add 203.0.113.1/32 dev lo ||
	fail "namespace $NS"
mkdir -p "$TMP/charon"
printf '%s\n' 'charon {' '	load_modular = no' \
	'	load = random nonce openssl kernel-netlink socket-default vici' \
	"	plugins { vici { socket = unix://$ROOT/run/charon.vici } }" \
	"	filelog { charon { path = $TMP/charon/charon.log" '		default = 1 } }' \
	'	syslog { daemon { default = -1 } }' '}' >"$TMP/charon/strongswan.conf"
# Its own /run (charon.pid) in its own mount namespace, as charon-lib does.
STRONGSWAN_CONF=$TMP/charon/strongswan.conf ip netns exec "$NS" unshare -m --propagation private \
	sh -c 'mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon' >"$TMP/charon/stdout" 2>&1 </dev/null &
CHPID=$!
VICI="unix://$ROOT/run/charon.vici"
if wait_until 5 '"$BIN/vici" -s "$VICI" version >/dev/null'; then
	ok "the host's charon answers on the socket in the copy's /run"
else
	fail "charon started" "$(tail -n 3 "$TMP/charon/stdout" "$TMP/charon/charon.log" 2>/dev/null)"
fi
sock=$(stat -c '%U %A' "$ROOT/run/charon.vici" 2>/dev/null)
expect "its vici socket is root's, nothing for others ($sock)" grep -q '^root s......---$' <<<"$sock"

cp "$CERTS/ca.pem" "$ROOT/etc/appliance/upstream-ca.pem"
echo "token-for-the-package-test" >"$ROOT/etc/appliance/lab.token"
chmod 0644 "$ROOT/etc/appliance/upstream-ca.pem" "$ROOT/etc/appliance/lab.token"
# The upstream on the namespace's loopback: nothing is sent, nothing resolved.
sed 's|https://api.example.test|https://127.0.0.1:9|' packaging/container/appliance.yaml \
	>"$ROOT/etc/appliance/container.yaml"
start_sup() { # start_sup CAPS LOG: the installed supervisor with bounding set CAPS
	ip netns exec "$NS" chroot "$ROOT" setpriv --bounding-set="$1" \
		/usr/sbin/appliance -c /etc/appliance/container.yaml >"$2" 2>&1 &
	SUP=$!
}
st() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null; }
start_sup -all,+setuid,+setgid,+kill "$TMP/sup.log"
mapfile -t HC < <("$PY" tests/tools/dockerfile-check.py Dockerfile --healthcheck)
if [ "${#HC[@]}" -ge 2 ] && wait_until 10 'ip netns exec "$NS" "${HC[@]}"'; then
	ok "the Dockerfile's HEALTHCHECK command succeeds: ${HC[*]}"
else
	fail "the Dockerfile's HEALTHCHECK command succeeds" "${HC[*]}: $(tail -n 5 "$TMP/sup.log")"
fi
status=$(IN appliancectl status --json 2>&1)
if grep -q '"charon":{[^}]*"connected":true,"started":false' <<<"$status" &&
	grep -q '"source":"swanctl","up":false' <<<"$status"; then
	ok "appliancectl status: attached (connected, started false), the swanctl tunnel down"
else
	fail "appliancectl status: attached" "$(head -c 300 <<<"$status")"
fi
bpid=$(cat "$ROOT/run/appliance/bridge.pid" 2>/dev/null)
buid=$(IN id -u mllp-bridge)
expect "supervisor: uid 0, effective capabilities SETUID SETGID KILL only ($(st "$SUP" CapEff))" \
	test "$(st "$SUP" Uid)" = 0 -a "$(st "$SUP" CapEff)" = 00000000000000e0
expect "bridge: uid mllp-bridge ($buid), no capability" \
	test -n "$bpid" -a "$(st "${bpid:-0}" Uid)" = "$buid" -a "$(st "${bpid:-0}" CapEff)" = 0000000000000000
expect "the supervisor loaded nothing into the host's charon" \
	test -z "$("$BIN/vici" -s "$VICI" list-conns 2>&1)"
expect "the spool is the bridge's (600)" \
	test "$(IN stat -c '%a %U' /var/lib/appliance/spool.db 2>/dev/null)" = "600 mllp-bridge"
kill "$SUP"
if wait_until 10 '! kill -0 "$SUP"'; then
	wait "$SUP"
	rc=$?
	expect "SIGTERM: the supervisor exits 0 (exit $rc), the bridge is gone" \
		test "$rc" -eq 0 -a ! -d "/proc/${bpid:-0}"
else
	fail "SIGTERM: the supervisor exits"
fi
SUP=""
expect "the host's charon is left running" kill -0 "$CHPID"
# The capabilities are the ones needed: without SETUID/SETGID the bridge
# cannot become mllp-bridge, and it is never run as root instead.
start_sup -all,+kill "$TMP/sup-nocap.log"
if wait_until 5 'grep -q "bridge child: set[a-z]*: Operation not permitted" "$TMP/sup-nocap.log"'; then
	ok "without SETUID/SETGID the bridge does not start"
else
	fail "without SETUID/SETGID the bridge does not start" "$(tail -n 3 "$TMP/sup-nocap.log")"
fi
expect "... and nothing answers the health check" \
	bash -c "! ip netns exec '$NS' curl -fsS --max-time 1 -o /dev/null http://127.0.0.1:9100/healthz 2>/dev/null"
pkg_stop
lap "the container's process tree"

# Reinstall over an edited conffile and a spool: both kept; postinst's
# upgrade branch runs.
echo "# edited by the operator" >>"$ROOT/etc/appliance/appliance.yaml"
IN rm -f /var/lib/appliance/spool.db-wal /var/lib/appliance/spool.db-shm
echo acknowledged >"$ROOT/var/lib/appliance/spool.db"
if IN dpkg -i "$DEBIN" >"$TMP/reinstall.out" 2>&1; then ok "dpkg -i again (upgrade path)"; else fail "dpkg -i again" "$(tail -n 5 "$TMP/reinstall.out")"; fi
expect "the edited conffile kept" grep -q 'edited by the operator' "$ROOT/etc/appliance/appliance.yaml"
expect "the spool kept" grep -qx acknowledged "$ROOT/var/lib/appliance/spool.db"

if IN dpkg -r mllp-edge >"$TMP/remove.out" 2>&1; then ok "dpkg -r"; else fail "dpkg -r" "$(tail -n 5 "$TMP/remove.out")"; fi
expect "remove: programs gone" test ! -e "$ROOT/usr/sbin/appliance" -a ! -e "$ROOT/usr/sbin/mllp-bridge"
expect "remove: conffile kept" grep -q 'edited by the operator' "$ROOT/etc/appliance/appliance.yaml"
if IN dpkg -P mllp-edge >"$TMP/purge.out" 2>&1; then ok "dpkg -P"; else fail "dpkg -P" "$(tail -n 5 "$TMP/purge.out")"; fi
expect "purge: configuration gone" test ! -e "$ROOT/etc/appliance/appliance.yaml"
expect "purge: statoverride gone" bash -c "! chroot '$ROOT' dpkg-statoverride --list /etc/appliance >/dev/null"
expect "purge: the spool kept (acknowledged messages)" grep -qx acknowledged "$ROOT/var/lib/appliance/spool.db"
expect "purge: the user that owns it kept" quiet IN getent passwd mllp-bridge
expect "purge says what it kept" grep -q 'kept /var/lib/appliance' "$TMP/purge.out"
expect "dpkg: mllp-edge gone" bash -c "! chroot '$ROOT' dpkg-query -W mllp-edge >/dev/null 2>&1"
expect "the host never saw any of it" bash -c '! getent passwd mllp-bridge >/dev/null && ! dpkg-query -W mllp-edge >/dev/null 2>&1'
pkg_umount
lap "install, reinstall, remove, purge"

# ---- D. the Dockerfile ----

CHK=tests/tools/dockerfile-check.py
if "$PY" "$CHK" Dockerfile >"$TMP/dockerfile.out" 2>&1; then
	ok "dockerfile-check: Dockerfile"
else
	fail "dockerfile-check: Dockerfile" "$(head -n 10 "$TMP/dockerfile.out")"
fi
# The checker must be able to fail: each broken copy trips one rule.
broken() { # broken WHAT PATTERN SED-SCRIPT
	local what=$1 pat=$2
	sed "$3" Dockerfile >"$TMP/Dockerfile.broken"
	if cmp -s Dockerfile "$TMP/Dockerfile.broken"; then
		fail "dockerfile-check fails on $what" "the sed changed nothing"
	elif "$PY" "$CHK" "$TMP/Dockerfile.broken" --context . >"$TMP/broken.out" 2>&1; then
		fail "dockerfile-check fails on $what" "it passed"
	elif grep -q "$pat" "$TMP/broken.out"; then
		ok "dockerfile-check fails on $what"
	else
		fail "dockerfile-check fails on $what" "$(head -n 3 "$TMP/broken.out")"
	fi
}
broken "an unpinned FROM" "Debian 12" '0,/^FROM /s/^FROM [^ ]*/FROM debian:latest/'
broken "COPY --from a later stage" "earlier stage" 's/COPY --from=build /COPY --from=nosuch /'
broken "a COPY source not in the repository" "does not exist" '0,/^COPY \([^-]\)/s//COPY nosuch-dir \1/'
broken "a compiler in the final stage" "compiler" '$a RUN apt-get install -y gcc'
broken "no HEALTHCHECK" "HEALTHCHECK" '/^HEALTHCHECK/,/[^\\]$/d'
broken "an EXPOSE the example does not listen on" "EXPOSE" 's/^EXPOSE .*/& 12345/'
broken "a duplicate stage name" "stage name" '0,/^FROM \(.*\) AS \(.*\)/s//FROM \1 AS runtime/'
# ... and on a .dockerignore that drops files from a copied directory.
mkdir -p "$TMP/ctx"
for f in * .dockerignore; do ln -s "$PWD/$f" "$TMP/ctx/$f"; done
rm "$TMP/ctx/.dockerignore"
{ cat .dockerignore; echo '**/*.c'; } >"$TMP/ctx/.dockerignore"
if "$PY" "$CHK" Dockerfile --context "$TMP/ctx" >"$TMP/broken.out" 2>&1; then
	fail "dockerfile-check fails on a .dockerignore dropping sources" "it passed"
else
	expect "dockerfile-check fails on a .dockerignore dropping sources" grep -q 'dockerignore drops' "$TMP/broken.out"
fi

# The container's example: valid but for the secrets it names.
cconf=packaging/container/appliance.yaml
cp "$cconf" "$TMP/container.yaml"
out=$("$BIN/appliance" -n -c "$TMP/container.yaml" 2>&1)
other=$(grep -v ': cannot read [^:]*: No such file or directory$' <<<"$out" | grep .)
if [ -n "$out" ] && [ -z "$other" ]; then
	ok "appliance -n on $cconf: only its secrets are missing"
else
	fail "appliance -n on $cconf" "$(head -n 5 <<<"${other:-$out}")"
fi
expect "$cconf: attach mode (charon start: false), swanctl tunnels" \
	bash -c "grep -Eq '^  start: false' '$cconf' && grep -Eq '^ +source: swanctl' '$cconf' && ! grep -Eq '^ +source: appliance' '$cconf'"
lap "Dockerfile"

# ---- E. a minimal Debian 12 with only the Depends (PKG_CHROOT=1) ----

if [ "${PKG_CHROOT:-0}" != 1 ]; then
	echo "# build stage and minimal chroot: skipped (1-3 minutes and a download; make deb-chroot runs them)"
	finish
fi
# The Dockerfile's build stage without Docker: what its COPYs lay in /src
# (dockerfile-check --materialize), then its RUN's make and make deb, on
# this host (Debian 12 too, same packages as the stage installs). The
# runtime stage copies build/mllp-edge_*.deb from there.
t=$(date +%s%N)
if "$PY" "$CHK" Dockerfile --materialize build "$TMP/ctx-build" &&
	(cd "$TMP/ctx-build/src" && unset BUILD MAKEFLAGS MFLAGS MAKELEVEL &&
		make -j"$(nproc)" && make deb) >"$TMP/ctx-build.out" 2>&1 &&
	ls "$TMP"/ctx-build/src/build/mllp-edge_*.deb >/dev/null 2>&1; then
	ok "the build stage's COPYs are enough for make and make deb"
else
	fail "the build stage's COPYs are enough for make and make deb" "$(tail -n 5 "$TMP/ctx-build.out")"
fi
echo "# build stage: $((($(date +%s%N) - t) / 1000000)) ms"

include=$(dep_names <<<"$DEPENDS" | tr '\n' ',' | sed 's/,$//')
t=$(date +%s%N)
if mmdebstrap --quiet --variant=essential --mode=root --include="$include" bookworm "$MIN" \
	http://deb.debian.org/debian >"$TMP/mmdebstrap.out" 2>&1; then
	ok "mmdebstrap: Debian 12 essential + $include"
else
	fail "mmdebstrap" "$(tail -n 5 "$TMP/mmdebstrap.out")"
	finish
fi
echo "# mmdebstrap: $((($(date +%s%N) - t) / 1000000)) ms"
mkdir -p "$MIN/tmp/pkg"
cp "$DEB" "$MIN/tmp/pkg/"
rm -f "$MIN/dev/null"
mknod -m 0666 "$MIN/dev/null" c 1 3
if chroot "$MIN" dpkg -i "$DEBIN" >"$TMP/min.out" 2>&1; then
	ok "dpkg -i in the minimal chroot"
else
	fail "dpkg -i in the minimal chroot" "$(tail -n 8 "$TMP/min.out")"
fi
# -h prints usage (exit 0 or 2); a missing library is exit 127 with the
# loader's message.
for p in /usr/sbin/appliance /usr/sbin/mllp-bridge /usr/bin/appliancectl /usr/bin/vici; do
	chroot "$MIN" "$p" -h >"$TMP/min-run.out" 2>&1
	rc=$?
	if [ "$rc" -le 2 ] && ! grep -q 'error while loading shared libraries' "$TMP/min-run.out"; then
		ok "$p runs with only the Depends"
	else
		fail "$p runs with only the Depends" "exit $rc: $(head -n 2 "$TMP/min-run.out")"
	fi
done
lap "minimal chroot"
finish
