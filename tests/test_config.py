import pytest

from toolkit.config import Config, load_config
from toolkit.errors import ToolkitError


def test_defaults_and_overrides_are_typed():
    cfg = load_config({"task": "sentiment"}, ["lr=3e-5", "epochs=2", "data.train=x.csv", "peft.enabled=true",
                                              "peft.target_modules=query,value", "eval_every=50"])
    assert isinstance(cfg, Config)
    assert cfg.lr == 3e-5 and cfg.epochs == 2.0 and isinstance(cfg.epochs, float)
    assert cfg.data.train == "x.csv"
    assert cfg.peft.enabled is True and cfg.peft.target_modules == ["query", "value"]
    assert cfg.eval_every == 50


def test_unknown_key_names_the_closest_valid_one():
    with pytest.raises(ToolkitError) as err:
        load_config({"learning_rate": 1e-4, "epohcs": 2})
    assert "'learning_rate'" in str(err.value)
    with pytest.raises(ToolkitError, match=r"unknown config key 'epohcs'.*Did you mean epochs"):
        load_config({"epohcs": 2})
    with pytest.raises(ToolkitError, match=r"unknown config key 'data.text_colum'.*Did you mean data.text_column"):
        load_config({}, ["data.text_colum=review"])


def test_wrong_type_names_key_value_and_expected_type():
    with pytest.raises(ToolkitError, match=r"'batch_size' has value 'big' \(str\); expected int"):
        load_config({}, ["batch_size=big"])
    with pytest.raises(ToolkitError, match=r"'precision' has value 'fp8'.*expected 'auto' or 'no' or 'fp16' or 'bf16'"):
        load_config({"precision": "fp8"})
    with pytest.raises(ToolkitError, match=r"'data' has value 'x.csv'"):
        load_config({"data": "x.csv"})


def test_yaml_file_sets_default_output_dir(tmp_path):
    path = tmp_path / "my_run.yaml"
    path.write_text("task: sentiment\nlr: 1.0e-4\n")
    cfg = load_config(path)
    assert cfg.output_dir == "runs/my_run" and cfg.lr == 1e-4
    with pytest.raises(ToolkitError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1,\n")
    with pytest.raises(ToolkitError, match="not valid YAML"):
        load_config(bad)


OUT_OF_RANGE = ["epochs=-1", "epochs=0", "max_length=0", "batch_size=0", "grad_accum=0", "eval_every=0", "data.holdout=1.5",
                "data.max_train_rows=-5", "lr=-1", "warmup_ratio=1.5", "seed=-1", "generation.num_beams=0", "image.channels=2",
                "peft.dropout=1.0", "max_train_minutes=0", "log_every=0", "epochs=.nan", "epochs=.inf"]


@pytest.mark.parametrize("override", OUT_OF_RANGE)
def test_numbers_out_of_range_name_the_key_and_the_range(override):
    key = override.split("=")[0]
    with pytest.raises(ToolkitError, match=rf"config key '{key}' is .*; it must be "):
        load_config({"task": "sentiment"}, [override])


def test_out_of_range_on_the_command_line_writes_nothing(tiny_config, tmp_path):
    from conftest import run_cli, write_config

    config = write_config(tmp_path / "tiny.yaml", tiny_config)
    for override in ("eval_every=0", "max_length=0", "data.holdout=1.5"):
        out = tmp_path / override.split("=")[0]
        done = run_cli("train", str(config), f"output_dir={out}", override)
        assert done.returncode == 2, done.stderr
        assert sum(line.startswith("error:") for line in done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
        assert not out.exists()
