"""Does a translation setting train reliably? Runs the shipped config with several settings and seeds at a fixed
number of steps, all at once on a GPU (one process each) or one after another on the CPU, and prints each run's
validation BLEU: a run whose decoder learned to ignore the source ends near 5 BLEU instead of 25-40.
Usage: python benchmarks/translation_stability.py --assets .gpu --target fr --steps 2000 \
           --arm base= --arm enc0.1=warm_start.encoder_lr_scale=0.1 [--seeds 42 7]
(an arm is NAME=override[,override...]; build the assets with `python benchmarks/gpu_carry.py --translation`)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seq2seq_common import ROOT, table


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--assets", type=Path, default=ROOT / ".gpu")
    parser.add_argument("--encoder", default=None, help="MiniLM folder (default: ASSETS/minilm)")
    parser.add_argument("--target", default="fr", choices=["de", "fr"])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--arm", action="append", required=True, help="NAME=override,override (may be empty)")
    args = parser.parse_args()
    import torch

    assets = args.assets.resolve()
    data = assets / "multi30k"
    config = ROOT / f"recipes/configs/translation_multi30k_en_{args.target}.yaml"
    arms = {name: [o for o in rest.split(",") if o] for name, _, rest in (a.partition("=") for a in args.arm)}
    procs, results = {}, {}
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in arms.items():
            for seed in args.seeds:
                out = Path(tmp) / f"{name}_{seed}"
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
                    f"warm_start.encoder={args.encoder or assets / 'minilm'}",
                    f"warm_start.target_tokenizer={assets / f'vocab_bytelevel_{args.target}'}",
                    f"data.train={data / 'train.jsonl'}",
                    f"data.validation={data / 'validation.jsonl'}",
                    "data.test=null",
                    "data.max_eval_rows=500",
                    *overrides,
                ]
                log = open(Path(tmp) / f"{name}_{seed}.log", "w")
                procs[(name, seed)] = (subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), out, log)
                if not torch.cuda.is_available():
                    procs[(name, seed)][0].wait()
        for (name, seed), (proc, out, log) in procs.items():
            code = proc.wait()
            log.close()
            if code != 0:
                print(Path(log.name).read_text()[-2000:], file=sys.stderr)
                return 1
            metrics = json.loads((out / "results.json").read_text())
            results[(name, seed)] = {
                "bleu": metrics["validation"]["bleu"],
                "loss": metrics["validation"]["loss"],
                "seconds": metrics["train_seconds"],
            }
    print(
        table(
            [
                (
                    f"{name} seed {seed}",
                    " ".join(arms[name]) or "(shipped)",
                    f"{r['bleu']:.2f}",
                    f"{r['loss']:.3f}",
                    f"{r['seconds']:.0f}",
                )
                for (name, seed), r in results.items()
            ],
            ("run", "overrides", "val BLEU (500)", "val loss", "train s"),
        )
    )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"en->{args.target}, {args.steps} steps each, on {device}: {time.perf_counter() - tic:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
