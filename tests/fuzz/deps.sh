#!/bin/sh
# Installs what `make fuzz` and `make fuzz-replay` need and is missing: clang and
# its libFuzzer runtime (Debian: libclang-rt-NN-dev), with one `apt-get update`
# and one `apt-get install`. Does nothing when a -fsanitize=fuzzer program links.
set -eu
cc=${FUZZ_CC:-clang}
need=""

want() { need="$need $1"; }

# 0 when cc builds a libFuzzer program with ASan and UBSan.
links() {
	command -v "$cc" >/dev/null 2>&1 || return 1
	dir=$(mktemp -d)
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
		>"$dir/t.c"
	ok=0
	"$cc" -fsanitize=fuzzer,address,undefined -o "$dir/t" "$dir/t.c" >/dev/null 2>&1 || ok=1
	rm -rf "$dir"
	return $ok
}

links && exit 0
if command -v "$cc" >/dev/null 2>&1; then
	# The runtime is versioned like clang itself (clang 14 -> libclang-rt-14-dev).
	ver=$("$cc" --version | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1)
	want "libclang-rt-${ver:?cannot tell the version of $cc}-dev"
else
	# Debian's default clang and the runtime of the same version.
	want clang
	want libclang-rt-dev
fi

echo "fuzz-deps: installing:$need"
if [ "$(id -u)" != 0 ]; then
	echo "fuzz-deps: not root; install these packages and run again:$need" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $need
links || { echo "fuzz-deps: $cc still cannot link -fsanitize=fuzzer" >&2; exit 1; }
