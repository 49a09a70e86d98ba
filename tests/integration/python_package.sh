#!/usr/bin/env bash
# The memfit Python package (python/): its unit tests (hand-written state
# files, call backs, batch sizes, cleanup, answering cleanup requests), the
# examples compile, and it installs offline — as a wheel built with
# `pip wheel` and straight from the folder with `pip install ./python` —
# into a fresh venv from which `import memfit` works. Uses Debian's
# /usr/bin/python3; skipped without it or without its venv module.
source "$(dirname "$0")/lib.bash"
SYSPY=/usr/bin/python3
[[ -x $SYSPY ]] || skip "/usr/bin/python3 is missing (scripts/install-deps installs python3)"
"$SYSPY" -c 'import venv, ensurepip' 2>/dev/null || skip "python3-venv is not installed"
PKG=$MEMFIT_SOURCE/python
export PYTHONDONTWRITEBYTECODE=1

check "unit tests pass" env MEMFIT_BIN="$MEMFIT" "$SYSPY" "$PKG/tests/test_memfit.py" -v
check "the examples compile" "$SYSPY" -c '
import py_compile, sys
for f in sys.argv[2:]:
    py_compile.compile(f, cfile=sys.argv[1], doraise=True)' "$TMP/compiled.pyc" "$PKG"/examples/*.py

# Offline: no index at all; pip's isolated build needs nothing from one.
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p "$TMP/wheels"
check "a wheel builds offline" "$SYSPY" -m pip wheel -q --no-deps -w "$TMP/wheels" "$PKG"
WHEEL=$(ls "$TMP"/wheels/memfit-*-py3-none-any.whl 2>/dev/null | head -1)
check "the wheel holds the package and its metadata" "$SYSPY" -c '
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert "memfit/__init__.py" in names and any(n.endswith(".dist-info/RECORD") for n in names), names' "$WHEEL"

"$SYSPY" -m venv "$TMP/venv-wheel" && "$SYSPY" -m venv "$TMP/venv-dir" || skip "cannot create a venv"
check "the wheel installs into a fresh venv" "$TMP/venv-wheel/bin/pip" install -q "$WHEEL"
check "pip install ./python works offline" "$TMP/venv-dir/bin/pip" install -q "$PKG"
for v in venv-wheel venv-dir; do
    out=$(cd "$TMP" && env -u MEMFIT_PRESSURE_FILE "$TMP/$v/bin/python" -c '
import memfit
assert memfit.__file__.startswith(__import__("sys").prefix), memfit.__file__
assert memfit.pressure() is None
print(memfit.__version__, round(memfit.cleanup()["rss_after_bytes"] / 2**20))' 2>&1)
    echo "$v: $out"
    check "import memfit from $v" grep -q '^0\.' <<<"$out"
done
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$PKG/pyproject.toml")
check "__version__ is pyproject's version" grep -q "^$VERSION " <<<"$out"
check "the build left nothing in the source folder" bash -c "! ls -d '$PKG'/build '$PKG'/*.egg-info 2>/dev/null"
finish
