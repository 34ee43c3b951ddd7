"""The studio: a real `toolkit studio` process, driven through gradio_client and through headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import BROWSER_ARGS, ROOT, free_port, write_config

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(os.environ.get("TOOLKIT_SCREENSHOTS") or Path(__import__("tempfile").gettempdir()) / "toolkit-studio")


def start_studio(runs: Path, port: int) -> subprocess.Popen:
    """`toolkit studio` as a user starts it, once it answers."""
    server = subprocess.Popen([sys.executable, "-m", "toolkit", "studio", "--runs", str(runs), "--port", str(port),
                               "--max-upload-mb", "1"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 90
    while time.time() < deadline:
        assert server.poll() is None, server.stderr.read().decode()[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    pytest.fail("toolkit studio did not answer within 90 s")


def stop_studio(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture
def studio_config(tiny_config, tmp_path) -> Path:
    """The tiny sentiment job, long enough (1,280 steps, about 8 s) to be watched, stopped and resumed."""
    values = {k: v for k, v in tiny_config.items() if k != "output_dir"}
    return write_config(tmp_path / "tiny_studio.yaml", {**values, "epochs": 8, "batch_size": 2, "log_every": 10,
                                                         "eval_every": 320})


def wait_for(client, name: str, done, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        live = client.predict(name, api_name="/live")
        if done(live):
            return live
        time.sleep(0.1)
    pytest.fail(f"run {name} never reached the state wanted; last: {json.dumps(live)[:2000]}")


def test_api_queue_stop_resume_and_restart(studio_config, tmp_path):
    """Through gradio_client: a second run waits in the queue; Stop keeps last/ and Resume continues it exactly
    (it ends equal to the uninterrupted run); a studio restart mid-training lists the run as training and the
    queue goes on; predictions, deletion with confirmation, and refusals of bad names and uploads."""
    from gradio_client import Client, handle_file
    from safetensors.torch import load_file

    runs, port = tmp_path / "runs", free_port()
    server = start_studio(runs, port)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert client.predict(str(studio_config), [], "stopped", api_name="/start")["state"] == "started"
        queued = client.predict(str(studio_config), [], "whole", api_name="/start")
        assert queued["state"] == "queued"
        live = wait_for(client, "whole", lambda r: True)
        assert live["status"] == "queued" and live["queue_position"] == 1

        live = wait_for(client, "stopped", lambda r: r["step"] >= 10)
        assert live["status"] == "training" and live["total_steps"] == 1280 and live["samples_per_second"] > 0
        assert live["step"] < 1280, "the run ended before it could be stopped"
        assert "stopping" in client.predict("stop", "stopped", "", api_name="/action")
        live = wait_for(client, "stopped", lambda r: r["status"] not in ("training", "starting"))
        assert live["status"] == "stopped", live["log"]
        assert (runs / "stopped/last/training_state.pt").is_file() and not (runs / "stopped/results.json").exists()
        stopped_at = json.loads((runs / "stopped/last/state.json").read_text())["step"]
        assert 10 <= stopped_at < 1280

        # The queued run starts once the first has stopped; restart the studio while it trains.
        wait_for(client, "whole", lambda r: r["status"] == "training" and r["step"] >= 10)
        assert client.predict("resume", "stopped", "", api_name="/action") == "queued"
        stop_studio(server)
        server = start_studio(runs, port)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        listed = {r["name"]: r for r in client.predict(api_name="/runs")}
        assert listed["whole"]["status"] == "training" and listed["stopped"]["status"] == "queued", listed
        assert listed["whole"]["task"] == "sentiment"

        wait_for(client, "stopped", lambda r: r["status"] == "finished", timeout=180)
        whole, resumed = (json.loads((runs / n / "results.json").read_text()) for n in ("whole", "stopped"))
        assert whole["steps"] == resumed["steps"] == 1280 and whole["best_step"] == resumed["best_step"]
        assert whole["test"]["loss"] == pytest.approx(resumed["test"]["loss"], abs=1e-6)
        wa, wb = load_file(runs / "whole/best/model.safetensors"), load_file(runs / "stopped/best/model.safetensors")
        assert all(wa[k].allclose(wb[k], atol=1e-6) for k in wa)

        answer = client.predict("whole", "a wonderful and lovely film", api_name="/predict")
        assert answer[0]["label"] == "positive"

        with pytest.raises(Exception, match="confirm"):
            client.predict("delete", "whole", "wrong", api_name="/action")
        assert (runs / "whole").is_dir()
        assert client.predict("delete", "whole", "whole", api_name="/action") == "deleted"
        assert not (runs / "whole").exists() and "whole" not in {r["name"] for r in client.predict(api_name="/runs")}

        for bad in ("../escape", "/tmp/escape", "..", ".studio", "a/b"):
            with pytest.raises(Exception, match="not allowed"):
                client.predict(str(studio_config), [], bad, api_name="/start")
            with pytest.raises(Exception, match="not allowed"):
                client.predict(bad, api_name="/live")
        assert sorted(p.name for p in runs.iterdir()) == [".studio", "stopped"]

        big = tmp_path / "big.csv"
        big.write_text("text,label\n" + "a lovely story,positive\n" * 60_000)  # 1.4 MB: over the 1 MB limit
        with pytest.raises(Exception, match="(?i)too large|exceeds|size|limit"):
            client.predict(handle_file(str(big)), api_name="/upload")
        evil = tmp_path / "evil.zip"
        with zipfile.ZipFile(evil, "w") as archive:
            archive.writestr("ants/ok.jpg", b"x")
            archive.writestr("../../outside.txt", b"x")
        with pytest.raises(Exception, match="outside"):
            client.predict(handle_file(str(evil)), api_name="/upload")
        assert not (runs / ".studio" / "outside.txt").exists() and not (runs / "outside.txt").exists()
        uploaded = client.predict(handle_file(str(studio_config)), api_name="/upload")
        assert Path(uploaded).name == "tiny_studio.yaml" and (runs / ".studio/uploads/tiny_studio.yaml").is_file()
    finally:
        stop_studio(server)
        subprocess.run(["pkill", "-f", f"output_dir={runs}"], check=False)


def test_browser_train_watch_stop_resume_try_and_compare(studio_config, tmp_path):
    """Headless Chromium: upload a config, start a run from the Train tab and see its curve gain points, queue a
    second one, reload mid-training, stop, resume, let it finish, classify in the Try tab, compare the two runs.
    Saves a screenshot of each tab (TOOLKIT_SCREENSHOTS=docs/studio to refresh the docs' ones)."""
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium for these tests")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    short = write_config(tmp_path / "short.yaml", {**yaml.safe_load(studio_config.read_text()), "epochs": 1})
    runs, port = tmp_path / "runs", free_port()
    server = start_studio(runs, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")

            def start_run(config: Path, name: str) -> None:
                page.get_by_role("tab", name="Train").click()
                clear = page.locator("#config-upload").get_by_role("button", name="Clear")
                if clear.count():  # the previous upload
                    clear.click()
                page.locator("#config-upload input[type=file]").set_input_files(str(config))
                expect(page.locator("#field-epochs input")).to_have_value(
                    str(yaml.safe_load(config.read_text())["epochs"]), timeout=20_000)
                page.locator("#run-name").get_by_role("textbox").fill(name)
                expect(page.locator("#command")).to_contain_text(f"output_dir=", timeout=20_000)
                expect(page.locator("#command")).to_contain_text(name)
                page.locator("#start").click()
                expect(page.locator("#train-message")).to_contain_text(name, timeout=20_000)

            start_run(studio_config, "long")
            page.screenshot(path=str(SCREENSHOTS / "studio-train.png"), full_page=True)
            start_run(short, "short")
            expect(page.locator("#train-message")).to_contain_text("queued")
            page.get_by_role("tab", name="Live").click()

            def live_step() -> int:
                text = page.locator("#live-status").inner_text()
                return int(text.split("step ")[1].split("/")[0]) if "step " in text else 0

            pick(page, "#live-run", "long")
            expect(page.locator("#live-status")).to_contain_text("training", timeout=60_000)
            expect(page.locator("#live-status")).to_contain_text("step ", timeout=30_000)
            first = live_step()
            page.wait_for_function(f"() => document.querySelector('#live-status').innerText.match(/step (\\d+)/) && "
                                   f"+document.querySelector('#live-status').innerText.match(/step (\\d+)/)[1] > {first}",
                                   timeout=30_000)
            expect(page.locator("#loss-plot img")).to_be_visible()  # the curve, drawn from metrics.jsonl
            page.reload()  # the state is in the run folders: a new page shows the same run training
            page.get_by_role("tab", name="Live").click()
            pick(page, "#live-run", "long")
            expect(page.locator("#live-status")).to_contain_text("training", timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "studio-live.png"), full_page=True)
            page.locator("#stop").click()
            expect(page.locator("#live-status")).to_contain_text("stopped", timeout=60_000)
            pick(page, "#live-run", "short")  # the queued run starts once the first has stopped
            expect(page.locator("#live-status")).to_contain_text("finished", timeout=90_000)
            pick(page, "#live-run", "long")
            page.locator("#resume").click()
            expect(page.locator("#live-status")).to_contain_text("finished", timeout=120_000)
            expect(page.locator("#live-status")).to_contain_text("step 1280/1280")

            page.get_by_role("tab", name="Try").click()
            pick(page, "#try-run", "long")
            page.locator("#text-input textarea").fill("what a wonderful, lovely story")
            page.locator("#classify").click()
            expect(page.locator("#prediction")).to_contain_text("positive", timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "studio-try.png"), full_page=True)

            page.get_by_role("tab", name="Runs").click()
            page.locator("#runs-refresh").click()
            expect(page.locator("#runs-table")).to_contain_text("finished", timeout=20_000)
            pick(page, "#compare", "long")
            expect(page.locator("#compare-table")).to_contain_text("long", timeout=20_000)
            pick(page, "#compare", "short")
            expect(page.locator("#compare-table")).to_contain_text("short", timeout=20_000)
            expect(page.locator("#compare-table")).to_contain_text("validation accuracy")
            page.wait_for_timeout(1000)
            page.screenshot(path=str(SCREENSHOTS / "studio-runs.png"), full_page=True)

            page.get_by_role("tab", name="Evaluate").click()
            pick(page, "#eval-run", "long")
            page.locator("#eval-file input[type=file]").set_input_files(yaml.safe_load(studio_config.read_text())["data"]["test"])
            page.locator("#evaluate").click()
            expect(page.locator("#eval-metrics")).to_contain_text("accuracy", timeout=60_000)
            expect(page.locator("#confusion")).to_contain_text("true label")
            page.screenshot(path=str(SCREENSHOTS / "studio-evaluate.png"), full_page=True)
            browser.close()
    finally:
        stop_studio(server)
        subprocess.run(["pkill", "-f", f"output_dir={runs}"], check=False)


def pick(page, dropdown: str, option: str) -> None:
    """Choose ``option`` in a Gradio dropdown (its choices refresh when it opens)."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.locator(f"{dropdown} input").blur()  # closes the list; the next click opens it again


def test_names_and_archives_cannot_leave_the_runs_folder(text_data, tmp_path):
    from toolkit.errors import ToolkitError
    from toolkit.studio import Studio, preview_data, safe_name

    studio = Studio(tmp_path / "runs")
    for bad in ("", "..", "../x", "/etc", "a/b", ".hidden", "x" * 65, "a\\b", "a b"):
        with pytest.raises(ToolkitError, match="not allowed"):
            safe_name(bad)
    assert safe_name("run-1.v2_final") == "run-1.v2_final"
    own = tmp_path / "runs" / "notes"  # a folder that is not a run: the studio never deletes it
    own.mkdir()
    with pytest.raises(ToolkitError, match="only run folders"):
        studio.delete("notes", "notes")
    assert own.is_dir()
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("data/ants/a.jpg", b"x")
        zipped.writestr("data/bees/b.jpg", b"x")
    extracted = studio.save_upload(archive, "../../images.zip")
    assert extracted == (tmp_path / "runs/.studio/uploads/images/data").resolve()
    assert sorted(p.name for p in extracted.iterdir()) == ["ants", "bees"]
    found = preview_data(str(text_data["train"]))
    assert found["columns"] == ["text", "label"] and found["label_column"] == "label"
    assert found["label_counts"] == {"positive": 160, "negative": 160} and len(found["rows"]) == 5
