#!/bin/sh
# Runs every test of the project and ends with one summary line:
#   check: N passed, M failed
# Unit suites are Check programs (each check counts); integration scenarios
# and end-to-end scenarios (tests/e2e/e2e_*.sh, after the integration ones)
# are shell scripts printing "ok - NAME" / "not ok - NAME" per case.
#   ONLY=unit|fuzz|integration|e2e  run one kind;  T=name  run scenarios matching name.
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

# run_scenarios KIND GLOB: shell scenarios of one kind (integration, e2e).
run_scenarios() {
	kind=$1
	for s in $2; do
		[ -f "$s" ] || continue
		name=$(basename "$s" .sh)
		case "$name" in *"$T"*) ;; *) continue ;; esac
		echo "$kind $name:"
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
			failures="$failures $kind:$name"
			echo "  --- last lines of $name (exit $rc) ---"
			tail -n 30 "$log" | sed 's/^/  | /'
		fi
	done
}

# A short libFuzzer run of each codec (built by make check when clang is
# there): a crash or a sanitizer report fails it.
run_fuzz() {
	for f in "$BUILD"/fuzz/fuzz_*; do
		[ -x "$f" ] && [ -f "$f" ] || continue
		name=$(basename "$f")
		mkdir -p "$f.corpus"
		if "$f" -max_total_time="${FUZZ_SECONDS:-10}" -print_final_stats=1 "$f.corpus" \
			>"$log" 2>&1; then
			passed=$((passed + 1))
			echo "fuzz $name: ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" |
				awk '{print $2}') runs)"
		else
			failed=$((failed + 1))
			failures="$failures fuzz:$name"
			echo "fuzz $name: FAILED"
			grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -n 10
		fi
	done
}

case "${ONLY:-all}" in all | unit) run_unit ;; esac
case "${ONLY:-all}" in all | fuzz) run_fuzz ;; esac
case "${ONLY:-all}" in all | integration) run_scenarios integration 'tests/integration/t_*.sh' ;; esac
case "${ONLY:-all}" in all | e2e) run_scenarios e2e 'tests/e2e/e2e_*.sh' ;; esac
[ -n "$failures" ] && echo "failed:$failures"
echo "check: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
