#!/usr/bin/env bash
# GPU check for a machine with a CUDA GPU, in about 5 minutes (its steps' time limits add up to
# 325 s; not yet run on a GPU): device, the GPU tests, GPU vs CPU results on random grids,
# W1, W3 and W4 at GPU sizes on JAX and CuPy against numpy, in one table, and the first answer
# (`stresstest run` on the example's default grid, cold and warm). Packages the GPU image lacks
# can travel as wheels in .whl/ (installed to /tmp/site, no network needed). A dry run on a CPU,
# at sizes for it: PATH=$PWD/.venv/bin:$PATH W1=1e5 W3=2e4 W4=2e4 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# the package as the wheel lays it out (no build tools needed): kernels and scenarios inside it
mkdir -p /tmp/site && rm -rf /tmp/site/stresstest && cp -r stresstest /tmp/site/stresstest \
  && cp -r kernels /tmp/site/stresstest/kernels && cp -r scenarios /tmp/site/stresstest/scenarios || exit 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
cd /tmp   # import the installed package, not the source tree
REPO=$OLDPWD
T0=$SECONDS
step() { echo "== $1 (at $((SECONDS - T0)) s)"; }
step device; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 20 python3 -m stresstest.cli info
step "GPU tests: those marked gpu (the CuPy cases) and JAX's backend-agreement cases, on the GPU"
# in one process: the suite's two xdist workers (pyproject's addopts) would each take JAX's
# share of the GPU's memory, and the device machine may not have pytest-xdist
timeout 80 python3 -m pytest -q -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" \
  -o addopts="-ra --import-mode=importlib" \
  -k "gpu or (jax and (backends_agree or batch_shape))" "$REPO/tests/test_engine.py" \
  "$REPO/tests/test_factoring.py" "$REPO/tests/test_irr.py" "$REPO/tests/test_model_vs_reference.py" \
  "$REPO/tests/test_reference_model.py" 2>&1 | tail -8
step "GPU vs CPU on random grids (1e-10 relative, float64)"
timeout 45 python3 "$REPO/benchmarks/gpu_compare.py" 3   # three random grids (each a JAX compile)
step "workloads W1, W3, W4 at GPU sizes, each on JAX then CuPy (W3 needs JAX), one table at the end"
timeout -k 5 135 python3 "$REPO/benchmarks/bench_workloads.py" --backend jax,cupy --only W1,W3,W4 \
  --w1 "${W1:-1e7}" --w3 "${W3:-1e6}" --w4 "${W4:-1e6}" --repeats 3 --numpy-repeats 1 --numpy-limit 20000 --no-plain --budget 100 \
  2>&1 | tee "$OUT/workloads.txt"
step "the first answer: stresstest run on the default grid, an empty compile cache, then a filled one"
timeout 40 python3 "$REPO/benchmarks/bench_first_answer.py" --runs 1 2>&1 | tail -5 | tee "$OUT/first_answer.txt"
echo "== done in $((SECONDS - T0)) s"
