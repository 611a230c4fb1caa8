#!/usr/bin/env bash
# Engine benchmarks side by side with the Python tools labs use, on identical
# inputs, one workload per process. Results go to target/bench/engine.jsonl;
# BENCHMARKS.md records them. Usage: scripts/bench_engine.sh [WORKLOAD ...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$NEURALIGN_ROOT"
bash scripts/fixtures.sh >/dev/null   # installs the pinned reference packages
pip install -q himalaya==0.4.11
dir="$NEURALIGN_ROOT/target/bench/engine"; mkdir -p "$dir"
[ -f "$dir/pls_splits.json" ] || python bench/engine_reference.py prepare "$dir"
cargo build -q --release -p neuralign-engine --benches
workloads=("${@:-matmul rsa_bootstrap ridge pls cka}"); workloads=(${workloads[*]})
for w in "${workloads[@]}"; do
  echo "== $w"
  cargo bench -q -p neuralign-engine --bench engine -- "$w" "$dir" | tee -a "$dir/../engine.jsonl"
  cargo bench -q -p neuralign-engine --bench engine -- "${w}_f32" "$dir" 2>/dev/null | tee -a "$dir/../engine.jsonl" || true
  # numpy with the machine's OpenBLAS core-type override removed, as labs run it.
  [ -n "${BENCH_SKIP_PYTHON:-}" ] && continue
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/engine_reference.py "$w" "$dir" | sed 's/^/python: /' | tee -a "$dir/../engine.jsonl"
  [ "$w" = ridge ] && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/engine_reference.py ridge_sklearn "$dir" | sed 's/^/python: /' | tee -a "$dir/../engine.jsonl"
done
