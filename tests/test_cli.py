"""The command line as a user runs it: train, eval, predict, resume, and bad input."""

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, run_cli, run_cli_many, train_then_kill, write_config
from safetensors.torch import load_file


def test_train_eval_predict(tiny_config, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    out = tmp_path / "cli_run"
    done = run_cli("train", str(config), f"output_dir={out}", "epochs=4", "lr=3e-3")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["test_accuracy"] >= 0.8

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:  # independent commands on the finished run
        evaluated, validation, predicted = pool.map(
            lambda args: run_cli(*args),
            [
                ("eval", str(out)),
                ("eval", str(out), "--data", tiny_config["data"]["validation"]),
                ("predict", str(out), "a great film", "an awful dull story"),
            ],
        )
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert metrics["accuracy"] == pytest.approx(summary["test_accuracy"])
    on_validation = json.loads(validation.stdout.splitlines()[-1])
    assert on_validation["accuracy"] == pytest.approx(summary["validation_accuracy"])
    assert predicted.returncode == 0, predicted.stderr
    lines = [json.loads(line) for line in predicted.stdout.strip().splitlines()]
    assert [line["input"] for line in lines] == ["a great film", "an awful dull story"]
    assert [line["label"] for line in lines] == ["positive", "negative"]
    assert sum(lines[0]["scores"].values()) == pytest.approx(1.0)

    empty = run_cli("predict", str(out), "")
    assert empty.returncode == 2 and "input 1 is empty" in empty.stderr


def test_bad_input_exits_nonzero_and_writes_nothing(tiny_config, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    val = tmp_path / "val.csv"
    val.write_text("text,label\ngood film,positive\nso-so film,neutral\n")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,positive\n".encode("latin-1"))
    cases = [
        ("epohcs=2", "unknown config key 'epohcs'. Did you mean epochs?"),
        ("batch_size=many", "'batch_size' has value 'many' (str); expected int"),
        ("data.text_column=review", "column 'review' is missing from data.train"),
        ("data.train=/nonexistent/train.csv", "does not exist"),
        (f"data.validation={val}", "labels that training never saw: neutral"),
        (f"data.train={latin}", "not UTF-8"),
    ]
    outs = [tmp_path / f"never{i}" for i in range(len(cases))]
    results = run_cli_many([["train", str(config), f"output_dir={out}", o] for out, (o, _) in zip(outs, cases)])
    for out, (override, message), done in zip(outs, cases, results):
        assert done.returncode == 2, (override, done.stderr[-2000:])
        assert message in done.stderr and "Traceback" not in done.stderr, (override, done.stderr[-2000:])
        assert not out.exists()


def test_overrides_after_the_flags_are_taken_as_overrides(tiny_config, tmp_path):
    """`toolkit sweep CONFIG --budget 30m key=value`: the override after the flags is applied (a typo in it is then
    named as a config key), not called an unrecognized argument; anything else after the flags still is one."""
    from toolkit.cli import parse_args

    args = parse_args(["sweep", "c.yaml", "lr=1e-3", "--trials", "3", "epochs=2", "--budget", "1h", "seed=1"])
    assert args.overrides == ["lr=1e-3", "epochs=2", "seed=1"] and (args.trials, args.budget) == (3, "1h")
    config = write_config(tmp_path / "tiny.yaml", {**tiny_config, "output_dir": str(tmp_path / "sweep")})
    cases = {
        ("sweep", str(config), "--budget", "30m", "epohcs=2"): "error: unknown config key 'epohcs'. Did you mean",
        ("sweep", str(config), "--budget", "30m", "stray.yaml"): "error: unrecognized arguments: stray.yaml",
        ("eval", str(tmp_path / "run"), "lr=1e-3"): "error: unrecognized arguments: lr=1e-3",
    }
    for message, done in zip(cases.values(), run_cli_many([list(argv) for argv in cases])):
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and errors[0].startswith(message), done.stderr[-2000:]
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "sweep").exists()


def test_unreachable_hub_model_fails_fast(tiny_config, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolkit",
            "train",
            str(config),
            "model=someone/no-such-model",
            f"output_dir={tmp_path / 'x'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    assert "someone/no-such-model" in done.stderr and "local folder" in done.stderr
    assert time.perf_counter() - start < 30  # not huggingface_hub's ~46 s of retries


def _results(run_dir):
    return json.loads((run_dir / "results.json").read_text())


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tiny_config, tmp_path):
    # 2 epochs of 40 steps, a last/ every 7 steps: killed at the first mid-epoch checkpoint of the second epoch.
    settings = {**tiny_config, "epochs": 2, "batch_size": 8, "save_every": 7, "eval_every": "epoch"}
    config = write_config(tmp_path / "resume.yaml", settings)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_cli("train", str(config), f"output_dir={whole}").returncode == 0

    # kill once a mid-epoch checkpoint of the second epoch exists
    counters = train_then_kill(config, killed, lambda c: c.get("epoch") == 1 and c.get("batch_in_epoch", 0) > 0)
    assert not (killed / "results.json").exists(), "the run finished before it could be killed"
    assert counters["epoch"] == 1 and 0 < counters["batch_in_epoch"] < 40

    resumed = run_cli("train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    a, b = _results(whole), _results(killed)
    for split in ("validation", "test"):
        assert a[split]["accuracy"] == b[split]["accuracy"]
        assert a[split]["loss"] == pytest.approx(b[split]["loss"], abs=1e-6)
    assert a["best_step"] == b["best_step"] and a["steps"] == b["steps"]
    wa, wb = load_file(whole / "best/model.safetensors"), load_file(killed / "best/model.safetensors")
    assert all(wa[k].allclose(wb[k], atol=1e-6) for k in wa)
    steps = [
        json.loads(line)["step"]
        for line in (killed / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # no duplicate records after the resume


def test_installing_adds_one_import_name(tmp_path):
    """apps/ and recipes/ are installed as toolkit.apps and toolkit.recipes: outside the repository no global
    `apps` or `recipes` module exists."""
    probe = (
        "import importlib.util as u, sys; "
        "import toolkit.apps.sentiment, toolkit.recipes.sentiment; "
        "sys.exit(0 if u.find_spec('apps') is None and u.find_spec('recipes') is None else 'global module found')"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
