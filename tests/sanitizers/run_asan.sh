#!/usr/bin/env bash
# The test suite under AddressSanitizer: builds the Cython core instrumented, in a copy of this
# checkout (the working tree's own build is left alone), and runs pytest there with libasan
# preloaded into the (uninstrumented) Python. Any invalid read or write in a kernel aborts the run
# with ASan's report; the exit status is pytest's.
#
#   bash tests/sanitizers/run_asan.sh                         # the whole suite
#   bash tests/sanitizers/run_asan.sh tests/test_fuzz.py      # arguments go to pytest
#   FASTWLR_FUZZ_EXAMPLES=2000 bash tests/sanitizers/run_asan.sh tests/test_fuzz.py
#
# Needs gcc with libasan (Debian: gcc's own, `gcc -print-file-name=libasan.so`), and the test
# dependencies in the active Python (pip install ".[test]" or the same packages).
# Leak detection is off: CPython itself does not free everything at exit.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
libasan="$(${CC:-gcc} -print-file-name=libasan.so)"
[ -f "$libasan" ] || { echo "no libasan.so from ${CC:-gcc} -print-file-name" >&2; exit 2; }
# libstdc++ preloaded too: otherwise ASan's __cxa_throw interceptor finds no real one when a C++
# extension of another package (matplotlib's) throws, and aborts ("CHECK failed ... real___cxa_throw")
preload="$libasan $(${CC:-gcc} -print-file-name=libstdc++.so)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$root" && tar -cf - --exclude=./.git --exclude=./build --exclude='*.so' --exclude='*.c' \
    --exclude=__pycache__ --exclude=.hypothesis .) | tar -xf - -C "$work"
cd "$work"
echo "== building the core with -fsanitize=address in $work"
CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address" \
    FASTWLR_BUILD_EXT=1 python setup.py -q build_ext --inplace > build.log 2>&1 || { tail -30 build.log; exit 1; }
python - <<'PY'
import glob, subprocess
so = glob.glob("fastwlr/backends/cython_core/*.so")
assert so and all("asan" in subprocess.run(["ldd", f], capture_output=True, text=True).stdout for f in so), so
print(f"ok: {len(so)} modules linked against libasan")
PY
echo "== pytest under ASan ($preload preloaded)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export FASTWLR_REQUIRE_BACKENDS="${FASTWLR_REQUIRE_BACKENDS:-cython,reference}"
LD_PRELOAD="$preload" python -m pytest -q -p no:cacheprovider "${@:-tests}"
