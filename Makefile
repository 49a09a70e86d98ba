# Convenience wrapper around CMake presets (see CMakePresets.json).
#   make         release build (build/release/memfit)
#   make demo    build, then show memfit's main job on a built-in demo
#   make demo-seeds  SAM ViT-B and DINOv2 ViT-B/14 served in a 512 MiB cgroup (root)
#   make check   the whole test suite as CI runs it (scripts/check)
#   make install [PREFIX=/usr/local] [DESTDIR=...]  the library, headers,
#                memfit.pc, the command, man pages, bash completion
#   make asan | tsan | fuzz | bench | format | lint
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX ?= /usr/local

.PHONY: all release install demo demo-seeds check quick asan tsan fuzz bench format lint clean

all: release

release:
	cmake --preset release >/dev/null
	cmake --build --preset release -j $(JOBS)

install: release
	DESTDIR="$(DESTDIR)" cmake --install build/release --prefix "$(PREFIX)"

demo: release
	scripts/demo

demo-seeds: release
	scripts/demo seeds

check:
	scripts/check

quick:
	scripts/check --quick

asan tsan:
	cmake --preset $@ >/dev/null
	cmake --build --preset $@ -j $(JOBS)
	ctest --preset $@ -j $(JOBS)

fuzz:
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)
	scripts/fuzz

bench: release
	scripts/bench

format:
	scripts/check-format --fix

lint:
	scripts/lint

clean:
	rm -rf build
