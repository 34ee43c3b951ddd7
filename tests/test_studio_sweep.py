"""The studio and sweeps: a sweep started from the Train tab, watched trial by trial on the Live tab, stopped and
resumed, its trials compared on the Runs tab (Optuna's plot) and its best trial promoted to a run of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import browser, free_port, pick, start_studio, stop_studio, write_config

pytestmark = pytest.mark.slow
SCREENSHOTS = Path(
    os.environ.get("TOOLKIT_SCREENSHOTS") or Path(__import__("tempfile").gettempdir()) / "toolkit-studio"
)


def test_studio_starts_watches_stops_resumes_and_promotes_a_sweep(tiny_config, tmp_path):
    from gradio_client import Client
    from playwright.sync_api import expect, sync_playwright

    values = {k: v for k, v in tiny_config.items() if k != "output_dir"}
    # 100 to 400 steps a trial (the space halves and doubles max_steps): seconds, long enough to be stopped.
    config = write_config(
        tmp_path / "tiny_sweep.yaml",
        {**values, "max_steps": 200, "batch_size": 4, "eval_every": 40, "save_every": 20},
    )
    runs, port = tmp_path / "runs", free_port()
    url = f"http://127.0.0.1:{port}/"
    server = start_studio(runs, port)
    try:
        with sync_playwright() as p:
            chromium = browser(p)
            page = chromium.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)

            # Train tab: the same form, "a sweep" with its trials and budget; the command is `toolkit sweep`.
            page.locator("#config-upload input[type=file]").set_input_files(str(config))
            expect(page.locator("#field-max_steps input")).to_have_value("200", timeout=20_000)
            expect(page.locator("#trials")).to_be_hidden()
            page.locator("#mode").get_by_label("a sweep").check()
            page.locator("#trials input").fill("2")
            page.locator("#budget").get_by_role("textbox").fill("10m")
            page.locator("#run-name").get_by_role("textbox").fill("search")
            command = page.locator("#command")
            expect(command).to_contain_text("toolkit sweep", timeout=20_000)
            expect(command).to_contain_text("--trials=2")
            expect(command).to_contain_text("--budget=10m")
            page.locator("#start").click()
            expect(page.locator("#train-message")).to_contain_text("search", timeout=20_000)

            # Live tab: the trials as they run; Stop while trial 1 trains, then Resume.
            page.get_by_role("tab", name="Live").click()
            pick(page, "#live-run", "search")
            status, trials = page.locator("#live-status"), page.locator("#live-trials")
            expect(status).to_contain_text("(sweep)", timeout=30_000)
            expect(status).to_contain_text("trial 0 at step", timeout=90_000)
            expect(trials).to_contain_text("running")
            expect(status).to_contain_text(re.compile(r"trial 1 at step [1-9]"), timeout=120_000)
            expect(trials).to_contain_text("complete")
            expect(page.locator("#metric-plot img")).to_be_visible()  # each trial's validation curve
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "studio-sweep-live.png"), full_page=True)
            page.locator("#stop").click()
            expect(status).to_contain_text("stopped", timeout=90_000)
            client = Client(url, verbose=False)
            stopped = client.predict("search", api_name="/live")["sweep"]["trials"]
            interrupted = [r["folder"] for r in stopped if r["state"] == "interrupted"]  # trial 1, saved in last/
            assert len(interrupted) <= 1 and len(stopped) <= 2, stopped
            page.locator("#resume").click()
            expect(status).to_contain_text("finished", timeout=240_000)
            expect(status).to_contain_text("2 of 2 trials done")

            # Runs tab: the sweep and its trials as runs; Optuna's plot; promote the best trial.
            page.get_by_role("tab", name="Runs").click()
            page.locator("#runs-refresh").click()
            table = page.locator("#runs-table")
            expect(table).to_contain_text("search/trial-001", timeout=20_000)
            expect(table).to_contain_text("2/2 trials")
            pick(page, "#sweep-pick", "search")
            expect(page.locator("#sweep-plot img")).to_be_visible(timeout=30_000)
            expect(page.locator("#sweep-trials")).to_contain_text("complete")
            page.locator("#sweep-plot").scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "studio-sweep-runs.png"), full_page=True)
            page.locator("#promote-name").get_by_role("textbox").fill("chosen")
            page.locator("#promote").click()
            expect(page.locator("#promote-message")).to_contain_text("Promoted", timeout=20_000)
            expect(table).to_contain_text("chosen")
            chromium.close()

        rows = json.loads((runs / "search" / "trials.json").read_text())
        assert [r["trial"] for r in rows] == [0, 1] and {r["state"] for r in rows} == {"complete"}, rows
        assert interrupted == ["trial-001"], stopped  # Stop came while trial 1 trained (seconds after its first step)
        for name in ("trial-000", "trial-001"):  # one training start each, two for the stopped one
            records = [json.loads(line) for line in (runs / "search" / name / "metrics.jsonl").read_text().splitlines()]
            assert sum(r["split"] == "setup" for r in records) == (2 if name in interrupted else 1), name
        best = (runs / "search" / "best").resolve().name
        assert yaml.safe_load((runs / "chosen" / "config.yaml").read_text())["output_dir"] == str(runs / "chosen")

        text = "what a wonderful, lovely story"
        promoted = client.predict("chosen", text, api_name="/predict")
        assert promoted == client.predict(f"search/{best}", text, api_name="/predict")  # the same model
        live = client.predict("search", api_name="/live")
        assert live["status"] == "finished" and len(live["sweep"]["trials"]) == 2
        assert client.predict("search/trial-000", api_name="/live")["status"] == "finished"
        with pytest.raises(Exception, match="trial of the sweep"):
            client.predict("delete", "search/trial-000", "search/trial-000", api_name="/action")
        with pytest.raises(Exception, match="already exists"):
            client.predict("promote", "search", "chosen", api_name="/action")
        with pytest.raises(Exception, match="not allowed"):
            client.predict("search/../x", api_name="/live")
    finally:
        stop_studio(server)
        subprocess.run(["pkill", "-f", f"output_dir={runs}"], check=False)
