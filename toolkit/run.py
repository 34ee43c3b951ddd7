"""The run directory: resolved config, metrics.jsonl, best/ and last/ checkpoints, model card."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no run-folder lock
    fcntl = None
import yaml

from .config import Config, build_config, config_to_dict
from .errors import ToolkitError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
PUSHED_CONFIG = "toolkit.yaml"  # the run's config in a checkpoint pushed to the Hub (config.json is the model's)
METRICS_LOG = "metrics.jsonl"
RESULTS_FILE = "results.json"
MARKER = ".toolkit-run"  # written first into every run folder: only a folder holding it may be overwritten
LOCK = ".toolkit-lock"  # {"pid", "host"} of the process training into the folder

# Everything a run writes at its top level. Overwrite removes these and nothing else, and refuses a folder that
# holds anything more: a user's own files are never deleted.
RUN_ENTRIES = {
    MARKER,
    LOCK,
    CONFIG_FILE,
    METRICS_LOG,
    RESULTS_FILE,
    f".{RESULTS_FILE}.tmp",
    "README.md",
    "tensorboard",
    "trackers.json",
    ".trackers.json.tmp",
    "wandb",
    "labelstudio.json",  # the Label Studio projects its rows went to (toolkit label push)
    ".labelstudio.json.partial",
    "samples",
    "examples",
    "confusion_matrix.png",
    *(
        f"{prefix}{name}{suffix}"
        for name in ("best", "last")
        for prefix, suffix in (("", ""), (".", ".tmp"), (".", ".old"))
    ),
}

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


def read_run_config(run_dir: str | Path, name: str = CONFIG_FILE) -> Config:
    """The run's saved config (``name``: toolkit.yaml in a checkpoint pushed to the Hub)."""
    run_dir = Path(run_dir)
    path = run_dir / name
    if not path.is_file():
        raise ToolkitError(
            f"'{run_dir}' is not a run directory (no {CONFIG_FILE}). Give a folder written by `toolkit train`."
        )
    try:
        values = yaml.safe_load(path.read_text())
        if not isinstance(values, dict):
            raise ToolkitError("it is not a mapping of keys to values")
        return build_config(values, ranges=False)
    except (ToolkitError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ToolkitError(
            f"'{run_dir}' does not hold a toolkit run: its {CONFIG_FILE} is not a run's config ({err})."
        ) from err


def prepare_run_dir(cfg: Config) -> Path:
    """Check the output folder against the config; writes nothing (the caller clears it for overwrite).

    A folder holding another run is never touched unless ``overwrite=true``; ``resume=true``
    needs a folder holding this same run.
    """
    run_dir = Path(cfg.output_dir)
    existing = run_dir / CONFIG_FILE
    holder = lock_holder(run_dir)
    if holder is not None:
        raise _locked_error(run_dir, holder)
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
    check_writable(run_dir)
    if run_dir.is_dir() and any(p.name != LOCK for p in run_dir.iterdir()):
        if not cfg.overwrite:
            what = (
                "a different run"
                if existing.is_file() and _config_differences(read_run_config(run_dir), cfg)
                else "an earlier run"
            )
            if not existing.is_file():
                what = "files that are not a run"
            raise ToolkitError(
                f"output folder '{run_dir}' already holds {what}. Choose another output_dir=..., "
                f"continue it with resume=true, or replace it with overwrite=true."
            )
        check_overwritable(run_dir)
    return run_dir


def default_output_dir(source, cfg: Config) -> Path:
    """``runs/<config file name>`` for a config file, ``runs/<task>`` otherwise."""
    named = isinstance(source, (str, Path))
    return Path("runs") / (Path(source).stem if named else cfg.task)


def choose_output_dir(cfg: Config, source) -> None:
    """Set an unset ``cfg.output_dir``: runs/<config name>, or a fresh timestamped folder beside it when that one holds
    a run, unless the config asks to replace (overwrite) or continue (resume) it."""
    if cfg.output_dir is None:
        base = default_output_dir(source, cfg)
        cfg.output_dir = str(base if cfg.overwrite or cfg.resume else fresh_run_dir(base))


def fresh_run_dir(base: Path) -> Path:
    """``base`` when it is free, else ``base-<YYYYmmdd-HHMMSS>`` beside it: a run whose output_dir was not given
    never collides with an earlier one (a notebook cell run twice, the same command typed again)."""
    if not base.exists() or (base.is_dir() and not any(base.iterdir())):
        return base
    stamped = base.with_name(f"{base.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, n = stamped, 1
    while candidate.exists():
        n += 1
        candidate = stamped.with_name(f"{stamped.name}-{n}")
    log.warning(
        "%s already holds a run: this one goes to %s (continue the earlier one with "
        "`toolkit train --resume %s`, or pass output_dir=...)",
        base,
        candidate,
        base,
    )
    return candidate


def check_writable(run_dir: Path) -> None:
    """Refuse, before anything loads, an output folder that could not be written: a file, under a file, read-only."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ToolkitError(f"output_dir '{run_dir}' is a file, not a folder. Choose another output_dir=...")
    ancestor = run_dir.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ToolkitError(
            f"output_dir '{run_dir}' is inside '{ancestor}', which is a file. Choose another output_dir=..."
        )
    if ancestor.parts[1:2] in (("proc",), ("sys",)) or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ToolkitError(
            f"output_dir '{run_dir}' cannot be written: '{ancestor}' is read-only for this user. "
            f"Choose a writable folder (output_dir=...)."
        )
    try:
        if os.statvfs(ancestor).f_flag & os.ST_RDONLY:
            raise ToolkitError(
                f"output_dir '{run_dir}' is on a read-only filesystem. Choose a writable folder (output_dir=...)."
            )
    except (AttributeError, OSError):
        pass


def check_overwritable(run_dir: Path) -> None:
    """Overwrite only a folder that is provably a toolkit run: its marker (or, for runs older than the marker, a
    config.yaml that is a run's config), and nothing but a run's own entries."""
    is_run = (run_dir / MARKER).is_file() and (run_dir / CONFIG_FILE).is_file()
    if not is_run:
        try:
            read_run_config(run_dir)
            is_run = (run_dir / "best").is_dir() or (run_dir / "last").is_dir() or (run_dir / METRICS_LOG).is_file()
        except ToolkitError:
            pass
    if not is_run:
        raise ToolkitError(
            f"refusing to overwrite '{run_dir}': it is not a toolkit run folder (no {MARKER} marker, "
            f"no run config and checkpoints). Choose another output_dir=..., or delete the folder yourself."
        )
    foreign = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_ENTRIES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ToolkitError(
            f"refusing to overwrite '{run_dir}': besides the run it holds {shown}, which overwrite "
            f"would delete. Move them out, or choose another output_dir=..."
        )


def clear_run(run_dir: Path) -> None:
    """Remove a run's own entries (checked by check_overwritable); the lock stays with its holder."""
    check_overwritable(run_dir)
    for name in RUN_ENTRIES - {LOCK}:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


@contextlib.contextmanager
def claim_run_dir(cfg: Config):
    """Hold ``cfg.output_dir`` for this process while the block runs: lock it, check it again now that no other
    process can write there, and clear the earlier run for overwrite=true. Nothing of the new run is written yet."""
    run_dir = Path(cfg.output_dir)
    with run_lock(run_dir):
        prepare_run_dir(cfg)
        if cfg.overwrite and not cfg.resume and (run_dir / CONFIG_FILE).exists():
            clear_run(run_dir)
        yield run_dir


def start_run_dir(run_dir: Path, cfg: Config) -> None:
    """The run's first files, once training is about to begin: its marker (what makes it overwritable) and config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_marker(run_dir)
    write_config(run_dir, cfg)


def write_marker(run_dir: Path) -> None:
    (run_dir / MARKER).write_text(json.dumps({"toolkit_run": 1}) + "\n")


def lock_holder(run_dir: Path) -> dict | None:
    """Who else is training into ``run_dir`` now: the lock's {"pid", "host"}, or None (free, or ours).

    The lock is an flock on .toolkit-lock held for the whole run: the kernel drops it when its process ends,
    however it ends, so a file left behind by a killed run is free again (no guessing from pids and hosts)."""
    if fcntl is None:
        return None
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it
    except OSError:
        try:
            holder = json.loads(os.read(fd, 4096) or b"{}")
            holder = holder if isinstance(holder, dict) else {}
        except ValueError:
            holder = {}
        if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            return None  # this process holds it
        return {"pid": holder.get("pid", "?"), "host": holder.get("host", "?")}
    finally:
        os.close(fd)


def _locked_error(run_dir: Path, holder: dict) -> ToolkitError:
    return ToolkitError(
        f"'{run_dir}' is in use: process {holder.get('pid')} on {holder.get('host')} is training into it. "
        f"Wait for it to finish, or choose another output_dir=..."
    )


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold the run folder for this process: a second training into it is refused, naming the holder.

    A folder created only to hold the lock is removed again if nothing else was written into it."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ToolkitError(
            f"cannot create output_dir '{run_dir}': {err.strerror or err}. Choose a writable folder."
        ) from err
    path = run_dir / LOCK
    fd = None
    while fcntl is not None:
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as err:
            raise ToolkitError(
                f"cannot write into output_dir '{run_dir}': {err.strerror or err}. Choose a writable folder."
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _locked_error(run_dir, lock_holder(run_dir) or {"pid": "?", "host": "?"}) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and our lock: lock the new one
    if fd is not None:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()  # still holding the lock: nobody else can have taken this file
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if empty: nothing was written after all


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
    values = config_to_dict(cfg)  # the task's class holds only the keys the task reads
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


# Licenses of the packaged base models (the default for the card's `license` when config key `license` is unset).
KNOWN_LICENSES = {"sentence-transformers/all-MiniLM-L6-v2": "apache-2.0", "tf_efficientnet_lite0": "apache-2.0"}


def checkpoint_library(folder: Path) -> str:
    """Which library loads a saved checkpoint: transformers (config.json with model_type), timm (its architecture
    config), or plain PyTorch."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "pytorch"
    if "model_type" in config:
        return "transformers"
    return "timm" if "pretrained_cfg" in config and is_timm_model(config.get("architecture")) else "pytorch"


def is_timm_model(name) -> bool:
    try:
        import timm
    except ImportError:
        return False
    return isinstance(name, str) and timm.is_model(name)


def card_metadata(run_dir: Path, cfg: Config, results: dict, spec) -> dict:
    """The model card's YAML header: what the Hub and huggingface_hub.ModelCard read, with model-index results."""
    library = checkpoint_library(run_dir / "best")
    base = cfg.base_model()
    meta = {"library_name": library, "tags": ["toolkit", spec.name]}
    if spec.pipeline_tag:
        meta["pipeline_tag"] = spec.pipeline_tag
    if base and _looks_like_hub_id(base):  # the Hub reads base_model as a repository id, never a local path
        meta["base_model"] = base
    license_ = cfg.license or KNOWN_LICENSES.get(base or "")
    if license_:
        meta["license"] = license_
    hub_data = [d for d in (cfg.data.train,) if d and _looks_like_hub_id(d)]
    if hub_data:
        meta["datasets"] = hub_data
    entries = []
    for split in ("validation", "test"):
        scores = {k: v for k, v in (results.get(split) or {}).items() if isinstance(v, (int, float)) and k != "count"}
        source = getattr(cfg.data, split) or cfg.data.train
        if scores and source:
            entries.append(
                {
                    "task": {"type": spec.pipeline_tag or spec.name, "name": spec.name},
                    "dataset": {
                        "name": Path(str(source)).stem if not _looks_like_hub_id(source) else source,
                        "type": source if _looks_like_hub_id(source) else Path(str(source)).name,
                        "split": split,
                    },
                    "metrics": [{"type": k, "value": float(v), "name": f"{split} {k}"} for k, v in scores.items()],
                }
            )
    if entries:
        meta["model-index"] = [{"name": run_dir.name, "results": entries}]
    return meta


def _looks_like_hub_id(source: str) -> bool:
    return "/" in source and not source.startswith((".", "/", "~")) and not Path(source).exists()


def _precision_line(cfg: Config, results: dict) -> str:
    chosen = results.get("precision")
    if not isinstance(chosen, dict):
        return f"`{cfg.precision}`"
    how = "chosen by `precision: auto`" if chosen.get("requested") == "auto" else "set in the config"
    return (
        f"`{chosen['chosen']}` ({how}: {chosen['reason']})"
        if chosen.get("reason") != how
        else f"`{chosen['chosen']}` ({how})"
    )


def write_model_card(run_dir: Path, cfg: Config, results: dict, command: str, spec) -> None:
    """A Hugging Face model card, README.md in the run folder and in best/ (so that uploading best/ carries it):
    metadata with model-index results, what was trained, the results, the command, and how to use it."""
    text = model_card(run_dir, cfg, results, command, spec)
    (run_dir / "README.md").write_text(text)
    if (run_dir / "best").is_dir():
        (run_dir / "best" / "README.md").write_text(text)


def per_class_section(results: dict) -> str:
    """Per class (per entity type, for taggers) precision, recall, F1 and support on test (else validation), when
    the task reports them."""
    split = "test" if results.get("test") else "validation"
    scores = results.get(split) or {}
    found = scores.get("per_class") or scores.get("per_type")
    if not isinstance(found, dict) or not found:
        return ""
    rows = [
        f"| {name} | {v.get('precision', 0):.4f} | {v.get('recall', 0):.4f} | {v.get('f1', 0):.4f} | "
        f"{v.get('support', v.get('number', ''))} |"
        for name, v in found.items()
        if isinstance(v, dict)
    ]
    return (
        f"\n## Per class ({split})\n| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


def model_card(run_dir: Path, cfg: Config, results: dict, command: str, spec, repo_id: str | None = None) -> str:
    """The card's text. ``repo_id``: the card of a copy pushed to the Hub, whose usage loads it from there."""

    def table(metrics: dict) -> str:
        rows = [
            f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
            for k, v in metrics.items()
            if isinstance(v, (int, float))
        ]
        return "| metric | value |\n|---|---|\n" + "\n".join(rows) if rows else "(none)"

    meta = card_metadata(run_dir, cfg, results, spec)
    stock = spec.stock_usage.format(folder=repo_id or f"{run_dir}/best") if spec.stock_usage else ""
    where = f'snapshot_download("{repo_id}")' if repo_id else f'"{run_dir}"'
    fetch = "from huggingface_hub import snapshot_download\n" if repo_id else ""
    use = f"With {meta['library_name']} alone:\n```python\n{stock}\n```\n\nWith toolkit:\n" if stock else ""
    base = cfg.base_model()
    training_line = f"precision {_precision_line(cfg, results)}, seed {cfg.seed}"
    return f"""---
{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip()}
---
# {run_dir.name}

{f"Fine-tuned from `{base}`" if base else "Trained"} for **{spec.name}** with toolkit.

- Labels: {", ".join(results.get("labels", [])) or "n/a"}
- Best checkpoint: step {results.get("best_step")} by validation `{results.get("metric", cfg.metric)}`
- Training: {results.get("train_samples", "?")} samples, {results.get("train_seconds", 0):.1f} s, {training_line}
- Hardware: {results.get("hardware", "not recorded")}

## Validation (best checkpoint)
{table(results.get("validation", {}))}

## Test (best checkpoint)
{table(results.get("test", {}))}
{per_class_section(results)}
## Reproduce
```
{command}
```

## Use
{use}```python
{fetch}import toolkit
predict = toolkit.load({where})
{spec.usage}
```
"""
