# fastwarp: two commands on a fresh machine.
#   make demo   edit a real face from ../shared/data/faces with the bundled weights
#   make test   the test suite (installs the evaluation extra, requirements-eval.txt, too)
#   make app    the web app (fastwarp app, http://127.0.0.1:7860; installs the app extra, requirements-app.txt)
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

.PHONY: demo app test bench bench-baseline gpu-carry gpu-prebuilt gpu-dry-run cuda-check wheel-cuda install install-eval install-trt-api install-app clean

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
	mkdir -p $(OUT)
	$(VENV)/bin/fastwarp edit "$(DEMO_IMAGE)" $(DEMO_AUS) -o $(OUT)/demo_edit.png --side-by-side $(OUT)/demo_side_by_side.png

# The evaluation extra (dlib's face descriptor for training/edit_metrics.py's identity
# distance; never a runtime dependency), for the tests that use it: two packages, no deps.
install-eval: $(VENV)/.installed-eval

$(VENV)/.installed-eval: $(VENV)/.installed requirements-eval.txt
	$(PIP) install -q --no-deps -r requirements-eval.txt
	$(PY) -c "import dlib; print('dlib', dlib.__version__)"
	touch $@

# TensorRT's Python bindings alone (1.3 MB, PyPI; requirements-tensorrt-api.txt), for the API
# check in tests/test_tensorrt.py: they install as tensorrt_bindings, so fastwarp sees no TensorRT.
install-trt-api: $(VENV)/.installed-trt-api

$(VENV)/.installed-trt-api: $(VENV)/.installed requirements-tensorrt-api.txt
	$(PIP) install -q --no-deps -r requirements-tensorrt-api.txt
	$(PY) -c "import importlib.util as u; assert u.find_spec('tensorrt_bindings'), 'tensorrt_bindings missing'"
	touch $@

# The web app extra (gradio, fastwarp[app]) and Playwright, which drives the system's Chromium in
# tests/test_app_browser.py (Debian's chromium package; .ci/run installs it). requirements.txt
# constrains the install so numpy and protobuf stay where mediapipe needs them.
install-app: $(VENV)/.installed-app

$(VENV)/.installed-app: $(VENV)/.installed requirements-app.txt
	$(PIP) install -q -r requirements-app.txt -c requirements.txt
	$(PY) -c "import torch, gradio, playwright; assert torch.__version__.startswith('2.13.0'), torch.__version__; print('gradio', gradio.__version__)"
	touch $@

# The web app on http://127.0.0.1:7860 (APP_ARGS: e.g. --port 8080, --host 0.0.0.0).
APP_ARGS ?=
app: install-app
	$(VENV)/bin/fastwarp app $(APP_ARGS)

test: install install-eval install-trt-api install-app
	$(PY) -m pytest -q

# Benchmarks of this machine's device (a GPU where one is visible, else the CPU), see
# bench/run.py: results in bench/results/<key>-latest.json, <key> naming the machine
# (cpu-<model>-<N>c, or the GPU: `python bench/run.py --show-gate`). With a baseline of this
# machine, a benchmark whose median is more than BENCH_FAIL slower than there fails the run;
# on another machine, a ratio against the in-run reference more than BENCH_FAIL below a
# baseline's of the same device type does (bench/gate.py); then the ratio table and targets.
# BENCH_ARGS go to pytest, e.g. BENCH_ARGS='-k "warp-forward" --bench-rounds 5'.
BENCH_FAIL ?= median:25%
BENCH_ARGS ?=
bench: install
	$(PY) bench/run.py --fail $(BENCH_FAIL) $(BENCH_ARGS)

# (Re)records the baseline of this machine from a fresh run (commit the file it names).
bench-baseline: install
	$(PY) bench/run.py --record-baseline $(BENCH_ARGS)

# Rehearses bench/gpu_run.sh here: each step with its time limit, nothing heavy runs.
gpu-dry-run:
	OUT=$(OUT)/gpu-dry-run bash bench/gpu_run.sh --dry-run

# Wheels of the test tools, for bench/gpu_run.sh on a GPU machine without internet where
# they are missing: carry gpu_carry/ along (git ignores it).
GPU_CARRY_PKGS := pytest|pytest-benchmark|pluggy|iniconfig|packaging|py-cpuinfo2?|pygments|ninja
gpu-carry: install
	rm -rf gpu_carry/wheels && mkdir -p gpu_carry/wheels
	$(PIP) download -q --no-deps --only-binary=:all: -d gpu_carry/wheels \
		$$($(PIP) freeze | grep -i -E '^($(GPU_CARRY_PKGS))==')
	ls gpu_carry/wheels

# fastwarp._C for the lent GPU machine (Python 3.12, torch 2.11.0+cu130, sm_90), built here
# without a GPU (tools/gpu_prebuilt.sh): carry gpu_prebuilt/ along and bench/gpu_run.sh uses
# it instead of its build step where it matches (Python, torch, GPU, the tree's sources).
gpu-prebuilt:
	bash tools/gpu_prebuilt.sh

# nvcc compile check of every .cu file (no GPU needed).
cuda-check: install
	PYTHON=$(PY) bash tools/cuda_check.sh

# The wheel WITH the CUDA kernels, built without a GPU (tools/wheel_cuda.sh): its own venv
# (.venv-cuda) with PyPI's CUDA build of torch 2.13.0 (about 3 GB with its nvidia-* wheels),
# the machine's nvcc (same CUDA major version), CUDA_ARCHS (default 8.0+PTX;9.0;the newest the
# nvcc knows); then installed into a clean venv (.venv-cuda-check) and checked by
# tools/check_cuda_wheel.py: imports without a GPU, build_info() names the kernels and archs,
# every op has a CUDA kernel. The wheel goes to dist/, the report to dist/wheel-cuda.txt.
# Not part of `make test` (downloads and a 20+ minute build on 2 cores).
CUDA_ARCHS ?=
wheel-cuda:
	CUDA_ARCHS="$(CUDA_ARCHS)" bash tools/wheel_cuda.sh

clean:
	rm -rf build *.egg-info fastwarp/_C*.so $(OUT)
