#!/usr/bin/env bash
# make gpu-prebuilt: fastwarp._C built HERE (no GPU) for the lent GPU machine, so that
# bench/gpu_run.sh spends the lease on tests and benchmarks instead of its build step.
#
# The GPU machine runs Python 3.12 with torch 2.11.0+cu130 (the device tool's README): the
# extension is built against exactly that (PyPI's torch==2.11.0 is the cu130 build) with
# this machine's nvcc 13.0, for GPU_PREBUILT_ARCHS (default 9.0: H100 and H200), in a clean
# copy of the work tree, and written with a manifest to gpu_prebuilt/ (git-ignored; about
# 15 MB, within the device tool's 64 MiB carry: run it with carry ["gpu_prebuilt", ...]).
# gpu_run.sh uses it only where everything matches: the device's Python tag and torch
# version, its GPU's compute capability among the archs, and the sources' hash (csrc/,
# setup.py) of the tree it runs in; otherwise it builds as before.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# A Python 3.12 that runs (a pyenv shim may exist and fail): PYTHON312, python3.12 on PATH,
# or pyenv's own.
PY312=
for cand in ${PYTHON312:-} "$(command -v python3.12 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12; do
  if [ -n "$cand" ] && [ -x "$cand" ] && "$cand" -c "import sys; assert sys.version_info[:2] == (3, 12)" 2>/dev/null; then
    PY312=$cand; break
  fi
done
[ -n "$PY312" ] || { echo "gpu-prebuilt: no Python 3.12 found (set PYTHON312=/path/to/python3.12)" >&2; exit 1; }
VENV=${VENV_GPU_PREBUILT:-.venv-gpu-prebuilt}
TORCH_SPEC=${GPU_TORCH_SPEC:-torch==2.11.0}
ARCHS=${GPU_PREBUILT_ARCHS:-9.0}
NVCC=${NVCC:-nvcc}
pypi() { PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= "$@"; }
CUDA_HOME_DIR=${CUDA_HOME:-/usr/local/cuda}

test -x "$VENV/bin/python" || "$PY312" -m venv "$VENV"
pypi "$VENV/bin/pip" install -q --upgrade pip
pypi "$VENV/bin/pip" install -q "$TORCH_SPEC" "numpy<2" setuptools wheel ninja
torch_version=$("$VENV/bin/python" -c "import torch; print(torch.__version__)")
tag=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
echo "gpu-prebuilt: torch $torch_version, extension suffix $tag, archs $ARCHS"

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ "$src/"
start=$(date +%s)
(cd "$src" && FASTWARP_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCHS" MAX_JOBS=${MAX_JOBS:-$(nproc)} \
   CUDA_HOME=$CUDA_HOME_DIR "$ROOT/$VENV/bin/python" setup.py -q build_ext --inplace)
seconds=$(( $(date +%s) - start ))
rm -rf gpu_prebuilt && mkdir -p gpu_prebuilt
cp "$src/fastwarp/_C$tag" gpu_prebuilt/
{
  echo "python_tag=$tag"
  echo "torch=$torch_version"
  echo "archs=$ARCHS"
  echo "sources=$(bash bench/source_hash.sh)"
  echo "built=$(date -u +%FT%TZ) in ${seconds}s on $(nproc) cores"
} > gpu_prebuilt/manifest.txt
cat gpu_prebuilt/manifest.txt
du -h gpu_prebuilt/*
