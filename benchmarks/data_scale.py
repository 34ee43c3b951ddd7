"""Data at scale: `toolkit train` on 100k, 1M (and 10M) rows against the `datasets` way (load_dataset + batched map,
as transformers' run_glue does it), each a whole process on the same machine.

Rows are real rt-polarity training sentences, repeated with an index so that no two are equal; 20 training steps
of the packaged MiniLM, fp32, batch 32. For each size: the wall time, the time from the process's start to the end of
its first training step, the data phase and the peak resident memory (GNU time's maximum RSS) of toolkit's first run,
of its second run on the same file (what its cache saves), of the peer's first and second run, and of toolkit
reading the file as a stream (data.streaming=true). Each side starts every size with an empty datasets cache.
Usage: python benchmarks/data_scale.py [--rows 100000 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, SHARED, go_offline  # noqa: E402

go_offline()
TEXTS = SHARED / "sentiment" / "rt-polarity"
STEPS = 20

PEER = """
import sys, time
tic = time.perf_counter()
import datasets, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
source = sys.argv[2]  # the packaged MiniLM's folder
table = datasets.load_dataset("csv", data_files=sys.argv[1], split="train")
tokenizer = AutoTokenizer.from_pretrained(source)
labels = sorted(set(table.unique("label")))
def encode(batch):
    out = tokenizer(batch["text"], truncation=True, max_length=128)
    out["labels"] = [labels.index(y) for y in batch["label"]]
    return out
features = table.map(encode, batched=True, remove_columns=table.column_names)
data_seconds = time.perf_counter() - tic
model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=len(labels))
collate = DataCollatorWithPadding(tokenizer)
loader = torch.utils.data.DataLoader(features, batch_size=32, shuffle=True, collate_fn=collate)
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
first = None
for step, batch in enumerate(loader):
    model(**batch).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    first = first or time.perf_counter() - tic
    if step + 1 == 20:
        break
print({"data": round(data_seconds, 1), "first_step": round(first, 1)})
"""


def make_rows(count: int, folder: Path) -> Path:
    """``count`` rows of real sentences: rt-polarity training rows repeated, each with its index appended."""
    import pandas as pd

    path = folder / f"rows-{count}.csv"
    if path.is_file():
        return path
    base = pd.read_csv(TEXTS / "train.csv")
    repeats = -(-count // len(base))
    table = pd.concat([base] * repeats, ignore_index=True).head(count)
    table["text"] = table["text"] + " " + table.index.astype(str)
    table.to_csv(path, index=False)
    return path


def measured(command: list[str], cache: Path) -> tuple[float, float, float, str]:
    """(wall seconds, peak resident MB, peak anonymous MB, stdout) of one whole process; ``cache``: its
    HF_DATASETS_CACHE (toolkit and the peer each start from an empty one for every row count).

    Peak resident memory is GNU time's (the largest process of the tree); it counts the pages of memory-mapped
    Arrow files the process has touched, which the kernel can drop at any time. Peak anonymous memory (RssAnon,
    sampled every 0.1 s, the largest process) is what the process itself allocated."""
    tic = time.perf_counter()
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache)}
    proc = subprocess.Popen(
        ["/usr/bin/time", "-f", "%M", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=ROOT, env=env,
    )  # fmt: skip
    anon = [0]

    def sample() -> None:
        while proc.poll() is None:
            anon[0] = max([anon[0], *(anonymous_kb(pid) for pid in process_tree(proc.pid))])
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.join()
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{stderr[-3000:]}")
    peak_kb = int(stderr.strip().splitlines()[-1])
    return wall, peak_kb / 1024, anon[0] / 1024, stdout


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                pass
    return found


def anonymous_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def toolkit_run(data: Path, out: Path, cache: Path, *extra: str) -> dict:
    command = [
        sys.executable, "-m", "toolkit", "train", str(ROOT / "recipes/configs/sentiment_minilm.yaml"),
        f"data.train={data}", f"data.validation={TEXTS / 'validation.csv'}", "data.test=null", f"max_steps={STEPS}",
        "precision=no", "trackers=[]", "eval_every=1000", f"output_dir={out}", "overwrite=true", *extra,
    ]  # fmt: skip
    wall, peak, anon, _ = measured(command, cache)
    timings = json.loads((out / "results.json").read_text()).get("timings", {})
    first = timings.get("first_step_at") or sum(timings.get(k, 0) for k in ("start_up", "build"))
    return {"wall": wall, "peak_mb": peak, "anon_mb": anon, "data": timings.get("data"), "first_step": first}


def peer_run(data: Path, cache: Path) -> dict:
    from toolkit.models import resolve_model_source

    model = resolve_model_source("sentence-transformers/all-MiniLM-L6-v2")
    wall, peak, anon, out = measured([sys.executable, "-c", PEER, str(data), str(model)], cache)
    found = eval(out.strip().splitlines()[-1])  # noqa: S307 (our own script's dict)
    return {"wall": wall, "peak_mb": peak, "anon_mb": anon, **found}


def main() -> int:
    from toolkit.hardware import benchmark_header

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--keep", help="a folder for the generated row files (kept between invocations)")
    parser.add_argument(
        "--again",
        action="store_true",
        help="keep each side's datasets cache from an earlier invocation with --keep, and run only toolkit's "
        "second run and streaming (e.g. after a change that does not touch the first run)",
    )
    parser.add_argument("--toolkit-only", action="store_true", help="skip the datasets script's runs")
    args = parser.parse_args()
    if not TEXTS.is_dir():
        print(f"rt-polarity not found at {TEXTS}: this benchmark needs ../shared/data", file=sys.stderr)
        return 1
    folder = Path(args.keep or tempfile.mkdtemp(prefix="toolkit-data-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    header = f"{'rows':>10} {'run':22} {'wall s':>8} {'first step s':>13} {'data s':>8} {'peak MB':>8} {'anon MB':>8}"
    print("\n" + header, flush=True)
    for count in args.rows:
        data = make_rows(count, folder)
        size_mb = data.stat().st_size / 2**20
        out, ours, theirs = folder / f"run-{count}", folder / f"cache-toolkit-{count}", folder / f"cache-peer-{count}"
        runs = [("toolkit, first run", toolkit_run, (data, out, ours)),
                ("toolkit, second run", toolkit_run, (data, out, ours)),
                ("datasets, first run", peer_run, (data, theirs)),
                ("datasets, second run", peer_run, (data, theirs)),
                ("toolkit, streaming", toolkit_run, (data, out, ours, "data.streaming=true"))]  # fmt: skip
        if args.again:
            runs = [r for r in runs if r[0] in ("toolkit, second run", "toolkit, streaming")]
        if args.toolkit_only:
            runs = [r for r in runs if r[0].startswith("toolkit")]
        if not args.again:
            for cache in (ours, theirs):
                shutil.rmtree(cache, ignore_errors=True)
        for label, run, run_args in runs:
            r = run(*run_args)
            print(
                f"{count:>10,} {label:22} {r['wall']:8.1f} {r['first_step']:13.1f} {r['data'] or 0:8.1f} "
                f"{r['peak_mb']:8.0f} {r['anon_mb']:8.0f}   ({size_mb:.0f} MB CSV)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
