"""Does the target vocabulary change en->de BLEU? The shipped translation config trained with the lossless byte-level
BPE vocabulary against the earlier WordPiece one (which decoded "T - shirt"), at the same number of steps, for
two seeds each, so that a difference can be told from seed noise. Same learning-rate schedule (linear decay to
zero over the steps), same model, same data; only the vocabulary file differs.

On a GPU the runs go in parallel (one process each); on the CPU one after another. Scoring is the translation
benchmark's: sacreBLEU/chrF on the 1,000 test sentences and on the quarter far from the training data.
Usage: python benchmarks/translation_vocab_ablation.py --assets .gpu [--steps 4000] [--seeds 42 7]
(build the assets with `python benchmarks/gpu_carry.py --translation`)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import translation_multi30k as bench
from seq2seq_common import ROOT, table


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=Path, default=ROOT / ".gpu")
    parser.add_argument("--encoder", default=None, help="MiniLM folder (default: ASSETS/minilm)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--out", type=Path, default=None, help="where to write results.json")
    args = parser.parse_args()
    import torch

    assets = args.assets.resolve()
    data = assets / "multi30k"
    bench.DATA = data  # far_from_train reads the training sources from here
    encoder = args.encoder or str(assets / "minilm")
    config = ROOT / "recipes/configs/translation_multi30k_en_de.yaml"
    variants = {(vocab, seed): assets / f"vocab_{vocab}" for vocab in ("bytelevel", "wordpiece") for seed in args.seeds}
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    far = bench.far_from_train(rows, "en")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        procs = {}
        tic = time.perf_counter()
        for (vocab, seed), folder in variants.items():
            out = Path(tmp) / f"{vocab}_{seed}"
            cmd = [
                sys.executable,
                "-m",
                "toolkit",
                "train",
                str(config),
                f"output_dir={out}",
                "trackers=[]",
                "max_train_minutes=null",
                f"max_steps={args.steps}",
                f"eval_every={args.steps}",
                f"seed={seed}",
                f"warm_start.encoder={encoder}",
                f"warm_start.target_tokenizer={folder}",
                f"data.train={data / 'train.jsonl'}",
                f"data.validation={data / 'validation.jsonl'}",
                f"data.test={data / 'test.jsonl'}",
            ]
            log = open(Path(tmp) / f"{vocab}_{seed}.log", "w")
            procs[(vocab, seed)] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), out, log)
            if not torch.cuda.is_available():
                procs[(vocab, seed)][0].wait()
        for key, (proc, out, log) in procs.items():
            if proc.wait() != 0:
                log.close()
                print((Path(tmp) / f"{key[0]}_{key[1]}.log").read_text()[-3000:], file=sys.stderr)
                return 1
            metrics = json.loads((out / "results.json").read_text())
            results[f"{key[0]} seed {key[1]}"] = {
                **bench.score(out, rows, far, "en", "de"),
                "steps": metrics["steps"],
                "train_seconds": metrics["train_seconds"],
                "validation_bleu": metrics["validation"]["bleu"],
            }
        wall = time.perf_counter() - tic
    print(
        table(
            [
                (
                    name,
                    f"{r['test']['bleu']:.2f}",
                    f"{r['test']['chrf']:.2f}",
                    f"{r['far']['bleu']:.2f}",
                    f"{r['validation_bleu']:.2f}",
                    f"{100 * r['spaced_punctuation']:.1f}%",
                    r["steps"],
                    f"{r['train_seconds']:.0f}",
                )
                for name, r in results.items()
            ],
            (
                "vocabulary",
                "test BLEU",
                "test chrF",
                f"far {len(far)} BLEU",
                "val BLEU",
                "spaced -/'",
                "steps",
                "train s",
            ),
        )
    )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(
        f"{len(results)} runs on {device} ({'parallel' if torch.cuda.is_available() else 'sequential'}): {wall:.0f} s"
    )
    if args.out:
        args.out.write_text(
            json.dumps({"device": device, "steps": args.steps, "results": results}, ensure_ascii=False, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
