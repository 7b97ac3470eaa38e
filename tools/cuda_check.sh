#!/usr/bin/env bash
# Compile every CUDA source with nvcc, without a GPU: the ATen-free device code on its
# own (csrc/cuda/compile_check.cu instantiates every kernel for every dtype) and the
# launchers against torch's headers. A CUDA syntax or type error fails this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
NVCC=${NVCC:-nvcc}
ARCH=${CUDA_CHECK_ARCH:-sm_90}
command -v "$NVCC" >/dev/null || { echo "cuda_check: nvcc not found (set NVCC=/path/to/nvcc)" >&2; exit 1; }

includes=$("$PYTHON" -c "import torch.utils.cpp_extension as c; print(' '.join('-I' + p for p in c.include_paths()))")
pyinc=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A CPU build of torch ships c10's CUDA headers but not the one CMake generates for CUDA
# builds; its whole content is this define.
if ! "$PYTHON" -c "import torch.utils.cpp_extension as c, os, sys; sys.exit(not any(os.path.exists(os.path.join(p, 'c10/cuda/impl/cuda_cmake_macros.h')) for p in c.include_paths()))"; then
  mkdir -p "$tmp/stub/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$tmp/stub/c10/cuda/impl/cuda_cmake_macros.h"
  includes="-I$tmp/stub $includes"
fi

status=0
for cu in $(find csrc -name '*.cu' | sort); do
  start=$(date +%s)
  if "$NVCC" -std=c++20 -arch="$ARCH" --expt-relaxed-constexpr $includes -I"$pyinc" -c "$cu" -o "$tmp/$(basename "$cu").o"; then
    echo "cuda_check: ok   $cu ($(( $(date +%s) - start ))s, $ARCH)"
  else
    echo "cuda_check: FAIL $cu" >&2
    status=1
  fi
done
exit $status
