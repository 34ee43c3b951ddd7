"""How well `toolkit label-issues` finds flipped labels, against cleanlab on TF-IDF + logistic-regression
probabilities, and what retraining without the flagged rows scores.

A sample of --rows rows of --train (default: rt-polarity's train.csv; columns text,label) gets --noise of its
labels flipped to another class (seeded). Each method ranks the rows; the figure is the share of flipped rows among
the top K (K = rows flipped). Then the shipped sentiment config trains on the noisy file and on it without the rows
`toolkit label-issues` flags, validated on --validation and scored on --test (clean files).
Usage: python benchmarks/label_issues.py [--rows 2000] [--noise 0.1] [--seed 0] [--train F --validation F --test F]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, go_offline  # noqa: E402

DATA = SHARED / "sentiment" / "rt-polarity"
CONFIG = ROOT / "recipes" / "configs" / "sentiment_minilm.yaml"


def noisy_sample(path: Path, rows: int, noise: float, seed: int):
    import pandas as pd

    table = pd.read_csv(path)
    table = table.sample(min(rows, len(table)), random_state=seed).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    names = sorted(table["label"].astype(str).unique())
    flipped = np.zeros(len(table), bool)
    flipped[rng.choice(len(table), int(round(noise * len(table))), replace=False)] = True
    labels = table["label"].astype(str).tolist()
    for i in np.flatnonzero(flipped):
        labels[i] = rng.choice([n for n in names if n != labels[i]])
    table["label"] = labels
    return table, flipped


def tfidf_baseline(table, flipped) -> float:
    """cleanlab on 5-fold TF-IDF + logistic-regression probabilities (the issue's baseline)."""
    from cleanlab.rank import get_label_quality_scores
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    names = sorted(table["label"].unique())
    labels = table["label"].map({n: i for i, n in enumerate(names)}).to_numpy()
    features = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(table["text"])
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    probs = cross_val_predict(LogisticRegression(max_iter=2000), features, labels, cv=folds, method="predict_proba")
    ranked = np.argsort(get_label_quality_scores(labels, probs), kind="stable")
    return float(flipped[ranked[: flipped.sum()]].mean())


def label_issues(train_csv: Path, out: Path, method: str) -> tuple[float, object]:
    import pandas as pd

    tic = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "toolkit", "label-issues", str(CONFIG), f"data.train={train_csv}", "--out", str(out),
         "--method", method],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"toolkit label-issues failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - tic, pd.read_csv(out)


def train(train_csv: Path, validation: Path, test: Path, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "toolkit", "train", str(CONFIG), f"data.train={train_csv}",
         f"data.validation={validation}", f"data.test={test}", f"output_dir={out}", "trackers=[]"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"toolkit train failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "results.json").read_text())["test"]


def main() -> int:
    from toolkit.hardware import benchmark_header

    go_offline()
    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=Path, default=DATA / "train.csv")
    parser.add_argument("--validation", type=Path, default=DATA / "validation.csv")
    parser.add_argument("--test", type=Path, default=DATA / "test.csv")
    parser.add_argument("--methods", default="probe,finetune")
    parser.add_argument("--no-retrain", action="store_true")
    args = parser.parse_args()
    if not args.train.is_file():
        print(f"{args.train} not found: this benchmark needs ../shared/data or --train", file=sys.stderr)
        return 1
    table, flipped = noisy_sample(args.train, args.rows, args.noise, args.seed)
    k = int(flipped.sum())
    print(f"data: {len(table):,} rows of {args.train}, {k} labels flipped (seed {args.seed})", flush=True)
    print(
        f"cleanlab on TF-IDF + logistic regression: top-{k} precision {tfidf_baseline(table, flipped):.1%}", flush=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        noisy = folder / "noisy.csv"
        table.to_csv(noisy, index=False)
        flagged = None
        for method in args.methods.split(","):
            seconds, ranked = label_issues(noisy, folder / f"{method}.csv", method)
            top = ranked["row"].to_numpy()[:k]
            marked = ranked.loc[ranked["issue"], "row"].to_numpy()
            print(
                f"toolkit label-issues --method {method}: top-{k} precision {flipped[top].mean():.1%}; flags "
                f"{len(marked)} rows ({flipped[marked].mean():.1%} flipped, {flipped[marked].sum() / k:.1%} of the "
                f"flipped); {seconds:.0f} s whole command",
                flush=True,
            )
            flagged = marked if method == "finetune" else flagged if flagged is not None else marked
        if args.no_retrain or flagged is None:
            return 0
        cleaned = folder / "cleaned.csv"
        table.drop(index=flagged).to_csv(cleaned, index=False)
        before = train(noisy, args.validation, args.test, folder / "noisy_run")
        after = train(cleaned, args.validation, args.test, folder / "cleaned_run")
        print(
            f"retrained on {args.test.name}: noisy file accuracy {before['accuracy']:.4f}, macro F1 "
            f"{before['macro_f1']:.4f}; without the {len(flagged)} flagged rows accuracy {after['accuracy']:.4f}, "
            f"macro F1 {after['macro_f1']:.4f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
