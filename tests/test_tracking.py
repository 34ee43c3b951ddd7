"""Trackers against the real parts: an `mlflow server` (SQLite) on loopback read back with MlflowClient, W&B in
offline mode with its run files read back, and trackio's local store."""

from __future__ import annotations

import json
import math
import os
import struct
import time
from pathlib import Path

import pytest
from conftest import free_port, run_cli, train_then_kill, write_config

pytest.importorskip("mlflow", reason="the tracking extra is not installed (pip install 'toolkit[tracking]')")


def metrics_log(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """metrics.jsonl as tracker histories: {"train/loss": [(step, value), ...], ...}."""
    out: dict[str, list] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") == "train":
            out.setdefault("train/loss", []).append((record["step"], record["loss"]))
            out.setdefault("train/lr", []).append((record["step"], record["lr"]))
        elif record.get("split") == "validation":
            out.setdefault("validation/accuracy", []).append((record["step"], record["accuracy"]))
    return out


def assert_same_history(got: list[tuple[int, float]], expected: list[tuple[int, float]], name: str) -> None:
    assert [s for s, _ in got] == [s for s, _ in expected], f"{name}: steps {got} != {expected}"
    for (step, a), (_, b) in zip(got, expected):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{name} at step {step}: {a} != {b}"


def wandb_records(path: Path):
    """The records of a W&B run file (.wandb): a 7-byte header, then LevelDB log records in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2 as pb

    blob, pos, block, pending = path.read_bytes(), 7, 32768, b""
    assert blob[:4] == b":W&B"
    while pos + 7 <= len(blob):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", blob[pos : pos + 7])
        data, pos = blob[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending + data if kind == 4 else data)
            yield record
        elif kind == 2:
            pending = data
        elif kind == 3:
            pending += data
        else:
            break


def wandb_history(folder: Path, run_id: str) -> tuple[dict, set]:
    """The offline run files of ``run_id`` under ``folder``, in order, as `wandb sync` would send them to one run:
    a resume writes a file of its own, and a later file's value at a step stands. Histories, and run groups."""
    history: dict[str, dict] = {}
    groups = set()
    for path in sorted(folder.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                groups.add(record.run.run_group)
            if kind != "history":
                continue
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for key, value in row.items():
                if not key.startswith("_"):
                    history.setdefault(key, {})[row["_step"]] = float(value)
    return {key: sorted(steps.items()) for key, steps in history.items()}, groups


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    """A real `mlflow server` with a SQLite store, on loopback, for this file's tests."""
    import subprocess
    import sys
    import urllib.request

    folder = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder}/mlflow.db", "--default-artifact-root", str(folder / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # no job-runner processes: less CPU
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("mlflow server did not start")
            time.sleep(0.5)
    yield uri
    server.terminate()
    server.wait(30)


def test_killed_and_resumed_run_is_one_run_in_every_tracker(tiny_config, tmp_path, mlflow_uri, monkeypatch):
    """kill -9 mid-run, then --resume: MLflow, W&B (offline) and trackio each hold one run whose history equals
    metrics.jsonl step for step (no gap, no duplicate), with its config, final metrics and model card."""
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    run_dir = tmp_path / "run"
    config = write_config(
        tmp_path / "c.yaml",
        {**tiny_config, "epochs": 12, "save_every": 10, "eval_every": 20, "log_every": 2,
         "trackers": ["tensorboard", "mlflow", "wandb", "trackio"]},
    )  # fmt: skip

    def trackers_running(counters: dict) -> bool:  # killed once every tracker has started its run
        try:
            state = json.loads((run_dir / "trackers.json").read_text())
        except (OSError, ValueError):
            return False
        return counters.get("step", 0) >= 50 and all(name in state for name in names)

    names = ("tensorboard", "mlflow", "wandb", "trackio")
    counters = train_then_kill(config, run_dir, trackers_running)
    assert counters["step"] < 240
    first = json.loads((run_dir / "trackers.json").read_text())
    done = run_cli("train", "--resume", str(run_dir))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stopped logging" not in done.stderr, done.stderr[-2000:]
    state = json.loads((run_dir / "trackers.json").read_text())
    expected = metrics_log(run_dir)
    assert expected["train/loss"][-1][0] == 240 and expected["train/loss"][-1][1] < expected["train/loss"][0][1]

    # MLflow: the same run continued (the id kept), its history equal to metrics.jsonl, finished, with its card.
    assert state["mlflow"]["run_id"] == first["mlflow"]["run_id"]
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("toolkit-sentiment")
    runs = client.search_runs([experiment.experiment_id], f"tags.`toolkit.run_dir` = '{run_dir.absolute()}'")
    assert [r.info.run_id for r in runs] == [state["mlflow"]["run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED"
    for name, values in expected.items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, name))
        assert_same_history(history, values, f"mlflow {name}")
    results = json.loads((run_dir / "results.json").read_text())
    assert run.data.metrics["final/test/accuracy"] == pytest.approx(results["test"]["accuracy"])
    assert float(run.data.params["lr"]) == tiny_config["lr"] and run.data.params["machine.precision.chosen"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"README.md", "results.json", "config.yaml"} <= artifacts
    assert state["mlflow"]["url"].startswith(f"{mlflow_uri}/#/experiments/{experiment.experiment_id}/runs/")

    # W&B offline: two run files (one per process) of one run id, whose histories together equal metrics.jsonl.
    assert state["wandb"]["id"] == first["wandb"]["id"]
    history, _ = wandb_history(run_dir, state["wandb"]["id"])
    for name, values in expected.items():
        assert_same_history(history[name], values, f"wandb {name}")
    assert len(list(run_dir.glob(f"wandb/offline-run-*-{state['wandb']['id']}"))) == 2
    assert first["trackio"]["name"] == state["trackio"]["name"]

    # trackio's local store: one run, the same history.
    from trackio.sqlite_storage import SQLiteStorage

    assert SQLiteStorage.get_runs("toolkit-sentiment") == [state["trackio"]["name"]]
    logs = SQLiteStorage.get_logs("toolkit-sentiment", state["trackio"]["name"])
    for name, values in expected.items():
        got = [(row["step"], row[name]) for row in logs if name in row]
        assert_same_history(got, values, f"trackio {name}")

    # The studio's Runs tab: a link or the command that opens each tracker's run.
    from toolkit.tracking import where_tracked

    shown = "\n".join(where_tracked(run_dir))
    assert (
        state["mlflow"]["url"] in shown
        and "wandb sync" in shown
        and "trackio show --project toolkit-sentiment" in shown
    )
    assert "tensorboard --logdir" in shown


def test_tracker_down_warns_once_and_training_goes_on(tiny_config, tmp_path, monkeypatch):
    """An MLflow server that does not answer: one warning, the run trains and finishes as without it, quickly."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    config = write_config(tmp_path / "c.yaml", {**tiny_config, "epochs": 1, "trackers": ["mlflow"]})
    tic = time.monotonic()
    done = run_cli("train", str(config))
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - tic < 60
    warnings = [line for line in done.stderr.splitlines() if "tracker mlflow stopped logging" in line]
    assert len(warnings) == 1 and "does not answer" in warnings[0], done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "results.json").read_text())["test"]["accuracy"] >= 0


def test_unknown_tracker_is_refused_before_anything_loads(tiny_config, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config)
    done = run_cli("train", str(config), "trackers=[mlflow,comet]")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "trackers[1]" in errors[0], done.stderr[-1000:]
    assert not (tmp_path / "run").exists()


def test_sweep_trials_are_child_runs_grouped_under_the_sweep(tiny_config, tmp_path, mlflow_uri, monkeypatch):
    """A sweep logging to MLflow and W&B: one MLflow parent run holding each trial as a child run (the pruned one
    tagged so, as Optuna recorded them) and the best value; each trial's W&B run in the sweep's group."""
    import optuna
    import yaml
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    folder = tmp_path / "sweep"
    config = write_config(
        tmp_path / "sweep.yaml",
        # seed 7: the sampler draws lr 3e-3, 3e-3, then 1e-6, which falls behind at once and is pruned
        {
            **tiny_config,
            "seed": 7,
            "eval_every": 10,
            "output_dir": str(folder),
            "trackers": ["tensorboard", "mlflow", "wandb"],
        },
    )
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": {"choices": [1e-6, 3e-3]}}))
    done = run_cli("sweep", str(config), "--trials", "3", "--space", str(space), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="sweep", storage=f"sqlite:///{folder / 'study.db'}")
    states = {f"trial-{t.number:03d}": t.state.name for t in study.trials}

    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name("toolkit-sentiment")
    (parent,) = client.search_runs([experiment.experiment_id], f"tags.`toolkit.sweep_dir` = '{folder.absolute()}'")
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    tagged = {Path(c.data.tags["toolkit.run_dir"]).name: c.data.tags.get("toolkit.trial_state", "") for c in children}
    assert sorted(tagged) == sorted(states)
    assert "PRUNED" in states.values(), states
    assert {name for name, tag in tagged.items() if tag == "pruned"} == {n for n, s in states.items() if s == "PRUNED"}
    best = study.best_trial
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best/validation/accuracy"] == pytest.approx(best.value)
    assert parent.data.tags["toolkit.best_trial"] == f"trial-{best.number:03d}"
    assert not list(folder.glob("trial-*/tensorboard"))  # TensorBoard is left out of trials

    group = json.loads((folder / "trackers.json").read_text())["group"]
    for trial in states:
        run_id = json.loads((folder / trial / "trackers.json").read_text())["wandb"]["id"]
        history, groups = wandb_history(folder / trial, run_id)
        assert groups == {group} and history["validation/accuracy"], trial


def test_exported_mlflow_model_predicts_as_toolkit_predict(tiny_config, tmp_path, mlflow_uri, monkeypatch):
    """`toolkit export RUN --mlflow --register NAME`: the model lands in the run's own MLflow run, and
    mlflow.pyfunc.load_model (by run and by registered version) answers what `toolkit predict` answers."""
    import mlflow
    import pandas as pd
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    mlflow.set_tracking_uri(mlflow_uri)
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", {**tiny_config, "epochs": 3, "trackers": ["mlflow"]})
    assert run_cli("train", str(config)).returncode == 0
    logged_run = json.loads((run_dir / "trackers.json").read_text())["mlflow"]["run_id"]
    done = run_cli("export", str(run_dir), "--mlflow", "--register", "tiny-sentiment")
    assert done.returncode == 0, done.stderr[-2000:]
    uri = f"runs:/{logged_run}/model"
    assert f"logged: {uri}" in done.stdout

    texts = ["a great and wonderful film", "dull , awful and boring", "the plot"]
    predicted = run_cli("predict", str(run_dir), *texts)
    expected = [json.loads(line) for line in predicted.stdout.strip().splitlines()]
    for source in (uri, "models:/tiny-sentiment/1"):
        model = mlflow.pyfunc.load_model(source)
        for inputs in (texts, pd.DataFrame({"text": texts})):
            answers = model.predict(inputs)
            assert [a["label"] for a in answers] == [e["label"] for e in expected]
            for answer, wanted in zip(answers, expected):
                assert answer["scores"] == pytest.approx(wanted["scores"], abs=1e-5)
    assert MlflowClient(mlflow_uri).get_run(logged_run).info.status == "FINISHED"


def test_worker_of_a_dead_run_ends_even_when_its_tracker_hangs(tmp_path):
    """A tracking server that answers its health check and then never answers again (MLflow's client would wait
    minutes per call): once the run's process is gone, its trackers' worker still ends, at its deadline."""
    import http.server
    import subprocess
    import sys
    import threading

    import psutil

    class Hanging(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/health"):
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")
            else:
                time.sleep(120)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Hanging)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run = (
        "import sys; from toolkit.tracking import Trackers; t = Trackers(['mlflow'], 'text_classification'); "
        "print(t.proc.pid, flush=True); sys.stdin.readline()"
    )
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{server.server_address[1]}",
        "TOOLKIT_TRACKERS_EXIT_SECONDS": "2",
    }
    parent = subprocess.Popen([sys.executable, "-c", run], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        worker = psutil.Process(int(parent.stdout.readline()))
        time.sleep(8)  # the worker imports MLflow and hangs in its experiment call
        assert worker.is_running(), "the worker should live as long as its run"
        parent.stdin.close()  # the run ends without closing its trackers
        parent.wait(10)
        worker.wait(30)  # psutil.TimeoutExpired here: the worker outlived its deadline
    finally:
        parent.kill()
        server.shutdown()
