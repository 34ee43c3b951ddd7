"""Error reports of classifiers: calibration, the most confidently wrong rows with their inputs, and for two classes
the thresholds that reach a precision or recall; through `toolkit eval` (with its reliability plot)."""

import json

import numpy as np
import pytest
from conftest import run_cli, write_config

from toolkit.metrics import error_report


def test_error_report_on_known_probabilities():
    labels = np.array([0, 0, 1, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.7, 0.3], [0.05, 0.95], [0.1, 0.9]])
    report = error_report(labels, probs, ["neg", "pos"], ["a", "b", "c", "d", "e", "f"])
    assert [e["input"] for e in report["worst_errors"]] == ["f", "d"]  # confidence 0.9, then 0.7
    assert report["worst_errors"][0] == {"row": 5, "input": "f", "label": "neg", "predicted": "pos", "confidence": 0.9}
    # Bins: (0.5,0.6] 1 right; (0.6,0.7] 1 wrong; (0.7,0.8] 1 right; (0.8,0.9] 2: one right one wrong; (0.9,1] 1 right
    expected = (abs(0.6 - 1) + abs(0.7 - 0) + abs(0.8 - 1) + 2 * abs(0.9 - 0.5) + abs(0.95 - 1)) / 6
    assert report["calibration"]["ece"] == pytest.approx(expected)
    recall = report["thresholds"]["recall"]["0.9"]  # keep 90% of the 3 positives: all of them, lowest score 0.3
    assert recall == {"threshold": 0.3, "precision": 0.6}
    # Over 0.8 a negative (0.9) is among the three; only from 0.95 are all positive.
    assert report["thresholds"]["precision"]["0.8"] == {"threshold": 0.95, "recall": 0.3333}


def test_eval_reports_errors_and_draws_the_reliability_plot(tiny_config, tmp_path):
    config = write_config(tmp_path / "c.yaml", tiny_config)
    assert run_cli("train", str(config)).returncode == 0
    plot = tmp_path / "reliability.png"
    done = run_cli("eval", str(tmp_path / "run"), "--reliability", str(plot))
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(done.stdout.splitlines()[-1])
    errors = metrics["errors"]
    assert 0 <= metrics["ece"] == errors["calibration"]["ece"] <= 1
    assert sum(b["count"] for b in errors["calibration"]["bins"]) == metrics["count"]
    wrong = round((1 - metrics["accuracy"]) * metrics["count"])
    assert len(errors["worst_errors"]) == min(wrong, 10)
    for e in errors["worst_errors"]:
        assert e["label"] != e["predicted"] and e["input"] and 0.5 <= e["confidence"] <= 1
    assert errors["thresholds"]["class"] == "positive" and errors["thresholds"]["recall"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qa_scores_by_answer_length():
    from toolkit.recipes.qa import by_answer_length

    predictions = ["Denver Broncos", "the big red dog", "", "Paris", "Lyon"]
    golds = [["Denver Broncos"], ["a big red dog runs fast today"], [], ["Paris"], ["Marseille"]]
    found = by_answer_length(predictions, golds)
    assert list(found) == ["1 word", "2-3 words", "7+ words", "no answer"]
    assert found["1 word"]["count"] == 2 and found["1 word"]["exact_match"] == 50.0
    assert found["2-3 words"]["f1"] == 100.0 and 0 < found["7+ words"]["f1"] < 100
    assert found["no answer"]["exact_match"] == 100.0
