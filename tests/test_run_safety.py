"""A user's files are never lost: overwrite touches only a toolkit run, and one process at a time trains into a
folder."""

import json
import socket
import subprocess
import sys

from conftest import ROOT, run_cli, write_config

from toolkit.cli import main


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_refuses_a_folder_that_is_not_a_run(tiny_config, tmp_path):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src/important.py").write_text("print('keep me')\n")
    (project / "config.yaml").write_text("name: my project\n")  # looks like a run to a careless check
    before = snapshot(project)
    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    done = run_cli("train", str(config), f"output_dir={project}", "epochs=1", "overwrite=true")
    assert done.returncode == 2 and "not a toolkit run folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert snapshot(project) == before


def test_overwrite_removes_only_a_runs_own_files(tiny_config, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    out = tmp_path / "run"
    assert run_cli("train", str(config), f"output_dir={out}", "epochs=1").returncode == 0
    (out / "notes.txt").write_text("my notes on this run\n")
    before = snapshot(out)
    done = run_cli("train", str(config), f"output_dir={out}", "epochs=1", "lr=1e-3", "overwrite=true")
    assert done.returncode == 2 and "notes.txt" in done.stderr and "Move them out" in done.stderr, done.stderr
    assert snapshot(out) == before
    (out / "notes.txt").unlink()
    done = run_cli("train", str(config), f"output_dir={out}", "epochs=1", "lr=1e-3", "overwrite=true")
    assert done.returncode == 0, done.stderr
    assert "lr: 0.001" in (out / "config.yaml").read_text()
    assert not (out / ".toolkit-lock").exists()  # released at exit


def test_a_second_training_into_a_busy_folder_is_refused(tiny_config, tmp_path, capsys):
    """A process holds the folder through the real lock (as a training run does); every kind of second start is
    refused naming it, and once that process is killed (SIGKILL: no clean-up) the folder is free again."""
    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    out = tmp_path / "run"
    assert run_cli("train", str(config), f"output_dir={out}", "epochs=1", "save_every=5").returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        assert json.loads((out / ".toolkit-lock").read_text()) == {"pid": holder.pid, "host": socket.gethostname()}
        before = snapshot(out)
        second = run_cli("train", str(config), f"output_dir={out}", "epochs=1", "save_every=5")  # as a user would
        assert second.returncode == 2, second.stderr
        assert f"process {holder.pid} on {socket.gethostname()}" in second.stderr and "in use" in second.stderr
        assert "Traceback" not in second.stderr
        for extra in (["overwrite=true"], ["resume=true"]):  # in this process: no second start-up to wait for
            assert main(["train", str(config), f"output_dir={out}", "epochs=1", "save_every=5", *extra]) == 2
            said = capsys.readouterr().err
            assert f"process {holder.pid} on {socket.gethostname()}" in said and "in use" in said
        assert snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".toolkit-lock").exists()  # left behind by the kill, but no longer held
    done = run_cli("train", str(config), f"output_dir={out}", "epochs=1", "save_every=5", "overwrite=true")
    assert done.returncode == 0, done.stderr
    assert not (out / ".toolkit-lock").exists()


HOLD = """
import sys, time
from pathlib import Path
from toolkit.run import run_lock
with run_lock(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_lock_left_by_a_dead_process_is_replaced(tiny_config, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    out = tmp_path / "run"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".toolkit-lock").write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname()}))
    done = run_cli("train", str(config), f"output_dir={out}", "epochs=1")
    assert done.returncode == 0, done.stderr
    assert (out / "best/model.safetensors").is_file() and not (out / ".toolkit-lock").exists()
