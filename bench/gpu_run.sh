#!/usr/bin/env bash
# The GPU benchmarks (bench/bench_gpu.py) on a GPU machine that has no network: unpack the
# packages bench/gpu_bundle.sh packed into .gpu/ (pieces, each checked against SHA256SUMS),
# make a Python environment of them over the machine's own torch, and run the build, paged,
# triton, run and train stages. Figures and logs go to $OUT.
#
#   bash bench/gpu_run.sh [DEADLINE_S]     # stages that could not finish in time are skipped
#
# PIECES: where the pieces are (default .gpu; they may arrive in several transfers, copied to
# one folder first). PYTHON: the machine's interpreter with torch (default: python3 on PATH).
# The environment (/tmp/shaping-env) puts the bundle's packages first: numpy 1.26 there, which
# the Triton Python-backend stub needs, shadows the machine's numpy 2.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
WORK=${WORK:-/tmp/gpu-work}
PIECES=${PIECES:-.gpu}
PYTHON=${PYTHON:-$(command -v python3)}
SITE=${SITE:-/tmp/shaping-site}
ENV_DIR=${ENV_DIR:-/tmp/shaping-env}
DEADLINE=${1:-480}
mkdir -p "$OUT" "$WORK/logs"
exec > >(tee -a "$OUT/run.log") 2>&1
began=$(date +%s)
say() { echo "[gpu_run $(($(date +%s) - began)) s] $*"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || say "no nvidia-smi"

if [ ! -d "$SITE" ]; then
    say "checking and unpacking the bundle from $PIECES"
    (cd "$PIECES" && grep -E 'bundle\.tar\.xz\.[0-9]+$' SHA256SUMS | sha256sum --check --quiet) || {
        say "a piece is missing or damaged"
        exit 3
    }
    mkdir -p "$SITE.partial"
    cat "$PIECES"/bundle.tar.xz.* | xz -d -T0 | tar -x -C "$SITE.partial" --strip-components=1 || {
        say "unpacking failed"
        exit 3
    }
    mv "$SITE.partial" "$SITE"
fi

base_site=$("$PYTHON" -c 'import site; print(site.getsitepackages()[0])')
if [ ! -x "$ENV_DIR/bin/python" ]; then
    "$PYTHON" -m venv --without-pip "$ENV_DIR" || { say "python -m venv failed"; exit 3; }
    env_site=$("$ENV_DIR/bin/python" -c 'import site; print(site.getsitepackages()[0])')
    # The bundle first, then the machine's packages (torch, transformers, ...), .pth files read.
    echo "import site; site.addsitedir('$SITE'); site.addsitedir('$base_site')" >"$env_site/00-shaping.pth"
fi
PY="$ENV_DIR/bin/python"
# The trainer's own environment, the other way round: the machine's packages first (its numpy 2,
# and the pandas and scipy built for it, which torch, TRL and datasets import), the bundle after.
TRAIN_ENV=${TRAIN_ENV:-/tmp/shaping-train-env}
if [ ! -x "$TRAIN_ENV/bin/python" ]; then
    "$PYTHON" -m venv --without-pip "$TRAIN_ENV" || { say "python -m venv failed"; exit 3; }
    train_site=$("$TRAIN_ENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
    echo "import site; site.addsitedir('$base_site'); site.addsitedir('$SITE')" >"$train_site/00-shaping.pth"
fi
export TRAIN_PYTHON="$TRAIN_ENV/bin/python"

# CUDA's libraries from the machine's nvidia-* packages (onnxruntime-gpu links libcublas.so.13 and
# the rest by name), and this interpreter's libpython for the Triton stub if sysconfig's LIBDIR lacks it.
cuda_libs=$(find "$base_site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
libdir=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
if ! ls "$libdir"/libpython3.*.so* >/dev/null 2>&1; then
    found=$(find / -xdev -name "libpython$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")').so*" 2>/dev/null | head -1)
    say "no libpython in $libdir; found: ${found:-none}"
    [ -n "$found" ] && cuda_libs="$cuda_libs:$(dirname "$found")"
fi
export LD_LIBRARY_PATH="$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

"$PY" - <<'EOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("numpy", "torch", "transformers", "onnxruntime", "onnxruntime_genai", "trl", "peft", "django", "huey", "tritonclient"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')} {module.__file__}")
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}")
import onnxruntime, torch
print("onnxruntime providers", onnxruntime.get_available_providers(), "| torch sees", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
EOF
"$TRAIN_PYTHON" -c 'import numpy, pandas, torch, trl, datasets, peft; print("trainer: numpy", numpy.__version__, "pandas", pandas.__version__, "trl", trl.__version__, "datasets", datasets.__version__)' ||
    say "the trainer's environment does not import"

left=$((DEADLINE - ($(date +%s) - began)))
say "bench_gpu.py with $left s left"
"$PY" bench/bench_gpu.py --work "$WORK" --json "$OUT/figures.jsonl" --logs "$WORK/logs" \
    --stages "${STAGES:-build,paged,triton,run,train}" --quick --no-static-build \
    --cache-fraction "${CACHE_FRACTION:-0.1}" --train-steps "${TRAIN_STEPS:-8}" --deadline-s "$left" ${BENCH_ARGS:-}
code=$?
for log in "$WORK"/logs/*.log; do
    [ -f "$log" ] && tail -c 300000 "$log" >"$OUT/$(basename "$log")"
done
say "done, exit $code"
exit $code
