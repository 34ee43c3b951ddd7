"""ONNX export: `toolkit export` writes best/onnx/, which predict, eval and toolkit.load then use without torch,
with the torch predictor's answers."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli

import toolkit


@pytest.fixture(scope="module")
def exported_run(tiny_bert, text_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    run = toolkit.train(
        {
            "task": "sentiment",
            "model": str(tiny_bert),
            "epochs": 2,
            "batch_size": 16,
            "max_length": 32,
            "precision": "no",
            "trackers": [],
            "seed": 0,
            "output_dir": str(out),
            "data": {k: str(v) for k, v in text_data.items()},
        }
    )
    done = run_cli("export", str(run.dir))
    assert done.returncode == 0, done.stderr
    return run


TEXTS = [
    "the film was great",
    "a dull boring story",
    "lovely",
    " ".join(["a great and lovely film but the ending was dull"] * 20),
]  # longer than max_length: truncated alike


def test_onnx_answers_as_torch_does_without_importing_torch(exported_run):
    from toolkit.recipes.sentiment.predictors import OnnxTextClassifier, TextClassifier

    onnx, torch_ = toolkit.load(exported_run.dir), toolkit.load(exported_run.dir, backend="torch")
    assert isinstance(onnx, OnnxTextClassifier) and isinstance(torch_, TextClassifier)
    assert onnx.labels == torch_.labels == ["negative", "positive"]
    for got, want in zip(onnx(TEXTS), torch_(TEXTS)):
        assert got["label"] == want["label"] and got["scores"] == pytest.approx(want["scores"], abs=1e-4)
    with pytest.raises(toolkit.ToolkitError, match="input 2 is empty"):
        onnx(["fine", " "])

    # The command line, as a process: the ONNX path never imports torch or transformers.
    probe = (
        "import sys; from toolkit.cli import main; code = main(['predict', sys.argv[1], 'the film was great']); "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "sys.exit(f'imported {heavy}' if heavy else code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(exported_run.dir)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["scores"] == pytest.approx(torch_("the film was great")["scores"], abs=1e-4)


def test_int8_export_is_smaller_and_agrees(exported_run, tmp_path, capsys):
    import shutil

    from toolkit.cli import main

    run = tmp_path / "int8"
    shutil.copytree(exported_run.dir, run)
    fp32 = (run / "best/onnx/model.onnx").stat().st_size
    assert main(["export", str(run), "--quantize", "int8"]) == 0
    # It says what int8 costs on the run's validation split, measured against the original weights.
    validation = {b: toolkit.evaluate(run, split="validation", backend=b)["accuracy"] for b in ("onnx", "torch")}
    said = capsys.readouterr().out
    assert (
        f"int8 changes validation accuracy by {validation['onnx'] - validation['torch']:+.4f} "
        f"({validation['torch']:.4f} with the original weights, {validation['onnx']:.4f} with int8)"
    ) in said
    assert json.loads((run / "best/onnx/export.json").read_text())["quantized"] == "int8"
    assert (run / "best/onnx/model.onnx").stat().st_size < fp32  # 4x smaller for MiniLM; hidden size 32 gains less
    int8, reference = toolkit.load(run), toolkit.load(run, backend="torch")
    for got, want in zip(int8(TEXTS), reference(TEXTS)):
        assert got["scores"] == pytest.approx(want["scores"], abs=0.05)
    # eval scores the export by default, backend="torch" the original weights: within 5 points on the tiny model
    accuracy = {b: toolkit.evaluate(run, backend=b)["accuracy"] for b in ("auto", "torch")}
    assert abs(accuracy["auto"] - accuracy["torch"]) <= 0.05, accuracy


def test_a_damaged_export_is_named_and_torch_still_answers(exported_run, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(exported_run.dir, run)
    (run / "best/onnx/export.json").write_text("{")
    with pytest.raises(toolkit.ToolkitError, match="ONNX export .* is incomplete or damaged"):
        toolkit.load(run)
    assert toolkit.load(run, backend="torch")("lovely")["label"] in ("negative", "positive")


def test_an_export_written_before_its_predictor_moved_still_loads(exported_run, tmp_path):
    """Exports name their predictor class by module; one written when the text classifier's lived in
    toolkit.onnx_backend finds it by name in the task's package, and one naming no class that exists says so."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(exported_run.dir, run)
    record = run / "best/onnx/export.json"
    for old in ("toolkit.onnx_backend:OnnxTextClassifier", "toolkit.gone_module:OnnxTextClassifier"):
        record.write_text(json.dumps({**json.loads(record.read_text()), "predictor": old}))
        assert type(toolkit.load(run)).__name__ == "OnnxTextClassifier"
        assert toolkit.load(run)(TEXTS) == toolkit.load(exported_run.dir)(TEXTS)
    record.write_text(json.dumps({**json.loads(record.read_text()), "predictor": "toolkit.onnx_backend:Nothing"}))
    with pytest.raises(toolkit.ToolkitError, match="Write the export again with `toolkit export"):
        toolkit.load(run)


def test_a_bf16_run_quantizes_and_evaluates_its_export(tiny_bert, text_data, tmp_path, capsys):
    """What `precision: auto` does on a CPU with native bf16 (forced here, so that any CPU checks it): the run
    evaluates in bf16, its int8 export computes in int8, and `toolkit eval` scores what predict and serve use."""
    from toolkit.cli import main

    settings = {"task": "sentiment", "model": str(tiny_bert), "epochs": 1, "batch_size": 16, "max_length": 32,
                "precision": "bf16", "eval_precision": "bf16", "trackers": [], "seed": 0,
                "output_dir": str(tmp_path / "run"), "data": {k: str(v) for k, v in text_data.items()}}  # fmt: skip
    run = toolkit.train(settings)
    assert main(["export", str(run.dir), "--quantize", "int8"]) == 0
    assert "int8 changes validation accuracy by" in capsys.readouterr().out
    recorded = json.loads((run.dir / "results.json").read_text())
    assert recorded["eval_precision"]["chosen"] == "bf16"
    # The weights in bf16 give the run's own numbers; the default scores the export, as `onnx` does.
    assert toolkit.evaluate(run.dir, split="test", backend="torch")["accuracy"] == recorded["test"]["accuracy"]
    by_default = toolkit.evaluate(run.dir, split="test")["accuracy"]
    assert by_default == toolkit.evaluate(run.dir, split="test", backend="onnx")["accuracy"]
    done = run_cli("eval", str(run.dir))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["accuracy"] == by_default
