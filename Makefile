# fastwarp: two commands on a fresh machine.
#   make demo   edit a real face from ../shared/data/faces with the bundled weights
#   make test   the test suite
# Both create or reuse ./.venv (torch 2.13.0 CPU + the package, built in place).

VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0
FACES  ?= ../shared/data/faces
OUT    ?= out
DEMO_IMAGE ?= $(FACES)/images/st_people_0.png
DEMO_AUS   ?= --au AU12=3 --au AU25=1
SOURCES := setup.py pyproject.toml requirements.txt $(wildcard csrc/*.h csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*/*.cuh)

.PHONY: demo test bench cuda-check install clean

install: $(VENV)/.installed

# torch first and alone, so no later step can make pip resolve a newer (CUDA) torch;
# then the pinned dependencies; then the extension, built against that torch.
$(VENV)/.installed: $(SOURCES)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-build-isolation --no-deps -e .
	$(PY) -c "import fastwarp; print('fastwarp', fastwarp.__version__, 'backends:', fastwarp.backends())"
	touch $@

demo: install
	@test -f "$(DEMO_IMAGE)" || { echo "demo image not found: $(DEMO_IMAGE) (set FACES=/path/to/faces)"; exit 1; }
	$(VENV)/bin/fastwarp edit "$(DEMO_IMAGE)" $(DEMO_AUS) -o $(OUT)/demo_edit.png --side-by-side $(OUT)/demo_side_by_side.png

test: install
	$(PY) -m pytest -q

# CPU benchmarks (pytest-benchmark); results with machine info under bench/results/.
bench: install
	$(PY) -m pytest bench -q --benchmark-enable --benchmark-group-by=group \
		--benchmark-json=bench/results/cpu-latest.json
	$(PY) bench/ratios.py bench/results/cpu-latest.json

# nvcc compile check of every .cu file (no GPU needed).
cuda-check: install
	PYTHON=$(PY) bash tools/cuda_check.sh

clean:
	rm -rf build *.egg-info fastwarp/_C*.so $(OUT)
