# silo — build, run and test. `make run` and `make test` need nothing but rustup's Rust.
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
COMPONENTS_OUT := components/target/$(WASM_TARGET)/release
SILO := target/release/silo

.PHONY: all build toolchain tools components host run run-polyglot test test-fast lint fmt bench demo-isolation clean

all: build

## toolchain: the wasm32-wasip2 target, installed if missing.
toolchain:
	@rustup target list --installed | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

## tools: what the tests need besides Rust, installed with apt-get when missing (as root):
## Chromium and ChromeDriver for the dashboard's browser tests, Prometheus (promtool) for
## the /metrics scrape test. Present commands are left alone.
TOOLS := chromium:chromium chromedriver:chromium-driver promtool:prometheus
tools:
	@missing=""; for t in $(TOOLS); do \
	  command -v "$${t%%:*}" >/dev/null 2>&1 || missing="$$missing $${t#*:}"; \
	done; \
	if [ -z "$$missing" ]; then echo "tools: chromium, chromedriver and promtool are installed"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "tools: installing$$missing with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "tools: missing$$missing and no apt-get here: install them to run every test" >&2; fi


## components: every service and fixture component: the Rust ones with cargo, then the
## Python and JavaScript services (each rebuilt only when its sources, its SDK or the WIT change).
components: toolchain python-components js-components
	cd components && $(CARGO) build --release --target $(WASM_TARGET)

.PHONY: python-components js-components sdk-bindings sdk-test
WIT_FILES := $(wildcard wit/*.wit wit/deps/*.wit)

## python-components: recommendations (Python) with componentize-py, pinned and hash-checked in
## components/recommendations/requirements.txt, in a venv under components/target/py. Built
## without `--stub-wasi`: the stubbed build has 49 core instances, over the host's limit.
PY_VENV := components/target/py
PY_TOOL := $(PY_VENV)/.installed-$(shell sha256sum components/recommendations/requirements.txt | cut -c1-16)
python-components: $(COMPONENTS_OUT)/recommendations.wasm
$(PY_TOOL): components/recommendations/requirements.txt
	python3 -m venv $(PY_VENV)
	$(PY_VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r $<
	touch $@
$(COMPONENTS_OUT)/recommendations.wasm: $(PY_TOOL) $(WIT_FILES) components/recommendations/app.py \
		$(wildcard components/sdk-py/silo_sdk/*.py)
	mkdir -p $(COMPONENTS_OUT)
	cd components && target/py/bin/componentize-py -d ../wit -w service componentize \
		-p recommendations -p sdk-py app -o target/$(WASM_TARGET)/release/recommendations.wasm

## js-components: notifications (JavaScript) with componentize-js and jco, pinned in
## components/notifications/package-lock.json (`npm ci`). No AOT (it downloads a binary).
JS_TOOL := components/notifications/node_modules/.installed
js-components: $(COMPONENTS_OUT)/notifications.wasm
$(JS_TOOL): components/notifications/package-lock.json
	cd components/notifications && npm ci --no-audit --no-fund --loglevel=error
	touch $@
$(COMPONENTS_OUT)/notifications.wasm: $(JS_TOOL) $(WIT_FILES) components/notifications/app.js \
		$(wildcard components/sdk-js/src/*.js)
	mkdir -p $(COMPONENTS_OUT)
	cd components && notifications/node_modules/.bin/componentize-js notifications/app.js \
		--wit ../wit --world-name service --disable fetch-event \
		-o target/$(WASM_TARGET)/release/notifications.wasm

## sdk-bindings: the bindings componentize-py generates from wit/, for editors and type
## checkers (components/target/py-bindings); a build generates its own.
sdk-bindings: $(PY_TOOL)
	$(PY_VENV)/bin/componentize-py -d wit -w service bindings components/target/py-bindings

## host: the silo binary.
host:
	$(CARGO) build --release -p silo

build: components host

## run: build everything and serve the demo (silo.toml) on 127.0.0.1:8080, with demo data.
run: build
	./scripts/run-demo.sh

## run-polyglot: the demo with orders on PostgreSQL and sessions on Redis (silo-polyglot.toml);
## needs those servers on 127.0.0.1 (see README, "PostgreSQL stores").
run-polyglot: build
	SILO_MANIFEST=silo-polyglot.toml SILO_DATA=.silo-polyglot ./scripts/run-demo.sh

## test: the whole suite — unit, capability and integration tests against the real host
## (the dashboard's in a headless Chromium: `make tools`).
## Tests run in parallel (each host has its own ports, data folder and server objects), except
## the latency-sensitive ones, run after the rest one at a time: the isolation catalogue and
## the sandbox compare a victim's latency with its quiet baseline or a bound, which a
## neighbouring test's host would disturb on a 2-core machine.
SERIAL_TESTS := isolation:: sandbox::
test: build tools
	$(CARGO) test --release --workspace -- $(addprefix --skip ,$(SERIAL_TESTS))
	$(CARGO) test --release --workspace --test integration -- $(SERIAL_TESTS) --test-threads=1
	cd components && $(CARGO) test -p silo-sdk
	$(MAKE) sdk-test

## sdk-test: the Python and JavaScript SDKs' own tests (router, JSON, error bodies, rows).
sdk-test:
	cd components/sdk-py && python3 -m unittest discover -s tests
	cd components/sdk-js && node --test test/

## test-fast: the tests that need no wasm and no servers — the host's unit tests, the house
## checks (host/tests/house.rs) and the SQLite side of the conformance suite. Seconds after
## a build; no `make components`.
test-fast:
	$(CARGO) test --release -p silo --lib --test house
	$(CARGO) test --release -p silo --test conformance -- sqlite

## lint: formatting and clippy on both workspaces.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	cd components && $(CARGO) fmt --all -- --check
	cd components && $(CARGO) clippy --release --target $(WASM_TARGET) --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
	cd components && $(CARGO) fmt --all

## demo-isolation: every isolation attack against a live host, as a PASS/FAIL table.
demo-isolation: build
	$(SILO) demo isolation --components $(COMPONENTS_OUT)

## bench: throughput and latency against native baselines (see BENCHMARKS.md).
bench: build
	./scripts/bench.sh

clean:
	$(CARGO) clean
	cd components && $(CARGO) clean
