#!/usr/bin/env bash
# The GPU check in one call, from the repository root of a machine with an NVIDIA GPU:
#
#   bash benchmarks/gpu_check.sh [SUMMARY_FILE]   # default: $OUT/gpu_check.md, else studies/gpu_check-<time>/
#
# 1. environment: the Python whose torch sees CUDA (.venv, made by `make install` where a
#    package index answers; else the machine's python3), and whether it can run studies;
# 2. device placement and bf16 autocast of an unpacked trial and a pack (benchmarks/gpu_checks.py);
# 3. packs against their unpacked twins on CUDA (tests/test_pack.py with VAE_STUDY_TEST_DEVICE=cuda);
# 4. a study of 4 trials in 2 packs of 2 on the GPU through the real CLI (`vae-study run`);
# 5. benchmarks/throughput.py --largest (eager bf16, K doubled until memory runs out) and one
#    compiled bf16 row at K = 64.
# Every step has its own time limit and the whole check a budget (GPU_CHECK_BUDGET seconds,
# default 450); a step that would start past it is skipped and named. The summary (device,
# versions, each step's PASS/FAIL/SKIP and figures) is written to SUMMARY_FILE and printed;
# step logs (at most 7 files) go beside it. Without a GPU it says so and exits 0; otherwise it exits 1 if a step failed.
set -u
cd "$(dirname "$0")/.."
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-450}
if [ -n "${1:-}" ]; then
    SUMMARY=$1
elif [ -n "${OUT:-}" ]; then
    SUMMARY=$OUT/gpu_check.md
else
    SUMMARY=studies/gpu_check-$(date +%Y%m%d-%H%M%S)/gpu_check.md
fi
mkdir -p "$(dirname "$SUMMARY")"
LOGS=$(dirname "$SUMMARY")
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296
export PYTHONUNBUFFERED=1
FAILED=0
: >"$SUMMARY"

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
# step NAME LIMIT_S LOG CMD...: runs CMD with min(LIMIT_S, budget left) seconds; records the outcome.
step() {
    local name=$1 limit=$2 log=$3 rc began
    shift 3
    local remaining
    remaining=$(left)
    if [ "$remaining" -lt 30 ]; then
        say "- SKIP $name: ${remaining}s of the ${BUDGET}s budget left"
        return 99
    fi
    [ "$limit" -gt "$remaining" ] && limit=$remaining
    began=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    tail -n 25 "$log"
    if [ $rc -eq 0 ]; then
        say "- PASS $name ($(($(date +%s) - began)) s)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        say "- FAIL $name: timed out after ${limit}s (log: $(basename "$log"))"
        FAILED=1
    else
        say "- FAIL $name: exit $rc (log: $(basename "$log"))"
        FAILED=1
    fi
    return $rc
}

say "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say ""

# --- 0. Is there a GPU at all? -------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    say "No NVIDIA GPU here (nvidia-smi missing or finds no device): nothing to check."
    exit 0
fi
say "device: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n 1)"

# --- 1. Environment --------------------------------------------------------------------------
# probe PYTHON: "cuda=<0|1> torch=<version> cuda_build=<version> study=<0|1>"
probe() {
    "$1" - <<'EOF' 2>/dev/null
import importlib.util
try:
    import torch
    cuda = int(torch.cuda.is_available())
    version, build = torch.__version__, torch.version.cuda
except Exception:
    cuda, version, build = 0, "none", None
study = int(all(importlib.util.find_spec(m) for m in ("ray", "optuna", "mlflow", "pydantic", "yaml", "pandas")))
print(f"cuda={cuda} torch={version} cuda_build={build} study={study}")
EOF
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

if [ ! -x .venv/bin/python ]; then
    # `make install` needs a package index: try one small look-up first (no index: no hang).
    if PIP_DEFAULT_TIMEOUT=5 PIP_RETRIES=0 timeout 30 python3 -m pip download -q --no-deps --no-cache-dir \
        -d "$(mktemp -d)" pyyaml >/dev/null 2>&1; then
        step "make install (.venv with torch==2.13.0)" 420 "$LOGS/install.log" make install
    else
        say "- SKIP make install: no package index answers here; using the machine's python3"
    fi
fi
PY=""
STUDY_PY=""
for candidate in .venv/bin/python python3; do
    command -v "$candidate" >/dev/null 2>&1 || continue
    info=$(probe "$candidate")
    say "- python \`$candidate\`: torch $(field "$info" torch), CUDA build $(field "$info" cuda_build), sees the GPU: $( [ "$(field "$info" cuda)" = 1 ] && echo yes || echo no), Ray/Optuna/MLflow/pydantic: $( [ "$(field "$info" study)" = 1 ] && echo yes || echo no)"
    if [ "$(field "$info" cuda)" = 1 ]; then
        [ -z "$PY" ] && PY=$candidate
        [ -z "$STUDY_PY" ] && [ "$(field "$info" study)" = 1 ] && STUDY_PY=$candidate
    elif [ "$candidate" = .venv/bin/python ]; then
        say "  .venv's torch has no usable CUDA (a CPU build, or a CUDA build the driver cannot run):" \
            "reinstall with a CUDA wheel, e.g. \`make clean install TORCH_INDEX=https://download.pytorch.org/whl/cu128\`"
    fi
done
# The study's dependencies carried as wheels (device machines without an index: .whl/ at the root).
if [ -n "$PY" ] && [ -z "$STUDY_PY" ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    [ "$(field "$(probe "$PY")" study)" = 1 ] && STUDY_PY=$PY && say "- study dependencies installed from .whl/"
fi
if [ -z "$PY" ]; then
    say ""
    say "No Python here has a torch that sees the GPU: the CUDA checks cannot run (see the lines above)."
    exit 0
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
say "- checks run with \`$PY\`: $("$PY" -c 'import torch; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}")')"
say ""
say "## Checks"

# --- 2. Placement and bf16 autocast ----------------------------------------------------------
step "placement and bf16 autocast (benchmarks/gpu_checks.py --device cuda)" 120 "$LOGS/gpu_checks.log" \
    "$PY" benchmarks/gpu_checks.py --device cuda --steps 40
grep -E '^(PASS|FAIL) ' "$LOGS/gpu_checks.log" | sed 's/^/  - /' | tee -a "$SUMMARY"

# --- 3. Packs against their unpacked twins on CUDA --------------------------------------------
# --noconftest: tests/conftest.py imports the study scaffolding (MLflow); these tests need only trainers/.
step "packs vs unpacked twins on CUDA (tests/test_pack.py)" 150 "$LOGS/test_pack.log" \
    env VAE_STUDY_TEST_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider --noconftest tests/test_pack.py
grep -E '(passed|failed|error)' "$LOGS/test_pack.log" | tail -n 1 | sed 's/^/  - /' | tee -a "$SUMMARY"

# --- 4. A study of 2 packs of 2 on the GPU through the CLI -------------------------------------
STUDY_DIR=$(mktemp -d)/gpu-pack-study
SPEC=$(dirname "$STUDY_DIR")/spec.yaml
cat >"$SPEC" <<'EOF'
name: gpu-pack-study
variant: beta_vae
dataset: dsprites
model: {latent_dim: 10}
training: {steps: 2000, batch_size: 64, lr: 0.001, precision: bf16, device: cuda, log_every: 100,
           checkpoint_every: 1000, pack_size: 2}
evaluation: {recon_points: 1024, udr_points: 200, metrics: [mig], metric_options: {mig: {num_points: 2000}}}
seeds: [0]
weights:
  beta: {schedule: constant, value: {low: 1, high: 16, log: true}}
objectives:
  - {name: recon, mode: min}
  - {name: mig, mode: max}
search: {num_trials: 4, max_concurrent: 2, sampler: random, seed: 0}
resources: {cpus: 2, gpus: 0.5}
tracking: {flush_every: 500}
EOF
if [ -z "$STUDY_PY" ]; then
    say "- SKIP 2-pack study on the GPU: no Python here has both a CUDA torch and Ray, Optuna, MLflow and pydantic" \
        "(carry them as wheels in .whl/, or run where \`make install\` reaches a package index)"
else
    # nvidia-smi's compute processes while the study runs: the trials' own processes on the GPU.
    (while sleep 2; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader; done) \
        >"$STUDY_DIR.gpu_procs" 2>/dev/null &
    WATCH=$!
    step "2-pack study on the GPU (vae-study run, 4 trials, pack_size 2, gpus 0.5)" 240 "$LOGS/study.log" \
        "$STUDY_PY" -m study.cli run "$SPEC" --study-dir "$STUDY_DIR"
    kill "$WATCH" 2>/dev/null
    wait "$WATCH" 2>/dev/null
    say "  - GPU processes seen during the study: $(cut -d, -f1 "$STUDY_DIR.gpu_procs" | sort -u | grep -c .)," \
        "most memory one held: $(cut -d, -f2 "$STUDY_DIR.gpu_procs" | tr -dc '0-9\n' | sort -n | tail -n 1) MiB"
    if [ -f "$STUDY_DIR/results.parquet" ]; then
        "$STUDY_PY" - "$STUDY_DIR/results.parquet" <<'EOF' | sed 's/^/  - /' | tee -a "$SUMMARY"
import sys

import pandas as pd

df = pd.read_parquet(sys.argv[1])
print(f"{len(df)} trials in {df['pack_id'].nunique()} packs (sizes {sorted(df['pack_size'].unique().tolist())}),"
      f" status {df['status'].value_counts().to_dict()}")
print(f"images/s per member: {', '.join(f'{v:,.0f}' for v in df['images_per_second'])};"
      f" train {df['train_seconds'].median():.1f} s, eval {df['eval_seconds'].median():.1f} s (medians)")
if len(df) != 4 or df["pack_id"].nunique() != 2 or (df["status"] != "completed").any():
    sys.exit("expected 4 completed trials in 2 packs")
EOF
        [ "${PIPESTATUS[0]}" -eq 0 ] || { say "  - FAIL: the study's results are not 4 completed trials in 2 packs"; FAILED=1; }
    fi
fi

# --- 5. Throughput -----------------------------------------------------------------------------
step "throughput.py --largest (eager-bf16, K from 1 and 64, doubled until out of memory)" 170 \
    "$LOGS/throughput_largest.log" "$PY" benchmarks/throughput.py --modes eager-bf16 --ks 1 64 --largest --steps 3
say '```'
tee -a "$SUMMARY" <"$LOGS/throughput_largest.log" >/dev/null
say '```'
step "throughput.py compiled-bf16 at K = 64" 150 "$LOGS/throughput_compiled.log" \
    "$PY" benchmarks/throughput.py --modes compiled-bf16 --ks 64 --steps 3
say '```'
tee -a "$SUMMARY" <"$LOGS/throughput_compiled.log" >/dev/null
say '```'

say ""
say "total $(($(date +%s) - START)) s of the ${BUDGET} s budget; $( [ $FAILED = 0 ] && echo 'all steps passed' || echo 'some steps FAILED')"
echo
echo "summary: $SUMMARY"
cat "$SUMMARY"
exit $FAILED
