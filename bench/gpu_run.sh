#!/usr/bin/env bash
# One GPU lease in one call, sized for a 15-minute device budget that includes the machine's
# start (2-4 min): about 9 minutes of command (GPU_RUN_BUDGET_S=540; give the call a
# timeout_s of 570-600). Run in the repository root of a copy of the repo on the GPU machine:
#
#     OUT=/some/dir bash bench/gpu_run.sh                # first call: the prioritised run
#     OUT=/some/dir bash bench/gpu_run.sh --full-tests   # optional second call: the whole CUDA suite
#     bash bench/gpu_run.sh --dry-run                    # anywhere: rehearse, run nothing heavy
#
# The prioritised run, most important first, each step under its own time limit:
#   deps         test tools missing there, from gpu_carry/wheels (`make gpu-carry`; no internet there)
#   build        pip install -e . for this GPU's architecture only (TORCH_CUDA_ARCH_LIST from
#                nvidia-smi's compute_cap, else torch), MAX_JOBS=$(nproc); or, where a carried
#                gpu_prebuilt/ (`make gpu-prebuilt`) matches this machine's Python, torch, GPU
#                and the tree's sources, its fastwarp._C copied in (seconds, not minutes)
#   tests        correctness of every CUDA and Triton path at a few shapes: bench/gpu_tests.py's
#                pairwise cover of the tests against the reference (~260 of ~2,300), then the
#                CUDA cases of that cover again with the generic kernels (FASTWARP_CUDA_GENERIC=1)
#   determinism  the deterministic-backward tests, every case
#   memcheck     compute-sanitizer memcheck over bench/sanitize_cuda.py --quick (caching allocator off)
#   bench        the headline benchmarks (issue 3's target groups: the copy, 32x3x256x256 bfloat16,
#                warp_blend 8x3x512x512 with 128 px maps) with all the time left
# --full-tests: deps, build, then every test marked needs_cuda or triton (pytest-xdist workers
# where it is installed) with all the time left.
#
# $OUT is written after EVERY step, so a call cut short still returns what finished:
#   steps.txt    the machine, the plan (each step's time limit), then one line per step as it
#                ends: name, exit code, seconds, and its summary (pytest's last line, memcheck's
#                ERROR SUMMARY, the benchmarks' files)
#   <step>.log   each step's whole output (deps' only in steps.txt: the lease returns 8 files)
#   <key>-latest.json, <key>-ratios.txt   the benchmarks' results and ratio table (bench/run.py)
# A step past its limit gets SIGINT (pytest still writes its summary and JSON), SIGKILL 20 s
# later; a failing step is recorded and the next one runs (after a failed build, none does).
#
# Variables: OUT (default out/gpu), PYTHON (python3), GPU_RUN_BUDGET_S (540),
#   DEPS_LIMIT_S (30), BUILD_LIMIT_S (210), TESTS_LIMIT_S (120), DETERMINISM_LIMIT_S (30),
#   MEMCHECK_LIMIT_S (60): the bench step (or the full suite) gets the rest, at least
#   GPU_RUN_MIN_LAST_S (60); GPU_RUN_SKIP ("tests memcheck": steps to leave out),
#   GPU_RUN_BASELINE=1 (record the benchmark baseline instead of comparing with it),
#   BENCH_K (pytest -k of the bench step; empty: every benchmark), BENCH_ARGS (more arguments
#   for bench/run.py), GPU_TESTS_WORKERS (pytest-xdist workers of --full-tests, default 8),
#   TORCH_CUDA_ARCH_LIST (default: this GPU's), MAX_JOBS (default: nproc),
#   FASTWARP_COMMIT (the commit the copy was made from, where the copy has no .git).
#   Rehearsal only: GPU_RUN_DRY_HANG=<step> makes that step's stand-in hang (its limit ends it),
#   GPU_RUN_MIN_STEP_S (15: a step with less time left is skipped).
set -u
cd "$(dirname "$0")/.."

MODE=quick
DRY=0
for arg in "$@"; do
    case $arg in
        --dry-run) DRY=1 ;;
        --full-tests) MODE=full ;;
        -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_run.sh: unknown argument '$arg' (expected --dry-run, --full-tests or --help)" >&2; exit 2 ;;
    esac
done

OUT=${OUT:-$PWD/out/gpu}
PY=${PYTHON:-python3}
BUDGET=${GPU_RUN_BUDGET_S:-540}
MIN_STEP=${GPU_RUN_MIN_STEP_S:-15}
# A dry run keeps a virtual clock, each step taking its whole limit: the limits it prints
# are those of a run whose every step ran out of time (the rehearsal's own seconds do not
# count, so its plan is the same on a loaded machine).
DRY_ELAPSED=0
DRY_T0=$(date +%s)
now() { if ((DRY)); then echo $((DRY_T0 + DRY_ELAPSED)); else date +%s; fi; }
START=$(now)
DEADLINE=$((START + BUDGET))
mkdir -p "$OUT"
STEPS=$OUT/steps.txt
export PYTHONUNBUFFERED=1

log() { echo "$*" | tee -a "$STEPS"; }

# The plan: each step and its time limit; the last step gets the rest of the budget.
if [[ $MODE == full ]]; then
    NAMES=(deps build tests-full)
    LIMITS=("${DEPS_LIMIT_S:-30}" "${BUILD_LIMIT_S:-210}")
else
    NAMES=(deps build tests determinism memcheck bench)
    LIMITS=("${DEPS_LIMIT_S:-30}" "${BUILD_LIMIT_S:-210}" "${TESTS_LIMIT_S:-120}" "${DETERMINISM_LIMIT_S:-30}"
            "${MEMCHECK_LIMIT_S:-60}")
fi
fixed=0
for l in "${LIMITS[@]}"; do fixed=$((fixed + l)); done
LIMITS+=($((BUDGET - fixed)))
plan=""
for i in "${!NAMES[@]}"; do plan+="${plan:+, }${NAMES[i]} ${LIMITS[i]} s"; done
if ((LIMITS[-1] < ${GPU_RUN_MIN_LAST_S:-60})); then
    echo "gpu_run.sh: the steps' limits ($plan) leave ${NAMES[-1]} under ${GPU_RUN_MIN_LAST_S:-60} s of GPU_RUN_BUDGET_S=$BUDGET" >&2
    exit 2
fi
limit_of() { local i; for i in "${!NAMES[@]}"; do [[ ${NAMES[i]} == "$1" ]] && echo "${LIMITS[i]}"; done; }

# step NAME COMMAND: runs COMMAND (a bash command line) with output to $OUT/NAME.log under
# min(its limit, time left) seconds; appends its line to steps.txt at once. A dry run
# writes the log and the line with a stand-in instead (`true`; GPU_RUN_DRY_HANG: a sleep).
step() {
    local name=$1 cmd=$2 limit
    limit=$(limit_of "$name")
    if [[ " ${GPU_RUN_SKIP:-} " == *" $name "* ]]; then
        log "step $name: skipped (GPU_RUN_SKIP)"
        return 0
    fi
    if [[ -n ${SKIP_REST:-} ]]; then
        log "step $name: skipped ($SKIP_REST)"
        return 0
    fi
    local left=$((DEADLINE - $(now)))
    [[ $name == "${NAMES[-1]}" ]] && limit=$left  # the last step: all the time left
    ((limit > left)) && limit=$left
    if ((limit < MIN_STEP)); then
        log "step $name: skipped (${left} s left of GPU_RUN_BUDGET_S=$BUDGET)"
        return 0
    fi
    echo "=== $name (limit $limit s): $cmd"
    local run=$cmd
    if ((DRY)); then
        run=true
        [[ ${GPU_RUN_DRY_HANG:-} == "$name" ]] && run="sleep 600"
        echo "dry run: would run: $cmd" >"$OUT/$name.log"
    fi
    local t0 rc why="" took
    t0=$(date +%s)
    timeout -s INT -k 20 "$limit" bash -c "$run" >>"$OUT/$name.log" 2>&1
    rc=$?
    took=$(($(date +%s) - t0))
    ((rc == 124 || rc == 137)) && why=" (time limit)"
    if ((DRY)); then
        why+=" (dry run: counted as its whole limit)"
        DRY_ELAPSED=$((DRY_ELAPSED + limit))
    fi
    log "step $name: rc=$rc$why, $took s of $limit s$(summary "$name")"
    return $rc
}

# The line a step's log ends with that says how it went.
summary() {
    local f=$OUT/$1.log s=""
    [[ -f $f ]] && ((!DRY)) || return 0
    case $1 in
        tests* | determinism) s=$(grep -E "^(=+ )?[0-9]+ (passed|failed|error|skipped|deselected)|no tests ran" "$f" | tail -n 2 | tr '\n' ';') ;;
        memcheck) s=$(grep -E "ERROR SUMMARY|sanitize_cuda: [0-9]+ forward" "$f" | tail -n 2 | tr '\n' ';') ;;
        bench) s=$(grep -E "^bench: (results in|.*regress|.*ratio\(s\))|passed|failed" "$f" | tail -n 2 | tr '\n' ';') ;;
        build) s=$(grep -E "fastwarp backends:|^ERROR|error:" "$f" | tail -n 1) ;;
    esac
    [[ -n $s ]] && echo ": ${s%;}"
}

{
    echo "gpu_run.sh at $(date -u +%FT%TZ), mode $MODE$( ((DRY)) && echo ', DRY RUN (nothing heavy runs)'), budget $BUDGET s"
    echo "plan: $plan"
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo "${FASTWARP_COMMIT:-unknown (no .git here: pass FASTWARP_COMMIT)}")"
    echo "cpus: $(nproc), load: $(cut -d' ' -f1-3 /proc/loadavg)"
    if ((!DRY)); then
        nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu \
            --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
        echo "python: $(command -v "$PY") $("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1)"
        "$PY" -c 'import torch, triton; print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton.__version__}, cuda available: {torch.cuda.is_available()}")' 2>&1 | tail -1
        echo "nvcc: $(nvcc --version 2>&1 | tail -1)"
        echo "compute-sanitizer: $(compute-sanitizer --version 2>&1 | grep -i version | head -1)"
    fi
} | tee "$STEPS"

# --- deps: Python packages the tests and benchmarks need (no internet there) -----------------
if ((DRY)); then
    missing="(not checked in a dry run)"
else
    missing=$("$PY" - <<'EOF'
import importlib.util, shutil
need = {"numpy": "numpy", "pytest": "pytest", "pytest_benchmark": "pytest-benchmark", "setuptools": "setuptools"}
missing = [pkg for mod, pkg in need.items() if importlib.util.find_spec(mod) is None]
if shutil.which("ninja") is None:
    missing.append("ninja")  # torch builds extensions with it (without: slow serial builds)
print(" ".join(missing))
EOF
)
fi
if [[ -z $missing ]]; then
    log "step deps: rc=0, all present (numpy, pytest, pytest-benchmark, setuptools, ninja)"
elif ((DRY)) || [[ -d gpu_carry/wheels ]]; then
    step deps "'$PY' -m pip install --no-index --find-links gpu_carry/wheels $missing"
    tail -n 3 "$OUT/deps.log" | sed 's/^/  deps: /' | tee -a "$STEPS"
    rm -f "$OUT/deps.log"  # $OUT returns 8 files at most; its tail is in steps.txt
else
    log "step deps: rc=1, MISSING: $missing and no gpu_carry/wheels to install them from (no internet there):" \
        "run \`make gpu-carry\` where pip works and carry gpu_carry/"
fi

# --- build: this GPU's architecture only, all cores ---------------------------------------------
if [[ -z ${TORCH_CUDA_ARCH_LIST:-} ]]; then
    if ((DRY)); then
        TORCH_CUDA_ARCH_LIST="<this GPU's compute_cap>"
    else
        TORCH_CUDA_ARCH_LIST=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ')
        [[ $TORCH_CUDA_ARCH_LIST =~ ^[0-9]+\.[0-9]+$ ]] ||
            TORCH_CUDA_ARCH_LIST=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null)
    fi
fi
export TORCH_CUDA_ARCH_LIST MAX_JOBS=${MAX_JOBS:-$(nproc)}

# gpu_prebuilt/ (make gpu-prebuilt, carried along): fastwarp._C built elsewhere for this
# machine's Python, torch and GPU from these very sources; used instead of the build where
# all of that matches (PREBUILT_WHY says why not).
prebuilt_ok() {
    local m=gpu_prebuilt/manifest.txt field
    [[ -f $m ]] || { PREBUILT_WHY="no gpu_prebuilt/ (make gpu-prebuilt, then carry it)"; return 1; }
    field() { sed -n "s/^$1=//p" "$m"; }
    PREBUILT_TAG=$(field python_tag)
    local here_tag here_torch
    here_tag=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))" 2>/dev/null)
    here_torch=$("$PY" -c "import torch; print(torch.__version__)" 2>/dev/null)
    if [[ $PREBUILT_TAG != "$here_tag" ]]; then PREBUILT_WHY="built for $PREBUILT_TAG, this Python is $here_tag"
    elif [[ $(field torch) != "$here_torch" ]]; then PREBUILT_WHY="built against torch $(field torch), this is $here_torch"
    elif [[ ";$(field archs);" != *";$TORCH_CUDA_ARCH_LIST;"* ]]; then
        PREBUILT_WHY="built for $(field archs), this GPU is $TORCH_CUDA_ARCH_LIST"
    elif [[ $(field sources) != "$(bash bench/source_hash.sh)" ]]; then PREBUILT_WHY="built from other sources (csrc/, setup.py)"
    elif [[ ! -f gpu_prebuilt/_C$PREBUILT_TAG ]]; then PREBUILT_WHY="gpu_prebuilt/_C$PREBUILT_TAG is missing"
    else return 0
    fi
    return 1
}
check_cuda="'$PY' -c 'import fastwarp; b = fastwarp.backends(); print(\"fastwarp backends:\", b); raise SystemExit(0 if b.get(\"cuda\") else 3)'"
if ((DRY == 0)) && prebuilt_ok; then
    log "build: gpu_prebuilt/ matches this machine (python $PREBUILT_TAG, torch, $TORCH_CUDA_ARCH_LIST, sources): no build"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the tree itself is the package (no pip install)
    build_cmd="cp gpu_prebuilt/_C$PREBUILT_TAG fastwarp/ && $check_cuda"
else
    ((DRY)) || log "build: not from gpu_prebuilt/: $PREBUILT_WHY"
    log "build: TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
    build_cmd="FASTWARP_FORCE_CUDA=1 '$PY' -m pip install --no-build-isolation --no-deps -v -e . && $check_cuda"
fi
if ! step build "$build_cmd"; then
    SKIP_REST="the build failed: see build.log"
    tail -n 12 "$OUT/build.log"
fi

# --- the tests ---------------------------------------------------------------------------------
pytest="'$PY' -m pytest -q -p no:cacheprovider -p gpu_tests"
export PYTHONPATH=$PWD/bench${PYTHONPATH:+:$PYTHONPATH}  # bench/gpu_tests.py, the subset plugin
op_tests="tests/test_ops.py tests/test_theta.py tests/test_mesh_flow.py"
if [[ $MODE == full ]]; then
    workers=""
    if ((!DRY)) && "$PY" -c 'import xdist' 2>/dev/null && ((${GPU_TESTS_WORKERS:-8} > 1)); then
        workers="-n ${GPU_TESTS_WORKERS:-8}"
    fi
    # A test module that cannot import there (a package the GPU image lacks) must not stop the rest.
    step tests-full "$pytest tests -m 'needs_cuda or triton' --continue-on-collection-errors $workers"
else
    step tests "$pytest --gpu-subset core $op_tests; a=\$?;
        echo '--- the CUDA cases again, generic kernels only (FASTWARP_CUDA_GENERIC=1)';
        FASTWARP_CUDA_GENERIC=1 $pytest --gpu-subset core -k cuda $op_tests; b=\$?;
        exit \$((a > b ? a : b))"
    grep -E "^(FAILED|ERROR)" "$OUT/tests.log" 2>/dev/null | head -n 20

    step determinism "$pytest --gpu-subset determinism $op_tests"

    # Without the caching allocator every tensor is its own allocation, so an access past a
    # tensor's end is seen (inside a cached block it would land in a neighbour).
    step memcheck "PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 99 \
        --print-limit 20 '$PY' bench/sanitize_cuda.py --quick"

    # bench/run.py starts no benchmark in the last 45 s of its limit (a compilation or the
    # biggest case can take that long), so its JSON holds everything that ran.
    bench_budget=$((DEADLINE - $(now) - 45))
    ((bench_budget < 10)) && bench_budget=10
    bench_k=${BENCH_K-copy or 32x3x256x256-bfloat16 or warp_blend-forward-8x3x512x512-flow128}
    step bench "'$PY' bench/run.py --copy-to '$OUT' --bench-budget-s $bench_budget ${GPU_RUN_BASELINE:+--record-baseline} \
        ${bench_k:+-k '$bench_k'} ${BENCH_ARGS:-}"
    ratios=$(ls -t "$OUT"/*-ratios.txt 2>/dev/null | head -n 1)
    if [[ -n $ratios ]]; then
        echo "--- $(basename "$ratios"): the whole table is in that file; its summary:"
        sed -n '/^summary/,$p' "$ratios"
    fi
    if [[ -n ${GPU_RUN_BASELINE:-} ]] && grep -q "baseline recorded" "$OUT/bench.log" 2>/dev/null; then
        log "baseline: bench/results/<key>-baseline.json there is $OUT/<key>-latest.json: copy it into" \
            "bench/results/<key>-baseline.json here and commit it"
    fi
fi

log "done: $(($(now) - START)) s of $BUDGET s"
