# The two commands a fresh machine needs (see README):  make demo   |   make test
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
RUNS    ?= demo-runs
PORT    ?= 8501
ADDRESS ?= 127.0.0.1
# GPU builds (requirements-gpu.txt: jax[cuda12]) when an NVIDIA driver answers, or with GPU=1; GPU=0 forces CPU.
GPU     ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1 || echo 0)
REQS    := $(if $(filter 1,$(GPU)),requirements-gpu.txt,requirements.txt)
STAMP   := $(BIN)/.installed-$(if $(filter 1,$(GPU)),gpu,cpu)

.PHONY: print-uv-index demo test test-fast test-real-arch test-own-process install browser dashboard clean-demo

# uv installs the pinned set (34 s here against pip's ~5.5 min for the same ~8 GB of wheels); it does not read pip's
# configuration, so this machine's package sources (pip's index-url, extra-index-url and find-links, from its config
# files or PIP_* variables) are handed to it (read once, when first needed); pins are exact, so taking each from whichever source has it is
# safe.
UV_INDEX = $(eval UV_INDEX := $(shell $(PY) -m pip config list 2>/dev/null | \
           sed -n "s/^\(global\|:env:\)\.\(index-url\|extra-index-url\|find-links\)='\(.*\)'$$/\2 \3/p" | \
           awk '{for (i = 2; i <= NF; i++) if (!seen[$$1 $$i]++) printf "--%s %s ", $$1, $$i}') \
           --index-strategy unsafe-best-match)$(UV_INDEX)
UV       = $(BIN)/uv pip install -q --python $(BIN)/python

$(STAMP): requirements.txt requirements-gpu.txt requirements-legacy.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q $$(grep -oE '^uv==[0-9.]+' requirements.txt)
	$(UV) $(UV_INDEX) -r $(REQS)
	$(UV) $(UV_INDEX) --no-deps -r requirements-legacy.txt
	# this checkout, editable: `core` and `dashboard` import from any folder (Ray workers, streamlit, children)
	$(UV) --no-deps --no-build-isolation -e .
	touch $@

install: $(STAMP)

# the package sources uv is given (tests/test_gpu_install.py resolves the GPU set with them)
print-uv-index:
	@echo $(UV_INDEX)

# Debian's chromium for the browser test and plotly's PNG export (Playwright cannot download browsers here), DejaVu
# for the PDF card's Unicode text and poppler's pdftotext for its check: each installed when missing.
BROWSER_PKGS := chromium fonts-dejavu-core poppler-utils
browser:
	@missing=$$(for p in $(BROWSER_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# Build the random-weight demo experiment (once; resumes if interrupted) and serve the dashboard on it.
demo: install
	$(BIN)/python -m core demo --runs-dir $(RUNS)
	$(BIN)/streamlit run dashboard/app.py --server.address $(ADDRESS) --server.port $(PORT) --server.headless true \
	    --browser.gatherUsageStats false -- --runs-dir $(RUNS)

dashboard: install
	$(BIN)/streamlit run dashboard/app.py --server.address $(ADDRESS) --server.port $(PORT) --server.headless true \
	    --browser.gatherUsageStats false -- --runs-dir $(RUNS)

# Everything: ruff; every test that needs no process of its own (make test-fast's, the slow ones, the browser and
# network tests; two pytest-xdist workers); then two lanes side by side: the real KerasCV architecture at 128 px
# (random weights), one module at a time, each in a process of its own (a build holds ~5-7 GB, and a process does not
# hand freed TensorFlow memory back, so one long process or two builds at once would not fit a 24 GB machine); and
# beside it the tiny-network groups that need processes of their own (Ray, the kill -9 fork servers). Ray runs first
# in its lane and the real sweep last in the other, so two Ray instances never overlap. docs/testing.md has the
# measured durations.
FAST := not real and not browser and not ray and not network and not slow

test: install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not real and not ray"
	$(MAKE) --no-print-directory -j2 --output-sync=target test-real-arch test-own-process

test-real-arch:
	$(BIN)/python -m pytest -q -m real tests/test_real.py
	$(BIN)/python -m pytest -q -m real tests/test_real_equivalence.py
	$(BIN)/python -m pytest -q -m real tests/test_real_weights.py
	$(BIN)/python -m pytest -q -m real tests/test_real_sweep.py

test-own-process:
	$(BIN)/python -m pytest -q -m ray tests/test_sweep.py
	$(BIN)/python -m pytest -q -m real tests/test_faults.py

# Seconds-to-minutes subset: no real architecture, no browser, no Ray, nothing marked slow.
test-fast: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "$(FAST)"

clean-demo:
	rm -rf $(RUNS)
