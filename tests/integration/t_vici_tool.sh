#!/bin/bash
# The vici tool without a daemon: usage errors exit 2 with the usage text, an
# unreachable socket exits 3 with a clear message (also with --json), and a
# malformed YAML file is reported as FILE:LINE before any connection is tried.
# Tests against a real charon live elsewhere.
set -u
BUILD=${BUILD:-build}
VICI=$BUILD/bin/vici
TMP=$(mktemp -d /tmp/vici-tool.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
NOSOCK=unix:///nonexistent/charon.vici

ok() { echo "ok - $1"; }
fail() {
	echo "not ok - $1"
	sed 's/^/  # /' "$TMP/err"
	FAILS=$((FAILS + 1))
}

# check NAME WANT_RC GREP_PATTERN -- ARGS...: runs vici ARGS, expects exit code
# WANT_RC and GREP_PATTERN (extended regexp) in its stderr.
check() {
	local name=$1 want=$2 pat=$3 rc
	shift 4
	timeout 10 "$VICI" "$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ "$rc" -ne "$want" ]; then
		echo "  # exit $rc, wanted $want" >>"$TMP/err"
		fail "$name"
	elif ! grep -qE -- "$pat" "$TMP/err"; then
		echo "  # stderr lacks /$pat/" >>"$TMP/err"
		fail "$name"
	else
		ok "$name"
	fi
}

if [ ! -x "$VICI" ]; then
	echo "not ok - $VICI is built"
	exit 1
fi

USAGE='^usage: vici '
check "no command: usage, exit 2" 2 "$USAGE" --
check "unknown command: usage, exit 2" 2 "unknown command 'frobnicate'" -- frobnicate
check "unknown global option: exit 2" 2 "$USAGE" -- --bogus version
check "unknown command option: exit 2" 2 "unknown option --bogus" -- version --bogus
check "-s without a value: exit 2" 2 "$USAGE" -- -s
check "bad socket URI: exit 2" 2 "bad socket URI" -- -s http://x version
check "bad --timeout: exit 2" 2 "$USAGE" -- --timeout soon version
check "initiate without --child: exit 2" 2 "--child is required" -- -s $NOSOCK initiate
check "option without its argument: exit 2" 2 "--child needs an argument" \
	-- -s $NOSOCK initiate --child
check "load-conn without FILE: exit 2" 2 "missing argument" -- -s $NOSOCK load-conn
check "terminate needs --ike or --child: exit 2" 2 "either --ike or --child" \
	-- -s $NOSOCK terminate
check "extra argument: exit 2" 2 "unexpected argument" -- -s $NOSOCK version now
check "initiate --timeout below -1: exit 2" 2 "initiate: --timeout takes milliseconds" \
	-- -s $NOSOCK initiate --child c --timeout -2
check "terminate --timeout not a number: exit 2" 2 "terminate: --timeout takes milliseconds" \
	-- -s $NOSOCK terminate --ike c --timeout soon
check "rekey takes no --timeout: exit 2" 2 "unknown option --timeout" \
	-- -s $NOSOCK rekey --ike c --timeout 5

"$VICI" --help >"$TMP/out" 2>"$TMP/err"
if [ $? -eq 0 ] && grep -q "$USAGE" "$TMP/out" && grep -q 'initiate --child' "$TMP/out"; then
	ok "--help prints the usage to stdout, exit 0"
else
	fail "--help prints the usage to stdout, exit 0"
fi

UNREACH="cannot connect to charon at $NOSOCK"
check "unreachable socket: exit 3" 3 "$UNREACH" -- -s $NOSOCK version
check "unreachable socket with --json: exit 3" 3 "$UNREACH" -- --json -s $NOSOCK version
check "streamed list-sas, unreachable: exit 3" 3 "$UNREACH" -- --json -s $NOSOCK list-sas
check "initiate, unreachable: exit 3" 3 "$UNREACH" -- -s $NOSOCK initiate --child c
check "monitor, unreachable: exit 3" 3 "$UNREACH" -- -s $NOSOCK monitor
# Port 1 on loopback: nothing listens, the connect is refused.
check "refused TCP connection: exit 3" 3 "cannot connect to charon at tcp://" \
	-- -s tcp://127.0.0.1:1 stats

# Parsed before connecting: the error is the file's, not the socket's.
printf 'gw:\n  version: 2\n  remote_addrs: [192.0.2.1, 192.0.2.2\n  local: { auth: psk }\n' \
	>"$TMP/syntax.yaml"
check "load-conn: YAML syntax error as FILE:LINE, exit 1" 1 \
	"^$TMP/syntax.yaml:4: .*did not find expected" -- -s $NOSOCK load-conn "$TMP/syntax.yaml"
if grep -q 'cannot connect' "$TMP/err"; then
	fail "... before connecting"
else
	ok "... before connecting"
fi
printf 'gw:\n  children:\n    net: { local_ts: [{a: b}] }\nlone: value\n' >"$TMP/shape.yaml"
check "load-conn: a section in a list as FILE:LINE" 1 \
	"^$TMP/shape.yaml:3: local_ts: list items must be scalars" \
	-- -s $NOSOCK load-conn "$TMP/shape.yaml"
check "load-conn: every error is reported" 1 \
	"^$TMP/shape.yaml:4: lone: a connection must be a mapping" \
	-- -s $NOSOCK load-conn "$TMP/shape.yaml"
printf -- '- gw\n' >"$TMP/list.yaml"
check "load-conn: top level must be a mapping" 1 "^$TMP/list.yaml:1: " \
	-- --json -s $NOSOCK load-conn "$TMP/list.yaml"
check "load-conn: missing file, exit 1" 1 "^$TMP/none.yaml: No such file" \
	-- -s $NOSOCK load-conn "$TMP/none.yaml"
printf 'gw:\n  version: 2\n  children:\n    net:\n      local_ts: [10.0.0.0/24]\n' \
	>"$TMP/good.yaml"
check "load-conn: a valid file reaches the connect, exit 3" 3 "$UNREACH" \
	-- -s $NOSOCK load-conn "$TMP/good.yaml"

# --secret -: the secret from standard input, read before connecting.
check "load-shared --secret - without input: exit 1" 1 "no secret on standard input" \
	-- -s $NOSOCK load-shared --secret - </dev/null
check "load-shared --secret - with an empty line: exit 1" 1 "the secret on standard input is empty" \
	-- -s $NOSOCK load-shared --secret - <<<""
check "load-shared --secret - with a secret reaches the connect, exit 3" 3 "$UNREACH" \
	-- -s $NOSOCK load-shared --id a.example --secret - <<<"not-a-real-secret"

[ "$FAILS" -eq 0 ]
