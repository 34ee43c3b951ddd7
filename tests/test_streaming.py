"""Training on a stream (data.streaming): exact resume after SIGKILL, shards, and two "machines" on loopback."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, free_port, run_cli, run_cli_many, train_then_kill, write_config
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


def write_shards(folder, table, suffix: str, change=None) -> list:
    """``table`` in three shards ``train-0000N<suffix>``; ``change(i, frame)`` may alter shard i's rows first."""
    folder.mkdir()
    paths = []
    for i in range(3):
        part = table.iloc[i::3]
        part = change(i, part) if change else part
        path = folder / f"train-{i:05d}{suffix}"
        if suffix == ".csv":
            part.to_csv(path, index=False)
        else:
            part.to_json(path, orient="records", lines=True)
        paths.append(path)
    return paths


def assert_one_error(done, out, *parts: str) -> str:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert all(part in errors[0] for part in parts), (parts, errors[0])
    assert not out.exists()
    return errors[0]


def test_shards_with_other_columns_are_named_with_the_columns(tiny_config, tmp_path):
    """A folder of CSV or JSON Lines shards where one shard calls `text` `review`: the error names that shard, the
    columns it has and the columns expected, before training starts (no run folder)."""
    import pandas as pd

    table = pd.read_csv(tiny_config["data"]["train"])

    def renamed(i, part):
        return part.rename(columns={"text": "review"}) if i == 1 else part

    folders = {suffix: tmp_path / f"shards{suffix}" for suffix in (".csv", ".jsonl")}
    odd = {suffix: write_shards(folder, table, suffix, renamed)[1] for suffix, folder in folders.items()}
    config = write_config(tmp_path / "stream.yaml", stream_config(tiny_config, tmp_path))
    outs = {suffix: tmp_path / f"never{suffix}" for suffix in folders}
    argvs = [["train", str(config), f"data.train={folders[s]}", f"output_dir={outs[s]}"] for s in folders]
    for suffix, done in zip(folders, run_cli_many(argvs)):
        assert_one_error(
            done, outs[suffix], f"data file '{odd[suffix]}' has the columns review, label; expected text, label"
        )


def test_a_shard_that_is_not_utf8_is_named_with_its_offset_and_an_iconv_command(tiny_config, tmp_path):
    """A Latin-1 byte in the first shard (read to learn the columns) or in a later one (met as the stream reads
    on): the error names that shard, the byte's offset in that file, and an iconv command for that file."""
    import pandas as pd

    from toolkit.data import load_table
    from toolkit.streams import readable

    table = pd.read_csv(tiny_config["data"]["train"])
    bad, offsets, outs, argvs = {}, {}, {}, []
    config = write_config(tmp_path / "stream.yaml", stream_config(tiny_config, tmp_path))
    for which in (0, 1):
        shards = write_shards(tmp_path / f"shards{which}", table, ".csv")
        data = shards[which].read_bytes()
        offsets[which] = data.index(b"\n", 200) + 5  # inside a row, past the first lines
        shards[which].write_bytes(data[: offsets[which]] + b"\xe9" + data[offsets[which] :])
        bad[which], outs[which] = shards[which], tmp_path / f"never{which}"
        argvs.append(["train", str(config), f"data.train={shards[which].parent}", f"output_dir={outs[which]}"])
    for which, done in zip(bad, run_cli_many(argvs)):
        shard = bad[which]
        assert_one_error(
            done,
            outs[which],
            f"data file '{shard}' is not UTF-8 text (byte b'\\xe9' at offset {offsets[which]})",
            f"iconv -f latin1 -t utf-8 {shard}.latin1 > {shard}",
        )
    stream = load_table(str(bad[1].parent), streaming=True)  # as training reads it: the stream reaches shard 1
    with pytest.raises(toolkit.ToolkitError, match=f"data file '{bad[1]}' is not UTF-8 text .* offset {offsets[1]}"):
        list(readable(stream))


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
