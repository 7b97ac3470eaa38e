#!/usr/bin/env bash
# make wheel-cuda: build fastwarp's wheel WITH its CUDA kernels on a machine without a GPU,
# then install it into a clean environment and check it (tools/check_cuda_wheel.py).
#
# - its own virtual environment (.venv-cuda): PyPI's CUDA build of torch 2.13.0 (CUDA 13.0,
#   not the local +cpu wheel: PIP_CONFIG_FILE=/dev/null and an empty PIP_FIND_LINKS skip the
#   machine's pip configuration), with its nvidia-* runtime wheels; nvcc from the machine
#   (its CUDA major version must be torch's: checked);
# - the wheel is built from a clean copy of the work tree (no editable-install leftovers),
#   for CUDA_ARCHS (default "8.0+PTX;9.0;<newest the nvcc knows>": A100, H100/H200, the
#   newest cubin, and PTX that every later GPU compiles at load), into dist/;
# - a second clean environment (.venv-cuda-check) gets the same torch and the wheel (no other
#   dependency: the check imports the ops alone) and runs tools/check_cuda_wheel.py.
# Writes dist/wheel-cuda.txt: the wheel's name, size, build seconds and the check's output.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON3:-python3}
VENV=${VENV_CUDA:-.venv-cuda}
CHECK_VENV=${VENV_CUDA_CHECK:-.venv-cuda-check}
TORCH_SPEC=${TORCH_CUDA_SPEC:-torch==2.13.0}
NVCC=${NVCC:-nvcc}
pypi() { PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= "$@"; }

command -v "$NVCC" >/dev/null || { echo "wheel-cuda: nvcc not found (set NVCC=/path/to/nvcc)" >&2; exit 1; }
# The toolkit's root (lib64/libcudart.so for the link): CUDA_HOME, else /usr/local/cuda, else
# the directory above nvcc's bin/ (nvcc may be a launcher elsewhere on PATH).
CUDA_HOME_DIR=${CUDA_HOME:-}
for d in "$CUDA_HOME_DIR" /usr/local/cuda "$(dirname "$(dirname "$(readlink -f "$(command -v "$NVCC")")")")"; do
  if [ -n "$d" ] && ls "$d"/lib64/libcudart.so* >/dev/null 2>&1; then CUDA_HOME_DIR=$d; break; fi
done
ls "$CUDA_HOME_DIR"/lib64/libcudart.so* >/dev/null 2>&1 || {
  echo "wheel-cuda: no CUDA toolkit with lib64/libcudart.so found (set CUDA_HOME)" >&2; exit 1; }
newest=$("$NVCC" --list-gpu-arch | sed -n 's/compute_\([0-9]*\)/\1/p' | sort -n | tail -1)
ARCHS=${CUDA_ARCHS:-}
ARCHS=${ARCHS:-"8.0+PTX;9.0;${newest%?}.${newest: -1}"}

test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
pypi "$VENV/bin/pip" install -q --upgrade pip
pypi "$VENV/bin/pip" install -q "$TORCH_SPEC" "numpy<2" setuptools wheel ninja
torch_cuda=$("$VENV/bin/python" -c "import torch; print(torch.version.cuda or '')")
nvcc_cuda=$("$NVCC" --version | sed -n 's/.*release \([0-9][0-9]*\.[0-9]*\).*/\1/p')
[ -n "$torch_cuda" ] || { echo "wheel-cuda: $TORCH_SPEC in $VENV is not a CUDA build" >&2; exit 1; }
[ "${torch_cuda%%.*}" = "${nvcc_cuda%%.*}" ] || {
  echo "wheel-cuda: torch is built with CUDA $torch_cuda but nvcc is CUDA $nvcc_cuda (the major versions must match)" >&2; exit 1; }
echo "wheel-cuda: torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)') (CUDA $torch_cuda), nvcc $nvcc_cuda, archs $ARCHS"

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
# The tracked and untracked (not ignored) files of the work tree: what a clean clone would build.
git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ "$src/"
mkdir -p dist
rm -f dist/fastwarp-*.whl
start=$(date +%s)
(cd "$src" && FASTWARP_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCHS" MAX_JOBS=${MAX_JOBS:-$(nproc)} \
   CUDA_HOME=$CUDA_HOME_DIR \
   "$ROOT/$VENV/bin/pip" wheel -q --no-build-isolation --no-deps -w "$ROOT/dist" .)
seconds=$(( $(date +%s) - start ))
wheel=$(ls dist/fastwarp-*.whl)
size=$(du -h "$wheel" | cut -f1)
echo "wheel-cuda: built $wheel ($size) in ${seconds}s"

rm -rf "$CHECK_VENV"
"$PY" -m venv "$CHECK_VENV"
pypi "$CHECK_VENV/bin/pip" install -q "$TORCH_SPEC" "numpy<2"
"$CHECK_VENV/bin/pip" install -q --no-deps "$wheel"
expect=$(echo "$ARCHS" | sed 's/+PTX//g; s/;/,/g')
# From another directory: the installed wheel is imported, not the work tree.
(cd "$CHECK_VENV" && CUDA_VISIBLE_DEVICES= "$ROOT/$CHECK_VENV/bin/python" "$ROOT/tools/check_cuda_wheel.py" \
   --expect-archs "$expect") | tee dist/wheel-cuda.check.txt
{
  echo "wheel: $(basename "$wheel")"
  echo "size: $(stat -c %s "$wheel") bytes ($size)"
  echo "build: ${seconds} s on $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p'))"
  echo "torch: $TORCH_SPEC (CUDA $torch_cuda), nvcc $nvcc_cuda, TORCH_CUDA_ARCH_LIST=$ARCHS"
  cat dist/wheel-cuda.check.txt
} > dist/wheel-cuda.txt
cat dist/wheel-cuda.txt
