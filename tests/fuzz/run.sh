#!/bin/sh
# Runs the libFuzzer harnesses built in BUILD_DIR (fuzz_NAME).
#   run.sh fuzz   BUILD_DIR SECONDS NAME...   fuzz each harness SECONDS, starting from
#                                             tests/fuzz/corpus/NAME; new inputs go to
#                                             BUILD_DIR/corpus/NAME (the tree is not touched)
#   run.sh replay BUILD_DIR NAME...           run each harness once over tests/fuzz/corpus/NAME
# Prints one summary line per harness; exits 1 when any harness crashed, leaked
# or broke a property (its input is saved as BUILD_DIR/artifacts/NAME-crash-...).
set -u
mode=$1
build=$2
shift 2
secs=0
if [ "$mode" = fuzz ]; then
	secs=$1
	shift
fi
here=$(cd "$(dirname "$0")" && pwd)
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
mkdir -p "$build/artifacts" "$build/logs"
failed=""
printf '%-10s %8s %10s %9s %10s %6s\n' harness seconds execs exec/s corpus cov
for name in "$@"; do
	bin="$build/fuzz_$name"
	seeds="$here/corpus/$name"
	log="$build/logs/$name.log"
	start=$(date +%s)
	if [ "$mode" = fuzz ]; then
		work="$build/corpus/$name"
		mkdir -p "$work"
		"$bin" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix="$build/artifacts/$name-" "$work" "$seeds" >"$log" 2>&1
		rc=$?
		corpus="$(find "$work" -type f | wc -l) files"
	else
		"$bin" -runs=0 -timeout=25 -print_final_stats=1 \
			-artifact_prefix="$build/artifacts/$name-" "$seeds" >"$log" 2>&1
		rc=$?
		corpus="$(find "$seeds" -type f | wc -l) files"
	fi
	took=$(( $(date +%s) - start ))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(sed -n 's/.*\(DONE\|INITED\) *cov: \([0-9]*\).*/\2/p' "$log" | tail -n 1)
	printf '%-10s %8s %10s %9s %10s %6s\n' "$name" "$took" "${execs:--}" "${rate:--}" \
		"$corpus" "${cov:--}"
	if [ "$rc" != 0 ]; then
		failed="$failed $name"
		echo "  FAILED ($rc); log $log:" >&2
		grep -E 'property broken|ERROR:|runtime error|SUMMARY|Test unit written' "$log" | head -n 8 >&2
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
