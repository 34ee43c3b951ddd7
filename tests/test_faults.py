"""Faults a long run meets: the disk fills up while a checkpoint is written. (A studio killed with kill -9 while a
run trains and another waits is part of tests/test_studio.py's session.)"""

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


def test_a_finished_run_on_a_read_only_disk_or_with_damaged_files(tiny_config, tmp_path):
    """Export into a read-only run folder stops with one error line and changes nothing; predict still reads it. Runs
    whose job file, results.json, metrics.jsonl or config.yaml is damaged are all still listed, each marked."""
    from toolkit.studio import Studio

    runs = tmp_path / "runs"
    good = runs / "good"
    done = run_cli(
        "train", str(write_config(tmp_path / "c.yaml", {**tiny_config, "max_steps": 6, "output_dir": str(good)}))
    )
    assert done.returncode == 0, done.stderr[-3000:]

    if os.geteuid() == 0 and shutil.which("mount") is not None:
        disk = tmp_path / "read_only"
        disk.mkdir()
        mount_tmpfs(disk, 64 << 20)
        try:
            shutil.copytree(good, disk / "good")
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, capture_output=True)
            before = sorted(str(p.relative_to(disk)) for p in disk.rglob("*"))
            done = run_cli("export", str(disk / "good"))
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
            assert "read-only" in errors[0], errors[0]
            assert sorted(str(p.relative_to(disk)) for p in disk.rglob("*")) == before
            done = run_cli("predict", str(disk / "good"), "a lovely film")
            assert done.returncode == 0 and done.stdout.strip(), done.stderr[-3000:]
        finally:
            subprocess.run(["umount", str(disk)], capture_output=True)

    for name in ("results", "metrics", "config", "job"):
        shutil.copytree(good, runs / name)
    (runs / "results/results.json").write_text('{"steps": 6, "metr')
    metrics = (runs / "metrics/metrics.jsonl").read_text().splitlines()
    (runs / "metrics/metrics.jsonl").write_text("\n".join([metrics[0], "\x00\x00 garbage", *metrics[1:]]) + "\n")
    (runs / "config/config.yaml").write_text("task: [unclosed")
    studio = Studio(runs)
    studio.paths.job_path("job").write_text("{not json")
    rows = {row["name"]: row for row in studio.catalog.runs()}
    assert sorted(rows) == ["config", "good", "job", "metrics", "results"]
    assert rows["good"]["status"] == "finished" and rows["good"]["best metric"].startswith("accuracy")
    assert rows["results"]["status"].endswith("(damaged: results.json)")
    assert rows["metrics"]["status"] == "finished (damaged: metrics.jsonl)" and rows["metrics"]["best metric"]
    assert rows["config"]["status"].endswith("(damaged: config.yaml)")
    assert rows["job"]["status"] == "finished (damaged: job file)"
    for name in rows:
        assert studio.catalog.live(name)["name"] == name  # the Live view of each opens too
