# evtools: two commands for a fresh machine.
#   make report   run the main job on the embedded default data; HTML into reports/
#   make test     lint, type-check, unit tests, notebooks
# Each creates .venv and installs what it needs by itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
# torch first, alone: the bare name pulls gigabytes of CUDA packages.
TORCH  ?= torch==2.13.0
SYSTEM_PACKAGES := golang-go nodejs chromium chromium-driver

.PHONY: test report install system-deps lint typecheck unit notebooks bench fuzz clean

test: install system-deps lint typecheck unit notebooks

report: install
	$(BIN)/evtools report --out reports

install: $(STAMP)

$(STAMP): pyproject.toml setup.py evtools/_speedups.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[all,dev,bench]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Go, Node and Chromium for the differential and report tests. Installed with apt when we
# are root (as in CI); otherwise the tests that need them skip and say why.
system-deps:
	@missing=""; \
	command -v go >/dev/null || missing="$$missing golang-go"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || missing="$$missing chromium chromium-driver"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing system packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "NOTE: not root or no apt-get: tests needing$$missing will be skipped"; \
	fi

lint: install
	$(BIN)/ruff check evtools tests benchmarks

typecheck: install
	$(BIN)/mypy evtools

unit: install
	$(BIN)/pytest -q tests

notebooks: install
	$(BIN)/pytest -q --nbval-lax -p no:cacheprovider notebooks/

bench: install
	$(PY) benchmarks/run_all.py --out benchmarks/results

# every hypothesis property with 20x its examples (tests/conftest.py, profile "fuzz")
fuzz: install
	$(BIN)/pytest -q -m hypothesis --hypothesis-profile=fuzz tests

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache
