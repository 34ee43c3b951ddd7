"""Metric functions against values worked out by hand."""

import numpy as np
import pytest

from toolkit.metrics import classification_metrics
from toolkit.recipes.summarization.metrics import summarization_metrics
from toolkit.recipes.translation import translation_metrics


def test_classification_metrics_by_hand():
    # true:      a a b b c
    # predicted: a b b b a
    m = classification_metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"]["a"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2})
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["recall"] == 1.0
    assert m["per_class"]["c"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1})
    assert m["macro_f1"] == pytest.approx((1 / 2 + 0.8 + 0) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_bleu_by_hand():
    # n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty.
    m = translation_metrics(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert m["bleu"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-6)
    assert translation_metrics(["ein Haus am See"], ["ein Haus am See"]) == {
        "bleu": pytest.approx(100),
        "chrf": pytest.approx(100),
        "count": 1,
    }
    assert translation_metrics(["xyz"], ["ein Haus am See"])["bleu"] == 0.0


def test_rouge_by_hand():
    m = summarization_metrics(["the cat sat"], ["the cat ran"])
    assert m["rouge1"] == pytest.approx(100 * 2 / 3)  # 2 of 3 unigrams either way
    assert m["rouge2"] == pytest.approx(50.0)  # "the cat" of 2 bigrams
    assert m["rougeL"] == pytest.approx(100 * 2 / 3)  # LCS "the cat"
    assert m["gen_len"] == 3
    two = summarization_metrics(["We study cats. They sleep."], ["They sleep. We study cats."])
    assert two["rougeLsum"] == pytest.approx(100.0)  # sentence-level LCS ignores sentence order
    assert two["rougeL"] < 100.0


def test_oracle_sentences_pair_each_document_with_its_sentence_closest_to_the_summary():
    from datasets import Dataset

    from toolkit.recipes.summarization import with_oracle_sentences

    table = Dataset.from_dict(
        {
            "document": [
                "Cats sleep a lot. We propose a new model for dogs! Results are good.",
                "One idea. Another idea here?",
            ],
            "summary": ["We propose a dog model.", "Another idea."],
            "id": [1, 2],
        }
    )
    extended = with_oracle_sentences(table, "document", "summary", seed=0)
    pairs = sorted(zip(extended["document"], extended["summary"]))
    assert len(pairs) == 4 and extended.column_names == ["document", "summary"]
    assert pairs == sorted(
        [
            *zip(table["document"], table["summary"]),
            (table["document"][0], "We propose a new model for dogs!"),
            (table["document"][1], "Another idea here?"),
        ]
    )
