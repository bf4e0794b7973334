# The two commands a newcomer needs: `make demo` (the main job) and `make test` (the test suite).
# Each creates .venv and installs everything it needs, system packages included, on first use, at the versions
# locks/*.txt name; `make lock` re-resolves them from the package index and reruns the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The verl integration's venv, layered on $(VENV): verl 0.9.1 pins transformers <5.11 (scripts/setup_verl.sh).
VERL_VENV ?= .venv-verl
VERL_STAMP := $(VERL_VENV)/.installed
# In the verl venv verl must import: its tests fail instead of skipping.
VERL_TESTS := EMPG_GYM_REQUIRE_VERL=1 $(VERL_VENV)/bin/python -m pytest -q -p no:xdist tests/integrations/verl

.PHONY: setup demo test test-fast bench lint clean setup-verl test-verl lock

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh locks/main.txt
	bash scripts/setup.sh $(VENV)

demo: setup
	$(PY) -m empg_gym.cli demo

test: setup setup-verl
	$(PY) -m pytest -q -n auto
	$(VERL_TESTS)

test-fast: setup
	$(PY) -m pytest -q -n auto -m "not slow and not browser"

bench: setup
	$(PY) benchmarks/alfworld_engine.py

setup-verl: $(VERL_STAMP)

$(VERL_STAMP): $(STAMP) pyproject.toml scripts/setup_verl.sh locks/verl.txt
	bash scripts/setup_verl.sh $(VENV) $(VERL_VENV)

test-verl: setup-verl
	$(VERL_TESTS)

lock:
	bash scripts/lock.sh $(VENV) $(VERL_VENV)

lint: setup
	$(PY) -m ruff check empg_gym tests benchmarks scripts

clean:
	rm -rf $(VENV) $(VERL_VENV) .pytest_cache .ruff_cache build *.egg-info
