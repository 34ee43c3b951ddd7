"""The labelling loop against a real Label Studio server (SQLite, loopback, started once here from the
.venv-label-studio that `make test` installs): a run's most uncertain rows are pushed with its predictions,
annotated through Label Studio's own API, pulled back as training data, and trained on."""

import csv
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, free_port, run_cli, write_config

TOKEN = "0123456789abcdef0123456789abcdef01234567"
SERVER = Path(os.environ.get("TOOLKIT_LABEL_STUDIO") or ROOT / ".venv-label-studio" / "bin" / "label-studio")


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    if not SERVER.exists():
        pytest.fail(f"{SERVER} is not installed: `make label-studio` installs Label Studio's server (make test does)")
    folder = tmp_path_factory.mktemp("label-studio")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [str(SERVER), "start", "--no-browser", "--port", str(port), "--host", url, "--internal-host", "127.0.0.1",
         "--data-dir", str(folder / "data"), "--username", "admin@example.com", "--password", "not-a-secret-1",
         "--user-token", TOKEN, "--enable-legacy-api-token"],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""},  # no error reports leave the test
    )  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline:
        assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        server.kill()
        pytest.fail("label-studio did not answer within 240 s")
    yield url
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_push_annotate_pull_train(label_studio, tiny_config, text_data, tmp_path):
    env = {"LABEL_STUDIO_URL": label_studio, "LABEL_STUDIO_API_KEY": TOKEN}
    config = write_config(tmp_path / "c.yaml", {**tiny_config, "epochs": 2})
    assert run_cli("train", str(config)).returncode == 0
    run = tmp_path / "run"

    pushed = run_cli("label", "push", str(run), "--data", str(text_data["validation"]), "--count", "20",
                     "--project", "reviews", env_extra=env)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    assert "20 rows sent to project" in pushed.stdout
    again = run_cli("label", "push", str(run), "--data", str(text_data["validation"]), "--select", "suspect",
                    "--count", "4", "--project", "reviews", env_extra=env)  # fmt: skip
    assert again.returncode == 0 and pushed.stdout.split("project ")[1][:2] == again.stdout.split("project ")[1][:2]
    from toolkit.labelstudio import projects_of

    assert projects_of(run) == [f"- Label Studio: [reviews]({label_studio}/projects/{pushed.stdout.split()[5]})"]

    # A person labels each task in Label Studio: here through its own API, with the file's true label.
    truth = read_csv(text_data["validation"])
    http = httpx.Client(base_url=label_studio, headers={"Authorization": f"Token {TOKEN}"})
    project = next(p for p in http.get("/api/projects").json()["results"] if p["title"] == "reviews")
    assert '<Choice value="positive"/>' in project["label_config"]
    tasks = http.get(f"/api/projects/{project['id']}/tasks", params={"page_size": 100}).json()
    tasks = tasks["tasks"] if isinstance(tasks, dict) else tasks
    assert len(tasks) == 24 and all(t["total_predictions"] == 1 for t in tasks)
    for task in tasks[:20]:
        label = truth[task["data"]["toolkit_row"]]["label"]
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        assert http.post(f"/api/tasks/{task['id']}/annotations", json={"result": result}).status_code == 201

    out = tmp_path / "labelled.csv"
    pulled = run_cli("label", "pull", "reviews", "--out", str(out), env_extra=env)
    assert pulled.returncode == 0, pulled.stderr[-2000:]
    rows = read_csv(out)
    assert len(rows) == 20 and all(r["label"] == truth[int(r["toolkit_row"])]["label"] for r in rows)
    assert all(r["text"] == truth[int(r["toolkit_row"])]["text"] for r in rows)

    trained = run_cli("train", str(config), f"data.train={out}", f"output_dir={tmp_path / 'again'}")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert (tmp_path / "again" / "best").is_dir()


def test_a_server_that_does_not_answer_is_one_error(tiny_config, tmp_path, text_data):
    env = {"LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}", "LABEL_STUDIO_API_KEY": TOKEN}
    done = run_cli("label", "pull", "reviews", "--out", str(tmp_path / "x.csv"), env_extra=env)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "does not answer" in errors[0], done.stderr[-1000:]
    missing = run_cli("label", "pull", "reviews", "--out", str(tmp_path / "x.csv"),
                      env_extra={"LABEL_STUDIO_API_KEY": ""})  # fmt: skip
    assert missing.returncode == 2 and "LABEL_STUDIO_API_KEY" in missing.stderr
    assert not (tmp_path / "x.csv").exists()
