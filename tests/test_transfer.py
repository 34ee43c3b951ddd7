"""Transfer learning for real: the packaged all-MiniLM-L6-v2 fine-tuned on rt-polarity."""

import pytest
from conftest import ROOT, require_shared


@pytest.mark.slow
def test_minilm_reaches_072_on_rt_polarity_from_512_rows(tmp_path):
    import toolkit

    data = require_shared("sentiment", "rt-polarity")
    run = toolkit.train(
        ROOT / "recipes/configs/sentiment_minilm.yaml",
        data={
            "train": str(data / "train.csv"),
            "validation": str(data / "validation.csv"),
            "test": str(data / "test.csv"),
            "max_train_rows": 512,
            "max_eval_rows": 300,
            "max_test_rows": 300,
        },
        epochs=3,
        output_dir=str(tmp_path / "minilm"),
        trackers=[],
    )
    assert run.metrics["test"]["count"] == 300
    assert run.metrics["test"]["accuracy"] >= 0.72, run.metrics["test"]
