"""The run directory: resolved config, metrics.jsonl, best/ and last/ checkpoints, model card."""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import Config, config_to_dict, load_config
from .errors import ToolkitError

CONFIG_FILE = "config.yaml"
METRICS_LOG = "metrics.jsonl"
RESULTS_FILE = "results.json"

# Keys that may differ when a run is resumed: they steer the resume, not what is trained.
_RESUME_KEYS = {"resume", "overwrite", "output_dir"}


@dataclass
class Run:
    """A finished (or resumed) run: where it lives and what it measured."""

    dir: Path
    metrics: dict = field(default_factory=dict)
    model: object = None  # the trained model, for notebooks; None when loaded from disk

    def __repr__(self) -> str:
        return f"Run(dir={str(self.dir)!r}, metrics={self.metrics})"


def read_run_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ToolkitError(f"'{run_dir}' is not a run directory (no {CONFIG_FILE}). Give a folder written by `toolkit train`.")
    return load_config(yaml.safe_load(path.read_text()))


def prepare_run_dir(cfg: Config) -> Path:
    """Check the output folder against the config; writes nothing (the caller clears it for overwrite).

    A folder holding another run is never touched unless ``overwrite=true``; ``resume=true``
    needs a folder holding this same run.
    """
    run_dir = Path(cfg.output_dir)
    existing = run_dir / CONFIG_FILE
    if cfg.resume:
        if not existing.is_file():
            raise ToolkitError(f"cannot resume: '{run_dir}' holds no run. Drop resume=true to start a new run there.")
        differs = _config_differences(read_run_config(run_dir), cfg)
        if differs:
            raise ToolkitError(
                f"cannot resume '{run_dir}': the config differs from the run's in {', '.join(differs)}. "
                f"Resume with the run's own config (`toolkit train --resume {run_dir}`) or start a new output_dir."
            )
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()):
        if not cfg.overwrite:
            what = "a different run" if existing.is_file() and _config_differences(read_run_config(run_dir), cfg) else "an earlier run"
            if not existing.is_file():
                what = "files that are not a run"
            raise ToolkitError(
                f"output folder '{run_dir}' already holds {what}. Choose another output_dir=..., "
                f"continue it with resume=true, or replace it with overwrite=true."
            )
        if not existing.is_file():
            raise ToolkitError(f"refusing to overwrite '{run_dir}': it holds files that are not a run. Choose another output_dir.")
    return run_dir


def _config_differences(a: Config, b: Config) -> list[str]:
    da, db = _flatten(config_to_dict(a)), _flatten(config_to_dict(b))
    return sorted(k for k in set(da) | set(db) if k.split(".")[0] not in _RESUME_KEYS and da.get(k) != db.get(k))


def _flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def write_config(run_dir: Path, cfg: Config) -> None:
    values = config_to_dict(cfg)
    values["resume"] = False
    values["overwrite"] = False
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(values, sort_keys=False))


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(run_dir / METRICS_LOG, "a") as fh:
        fh.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """Drop records a killed run logged after its last checkpoint; the resumed run logs them again."""
    path = run_dir / METRICS_LOG
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= after_step]
    path.write_text("".join(line + "\n" for line in kept))


def read_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_results(run_dir: Path, results: dict) -> None:
    tmp = run_dir / f".{RESULTS_FILE}.tmp"
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(run_dir / RESULTS_FILE)


def command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "/toolkit")):
        argv[0] = "toolkit"
    return " ".join(shlex.quote(a) for a in argv)


def write_model_card(run_dir: Path, cfg: Config, results: dict, command: str) -> None:
    """A Hugging Face style README.md: what was trained, on what, with which results and command."""
    def table(metrics: dict) -> str:
        rows = [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                for k, v in metrics.items() if isinstance(v, (int, float))]
        return "| metric | value |\n|---|---|\n" + "\n".join(rows) if rows else "(none)"

    text = f"""---
library_name: transformers
base_model: {cfg.model}
tags: [toolkit, {cfg.task}]
---
# {run_dir.name}

Fine-tuned from `{cfg.model}` for **{cfg.task}** with toolkit.

- Labels: {', '.join(results.get('labels', [])) or 'n/a'}
- Best checkpoint: step {results.get('best_step')} by validation `{results.get('metric', cfg.metric)}`
- Training: {results.get('train_samples', '?')} samples, {results.get('train_seconds', 0):.1f} s, precision `{cfg.precision}`, seed {cfg.seed}

## Validation (best checkpoint)
{table(results.get('validation', {}))}

## Test (best checkpoint)
{table(results.get('test', {}))}

## Reproduce
```
{command}
```

## Use
```python
import toolkit
predict = toolkit.load("{run_dir}")
predict("a sentence to classify")
```
"""
    (run_dir / "README.md").write_text(text)
