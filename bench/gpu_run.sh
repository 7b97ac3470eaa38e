#!/usr/bin/env bash
# One GPU session in one call: build the extension, run the CUDA + Triton op tests,
# compute-sanitizer memcheck over the GPU kernels, then the GPU benchmarks and their ratio
# table. Run in the repository root of a copy of the repo on the GPU machine:
#
#     OUT=/some/dir bash bench/gpu_run.sh
#
# Written for a remote H100/H200 with its own python3 (torch 2.11+cu130, Triton, nvcc,
# compute-sanitizer) and no internet. Python packages it lacks are installed from
# gpu_carry/wheels when that folder was carried along (`make gpu-carry` fills it here);
# else the script says which are missing and goes on.
#
# Everything lands in $OUT (at most 8 files, so the lease tool brings all back):
#   steps.txt        the machine, then one line per step: name, exit code, seconds
#   build.log        pip install -e . (the build log; its tail is also printed)
#   tests.log        pytest tests/test_ops.py tests/test_theta.py (CUDA + Triton tests)
#   memcheck.log     compute-sanitizer memcheck over bench/sanitize_cuda.py
#   bench.log        bench/run.py: pytest-benchmark, the comparison with the baseline
#   <kind>-latest.json, <kind>-ratios.txt   the results and the ratio table
# and the results also in bench/results/ of the copy. Each step runs under a time limit,
# a failing step is recorded and the next one runs; the benchmarks get the time left of
# GPU_RUN_BUDGET_S (they start no new benchmark past their share and keep what ran).
#
# Variables: OUT (default out/gpu), PYTHON (python3), GPU_RUN_BUDGET_S (530: ~9 min),
#   BUILD_LIMIT_S (300), TESTS_LIMIT_S (120), MEMCHECK_LIMIT_S (100),
#   GPU_RUN_SKIP ("tests memcheck": steps to leave out), GPU_TESTS_K (pytest -k of the
#   tests step; default "cuda or triton"; empty: all of test_ops.py),
#   GPU_RUN_BASELINE=1 (record the benchmark baseline instead of comparing with it),
#   BENCH_ARGS (more arguments for bench/run.py, e.g. "-k float32"),
#   TORCH_CUDA_ARCH_LIST (default 9.0, Hopper), MAX_JOBS (default: nproc),
#   FASTWARP_COMMIT (the commit the copy was made from, for the results, where the copy
#   has no .git: e.g. FASTWARP_COMMIT=$(git rev-parse HEAD) written into the command).
set -u
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/out/gpu}
PY=${PYTHON:-python3}
BUDGET=${GPU_RUN_BUDGET_S:-530}
START=$(date +%s)
DEADLINE=$((START + BUDGET))
mkdir -p "$OUT"
STEPS=$OUT/steps.txt
export PYTHONUNBUFFERED=1

log() { echo "$*" | tee -a "$STEPS"; }

# step NAME LIMIT_S COMMAND: runs COMMAND (a bash command line) with output to
# $OUT/NAME.log, under min(LIMIT_S, time left) seconds, SIGINT first (pytest then still
# writes its summary and JSON), SIGKILL 20 s later; records the exit code.
step() {
    local name=$1 limit=$2 cmd=$3
    if [[ " ${GPU_RUN_SKIP:-} " == *" $name "* ]]; then
        log "step $name: skipped (GPU_RUN_SKIP)"
        return 0
    fi
    local left=$((DEADLINE - $(date +%s)))
    ((limit > left)) && limit=$left
    if ((limit < 15)); then
        log "step $name: skipped (no time left of GPU_RUN_BUDGET_S=$BUDGET)"
        return 0
    fi
    echo "=== $name (limit ${limit} s): $cmd"
    local t0=$(date +%s)
    timeout -s INT -k 20 "$limit" bash -c "$cmd" >"$OUT/$name.log" 2>&1
    local rc=$?
    local why=""
    ((rc == 124 || rc == 137)) && why=" (time limit)"
    log "step $name: rc=$rc$why, $(($(date +%s) - t0)) s"
    return $rc
}

{
    echo "gpu_run.sh at $(date -u +%FT%TZ), budget ${BUDGET} s"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo "${FASTWARP_COMMIT:-unknown (no .git here: pass FASTWARP_COMMIT)}")"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu \
        --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
    echo "python: $(command -v "$PY") $("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1)"
    "$PY" -c 'import torch, triton; print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, cuda available: {torch.cuda.is_available()}")' 2>&1 | tail -1
    echo "nvcc: $(nvcc --version 2>&1 | tail -1)"
    echo "compute-sanitizer: $(compute-sanitizer --version 2>&1 | grep -i version | head -1)"
    echo "cpus: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$STEPS"

# --- 1. Python packages the tests and benchmarks need (no internet here) -------------------
missing=$("$PY" - <<'EOF'
import importlib.util, shutil
need = {"numpy": "numpy", "pytest": "pytest", "pytest_benchmark": "pytest-benchmark", "setuptools": "setuptools"}
missing = [pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None]
if shutil.which("ninja") is None:
    missing.append("ninja")  # torch builds extensions with it (without: slow serial builds)
print(" ".join(missing))
EOF
)
if [[ -z "$missing" ]]; then
    log "step deps: rc=0, all present (numpy, pytest, pytest-benchmark, setuptools, ninja)"
elif [[ -d gpu_carry/wheels ]]; then
    log "deps missing: $missing; installing from gpu_carry/wheels"
    step deps 60 "'$PY' -m pip install --no-index --find-links gpu_carry/wheels $missing"
    tail -n 3 "$OUT/deps.log"
    rm -f "$OUT/deps.log"  # keep $OUT to 8 files; the tail above says how it went
else
    log "step deps: rc=1, MISSING: $missing and no gpu_carry/wheels to install them from (no internet here):" \
        "run \`make gpu-carry\` where pip works and carry gpu_carry/"
fi

# --- 2. build ------------------------------------------------------------------------------
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-$(nproc)}
step build "${BUILD_LIMIT_S:-300}" \
    "FASTWARP_FORCE_CUDA=1 '$PY' -m pip install --no-build-isolation --no-deps -v -e . &&
     '$PY' -c 'import fastwarp; b = fastwarp.backends(); print(\"fastwarp backends:\", b); raise SystemExit(0 if b.get(\"cuda\") else 3)'"
echo "--- build.log (tail)"
grep -E "fastwarp build:|error:|^ERROR|Successfully installed" "$OUT/build.log" | head -n 10
tail -n 12 "$OUT/build.log"

# --- 3. CUDA and Triton tests --------------------------------------------------------------
tests_k=${GPU_TESTS_K-cuda or triton}
step tests "${TESTS_LIMIT_S:-120}" "'$PY' -m pytest tests/test_ops.py tests/test_theta.py -q -p no:cacheprovider ${tests_k:+-k '$tests_k'}"
echo "--- tests.log (tail)"
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -n 20
tail -n 3 "$OUT/tests.log"

# --- 4. compute-sanitizer memcheck over the GPU kernels -------------------------------------
# Without the caching allocator every tensor is its own allocation, so an access past a
# tensor's end is seen (inside a cached block it would land in a neighbour).
step memcheck "${MEMCHECK_LIMIT_S:-100}" \
    "PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 99 --print-limit 20 \
     '$PY' bench/sanitize_cuda.py"
echo "--- memcheck.log (tail)"
grep -E "ERROR SUMMARY|Invalid|out of bounds|not supported|not found|Error|sanitize_cuda:" "$OUT/memcheck.log" | tail -n 8 ||
    tail -n 5 "$OUT/memcheck.log"

# --- 5. GPU benchmarks ---------------------------------------------------------------------
# The benchmarks stop starting new ones 45 s before their limit (a compilation or the
# biggest case can take that long), so the JSON holds everything that ran.
left=$((DEADLINE - $(date +%s) - 5))
bench_budget=$((left - 45))
((bench_budget < 10)) && bench_budget=10
step bench "$left" \
    "'$PY' bench/run.py --copy-to '$OUT' --bench-budget-s $bench_budget ${GPU_RUN_BASELINE:+--record-baseline} ${BENCH_ARGS:-}"
bench_rc=$?
echo "--- bench.log (tail)"
grep -E "^bench:|regress|SKIPPED .*budget|passed|failed|error" "$OUT/bench.log" | tail -n 12
ratios=$(ls -t "$OUT"/*-ratios.txt 2>/dev/null | head -1)
if [[ -n "$ratios" ]]; then
    echo "--- $(basename "$ratios"): the whole table is in that file; its summary:"
    sed -n '/^summary/,$p' "$ratios"
fi
if [[ -n "${GPU_RUN_BASELINE:-}" && $bench_rc -eq 0 ]]; then
    log "baseline: bench/results/<kind>-baseline.json on the GPU machine is the same as $OUT/<kind>-latest.json:" \
        "copy that into bench/results/<kind>-baseline.json and commit it"
fi

echo "=== steps ($(($(date +%s) - START)) s in all)"
grep "^step" "$STEPS"
