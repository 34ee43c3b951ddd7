"""Real 2-process DDP on the CPU (gloo) through ``accelerate launch``."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, gan_config, write_config


def launch_two_processes(config, digests) -> list[dict]:
    """Run tests/ddp_worker.py under `accelerate launch` as 2-process gloo DDP; return each rank's record."""
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    done = subprocess.run(
        [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            "0",
            str(ROOT / "tests/ddp_worker.py"),
            str(config),
            str(digests),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((digests / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_two_process_ddp_ranks_agree_and_only_rank0_writes(tiny_config, tmp_path):
    digests = tmp_path / "digests"
    digests.mkdir()
    config = write_config(
        tmp_path / "ddp.yaml", {**tiny_config, "epochs": 4, "lr": 5e-3, "eval_every": 10, "trackers": ["tensorboard"]}
    )
    ranks = launch_two_processes(config, digests)
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # identical weights after training

    run_dir = tmp_path / "run"
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(records) == len(set(records))  # each record once: rank 1 wrote none
    steps = [json.loads(r)["step"] for r in records if json.loads(r)["split"] == "validation"]
    assert steps == [10, 20, 30, 40]  # 320 rows / (16 x 2 ranks) = 10 steps an epoch
    writers = {path.name.split(".")[-2] for path in run_dir.rglob("events.out.tfevents*")}  # ...<host>.<pid>.<n>
    assert len(writers) == 1  # TensorBoard written by one process
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train_samples"] == 1280 and results["test"]["count"] == 64
    assert results["test"]["accuracy"] >= 0.8


@pytest.mark.slow
def test_two_process_gan_ranks_agree(tmp_path):
    """The GAN's own training step averages gradients over processes: both ranks end with the same parameters."""

    digests = tmp_path / "digests"
    digests.mkdir()
    config = write_config(tmp_path / "gan.yaml", gan_config(tmp_path / "run", epochs=2))
    ranks = launch_two_processes(config, digests)
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["parameters"] == ranks[1]["parameters"]  # batch-norm statistics stay per rank, as without SyncBN
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["train_samples"] == 2 * 640  # 640 digits a epoch, split over the two ranks
