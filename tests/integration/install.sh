#!/usr/bin/env bash
# `cmake --install` into a fresh prefix: the shared and static libraries, the
# headers, memfit.pc, the command, its man pages and bash completion; then a
# small C program is built against the installed tree with pkg-config and run,
# linked once to libmemfit.so and once statically.
source "$(dirname "$0")/lib.bash"

[[ -f $BUILD/src/libmemfit.so ]] || skip "this build has no libmemfit.so (MEMFIT_SHARED=OFF, as in the sanitizer presets)"
command -v pkg-config >/dev/null || skip "pkg-config is not installed"
prefix=$TMP/prefix
check "cmake --install into a fresh prefix" cmake --install "$BUILD" --prefix "$prefix"
libdir=$(find "$prefix" -name 'libmemfit.so.0' -printf '%h\n' | head -1)
check "libmemfit.so.0 is installed" test -n "$libdir"
check "libmemfit.so has the soname libmemfit.so.0" \
    bash -c "objdump -p '$libdir/libmemfit.so.0' | grep -q 'SONAME *libmemfit.so.0'"
check "libmemfit.so links the unversioned name to it" test -L "$libdir/libmemfit.so"
check "libmemfit.a is installed" test -f "$libdir/libmemfit.a"
check "the public headers are installed" test -f "$prefix/include/memfit/memfit.h"
check "the binary is installed" test -x "$prefix/bin/memfit"
check "the installed binary runs" bash -c "'$prefix/bin/memfit' --version | grep -q memfit"
exported=$(nm -D --defined-only "$libdir/libmemfit.so.0" | awk '{print $3}')
check "the shared library exports the public API" grep -qx memfit_version <<<"$exported"
check "the shared library hides internal symbols (only memfit_* exported)" \
    bash -c "! grep -v '^memfit_' <<<'$exported' | grep -q ."

man_dir=$prefix/share/man/man1
check "memfit.1 is installed" test -f "$man_dir/memfit.1"
check "a man page per command" test -f "$man_dir/memfit-monitor.1" -a -f "$man_dir/memfit-serve.1"
if command -v man >/dev/null; then
    check "memfit-report(1) renders and names its options" \
        bash -c "MANWIDTH=100 man -l '$man_dir/memfit-report.1' 2>/dev/null | grep -q -- '--danger-available'"
fi
completion=$prefix/share/bash-completion/completions/memfit
check "bash completion is installed" test -f "$completion"
# Completion: the words offered after "memfit mon" and "memfit monitor --inter".
complete_words() { # words...
    bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _memfit; printf "%s\n" "${COMPREPLY[@]}"' _ "$completion" "$@"
}
check "completion offers the command 'monitor'" grep -qx monitor < <(complete_words memfit mon)
check "completion offers monitor's --interval" grep -qx -- --interval < <(complete_words memfit monitor --inter)

export PKG_CONFIG_PATH=$libdir/pkgconfig
check "pkg-config knows memfit" pkg-config --exists memfit
check "pkg-config gives the installed version" \
    bash -c "[[ \$(pkg-config --modversion memfit) == \$('$prefix/bin/memfit' --version | awk '{print \$2}') ]]"
cat >"$TMP/hello.c" <<'C'
#include <stdio.h>
#include <memfit/memfit.h>

int main(void)
{
    struct memfit_meminfo mi;
    if (memfit_meminfo_read("/", &mi) != MEMFIT_OK) {
        fprintf(stderr, "meminfo: %s\n", memfit_last_error());
        return 1;
    }
    printf("memfit %s total %llu\n", memfit_version(), (unsigned long long)mi.total_bytes);
    return mi.total_bytes > 0 ? 0 : 1;
}
C
check "a program compiles against the installed headers and libmemfit.so" \
    bash -c "cc -std=c11 -Wall -Werror -o '$TMP/hello' '$TMP/hello.c' \$(pkg-config --cflags --libs memfit)"
check "it runs with the installed libmemfit.so" \
    bash -c "LD_LIBRARY_PATH='$libdir' '$TMP/hello' | grep -q '^memfit .* total [1-9]'"
check "it is linked to libmemfit.so.0" \
    bash -c "LD_LIBRARY_PATH='$libdir' ldd '$TMP/hello' | grep -q 'libmemfit.so.0 => $libdir'"
check "it links statically with pkg-config --static" \
    bash -c "cc -std=c11 -o '$TMP/hello_static' '$TMP/hello.c' \$(pkg-config --cflags memfit) '$libdir/libmemfit.a' \$(pkg-config --static --libs-only-l memfit | sed 's/-lmemfit//') && '$TMP/hello_static' | grep -q '^memfit'"
finish
