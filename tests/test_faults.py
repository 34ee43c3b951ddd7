"""Faults a long run meets: the disk fills up while a checkpoint is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from conftest import run_cli, write_config

pytestmark = pytest.mark.slow


def folder_bytes(folder) -> int:
    """What the folder takes on a tmpfs: each file rounded up to whole 4 KiB pages."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in folder.rglob("*") if p.is_file())


def mount_tmpfs(where, size: int, remount: bool = False) -> None:
    options = f"{'remount,' if remount else ''}size={size}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], check=True, capture_output=True)


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tiny_config, tmp_path):
    """Checkpoints at step 5 (last/) and 10 (best/, then last/ again). The disk holds the first two but not the
    second last/ beside the first: the run stops with one error line, last/ from step 5 is intact, and once space
    is back --resume finishes the run."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to give the run a small tmpfs")
    settings = {**tiny_config, "max_steps": 10, "save_every": 5, "eval_every": 100}
    calibration = tmp_path / "calibration"
    done = run_cli("train", str(write_config(tmp_path / "c.yaml", {**settings, "output_dir": str(calibration)})))
    assert done.returncode == 0, done.stderr
    last, best = folder_bytes(calibration / "last"), folder_bytes(calibration / "best")

    disk = tmp_path / "small_disk"
    disk.mkdir()
    try:
        mount_tmpfs(disk, last + best + last // 2 + 64 * 1024)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"cannot mount a tmpfs here: {err.stderr.decode().strip()}")
    try:
        run = disk / "run"
        config = write_config(tmp_path / "run.yaml", {**settings, "output_dir": str(run)})
        done = run_cli("train", str(config))
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert "the disk is full" in errors[0] and f"toolkit train --resume {run}" in errors[0]
        assert json.loads((run / "last/state.json").read_text())["step"] == 5  # the previous last/, intact
        assert not list(run.glob(".*.tmp"))  # no half-written copy left taking the space

        mount_tmpfs(disk, 4 * (last + best) + 1024 * 1024, remount=True)  # space is back
        done = run_cli("train", "--resume", str(run))
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads((run / "results.json").read_text())
        assert results["steps"] == 10
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_studio_killed_mid_training_loses_and_repeats_nothing(tiny_config, tmp_path):
    """kill -9 of the studio while one run trains and another waits in the queue: after a restart the first is
    still training (its process is not the studio's) or finished, the second starts from the queue, and each run
    trained exactly once (one start record in its metrics.jsonl) to its last step."""
    from gradio_client import Client
    from test_studio import start_studio, wait_for

    from conftest import free_port

    values = {k: v for k, v in tiny_config.items() if k != "output_dir"}
    config = write_config(tmp_path / "job.yaml", {**values, "epochs": 3, "batch_size": 2, "log_every": 10,
                                                   "eval_every": 320})
    runs, port = tmp_path / "runs", free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_studio(runs, port)
    try:
        client = Client(url, verbose=False)
        for name in ("first", "second"):
            client.predict(str(config), [], name, api_name="/start")
        wait_for(client, "first", lambda r: r["status"] == "training" and r["step"] >= 10)
        assert client.predict("second", api_name="/live")["status"] == "queued"
        server.kill()  # SIGKILL: no handler runs, nothing is tidied
        server.wait()
        server = start_studio(runs, port)
        client = Client(url, verbose=False)
        listed = {r["name"]: r["status"] for r in client.predict(api_name="/runs")}
        assert listed["first"] in ("training", "finished") and listed["second"] in ("queued", "starting", "training"), listed
        for name in ("first", "second"):
            wait_for(client, name, lambda r: r["status"] == "finished", timeout=180)
            records = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
            assert sum(r["split"] == "setup" for r in records) == 1, f"{name} started more than once"
            assert json.loads((runs / name / "results.json").read_text())["steps"] == 480
    finally:
        server.terminate()
        server.wait(timeout=30)
        subprocess.run(["pkill", "-f", f"output_dir={runs}"], check=False)
