"""Sweeps: `toolkit sweep` and `toolkit.sweep` search settings with Optuna, prune on the validation curve, keep each
trial as an ordinary run folder, name the best one, and continue after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli, run_cli_many, write_config


def sweep_config(tiny_config: dict, folder: Path, **extra) -> Path:
    values = {**tiny_config, "eval_every": 10, "output_dir": str(folder), **extra}
    return write_config(folder.parent / "sweep.yaml", values)


def trials_of(folder: Path) -> list[dict]:
    import optuna

    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{folder / 'study.db'}")
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in study.trials]


def test_sweep_searches_prunes_and_names_the_best_trial(tiny_config, tmp_path):
    """Six trials over a space where half the learning rates cannot learn in 80 steps: the median pruner stops some
    of those at their first evaluations; every trial folder is a finished run (eval reads it); `best` links to the
    trial with the highest validation accuracy, which beats the worst trial."""
    folder = tmp_path / "sweep"
    config = sweep_config(tiny_config, folder)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": {"choices": [1e-6, 3e-3]}, "warmup_ratio": {"low": 0.0, "high": 0.2}}))
    done = run_cli("sweep", str(config), "--trials", "6", "--space", str(space), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = trials_of(folder)
    assert [t["number"] for t in trials] == list(range(6))
    states = {t["state"] for t in trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states, trials
    assert "PRUNED" in states, trials  # the seeded draws give both learning rates; 1e-6 falls behind at once
    for t in (t for t in trials if t["state"] == "COMPLETE"):  # a pruned one's value is its curve's last point
        results = json.loads((folder / f"trial-{t['number']:03d}" / "results.json").read_text())
        assert results["validation"]["accuracy"] == pytest.approx(t["value"], abs=1e-9), t
    best = max((t for t in trials if t["state"] == "COMPLETE"), key=lambda t: t["value"])
    assert (folder / "best").resolve() == (folder / f"trial-{best['number']:03d}").resolve()
    assert best["params"]["lr"] == 3e-3 and best["value"] > min(t["value"] for t in trials)
    summary = (folder / "summary.md").read_text()
    assert f"Best: trial {best['number']}" in summary and summary.count("| trial-0") == 6, summary
    assert "best:" in done.stdout and "summary" not in done.stderr.lower()
    scored = run_cli("eval", str(folder / "best"))  # a trial folder is a run folder
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout.strip().splitlines()[-1])["accuracy"] > 0.9


def processes_naming(folder: Path) -> list[str]:
    """The command lines of running processes that name ``folder`` (a trial's `toolkit train`), zombies left out."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            line = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if str(folder) in line and state != "Z":
            found.append(line)
    return found


def test_sweep_continues_after_kill_9(tiny_config, tmp_path):
    """kill -9 of the sweep while trial 1 (its last) trains; the same command then resumes trial 1 from its last/
    checkpoint (its log holds two training starts), finishes the sweep, and uses no trial number twice."""
    folder = tmp_path / "sweep"
    config = sweep_config(tiny_config, folder, epochs=6, save_every=5)
    command = [sys.executable, "-m", "toolkit", "sweep", str(config), "--trials", "2", "--pruner", "none"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = folder / "trial-001" / "last" / "state.json"
    deadline = time.monotonic() + 300
    while not last.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.is_file(), "trial 1 never saved last/"
    assert processes_naming(folder), "no trial process is training"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60  # the trial saves last/ after its current step, and exits
    while processes_naming(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_naming(folder), "the trial outlived its sweep"
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = trials_of(folder)
    assert [t["number"] for t in trials] == [0, 1] and all(t["state"] == "COMPLETE" for t in trials), trials
    assert "trial 1 was interrupted: resuming it from last/" in done.stderr
    records = [json.loads(line) for line in (folder / "trial-001" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["split"] == "setup" for r in records) == 2  # trained, killed, resumed
    assert sorted(p.name for p in folder.glob("trial-*")) == ["trial-000", "trial-001"]
    assert json.loads((folder / "sweep.json").read_text())["numbers_started"] == [0, 1]
    # In a notebook: calling toolkit.sweep again continues the same sweep (here: done, nothing to train), twice.
    import toolkit

    for _ in range(2):
        found = toolkit.sweep(str(config), trials=2, pruner="none")
        assert [row["trial"] for row in found.trials] == [0, 1]
        assert found.best_dir.resolve() == (folder / "best").resolve()


def test_bad_sweeps_get_one_error_line_and_write_nothing(tiny_config, tmp_path):
    folder = tmp_path / "sweep"
    config = sweep_config(tiny_config, folder)
    spaces = {
        "typo": ({"lrr": {"low": 1e-5, "high": 1e-3}}, "'lrr' is not a setting"),
        "backwards": ({"lr": {"low": 1e-3, "high": 1e-5}}, "low (0.001) must be below high"),
        "log at zero": ({"weight_decay": {"low": 0.0, "high": 0.1, "log": True}}, "log scale needs low above 0"),
        "not allowed": ({"batch_size": {"choices": [0, 16]}}, "batch_size = 0 is not allowed"),
        "unknown field": ({"lr": {"low": 1e-5, "high": 1e-3, "scale": "log"}}, "unknown field(s) scale"),
        "not a range": ({"lr": 3e-5}, "lr must be {low: A, high: B}"),
        "steering key": ({"output_dir": {"choices": ["a", "b"]}}, "'output_dir' is not a setting"),
        "remote code": ({"trust_remote_code": {"choices": [True]}}, "trust_remote_code cannot be searched"),
    }
    argvs, expected = [], []
    for name, (space, message) in spaces.items():
        path = tmp_path / f"{name.replace(' ', '-')}.yaml"
        path.write_text(yaml.safe_dump(space))
        argvs.append(["sweep", str(config), "--space", str(path)])
        expected.append(message)
    argvs += [["sweep", str(config), "--budget", "soon"], ["sweep", str(config), "--trials", "0"]]
    expected += ["budget 'soon' is not a duration", "trials must be a whole number of 1 or more"]
    argvs += [["sweep", str(config), "--budget", "0"], ["sweep", str(config), "--trials", "99999999999999999999"]]
    expected += ["budget '0' must be above 0: give the sweep's wall time, e.g. 90s, 30m or 2h", "give 1 to 1000"]
    failures = []
    for argv, message, done in zip(argvs, expected, run_cli_many(argvs)):
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        if done.returncode != 2 or len(errors) != 1 or message not in errors[0] or "Traceback" in done.stderr:
            failures.append(f"{argv[-1]}: exit {done.returncode}: {done.stderr[-600:]}")
    assert not failures, "\n".join(failures)
    assert not folder.exists()


def test_a_space_cannot_turn_on_remote_code():
    """Searching the model is fine; searching it where the config trusts remote code would run each value's Python."""
    from toolkit.config import config_to_dict, load_config
    from toolkit.errors import ToolkitError
    from toolkit.sweeps import STEERING_KEYS, parse_space

    cfg = load_config(ROOT / "recipes/configs/sentiment_minilm.yaml")
    base = {k: v for k, v in config_to_dict(cfg).items() if k not in STEERING_KEYS}
    assert set(parse_space({"model": {"choices": ["a", "b"]}}, base, "space.yaml")) == {"model"}
    trusting = {**base, "trust_remote_code": True}
    for key in ("model", "trust_remote_code"):
        with pytest.raises(ToolkitError, match=f"space.yaml: {key} cannot be searched"):
            parse_space({key: {"choices": [base[key], base[key]]}}, trusting, "space.yaml")


def test_a_failing_searched_value_is_named_and_leaves_no_sweep_folder(tiny_config, tmp_path):
    """A searched data.train or model whose first drawn value fails: the error line names that value and its own
    error (not "every trial would fail"), and the sweep folder, where nothing finished, is gone."""
    missing = {"data.train": str(tmp_path / "missing.csv"), "model": str(tmp_path / "no-model")}
    argvs, folders = [], []
    for key, value in missing.items():
        folder = tmp_path / key / "sweep"  # each config beside its own sweep folder
        folder.parent.mkdir()
        space = tmp_path / f"{key}.yaml"
        space.write_text(yaml.safe_dump({key: {"choices": [value]}, "lr": {"low": 1e-3, "high": 1e-2}}))
        argvs.append(["sweep", str(sweep_config(tiny_config, folder)), "--space", str(space), "--trials", "3"])
        folders.append(folder)
    for (key, value), folder, done in zip(missing.items(), folders, run_cli_many(argvs, timeout=300)):
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert f"the first trial failed on the searched value {key}='{value}'" in errors[0], errors[0]
        assert f"'{value}' does not exist" in errors[0] and "every trial" not in errors[0], errors[0]
        assert not folder.exists(), sorted(p.name for p in folder.iterdir())


def test_every_task_declares_a_valid_default_space():
    """The default space of each shipped config parses against its own config (ranges, choices, keys)."""
    from toolkit.config import config_to_dict, load_config
    from toolkit.sweeps import STEERING_KEYS, default_space, parse_space
    from toolkit.tasks import all_tasks

    for spec in all_tasks():
        cfg = load_config(ROOT / spec.example_config)
        base = {k: v for k, v in config_to_dict(cfg).items() if k not in STEERING_KEYS}
        space = parse_space(default_space(cfg, spec), base, spec.name)
        assert {"lr", "batch_size", "warmup_ratio"} <= set(space), spec.name
    image = next(s for s in all_tasks() if s.name == "image_classification")
    cfg = load_config(ROOT / image.example_config)
    assert "image.mode" in default_space(cfg, image)


def test_ray_backend_runs_trials_on_a_local_ray_cluster_of_two_workers(tiny_config, tmp_path):
    """`ray start --head --num-cpus 2`, then `toolkit sweep --backend ray --address`: two trials as Ray Tune
    trials, at the same time (one CPU each); each is a finished run folder, and `best` names the better one."""
    from conftest import free_port

    ray = Path(sys.executable).parent / "ray"
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = subprocess.run(
        [str(ray), "start", "--head", "--num-cpus", "2", "--num-gpus", "0", "--port", str(port),
         "--include-dashboard", "false", "--disable-usage-stats"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        folder = tmp_path / "sweep"
        config = sweep_config(tiny_config, folder, epochs=3)
        done = run_cli(
            "sweep", str(config), "--trials", "2", "--backend", "ray", "--address", f"127.0.0.1:{port}", timeout=600
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, timeout=120, env=env)
    trials = json.loads((folder / "trials.json").read_text())
    assert [t["trial"] for t in trials] == [0, 1], trials
    finished = [t for t in trials if t["state"] == "complete"]
    assert finished and all((folder / t["folder"] / "results.json").is_file() for t in finished)
    best = max(finished, key=lambda t: t["accuracy"])
    assert (folder / "best").resolve() == (folder / best["folder"]).resolve()
    spans = []  # each trial process's lifetime: its log's "started at" line, and the log's last write
    for t in trials:
        log = folder / "logs" / f"{t['folder']}.log"
        started = [line for line in log.read_text().splitlines() if line.startswith("# started at ")]
        spans.append((float(started[-1].split()[-1]), log.stat().st_mtime))
    overlaps = [a for a in spans for b in spans if a is not b and a[0] < b[1] and b[0] < a[1]]
    assert overlaps, spans  # two workers: trials ran at the same time
