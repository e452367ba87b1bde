#!/usr/bin/env bash
# GPU check for a machine with a CUDA GPU (about 8 minutes on an H200; not yet run with the workloads): device, GPU tests, GPU vs CPU
# results, and grid throughput on JAX and CuPy against numpy. Packages the GPU image lacks
# can travel as wheels in .whl/ (installed to /tmp/site, no network needed).
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
echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m stresstest.cli info
echo "== GPU tests (jax and cupy on the GPU against numpy and the reference)"
timeout 150 python3 -m pytest -q -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" \
  "$REPO/tests/test_engine.py" "$REPO/tests/test_irr.py" "$REPO/tests/test_factoring.py" \
  "$REPO/tests/test_model_vs_reference.py::test_random_portfolios_match_reference_compiled" 2>&1 | tail -15
echo "== GPU vs CPU on random grids"
timeout 90 python3 "$REPO/benchmarks/gpu_compare.py"
echo "== throughput"
timeout 150 python3 "$REPO/benchmarks/bench_grid.py" --backends jax,cupy,numpy --sizes default,1e7 \
  --numpy-limit 50000 --repeats 3 2>&1 | tee "$OUT/bench.txt"
echo "== workloads W1, W3, W4 at GPU sizes (JAX, then CuPy; W3 needs JAX)"
timeout 150 python3 "$REPO/benchmarks/bench_workloads.py" --backend jax --only W1,W3,W4 --w4 1e7 --repeats 3 \
  2>&1 | tee "$OUT/workloads_jax.txt"
timeout 90 python3 "$REPO/benchmarks/bench_workloads.py" --backend cupy --only W1,W4 --w4 1e6 --repeats 3 \
  2>&1 | tee "$OUT/workloads_cupy.txt"
