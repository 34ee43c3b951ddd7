"""Summarization on SciTLDR test (618 abstracts, rouge-score, stemmed F1): the shipped extractive MiniLM against
the simple baselines and the one-sentence oracle, from one run.

Rows: lead-1 (the first sentence), the first sentence that starts with "We", the first sentence holding the word
"we" (a stronger heuristic), the oracle sentence (the one closest to the TLDR by ROUGE-L: the upper bound for
one sentence), the shipped extractive config (trained here, whole process timed), and with --bert2bert the
abstractive bert2bert config (30 minutes more). Usage: python benchmarks/summarization_scitldr.py [--bert2bert]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seq2seq_common import ROOT, table

CONFIG = ROOT / "recipes/configs/summarization_scitldr.yaml"
BERT2BERT = ROOT / "recipes/configs/summarization_scitldr_bert2bert.yaml"
DATA = ROOT.parent / "shared/data/summarization/scitldr"


def baselines() -> dict:
    """Heuristic and oracle sentence picks, scored like the models."""
    from rouge_score import rouge_scorer

    from toolkit.recipes.summarization.metrics import split_sentences, summarization_metrics

    rows = [json.loads(line) for line in (DATA / "test.jsonl").read_text().splitlines()]
    docs, refs = [split_sentences(r["document"]) for r in rows], [r["summary"] for r in rows]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    picks = {
        "lead-1 (first sentence)": [d[0] for d in docs],
        'first sentence starting with "We"': [next((s for s in d if s.startswith("We ")), d[0]) for d in docs],
        'first sentence with the word "we"': [
            next((s for s in d if re.search(r"\bwe\b", s, re.I)), d[0]) for d in docs
        ],
        "oracle sentence (upper bound for one)": [
            max(d, key=lambda s: scorer.score(r, s)["rougeL"].fmeasure) for d, r in zip(docs, refs)
        ],
    }
    return {name: summarization_metrics(hyps, refs) for name, hyps in picks.items()}


def trained(config: Path, *overrides: str) -> dict:
    """Train a shipped config with `toolkit train` in its own process, timed from process start to results."""
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "toolkit", "train", str(config), f"output_dir={tmp}/run", "trackers=[]", *overrides],
            check=True,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - tic
        results = json.loads((Path(tmp) / "run/results.json").read_text())
    return {
        **results["test"],
        "train_seconds": results["train_seconds"],
        "wall_seconds": wall,
        "steps": results["steps"],
    }


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--bert2bert", action="store_true", help="also train the abstractive bert2bert config (30 minutes)"
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"SciTLDR not found at {DATA}", file=sys.stderr)
        return 1
    scores = baselines()
    scores["extractive MiniLM (shipped config)"] = ours = trained(CONFIG)
    if args.bert2bert:
        scores["bert2bert (abstractive, warm-started MiniLM)"] = trained(BERT2BERT)
    rows = [
        (
            name,
            *(f"{m[k]:.2f}" for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")),
            f"{m['gen_len']:.1f}",
            f"{m['train_seconds']:.0f}" if "train_seconds" in m else "",
            f"{m['wall_seconds']:.0f}" if "wall_seconds" in m else "",
        )
        for name, m in scores.items()
    ]
    print(table(rows, ("summarizer", "R-1", "R-2", "R-L", "R-Lsum", "words", "train s", "whole s")))
    print(json.dumps(scores))
    return 0 if ours["rougeL"] >= 25.0 else 3


if __name__ == "__main__":
    sys.exit(main())
