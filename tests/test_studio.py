"""The studio: a real `toolkit studio` process, driven through gradio_client and through headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml
from conftest import BROWSER_ARGS, free_port, pick, start_studio, stop_studio, wait_for, write_config

from toolkit import run as runlib

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(
    os.environ.get("TOOLKIT_SCREENSHOTS") or Path(__import__("tempfile").gettempdir()) / "toolkit-studio"
)


@pytest.fixture
def studio_config(tiny_config, tmp_path) -> Path:
    """The tiny sentiment job, long enough (960 steps, about 6 s) to be watched, stopped and resumed."""
    values = {k: v for k, v in tiny_config.items() if k != "output_dir"}
    return write_config(
        tmp_path / "tiny_studio.yaml", {**values, "epochs": 6, "batch_size": 2, "log_every": 10, "eval_every": 320}
    )


def reload(page, url: str) -> None:
    """Reload after a studio restart; Gradio's page may be reloading itself at that moment (net::ERR_ABORTED)."""
    from playwright.sync_api import Error

    for attempt in range(3):
        try:
            page.goto(url)
            return
        except Error:
            if attempt == 2:
                raise
            time.sleep(1)


def test_studio_in_a_browser_and_through_its_api(studio_config, tmp_path):
    """One studio session, as a user drives it in headless Chromium, checked through gradio_client:
    - Train tab: upload a config, start a run, start an identical one (it waits in the queue);
    - Live tab: the step count and the curve grow; a page reload shows the same run training; Stop keeps last/;
    - the queued run starts; Resume queues the stopped one; the studio is killed (SIGKILL) while a run trains and
      one waits, and after a restart lists them as training and queued; each trains once, and the resumed run
      finishes equal to the uninterrupted one (exact resume);
    - Try classifies a sentence; Runs compares the two runs; Evaluate scores a file with a confusion matrix;
    - the API predicts, deletes only with confirmation, and refuses bad names, oversized and escaping uploads.
    Saves a screenshot of each tab (TOOLKIT_SCREENSHOTS=docs/studio refreshes the docs' ones)."""
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect, sync_playwright
    from safetensors.torch import load_file

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium for these tests")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    runs, port = tmp_path / "runs", free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_studio(runs, port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)

            def start_run(name: str) -> None:
                page.get_by_role("tab", name="Train").click()
                clear = page.locator("#config-upload").get_by_role("button", name="Clear")
                if clear.count():  # the previous upload
                    clear.click()
                page.locator("#config-upload input[type=file]").set_input_files(str(studio_config))
                expect(page.locator("#field-epochs input")).to_have_value("6", timeout=20_000)
                page.locator("#run-name").get_by_role("textbox").fill(name)
                expect(page.locator("#command")).to_contain_text("output_dir=", timeout=20_000)
                expect(page.locator("#command")).to_contain_text(name)
                page.locator("#start").click()
                try:
                    expect(page.locator("#train-message")).to_contain_text(name, timeout=30_000)
                except AssertionError:
                    # Twice in a clean clone's suite under pytest-xdist the page sent no Start at all (only form
                    # checks reached the server): click again, as a user would, but only when the server holds no
                    # job of that name. A Start that arrived late (a loaded machine: once, after 10 s) is never
                    # doubled, which would answer "a run named ... already exists".
                    if not (runs / ".studio" / "jobs" / f"{name}.json").exists():
                        page.locator("#start").click()
                    expect(page.locator("#train-message")).to_contain_text(name, timeout=30_000)

            # A data path shows its first rows, columns and label counts (the run below keeps the config's data).
            train_csv = yaml.safe_load(studio_config.read_text())["data"]["train"]
            page.locator("#data-path").get_by_role("textbox").fill(train_csv)
            page.locator("#data-path").get_by_role("textbox").press("Enter")
            expect(page.locator("#data-preview")).to_contain_text("320 rows", timeout=20_000)
            expect(page.locator("#label-counts")).to_contain_text("160")
            page.locator("#check-data").click()  # the data checks of that data, with the config's columns
            expect(page.locator("#data-findings")).to_contain_text("Data checks:", timeout=30_000)
            page.locator("#run-name").get_by_role("textbox").fill("preview")
            expect(page.locator("#command")).to_contain_text("data.train=", timeout=20_000)
            page.screenshot(path=str(SCREENSHOTS / "studio-train.png"), full_page=True)
            page.locator("#data-path").get_by_role("textbox").fill("")
            start_run("resumed")
            assert "data.train=" not in page.locator("#command").inner_text()
            start_run("whole")
            expect(page.locator("#train-message")).to_contain_text("queued")

            page.get_by_role("tab", name="Live").click()
            pick(page, "#live-run", "resumed")
            status = page.locator("#live-status")
            expect(status).to_contain_text("training", timeout=60_000)
            expect(status).to_contain_text("step ", timeout=30_000)
            first = int(status.inner_text().split("step ")[1].split("/")[0])
            page.wait_for_function(
                f"() => +(document.querySelector('#live-status').innerText.match(/step (\\d+)/) "
                f"|| [0, 0])[1] > {first}",
                timeout=30_000,
            )
            page.screenshot(path=str(SCREENSHOTS / "studio-live.png"), full_page=True)
            page.locator("#stop").click()  # at once: the tiny run trains 960 steps in seconds
            expect(status).to_contain_text("stopped", timeout=60_000)
            expect(page.locator("#loss-plot img")).to_be_visible()  # the curve, drawn from metrics.jsonl
            page.reload()  # the state is in the run folders: a new page shows the same run, stopped
            page.get_by_role("tab", name="Live").click()
            pick(page, "#live-run", "resumed")
            expect(status).to_contain_text("stopped", timeout=30_000)
            assert (runs / "resumed/last/training_state.pt").is_file() and not (runs / "resumed/results.json").exists()
            stopped_at = json.loads((runs / "resumed/last/state.json").read_text())["step"]
            assert 0 < stopped_at < 960

            # The queued run starts now; resume the stopped one (it queues), then restart the studio mid-training.
            client = Client(url, verbose=False)
            wait_for(client, "whole", lambda r: r["status"] == "training" and r["step"] >= 10)
            page.locator("#resume").click()
            expect(status).to_contain_text("queued", timeout=20_000)
            server.kill()  # kill -9 with one run training and one queued: nothing may be lost or run twice
            server.wait()
            # The training child notices its studio is gone, saves last/ and stops: no orphan trains on.
            deadline = time.time() + 60
            while runlib.lock_holder(runs / "whole") is not None and time.time() < deadline:
                time.sleep(0.2)
            assert runlib.lock_holder(runs / "whole") is None, "the run outlived its studio"
            server = start_studio(runs, port)
            client = Client(url, verbose=False)
            listed = {r["name"]: r for r in client.predict(api_name="/runs")}
            # The new studio queues "whole" again in its old place (before "resumed"), to resume from last/, unless
            # it had finished before the kill (960 tiny steps take seconds).
            assert listed["whole"]["status"] in ("queued", "starting", "training", "finished"), listed
            assert listed["resumed"]["status"] in ("queued", "starting", "training"), listed
            assert listed["whole"]["task"] == "sentiment"
            reload(page, url)
            page.get_by_role("tab", name="Live").click()
            pick(page, "#live-run", "resumed")
            expect(status).to_contain_text("finished", timeout=180_000)
            expect(status).to_contain_text("step 960/960")
            stopped_by_kill = "requeued_at" in json.loads((runs / ".studio/jobs/whole.json").read_text())
            assert stopped_by_kill == ("is gone: stopping" in (runs / ".studio/logs/whole.log").read_text())
            for name, starts in (("whole", 1 + stopped_by_kill), ("resumed", 2)):  # one setup record per start
                records = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
                assert sum(r["split"] == "setup" for r in records) == starts, name
            whole, resumed = (json.loads((runs / n / "results.json").read_text()) for n in ("whole", "resumed"))
            assert whole["steps"] == resumed["steps"] == 960 and whole["best_step"] == resumed["best_step"]
            assert whole["test"]["loss"] == pytest.approx(resumed["test"]["loss"], abs=1e-6)
            wa, wb = (load_file(runs / n / "best/model.safetensors") for n in ("whole", "resumed"))
            assert all(wa[k].allclose(wb[k], atol=1e-6) for k in wa)

            page.get_by_role("tab", name="Try").click()
            pick(page, "#try-run", "resumed")
            page.locator("#text-input textarea").fill("what a wonderful, lovely story")
            page.locator("#classify").click()
            expect(page.locator("#prediction")).to_contain_text("positive", timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "studio-try.png"), full_page=True)

            page.get_by_role("tab", name="Runs").click()
            page.locator("#runs-refresh").click()
            expect(page.locator("#runs-table")).to_contain_text("finished", timeout=20_000)
            pick(page, "#compare", "resumed")
            expect(page.locator("#compare-table")).to_contain_text("resumed", timeout=20_000)
            pick(page, "#compare", "whole")
            expect(page.locator("#compare-table")).to_contain_text("whole", timeout=20_000)
            expect(page.locator("#compare-table")).to_contain_text("validation accuracy")
            expect(page.locator("#compare-loss img")).to_be_visible()
            page.screenshot(path=str(SCREENSHOTS / "studio-runs.png"), full_page=True)

            page.get_by_role("tab", name="Evaluate").click()
            pick(page, "#eval-run", "resumed")
            page.locator("#eval-file input[type=file]").set_input_files(
                yaml.safe_load(studio_config.read_text())["data"]["test"]
            )
            page.locator("#evaluate").click()
            expect(page.locator("#eval-metrics")).to_contain_text("accuracy", timeout=60_000)
            expect(page.locator("#confusion")).to_contain_text("true label")
            page.screenshot(path=str(SCREENSHOTS / "studio-evaluate.png"), full_page=True)
            browser.close()

        assert client.predict("whole", "a wonderful and lovely film", api_name="/predict")[0]["label"] == "positive"
        with pytest.raises(Exception, match="input 1 is empty"):
            client.predict("whole", "  ", api_name="/predict")
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
        assert sorted(p.name for p in runs.iterdir()) == [".studio", "resumed"]
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
        assert (
            Path(uploaded).name == "tiny_studio.yaml"
            and Path(uploaded).resolve().parents[1] == (runs / ".studio/uploads").resolve()
        )
        with pytest.raises(Exception, match="only files uploaded"):  # a raw request naming a file on the server
            client.predict({"path": str(studio_config), "orig_name": "k.yaml"}, api_name="/upload")
    finally:
        stop_studio(server)
        subprocess.run(["pkill", "-f", f"output_dir={runs}"], check=False)


def raw_call(url: str, api_name: str, data: list) -> tuple[str, object]:
    """POST /gradio_api/call/NAME as any HTTP client would (no gradio_client filling in defaults), then read the
    event's outcome from its stream: ("complete" or "error", its data)."""
    import urllib.request

    request = urllib.request.Request(
        f"{url}gradio_api/call/{api_name}",
        data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )
    event_id = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
    event = None
    with urllib.request.urlopen(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=60) as stream:
        for raw in stream:
            line = raw.decode().strip()
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event, json.loads(line.partition(":")[2])
    pytest.fail(f"no outcome for /{api_name}")


def test_raw_api_calls_get_the_refusal_and_the_log_one_line(studio_config, tmp_path):
    """Raw HTTP calls to the studio's API, leaving off the optional values as the API page allows: a refused config
    or name reaches the client as the refusal's text (not {"error": null}), so do too few values and a value of
    the wrong type; the studio's log holds one line per refusal and no traceback; nothing is queued or written."""
    runs, port = tmp_path / "runs", free_port()
    url = f"http://127.0.0.1:{port}/"
    calls = [  # (endpoint, its values, the refusal's text)
        ("start", [str(studio_config), ["trust_remote_code=true"], "remote"], "trust_remote_code: true is refused"),
        ("start", [str(studio_config), [], "../bad"], "run name '../bad' is not allowed"),
        ("action", ["delete", "../bad"], "run name '../bad' is not allowed"),
        ("start", [str(studio_config), "lr=1e-3", "typed"], "/start: overrides must be list[str], not 'lr=1e-3'"),
        ("action", ["delete"], "/action takes action, name, [confirm]: 1 value(s) given, 2 needed"),
    ]
    server = start_studio(runs, port)
    try:
        for api_name, data, message in calls:
            event, answer = raw_call(url, api_name, data)
            assert event == "error" and message in (answer.get("error") or ""), (api_name, data, answer)
        assert raw_call(url, "runs", []) == ("complete", [[]])  # and nothing was queued
    finally:
        stop_studio(server)
    log = server.stderr.read().decode()
    assert "Traceback" not in log, log[-3000:]
    refused = [line for line in log.splitlines() if "refused:" in line]
    assert len(refused) == len(calls) and all(c[2] in line for c, line in zip(calls, refused)), refused
    assert sorted(p.name for p in runs.iterdir()) == [".studio"]


def test_names_and_archives_cannot_leave_the_runs_folder(text_data, tmp_path):
    from toolkit.errors import ToolkitError
    from toolkit.studio import Studio
    from toolkit.studio.paths import safe_name
    from toolkit.studio.preview import preview_data

    studio = Studio(tmp_path / "runs")
    for bad in ("", "..", "../x", "/etc", "a/b", ".hidden", "x" * 65, "a\\b", "a b"):
        with pytest.raises(ToolkitError, match="not allowed"):
            safe_name(bad)
    assert safe_name("run-1.v2_final") == "run-1.v2_final"
    own = tmp_path / "runs" / "notes"  # a folder that is not a run: the studio never deletes it
    own.mkdir()
    (own / "ideas.txt").write_text("mine")
    with pytest.raises(ToolkitError, match="only run folders"):
        studio.catalog.delete("notes", "notes")
    assert (own / "ideas.txt").is_file()
    killed = tmp_path / "runs" / "killed"  # a run killed before its marker: only its lock is left
    killed.mkdir()
    (killed / ".toolkit-lock").write_text("{}")
    studio.catalog.delete("killed", "killed")
    assert not killed.exists()
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("data/ants/a.jpg", b"x")
        zipped.writestr("data/bees/b.jpg", b"x")
    extracted = studio.uploads.save(archive, "../../images.zip")
    assert (extracted.name, extracted.parent.name) == ("data", "images")
    assert extracted.parents[2] == (tmp_path / "runs/.studio/uploads").resolve()
    assert sorted(p.name for p in extracted.iterdir()) == ["ants", "bees"]
    assert studio.uploads.save(archive, "images.zip") == extracted  # the same content: the same folder, not redone
    from toolkit.tasks import get_task

    found = preview_data(str(text_data["train"]), get_task("sentiment").roles)
    assert found["columns"] == ["text", "label"] and found["label_column"] == "label"
    assert found["label_counts"] == {"positive": 160, "negative": 160} and len(found["rows"]) == 5


def test_studio_trains_each_text_task_from_tables_with_their_own_column_names(
    tiny_config, tiny_t5, copy_data, tmp_path
):
    """In Chromium: for sentiment, translation, summarization, NER and QA, upload a config and a table whose columns
    have other names than the config's; the Train form offers one column picker per data role of the config's
    task, guesses the right columns, and the run started from it trains on them. Then NER and QA runs answer in
    Try, and Evaluate scores their tables."""
    import pandas as pd
    from conftest import seq2seq_config
    from gradio_client import Client
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium for these tests")
    pairs = pd.read_json(copy_data / "train.jsonl", lines=True).head(400)
    sentiment = pd.read_csv(tiny_config["data"]["train"]).rename(columns={"text": "review", "label": "stars"})
    seq2seq = {k: v for k, v in seq2seq_config(tiny_t5, copy_data, tmp_path).items() if k != "output_dir"}
    cases = {  # run name: (config, table, the columns each role picker should show, in role order)
        "sentiment": (
            {**{k: v for k, v in tiny_config.items() if k != "output_dir"}, "max_steps": 5},
            sentiment[["stars", "review"]],
            ["review", "stars"],
        ),
        "translation": (
            {**seq2seq, "max_steps": 6},
            pairs.rename(columns={"en": "english", "de": "german"}),
            ["english", "german"],
        ),
        "summarization": (
            {
                **seq2seq,
                "task": "summarization",
                "max_steps": 7,
                "data": {k: v for k, v in seq2seq["data"].items() if not k.endswith("_lang")},
            },
            pairs.rename(columns={"en": "article", "de": "highlights"}),
            ["article", "highlights"],
        ),
    }
    tiny = {k: v for k, v in tiny_config.items() if k not in ("output_dir", "data")}
    words = ["the", "film", "was", "a", "story", "with", "plot", "book", "phone", "movie", "show"]
    tagged = [{"words": [*words[i % 5 : i % 5 + 4], "Paris"], "labels": ["O"] * 4 + ["B-LOC"]} for i in range(40)]
    asked = [
        {
            "passage": f"the {w} was a story with plot",
            "query": "what was it?",
            "answer": {"text": [w], "answer_start": [4]},
        }
        for w in words * 4
    ]
    cases["ner"] = ({**tiny, "task": "ner", "max_steps": 3, "data": {}}, pd.DataFrame(tagged), ["words", "labels"])
    cases["qa"] = (
        {**tiny, "task": "qa", "max_steps": 3, "max_length": 48, "qa": {"stride": 8}, "data": {}},
        pd.DataFrame(asked),
        ["passage", "query", "answer"],
    )
    runs, port = tmp_path / "runs", free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_studio(runs, port, "--max-running", "3")  # tiny runs train side by side
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)
            for name, (config, table, columns) in cases.items():
                config_file = write_config(tmp_path / f"{name}.yaml", config)
                lists = name in ("ner", "qa")  # lists and records per row: JSON Lines, not CSV
                data_file = tmp_path / f"{name}.{'jsonl' if lists else 'csv'}"
                table.to_json(data_file, orient="records", lines=True) if lists else table.to_csv(
                    data_file, index=False
                )
                for upload in ("#config-upload", "#data-upload"):
                    clear = page.locator(upload).get_by_role("button", name="Clear")
                    if clear.count():
                        clear.click()
                page.locator("#config-upload input[type=file]").set_input_files(str(config_file))
                expect(page.locator("#field-max_steps input")).to_have_value(str(config["max_steps"]), timeout=20_000)
                page.locator("#data-upload input[type=file]").set_input_files(str(data_file))
                expect(page.locator("#data-preview")).to_contain_text(f"{len(table):,} rows", timeout=20_000)
                for i, column in enumerate(columns):
                    expect(page.locator(f"#role-{i} input")).to_have_value(column, timeout=20_000)
                page.locator("#run-name").get_by_role("textbox").fill(name)
                for column in columns:
                    expect(page.locator("#command")).to_contain_text(f"={column}", timeout=20_000)
                page.locator("#start").click()
                expect(page.locator("#train-message")).to_contain_text(name, timeout=20_000)
            browser.close()
        client = Client(url, verbose=False)
        for name, (_, _, columns) in cases.items():
            wait_for(client, name, lambda live: live["status"] in ("finished", "failed"), timeout=300)
            saved = yaml.safe_load((runs / name / "config.yaml").read_text())
            roles = [
                v for k, v in saved["data"].items() if k.endswith("_column") or k in ("source_lang", "target_lang")
            ]
            assert sorted(roles) == sorted(columns), saved["data"]
            assert saved["task"] == name and (runs / name / "results.json").is_file(), (runs / name).iterdir()
        with sync_playwright() as p:  # Try and Evaluate the new tasks' runs
            browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)
            page.get_by_role("tab", name="Try").click()
            pick(page, "#try-run", "ner")
            page.locator("#text-input textarea").fill("the film was a story with Paris")
            page.locator("#tag").click()
            expect(page.locator("#entities")).to_contain_text("Paris", timeout=30_000)
            pick(page, "#try-run", "qa")
            page.locator("#context textarea").fill("the phone was a story with plot")
            page.locator("#question textarea").fill("what was it?")
            page.locator("#answer").click()
            expect(page.locator("#found")).to_contain_text("score", timeout=30_000)
            page.get_by_role("tab", name="Evaluate").click()
            for name, metric in (("ner", "f1"), ("qa", "exact_match")):
                pick(page, "#eval-run", name)
                clear = page.locator("#eval-file").get_by_role("button", name="Clear")
                if clear.count():
                    clear.click()
                page.locator("#eval-file input[type=file]").set_input_files(str(tmp_path / f"{name}.jsonl"))
                page.locator("#evaluate").click()
                expect(page.locator("#eval-metrics")).to_contain_text(metric, timeout=60_000)
            browser.close()
    finally:
        stop_studio(server)
