"""Training on a stream (data.streaming): exact resume after SIGKILL, shards, and two "machines" on loopback."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, free_port, run_cli, train_then_kill, write_config
from safetensors.torch import load_file

import toolkit


def stream_config(tiny_config, tmp_path, **extra) -> dict:
    # 320 rows in batches of 8: 40 batches an epoch, so 60 steps cross an epoch boundary; a buffer of 64 rows
    # shuffles, and is still full when a checkpoint is taken.
    return {
        **tiny_config,
        "data": {**tiny_config["data"], "streaming": True, "shuffle_buffer": 64},
        "batch_size": 8,
        "max_steps": 60,
        "eval_every": 30,
        "save_every": 7,
        "output_dir": str(tmp_path / "run"),
        **extra,
    }


@pytest.mark.slow
def test_sigkill_inside_the_stream_then_resume_matches_uninterrupted(tiny_config, tmp_path):
    """Killed in the second pass over the stream with the shuffle buffer full: --resume ends with the same weights
    as a run never stopped (the source's position, the buffer and its random state are in last/)."""
    config = write_config(tmp_path / "stream.yaml", stream_config(tiny_config, tmp_path))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = run_cli("train", str(config), f"output_dir={whole}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the stream's first" not in done.stderr  # data.validation is given: no rows held out of the stream

    counters = train_then_kill(config, killed, lambda c: c.get("step", 0) >= 42)
    assert not (killed / "results.json").exists(), "the run finished before it could be killed"
    assert 42 <= counters["step"] < 60
    saved = json.loads((killed / "last" / "stream_state.json").read_text())
    assert len(saved) == 1 and saved[0]["epoch"] == 1 and len(saved[0]["buffer"]) == 64

    resumed = run_cli("train", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (json.loads((d / "results.json").read_text()) for d in (whole, killed))
    assert a["steps"] == b["steps"] == 60 and a["best_step"] == b["best_step"]
    assert a["test"]["loss"] == pytest.approx(b["test"]["loss"], abs=1e-6)
    wa, wb = load_file(whole / "last/model.safetensors"), load_file(killed / "last/model.safetensors")
    assert all(wa[k].allclose(wb[k], atol=1e-6) for k in wa)
    assert a["test"]["accuracy"] >= 0.8  # and it learned


def test_stream_rules_shards_and_holdout(tiny_config, tmp_path):
    """A folder of Parquet shards streams as one table; without data.validation the stream's first rows validate;
    without max_steps the error says to set it."""
    import pandas as pd

    shards = tmp_path / "shards"
    shards.mkdir()
    table = pd.read_csv(tiny_config["data"]["train"])
    for i in range(4):
        table.iloc[i::4].to_parquet(shards / f"train-{i:05d}.parquet")
    settings = stream_config(tiny_config, tmp_path, max_steps=12, eval_every=6, save_every=None)
    settings["data"] = {**settings["data"], "train": str(shards), "validation": None, "max_eval_rows": 40}

    with pytest.raises(toolkit.ToolkitError, match="data.streaming needs max_steps"):
        toolkit.train({**settings, "max_steps": None})
    run = toolkit.train(settings)
    assert run.metrics["steps"] == 12 and run.metrics["validation"]["count"] == 40
    assert run.metrics["train_samples"] == 12 * 8


def launch_machine(rank: int, port: int, config, digests) -> subprocess.Popen:
    """One "machine" of two: its own `accelerate launch` with one process, meeting the other over loopback."""
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    command = [
        accelerate, "launch", "--multi_gpu", "--num_machines", "2", "--machine_rank", str(rank),
        "--num_processes", "2", "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
        "--mixed_precision", "no", "--dynamo_backend", "no",
        str(ROOT / "tests/ddp_worker.py"), str(config), str(digests),
    ]  # fmt: skip
    log = open(digests / f"machine{rank}.log", "w")
    return subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )


@pytest.mark.slow
def test_two_machines_on_loopback_stream_their_own_shards(tiny_config, tmp_path):
    """Two `accelerate launch` groups (--num_machines 2, machine ranks 0 and 1, gloo, one process each) train on a
    stream of two shards, one each: both end with the same weights, and there is one run folder."""
    import pandas as pd

    shards = tmp_path / "shards"
    shards.mkdir()
    table = pd.read_csv(tiny_config["data"]["train"])
    for i in range(2):
        table.iloc[i::2].to_parquet(shards / f"train-{i:05d}.parquet")
    settings = stream_config(tiny_config, tmp_path, max_steps=20, eval_every=10)
    settings["data"] = {**settings["data"], "train": str(shards)}
    config = write_config(tmp_path / "machines.yaml", settings)
    digests = tmp_path / "digests"
    digests.mkdir()
    port = free_port()
    machines = [launch_machine(rank, port, config, digests) for rank in (0, 1)]
    for rank, machine in enumerate(machines):
        assert machine.wait(timeout=400) == 0, (digests / f"machine{rank}.log").read_text()[-3000:]
    ranks = [json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 20 and results["train_samples"] == 20 * 8 * 2
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == len(set(records))  # written by one process
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("run")] == ["run"]
