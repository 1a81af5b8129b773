# ringloom: `make demo` shows what it is for, `make test` runs every test, `make bench`
# measures it beside its peers. Each works on a fresh machine with the Rust toolchain and
# Python 3 with venv and pip: `setup` puts Python packages from PyPI into a local .venv
# and the tools the tests need (valgrind, redis-server) from the distribution.

CARGO ?= cargo
PYTHON ?= python3
VENV ?= .venv
SHELL := /bin/bash

.PHONY: setup setup-python setup-tools build demo demo-rust lint lint-rust lint-python \
	test test-rust test-fallback test-valgrind test-asan test-tsan test-python test-seeded test-soak \
	soak bench bench-quick \
	bench-setup clean

# -- setup -------------------------------------------------------------------------------

# The venv, the Python packages the tests and the demo use, and the extension built into
# it (editable: the package's Python files are the tree's).
setup-python:
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q maturin greenlet pytest hypothesis requests redis distributed gunicorn flask \
		ruff mypy trustme uvloop uvicorn aiohttp httpx
	$(VENV)/bin/maturin develop -q --release

# valgrind, redis-server and wrk, from the distribution's packages if missing (the redis
# test starts and stops its own server on a free loopback port; the package's service is
# not used; wrk drives the gunicorn benchmark, smoke-tested in tests/benches).
setup-tools:
	@missing=""; \
	command -v valgrind >/dev/null || missing="$$missing valgrind"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

setup: setup-python setup-tools

# -- demo --------------------------------------------------------------------------------

# Unmodified `requests` from 10,000 virtual threads against a loopback server that answers
# like a remote site, then 2,000 files hashed in virtual threads (examples/demo.py).
demo: setup-python
	$(VENV)/bin/python examples/demo.py

# The Rust runtime alone: an echo server and 1,000 client connections over loopback.
demo-rust:
	$(CARGO) run --release --example echo -- 1000 5

# -- lint --------------------------------------------------------------------------------

lint-rust:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p ringloom --all-targets --features fault-injection -- -D warnings

# ruff over everything Python; mypy over the package (its types are part of its API).
lint-python: setup-python
	$(VENV)/bin/ruff check python tests benches examples
	$(VENV)/bin/ruff format --check python tests benches examples
	$(VENV)/bin/mypy python/ringloom

lint: lint-rust lint-python

# -- test --------------------------------------------------------------------------------

# The whole suite: lint; Rust and Python, each in both drivers; the cancellation test
# under valgrind; the scheduler and the generated programs under seeded scheduling.
test: setup lint test-rust test-fallback test-valgrind test-python test-seeded test-soak

# The injected faults (runtime/tests/faults.rs) need the `fault-injection` feature, which
# no other build has.
FAULTS = $(CARGO) test -p ringloom --features fault-injection --test faults
test-rust:
	$(CARGO) test --workspace
	$(FAULTS)

test-fallback:
	RINGLOOM_DRIVER=fallback $(CARGO) test --workspace
	RINGLOOM_DRIVER=fallback $(FAULTS)

# valgrind cannot see what the kernel writes, but it does see every userspace read,
# write and free around cancelled ops (the Ignored lifecycle, discards, fd closing). It
# runs the fallback driver: valgrind 3.19 holds its global lock across io_uring_enter, so
# a program that waits in the ring never gets its other threads run under it (even the
# smoke test stalls at 0% CPU). Through cargo's target runner, as any test binary runs.
test-valgrind: setup-tools
	RINGLOOM_DRIVER=fallback RINGLOOM_TASK_SLAB=0 \
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="valgrind --error-exitcode=9 --quiet" \
	    $(CARGO) test --test cancel --test op_lifetime

# Seeded scheduling (RINGLOOM_SCHED_SEED, see runtime/src/scheduler/shuffle.rs): the
# runtime's scheduler tests and the Python pool's (the generated programs among them)
# under two seeds each, so that orders FIFO never produces are tried on every run. A
# failure names its seed; the same seed replays the same choices.
SEEDS = 1 2
test-seeded: setup
	for seed in $(SEEDS); do \
	    RINGLOOM_SCHED_SEED=$$seed $(CARGO) test -p ringloom --test scheduler --test smoke \
	        --test time || { echo "failed under RINGLOOM_SCHED_SEED=$$seed"; exit 1; }; \
	    RINGLOOM_SCHED_SEED=$$seed $(VENV)/bin/python -m pytest -q tests/pool \
	        || { echo "failed under RINGLOOM_SCHED_SEED=$$seed"; exit 1; }; \
	done

# The soak (benches/soak.py): a mixed load through one pool, RSS, fds, threads and the
# rings' in-flight ops sampled every second; fails on growth after the warm-up, on an
# unexpected task failure, on a future that never ends. `make soak` runs SOAK_S seconds
# (default 600) and writes the curve to benches/soak/; `make test` runs a minute of it.
SOAK_S ?= 600
soak: setup
	$(VENV)/bin/python benches/soak.py --seconds $(SOAK_S) --report benches/soak
test-soak: setup
	$(VENV)/bin/python benches/soak.py --seconds 60

# Optional, where a nightly toolchain exists (not part of `make test`: a fresh machine has
# only stable). Unlike valgrind it runs the io_uring driver too. Twice: with the task-cell
# slab (its own memory use), and without it, so that a task freed too early is a freed
# malloc block ASan reports rather than a slot it sees as live (the slab's own tests need
# the slab, so they run in the first pass only).
ASAN = RUSTFLAGS="-Zsanitizer=address -Cforce-frame-pointers=yes" CARGO_TARGET_DIR=target/asan \
	LSAN_OPTIONS=suppressions=$(CURDIR)/runtime/lsan.supp \
	    $(CARGO) +nightly test --target x86_64-unknown-linux-gnu --lib --test cancel --test net \
	    --test scheduler --test fs --test op_waker --test op_lifetime --test task_memory
test-asan:
	$(ASAN)
	RINGLOOM_TASK_SLAB=0 $(ASAN) -- --skip task::slab::tests

# ThreadSanitizer, also optional (nightly with rust-src: std is rebuilt instrumented, or
# its own synchronisation reads as races), in both drivers. The 100,000-sleep order test
# is left out: instrumented, registering the sleeps outlasts their spread, so it has
# nothing to check (its own guard says so). TSan sees no write the kernel makes; races
# between threads that meet only through the ring would pass unseen.
TSAN = RUSTFLAGS="-Zsanitizer=thread -Cforce-frame-pointers=yes" CARGO_TARGET_DIR=target/tsan \
	$(CARGO) +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu -p ringloom \
	--features fault-injection --lib --test cancel --test net --test scheduler --test fs \
	--test op_waker --test op_lifetime --test time --test smoke --test faults \
	--test task_memory -- --skip hundred_thousand_sleeps
test-tsan:
	$(TSAN)
	RINGLOOM_DRIVER=fallback $(TSAN)

# The Python layer, in both drivers. A missing redis-server or distributed is a failure,
# not a skip.
PYTEST = RINGLOOM_REQUIRE_REDIS=1 RINGLOOM_REQUIRE_DASK=1 $(VENV)/bin/python -m pytest -q \
	--durations=10 tests
test-python: setup
	$(PYTEST)
	RINGLOOM_DRIVER=fallback $(PYTEST)

# -- bench -------------------------------------------------------------------------------

# Every workload through ringloom and its peers in one run, interleaved; writes
# benches/RESULTS.md, benches/charts/*.png and the README's headline table. The suites
# install their peers (pip, cargo, apt) themselves. The peers' Rust build (about a
# minute) runs beside the venv and pip, which mostly wait on the network.
bench-setup:
	@(cd benches/rust && $(CARGO) build --release --quiet 2>/dev/null) & build=$$!; \
	{ test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV); } && \
	$(VENV)/bin/pip install -q maturin greenlet requests matplotlib gevent uvloop && \
	$(VENV)/bin/maturin develop -q --release; status=$$?; wait $$build; exit $$status

bench: bench-setup
	$(VENV)/bin/python benches/run.py

bench-quick: bench-setup
	$(VENV)/bin/python benches/run.py --quick

clean:
	$(CARGO) clean
