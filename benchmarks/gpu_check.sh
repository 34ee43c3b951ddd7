#!/usr/bin/env bash
# The project's check on a lent GPU machine (device tool), one call:
#   here:   python benchmarks/gpu_carry.py
#   device: run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"])
# It reports the GPU, then trains the shipped en->de translation config on CUDA (bf16) through `toolkit train`,
# four runs in parallel: the byte-level and the earlier WordPiece target vocabulary, two seeds each
# (benchmarks/translation_vocab_ablation.py), scored on Multi30k test. Results land in $OUT (or /tmp/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"; mkdir -p "$OUT"
STEPS="${STEPS:-4000}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
mkdir -p /tmp/minilm && cp .gpu/minilm/*.json .gpu/minilm/vocab.txt /tmp/minilm/
python3 - <<'PY'
from safetensors.torch import load_file, save_file
save_file({k: v.float() for k, v in load_file(".gpu/minilm/model.safetensors.fp16").items()}, "/tmp/minilm/model.safetensors")
import torch, transformers, accelerate
print(f"torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}, "
      f"cuda {torch.cuda.is_available()}, bf16 {torch.cuda.is_bf16_supported()}")
PY
python3 benchmarks/translation_vocab_ablation.py --assets .gpu --encoder /tmp/minilm --steps "$STEPS" \
    --out "$OUT/ablation.json" 2>&1 | tee "$OUT/ablation.log"
