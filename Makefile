# fastwarp: two commands on a fresh machine.
#   make demo   edit a real face from ../shared/data/faces with the bundled weights
#   make test   the test suite (installs the evaluation extra, requirements-eval.txt, too)
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

.PHONY: demo test bench bench-baseline gpu-carry cuda-check install install-eval clean

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

# The evaluation extra (dlib's face descriptor for training/edit_metrics.py's identity
# distance; never a runtime dependency), for the tests that use it: two packages, no deps.
install-eval: $(VENV)/.installed-eval

$(VENV)/.installed-eval: $(VENV)/.installed requirements-eval.txt
	$(PIP) install -q --no-deps -r requirements-eval.txt
	$(PY) -c "import dlib; print('dlib', dlib.__version__)"
	touch $@

test: install install-eval
	$(PY) -m pytest -q

# Benchmarks of this machine's device (a GPU where one is visible, else the CPU), see
# bench/run.py: results in bench/results/<kind>-latest.json; where
# bench/results/<kind>-baseline.json exists, a benchmark whose median is more than
# BENCH_FAIL slower than there fails the run; then the ratio table and issue 3's targets.
# BENCH_ARGS go to pytest, e.g. BENCH_ARGS='-k "warp-forward" --bench-rounds 5'.
BENCH_FAIL ?= median:25%
BENCH_ARGS ?=
bench: install
	$(PY) bench/run.py --fail $(BENCH_FAIL) $(BENCH_ARGS)

# (Re)records the baseline of this device from a fresh run (commit the file it names).
bench-baseline: install
	$(PY) bench/run.py --record-baseline $(BENCH_ARGS)

# Wheels of the test tools, for bench/gpu_run.sh on a GPU machine without internet where
# they are missing: carry gpu_carry/ along (git ignores it).
GPU_CARRY_PKGS := pytest|pytest-benchmark|pluggy|iniconfig|packaging|py-cpuinfo2?|pygments|ninja
gpu-carry: install
	rm -rf gpu_carry/wheels && mkdir -p gpu_carry/wheels
	$(PIP) download -q --no-deps --only-binary=:all: -d gpu_carry/wheels \
		$$($(PIP) freeze | grep -i -E '^($(GPU_CARRY_PKGS))==')
	ls gpu_carry/wheels

# nvcc compile check of every .cu file (no GPU needed).
cuda-check: install
	PYTHON=$(PY) bash tools/cuda_check.sh

clean:
	rm -rf build *.egg-info fastwarp/_C*.so $(OUT)
