#!/bin/sh
# Runs every test of the project and ends with one summary line:
#   check: N passed, M failed
# Unit suites are Check programs (each check counts); integration scenarios
# are shell scripts printing "ok - NAME" / "not ok - NAME" per case.
#   ONLY=unit|integration  run one kind;  T=name  run scenarios matching name.
set -u
BUILD=${BUILD:-build}
ONLY=${ONLY:-}
T=${T:-}
export BUILD
passed=0
failed=0
failures=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_unit() {
	for t in "$BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		name=$(basename "$t")
		"$t" >"$log" 2>&1
		rc=$?
		line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n 1)
		checks=$(echo "$line" | sed -n 's/.*Checks: \([0-9]*\).*/\1/p')
		fails=$(echo "$line" | sed -n 's/.*Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2/p')
		f=$(( ${fails% *} + ${fails#* } )) 2>/dev/null || f=1
		[ -n "$checks" ] || { checks=1; f=1; }
		[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
		passed=$((passed + checks - f))
		failed=$((failed + f))
		echo "unit $name: $line"
		if [ "$f" -ne 0 ]; then
			failures="$failures unit:$name"
			grep -E ':[EF]:' "$log" | head -n 20
		fi
	done
}

run_integration() {
	for s in tests/integration/t_*.sh; do
		[ -f "$s" ] || continue
		name=$(basename "$s" .sh)
		case "$name" in *"$T"*) ;; *) continue ;; esac
		echo "integration $name:"
		# A hung scenario fails instead of stalling the run; TERM lets
		# its EXIT trap stop what it started.
		timeout -s TERM "${SCENARIO_TIMEOUT:-600}" bash "$s" >"$log" 2>&1
		rc=$?
		[ "$rc" -eq 124 ] && echo "not ok - $name timed out" >>"$log"
		ok=$(grep -c '^ok - ' "$log")
		bad=$(grep -c '^not ok - ' "$log")
		[ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
		grep -E '^(ok|not ok) - ' "$log" | sed 's/^/  /'
		passed=$((passed + ok))
		failed=$((failed + bad))
		if [ "$bad" -ne 0 ]; then
			failures="$failures integration:$name"
			echo "  --- last lines of $name (exit $rc) ---"
			tail -n 30 "$log" | sed 's/^/  | /'
		fi
	done
}

[ "$ONLY" = integration ] || run_unit
[ "$ONLY" = unit ] || run_integration
[ -n "$failures" ] && echo "failed:$failures"
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
