"""The studio's Train form as a plain object: what a filled form trains, checked as `toolkit train` checks it, without
a browser (tests/test_studio.py drives the same form through Chromium)."""

from __future__ import annotations

import pytest

from toolkit.errors import ToolkitError
from toolkit.studio import Studio
from toolkit.studio.form import FORM_KEYS, SWEEP, FormValues, TrainForm


@pytest.fixture
def uploaded(tmp_path, monkeypatch):
    """A table the client uploaded (it lies in the web server's upload cache), with its own column names."""
    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    table = cache / "0123abcd" / "reviews.csv"
    table.parent.mkdir(parents=True)
    rows = [("a warm and funny film", "good"), ("dull and far too long", "bad")] * 20
    table.write_text("review,stars\n" + "\n".join(f"{text},{label}" for text, label in rows) + "\n")
    return table


def test_the_form_makes_the_command_toolkit_train_would_run(uploaded, tmp_path):
    studio = Studio(tmp_path / "runs", max_running=0)  # queued jobs wait: this test starts no training
    form = TrainForm(studio)
    shipped = FormValues(task="sentiment", config="sentiment_minilm.yaml")
    fields = dict(zip(FORM_KEYS, (value for value, _ in form.fields(shipped))))
    assert fields["lr"] > 0 and fields["batch_size"] > 0

    assert form.check(shipped) == ("", "Name the run to see its command.")
    source, roles, found = form.preview(FormValues(task="sentiment", data_file=str(uploaded)))
    assert found["columns"] == ["review", "stars"] and found["label_counts"] == {"good": 20, "bad": 20}
    guessed = [found["roles"].get(key) for key in roles]
    assert guessed == ["review", "stars"]

    changed = [0.001 if key == "lr" else value for key, value in fields.items()]
    filled = FormValues(
        task="sentiment", config="sentiment_minilm.yaml", data_file=str(uploaded), name="mine",
        columns=guessed, fields=changed,
    )  # fmt: skip
    command, message = form.check(filled)
    assert message == "Ready: Start queues this command."
    assert command.startswith("toolkit train ") and "sentiment_minilm.yaml" in command
    for part in ("data.text_column=review", "data.label_column=stars", "data.validation=null", "lr=0.001"):
        assert part in command
    assert "batch_size=" not in command  # unchanged fields stay as the config sets them
    assert "trackers=" not in command and fields["trackers"] == ["tensorboard"]
    assert "output_dir=" in command and command.rstrip().endswith("mine")
    tracked = [["tensorboard", "mlflow"] if key == "trackers" else value for key, value in zip(FORM_KEYS, changed)]
    assert "trackers=tensorboard,mlflow" in form.check(FormValues(**{**vars(filled), "fields": tracked}))[0]
    untracked = [[] if key == "trackers" else value for key, value in zip(FORM_KEYS, changed)]
    assert "trackers=[]" in form.check(FormValues(**{**vars(filled), "fields": untracked}))[0]

    checked = form.check_data(filled)  # the form's data and columns, as `toolkit check` sees them
    assert "**duplicates**, data.train: 34 of 36" in checked and "*Fix:*" in checked, checked

    sweep = form.command(FormValues(**{**vars(filled), "mode": SWEEP, "trials": 3, "budget": "5m"}))
    assert sweep[:2] == ["toolkit", "sweep"] and sweep[-2:] == ["--trials=3", "--budget=5m"]

    job = form.submit(filled)
    assert job["name"] == "mine" and studio.catalog.status("mine") == "queued"
    with pytest.raises(ToolkitError, match="a run named 'mine' already exists"):
        form.submit(filled)


def test_the_form_refuses_what_train_would_refuse(uploaded, tmp_path):
    form = TrainForm(Studio(tmp_path / "runs"))
    named = FormValues(task="sentiment", config="sentiment_minilm.yaml", name="x")
    assert form.check(FormValues(task="sentiment", name="x")) == ("", "⚠️ pick a shipped config or upload one.")
    # A raw API call naming a file of the server's, not an upload: refused.
    command, message = form.check(FormValues(**{**vars(named), "data_file": str(tmp_path / "runs")}))
    assert command == "" and "only files uploaded to the studio" in message
    bad_lr = [-1.0 if key == "lr" else value for key, (value, _) in zip(FORM_KEYS, form.fields(named))]
    command, message = form.check(FormValues(**{**vars(named), "fields": bad_lr}))
    assert command == "" and message.startswith("⚠️") and "lr" in message
    with pytest.raises(ToolkitError, match="name the run"):
        form.submit(FormValues(**{**vars(named), "name": " "}))


def test_label_issues_tab_in_a_browser(tmp_path):
    """The Label issues tab in headless Chromium: 120 real reviews with flipped labels uploaded, ranked by the probe,
    a suggestion accepted, and the corrected copy downloaded; the uploaded file stays as it was."""
    import csv
    import random
    import shutil

    from conftest import BROWSER_ARGS, free_port, pick, require_shared, start_studio, stop_studio
    from playwright.sync_api import expect, sync_playwright

    with open(require_shared("sentiment", "rt-polarity") / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:120]
    for i in random.Random(0).sample(range(120), 12):
        rows[i]["label"] = "negative" if rows[i]["label"] == "positive" else "positive"
    data = tmp_path / "reviews.csv"
    with open(data, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    before = data.read_bytes()
    port = free_port()
    server = start_studio(tmp_path / "runs", port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Label issues").click()
            pick(page, "#labels-config", "sentiment_minilm.yaml")
            page.locator("#labels-data input[type=file]").set_input_files(str(data))
            page.locator("#labels-find").click()
            current = page.locator("#labels-current")
            expect(current).to_contain_text("1 of 120", timeout=300_000)  # a loaded CI machine: minutes
            suggested = current.inner_text().split("suggested:")[1].split("·")[0].strip()
            page.locator("#labels-accept").click()
            expect(current).to_contain_text("2 of 120", timeout=60_000)
            page.locator("#labels-write").click()
            link = page.locator("#labels-file a").first
            expect(link).to_be_visible(timeout=20_000)
            with page.expect_download() as download:
                link.click()
            copy = tmp_path / "copy.csv"
            download.value.save_as(copy)
            browser.close()
    finally:
        stop_studio(server)
    assert data.read_bytes() == before
    with open(copy, newline="") as f:
        fixed = list(csv.DictReader(f))
    changed = [i for i, (a, b) in enumerate(zip(rows, fixed)) if a["label"] != b["label"]]
    assert len(fixed) == 120 and len(changed) <= 1
    assert all(fixed[i]["label"] == suggested for i in changed)
