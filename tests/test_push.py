"""`toolkit push`: what a pushed repository holds (a card that huggingface_hub's parsers read, with the run's results;
weights stock transformers loads; a config toolkit loads), a copy in the Hub cache that `toolkit predict OWNER/NAME`
answers from, and fast, clear errors offline or without a token. (The upload itself needs the Hub: not here.)"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from conftest import free_port, run_cli, write_config


@pytest.fixture(scope="module")
def trained(tiny_bert, text_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("push")
    values = {
        "task": "sentiment", "model": str(tiny_bert), "epochs": 3, "batch_size": 16, "lr": 3e-3, "max_length": 32,
        "seed": 0, "precision": "no", "trackers": [], "output_dir": str(folder / "run"),
        "data": {split: str(text_data[split]) for split in ("train", "validation", "test")},
    }  # fmt: skip
    done = run_cli("train", str(write_config(folder / "c.yaml", values)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert run_cli("export", str(folder / "run")).returncode == 0
    return folder / "run"


def test_pushed_repository_holds_a_parsable_card_and_loads_as_the_run(trained, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import pipeline

    import toolkit
    from toolkit.push import stage

    staged = stage(trained, "someone/tiny-sentiment", tmp_path / "repo", onnx=True)
    results = json.loads((trained / "results.json").read_text())
    card = ModelCard.load(staged / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text-classification"
    scores = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert scores[("validation", "accuracy")] == pytest.approx(results["validation"]["accuracy"])
    assert scores[("test", "accuracy")] == pytest.approx(results["test"]["accuracy"])
    assert 'model="someone/tiny-sentiment"' in card.text and 'snapshot_download("someone/tiny-sentiment")' in card.text
    assert "base_model" not in card.data.to_dict()  # a local path: the Hub reads base_model as a repository id
    assert (staged / "onnx").is_dir() and not (staged / "state.json").exists()

    texts = ["a great and wonderful film", "dull , awful and boring"]
    expected = toolkit.load(trained, backend="torch")(texts)
    assert [a["label"] for a in toolkit.load(staged, backend="torch")(texts)] == [a["label"] for a in expected]
    stock = pipeline("text-classification", model=str(staged))
    assert [a["label"] for a in stock(texts)] == [a["label"] for a in expected]
    without = stage(trained, "someone/tiny-sentiment", tmp_path / "plain")
    assert not (without / "onnx").exists()


def test_predict_answers_from_a_pushed_repository_in_the_hub_cache(trained, tmp_path):
    """The Hub cache layout (models--OWNER--NAME/snapshots/REV, refs/main), as a download leaves it: with
    HF_HUB_OFFLINE=1, `toolkit predict OWNER/NAME` loads it; a repository not in the cache is one error line."""
    from toolkit.push import stage

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-sentiment" / "snapshots" / ("0" * 40)
    stage(trained, "someone/tiny-sentiment", snapshot)
    (cache / "models--someone--tiny-sentiment" / "refs").mkdir()
    (cache / "models--someone--tiny-sentiment" / "refs" / "main").write_text("0" * 40)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    local = run_cli("predict", str(trained), "a great and wonderful film")
    done = run_cli("predict", "someone/tiny-sentiment", "a great and wonderful film", env_extra=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["label"] == json.loads(local.stdout)["label"]
    missing = run_cli("predict", "someone/not-pushed", "text", env_extra=env)
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error:")]
    assert missing.returncode == 2 and len(errors) == 1 and "someone/not-pushed" in errors[0], missing.stderr[-1000:]


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"HF_TOKEN": ""}, "no Hugging Face token"),
        ({"HF_TOKEN": "hf_not_a_real_token", "HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE=1"),
        ({"HF_TOKEN": "hf_not_a_real_token", "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "CLOSED"}, "unreachable"),
    ],
)
def test_push_without_token_or_hub_is_one_error_line_at_once(trained, tmp_path, env, expected):
    env = {**env, "HF_HOME": str(tmp_path / "hf")}  # no token stored by an earlier `hf auth login`
    if env.get("HF_ENDPOINT") == "CLOSED":
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    tic = time.monotonic()
    done = run_cli("push", str(trained), "someone/tiny-sentiment", env_extra=env)
    seconds = time.monotonic() - tic
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and expected in errors[0], done.stderr[-1000:]
    assert "Traceback" not in done.stderr and seconds < 10, seconds


def test_push_refuses_a_folder_that_is_no_run(tmp_path):
    (tmp_path / "notes").mkdir()
    done = run_cli("push", str(tmp_path / "notes"), "someone/x", env_extra={"HF_TOKEN": "hf_x"})
    assert done.returncode == 2 and "is not a run directory" in done.stderr
    done = run_cli("push", str(tmp_path / "notes"), "not a repo id!", env_extra={"HF_TOKEN": "hf_x"})
    assert done.returncode == 2 and "not a Hub repository id" in done.stderr
    shutil.rmtree(tmp_path / "notes")
