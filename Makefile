# Two commands on a fresh machine:
#   make analyze   set up .venv and run the main analysis on the bundled data
#   make test      set up .venv and run the default test suite (what CI runs)
# The virtual environment needs Python >= 3.12: python3.12/python3.13 on PATH, or pyenv's.
SHELL := /bin/bash
VENV  := .venv
PYBIN := $(VENV)/bin/python

define find_python
for c in python3.12 python3.13 python3.14 $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.1[234]*/bin/python3 2>/dev/null) python3; do \
  if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo $$c; break; fi; \
done
endef

.PHONY: venv browser analyze sensitivity test test-slow test-all benchmark clean

$(VENV)/.installed: pyproject.toml
	@PY=$$($(find_python)); \
	if [ -z "$$PY" ]; then echo "No Python >= 3.12 found on PATH or under pyenv" >&2; exit 1; fi; \
	echo "Using $$PY ($$($$PY --version))"; \
	[ -x $(PYBIN) ] || $$PY -m venv $(VENV); \
	$(PYBIN) -m pip install -q --upgrade pip && \
	$(PYBIN) -m pip install -q -e ".[test]" && touch $@

venv: $(VENV)/.installed

analyze: venv
	$(VENV)/bin/bayes-koa analyze --out reports/main

sensitivity: venv
	$(VENV)/bin/bayes-koa sensitivity --out reports/sensitivity

# Debian's Chromium for the report.html browser test (tests/unit/test_report_browser.py): installed when
# /usr/bin/chromium is missing and we are root; otherwise say loudly that the browser test will skip.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Installing Debian chromium for the report browser test"; \
	  (apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null)) || \
	  echo "WARNING: chromium could not be installed: the report browser test will be SKIPPED" >&2; \
	else echo "WARNING: /usr/bin/chromium missing and not root: the report browser test will be SKIPPED" >&2; fi

# two workers: a fit is compile-bound and compiling is single-threaded; files stay whole per worker
test: venv browser
	$(VENV)/bin/python -m pytest -m "not slow" -q -n 2 --dist loadfile

test-slow: venv
	$(VENV)/bin/python -m pytest -m slow -q -n 2 --dist loadfile

test-all: venv
	$(VENV)/bin/python -m pytest -q

# every benchmark, each figure as a ratio against its baseline in the same run (benchmarks/RESULTS.md)
benchmark: venv
	PYTHONPATH=$(CURDIR) $(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) reports build dist
