#!/usr/bin/env bash
# One-shot GPU check, for whenever an NVIDIA GPU (sm_80 or newer) is at hand: a clean build,
# every cuda test on the real GPU, then `benchmarks/run.py --device cuda` and the ndl.jit rows
# (ResNet9 batch 256: eager, jit with CUDA graphs, jit without, torch + cuDNN), written as one
# markdown report. About 6 minutes on one H100; each step has a time limit, so the whole run
# stays under 10 minutes (a step that runs out is reported as such).
#
#     bash benchmarks/gpu_check.sh [report.md]      # default: gpu_report.md
#
# PYTHON picks the interpreter (default: python), NEEDLE_CUDA_ARCHITECTURES the GPUs (80;90).
set -uo pipefail
cd "$(dirname "$0")/.."
REPORT="$(realpath -m "${1:-gpu_report.md}")"
PY="${PYTHON:-python}"
LOGS="$(mktemp -d)"
unset NEEDLE_CUDA_EMULATOR NEEDLE_CUDA_TF32  # the real backend, FP32 by default
START=$SECONDS
status=0

section() { printf '\n## %s\n\n' "$1" >>"$REPORT"; }
elapsed() { echo "$((SECONDS - START)) s"; }
# Appends the last lines of a log as a code block.
log_tail() { { echo '```'; tail -n "$2" "$1"; echo '```'; } >>"$REPORT"; }

gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
{
  echo "# needle GPU check"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), ${gpu:-no nvidia-smi}, $(nvcc --version 2>/dev/null | tail -1)," \
       "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$REPORT"

section "1. Clean build"
rm -rf build
if timeout 160 env NEEDLE_CUDA_EMULATOR=OFF "$PY" -m pip install --no-build-isolation -e . >"$LOGS/build.log" 2>&1 &&
   "$PY" -c "import needle as ndl; d = ndl.cuda(); assert d.enabled() and not d.emulated, 'cuda() not enabled'" \
     >>"$LOGS/build.log" 2>&1; then
  echo "Built and \`needle.cuda()\` is enabled on the GPU ($(elapsed))." >>"$REPORT"
else
  echo "**Build failed or the GPU is not usable** ($(elapsed)):" >>"$REPORT"
  log_tail "$LOGS/build.log" 40
  echo "Report: $REPORT"
  exit 1
fi

section "2. Every cuda test"
timeout 170 "$PY" -m pytest -q -k cuda -rfE -p no:cacheprovider >"$LOGS/tests.log" 2>&1
rc=$?
[ "$rc" -eq 0 ] || status=1
[ "$rc" -eq 124 ] && echo "**Stopped at the time limit.**" >>"$REPORT"
echo "\`python -m pytest -q -k cuda\`, exit $rc ($(elapsed)):" >>"$REPORT"
grep -E "^(FAILED|ERROR) " "$LOGS/tests.log" | head -40 >"$LOGS/failures" || true
if [ -s "$LOGS/failures" ]; then log_tail "$LOGS/failures" 40; fi
log_tail "$LOGS/tests.log" 1

section "3. Benchmarks: \`benchmarks/run.py --device cuda\`"
if timeout 140 "$PY" benchmarks/run.py --device cuda >"$LOGS/bench.log" 2>&1; then
  cat "$LOGS/bench.log" >>"$REPORT"
else
  status=1
  echo "**The benchmarks failed or ran out of time** ($(elapsed)):" >>"$REPORT"
  log_tail "$LOGS/bench.log" 40
fi

section "4. ndl.jit: \`benchmarks/bench_jit.py --device cuda\`"
# jit = replayed as CUDA graphs; jit_nograph = NEEDLE_JIT_GRAPHS=0, replayed call by call.
if timeout 100 "$PY" benchmarks/bench_jit.py --device cuda --model resnet9 --batch 256 --steps 10 \
     --rounds 1 >"$LOGS/jit.log" 2>&1; then
  log_tail "$LOGS/jit.log" 8
else
  status=1
  echo "**The jit benchmark failed or ran out of time** ($(elapsed)):" >>"$REPORT"
  log_tail "$LOGS/jit.log" 40
fi

printf '\nTotal: %s.\n' "$(elapsed)" >>"$REPORT"
echo "Report: $REPORT"
exit "$status"
