#!/bin/sh
# Test PKI for the HTTPS tests: mkcerts.sh DIR
#
#   ca.pem ca.key                 test CA (EC P-256)
#   server.pem server.key         EC P-256 leaf for localhost, 127.0.0.1, ::1
#   server-rsa.pem server-rsa.key RSA 2048 leaf, same names (for ECDHE-RSA suites)
#   wrong.pem wrong.key           leaf for "wrong.test" only, signed by ca.pem
#   client.pem client.key         client certificate (clientAuth) signed by ca.pem
#   other-ca.pem other-ca.key     an unrelated CA
#   other-server.pem other-server.key  leaf for localhost signed by other-ca.pem
#
# Everything is valid for 30 days. Quiet unless openssl fails. Idempotent: an
# existing DIR/ca.pem means the set is complete (it is moved in last).
set -eu

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
[ -f "$dir/ca.pem" ] && exit 0

# Test keys only: readable by all, so a bridge that dropped privileges loads them.
umask 022
mkdir -p "$dir"
tmp=$(mktemp -d "$dir/.mkcerts.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
days=30
localhost_san="subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

run() {
	"$@" >"$tmp/out" 2>&1 || { echo "mkcerts: failed: $*" >&2; cat "$tmp/out" >&2; exit 1; }
}

ec_key() {
	run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$1.key"
}

rsa_key() {
	run openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/$1.key"
}

# ca NAME CN
ca() {
	ec_key "$1"
	run openssl req -x509 -new -key "$tmp/$1.key" -out "$tmp/$1.pem" -days "$days" \
		-subj "/O=mllp-edge test/CN=$2" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign"
}

# leaf NAME CA CN EXTENSIONS (one per line); the key must exist already
leaf() {
	printf '%s\n' "basicConstraints=critical,CA:FALSE" "$4" >"$tmp/$1.ext"
	run openssl req -new -key "$tmp/$1.key" -out "$tmp/$1.csr" -subj "/O=mllp-edge test/CN=$3"
	run openssl x509 -req -in "$tmp/$1.csr" -CA "$tmp/$2.pem" -CAkey "$tmp/$2.key" \
		-CAcreateserial -days "$days" -sha256 -extfile "$tmp/$1.ext" -out "$tmp/$1.pem"
}

server_ext="$localhost_san
extendedKeyUsage=serverAuth"

ca ca "mllp-edge test CA"
ca other-ca "mllp-edge unrelated CA"
ec_key server
leaf server ca localhost "$server_ext"
rsa_key server-rsa
leaf server-rsa ca localhost "$server_ext"
ec_key other-server
leaf other-server other-ca localhost "$server_ext"
ec_key wrong
leaf wrong ca wrong.test "subjectAltName=DNS:wrong.test
extendedKeyUsage=serverAuth"
ec_key client
leaf client ca mllp-edge-test-client "extendedKeyUsage=clientAuth"

chmod 644 "$tmp"/*.key "$tmp"/*.pem
for f in server server-rsa other-server wrong client other-ca; do
	mv "$tmp/$f.key" "$tmp/$f.pem" "$dir/"
done
mv "$tmp/ca.key" "$dir/"
mv "$tmp/ca.pem" "$dir/ca.pem"
