#!/usr/bin/env bash
# Prepares what bench/gpu_check.sh needs on a CUDA machine that has torch, triton, numpy, sentencepiece
# and pytest but no network: golf's other dependencies as Python 3.12 manylinux wheels, and the data and
# reference script the benches read (../shared does not travel with the repository).
#   bash bench/gpu_prep.sh            # writes gpu_carry/ (git-ignored); then carry it with the repository
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=gpu_carry
SHARED=${SHARED:-../shared}
mkdir -p "$OUT/wheels" "$OUT/data/datasets" "$OUT/data/tokenizers"
# pure-Python or cp312 wheels: hydra + omegaconf (+ antlr4 4.9.3, sdist only: built here), PyYAML,
# zstandard, brotli, python-minifier, tqdm, submitit + cloudpickle (the launcher plugin)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 -d "$OUT/wheels" \
  hydra-core==1.3.8 "omegaconf>=2.3,<2.4" "PyYAML>=6" "zstandard>=0.22" "brotli>=1.1,<2" \
  "python-minifier>=3.4,<4" "tqdm>=4.66,<5" "submitit>=1.5,<2" cloudpickle hydra-submitit-launcher==1.2.0
$PY -m pip wheel -q --no-deps -w "$OUT/wheels" antlr4-python3-runtime==4.9.3
cp -r "$SHARED/data/datasets/fineweb10B_sp1024_valprefix" "$OUT/data/datasets/"
cp "$SHARED/data/tokenizers/fineweb_1024_bpe.model" "$OUT/data/tokenizers/"
cp "$SHARED/reference/official_train_gpt.py" "$OUT/"
du -sh "$OUT"
