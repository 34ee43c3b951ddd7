import pytest

from toolkit.config import Config, load_config
from toolkit.errors import ToolkitError


def test_defaults_and_overrides_are_typed():
    cfg = load_config(
        {"task": "sentiment"},
        [
            "lr=3e-5",
            "epochs=2",
            "data.train=x.csv",
            "peft.enabled=true",
            "peft.target_modules=query,value",
            "eval_every=50",
        ],
    )
    assert isinstance(cfg, Config)
    assert cfg.lr == 3e-5 and cfg.epochs == 2.0 and isinstance(cfg.epochs, float)
    assert cfg.data.train == "x.csv"
    assert cfg.peft.enabled is True and cfg.peft.target_modules == ["query", "value"]
    assert cfg.eval_every == 50


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(ToolkitError) as err:
        load_config({"task": "sentiment", "learning_rate": 1e-4, "epohcs": 2})
    assert "'learning_rate'" in str(err.value)
    with pytest.raises(ToolkitError, match=r"unknown config key 'epohcs'.*Did you mean epochs"):
        load_config({"task": "sentiment", "epohcs": 2})
    with pytest.raises(ToolkitError, match=r"unknown config key 'data.text_colum'.*Did you mean data.text_column"):
        load_config({"task": "sentiment"}, ["data.text_colum=review"])


def test_wrong_type_names_key_value_and_expected_type():
    with pytest.raises(ToolkitError, match=r"'batch_size' has value 'big' \(str\); expected int"):
        load_config({"task": "sentiment"}, ["batch_size=big"])
    with pytest.raises(ToolkitError, match=r"'precision' has value 'fp8'.*expected 'auto' or 'no' or 'fp16' or 'bf16'"):
        load_config({"task": "sentiment", "precision": "fp8"})
    with pytest.raises(ToolkitError, match=r"'data' has value 'x.csv'"):
        load_config({"task": "sentiment", "data": "x.csv"})


def test_yaml_file_sets_default_output_dir(tmp_path, monkeypatch):
    from toolkit.plan import resolve_config

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "my_run.yaml"
    path.write_text("task: sentiment\nlr: 1.0e-4\n")
    cfg = resolve_config(path)
    assert cfg.output_dir == "runs/my_run" and cfg.lr == 1e-4
    assert resolve_config(path, data__train="x.csv", data={"test": "t.csv"}).data.train == "x.csv"
    with pytest.raises(ToolkitError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1,\n")
    with pytest.raises(ToolkitError, match="not valid YAML"):
        load_config(bad)


OUT_OF_RANGE = [
    "epochs=-1",
    "epochs=0",
    "max_length=0",
    "batch_size=0",
    "grad_accum=0",
    "eval_every=0",
    "data.holdout=1.5",
    "data.max_train_rows=-5",
    "lr=-1",
    "warmup_ratio=1.5",
    "seed=-1",
    "translation:generation.num_beams=0",
    "image_classification:image.channels=2",
    "gan:gan.ema_decay=1",
    "summarization:extractive.head_layers=-1",
    "peft.dropout=1.0",
    "max_train_minutes=0",
    "log_every=0",
    "epochs=.nan",
    "epochs=.inf",
]


@pytest.mark.parametrize("override", OUT_OF_RANGE)
def test_numbers_out_of_range_name_the_key_and_the_range(override):
    task, _, override = override.rpartition(":")
    key = override.split("=")[0]
    with pytest.raises(ToolkitError, match=rf"config key '{key}' is .*; it must be "):
        load_config({"task": task or "sentiment"}, [override])


def test_each_task_has_its_own_keys():
    from toolkit.config import TextConfig
    from toolkit.tasks import get_task

    cfg = load_config(
        {"task": "translation", "data": {"source_lang": "en", "target_lang": "de"}},
        ["generation.num_beams=2", "warm_start.encoder=x"],
    )
    assert cfg.generation.num_beams == 2 and cfg.data.source_lang == "en" and isinstance(cfg, TextConfig)
    assert not hasattr(load_config({"task": "sentiment"}), "generation")
    with pytest.raises(ToolkitError, match=r"unknown config key 'gan'\. It is a key of task gan, not of 'sentiment'"):
        load_config({"task": "sentiment", "gan": {"latent_dim": 8}})
    with pytest.raises(
        ToolkitError, match=r"'data.summary_column'\. It is a key of task summarization, not of 'translation'"
    ):
        load_config({"task": "translation"}, ["data.summary_column=tldr"])
    with pytest.raises(
        ToolkitError, match=r"does not say which task it trains: add `task: NAME` \(one of: sentiment, "
    ):
        load_config({"lr": 1e-3})
    assert load_config({"task": "text_classification"}).data.text_column == "text"  # an alias: the same class
    roles = {
        name: {key: role.name for key, role in get_task(name).roles.items()}
        for name in ("sentiment", "translation", "summarization", "image_classification", "gan")
    }
    assert roles == {
        "sentiment": {"text_column": "text", "label_column": "label"},
        "translation": {"source_lang": "source", "target_lang": "target"},
        "summarization": {"text_column": "document", "summary_column": "summary"},
        "image_classification": {"image_column": "image", "label_column": "label"},
        "gan": {"image_column": "image", "label_column": "label"},
    }


def test_guessed_columns_follow_the_roles():
    import pandas as pd

    from toolkit.data import guess_columns
    from toolkit.tasks import get_task

    table = pd.DataFrame({"english": ["a man rides", "two dogs"], "german": ["ein Mann", "zwei Hunde"]})
    assert guess_columns(get_task("translation").roles, list(table.columns), table) == {
        "source_lang": "english",
        "target_lang": "german",
    }
    table = pd.DataFrame({"stars": [1, 5, 1], "review": ["a long and dull film", "great fun", "bad"]})
    assert guess_columns(get_task("sentiment").roles, list(table.columns), table) == {
        "text_column": "review",
        "label_column": "stars",
    }
    table = pd.DataFrame({"id": [1, 2], "article": ["long text here ...", "more text ..."], "highlights": ["a", "b"]})
    assert guess_columns(get_task("summarization").roles, list(table.columns), table) == {
        "text_column": "article",
        "summary_column": "highlights",
    }


def test_the_configuration_reference_is_current():
    """docs/configuration.md below its marker, and each task page's data roles, are generated from the config
    dataclasses."""
    from conftest import ROOT

    from toolkit.reference import MARKER, configuration_reference, roles_block, task_pages
    from toolkit.tasks import all_tasks

    text = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    assert MARKER in text
    assert text.split(MARKER)[1] == configuration_reference().split(MARKER)[1], (
        "docs/configuration.md is out of date: run `make docs`"
    )
    pages = task_pages(ROOT / "docs")
    assert sorted(spec.name for spec in pages.values()) == sorted(spec.name for spec in all_tasks())  # one each
    for page, spec in pages.items():  # each task page's table of data roles, from the same classes
        assert roles_block(spec) in page.read_text(encoding="utf-8"), f"{page} is out of date: run `make docs`"


def test_out_of_range_on_the_command_line_writes_nothing(tiny_config, tmp_path):
    from conftest import run_cli, write_config

    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    for override in ("eval_every=0", "max_length=0", "data.holdout=1.5"):
        out = tmp_path / override.split("=")[0]
        done = run_cli("train", str(config), f"output_dir={out}", override)
        assert done.returncode == 2, done.stderr
        assert (
            sum(line.startswith("error:") for line in done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
        )
        assert not out.exists()
