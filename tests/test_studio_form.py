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
