"""Extractive summarization: sentence splitting, oracle labels, trigram blocking, budgets, and a tiny model
trained, saved, reloaded and served."""

import json
import random

import pytest
from conftest import FILLER, POSITIVE, browser, check_run_folder, require_shared, run_cli, serve

import toolkit
from toolkit.recipes.summarization.extractive import greedy_oracle, select_sentences, trigrams
from toolkit.recipes.summarization.metrics import split_sentences


def test_split_sentences_keeps_abbreviations_and_lowercase_continuations():
    text = (
        "We follow Smith et al. in this work. Results, e.g. on CIFAR-10, improve by 3.5 points (Fig. 2). "
        'Does it scale?  Yes! the lower-case start continues. "Quoted." Last one'
    )
    assert split_sentences(text) == [
        "We follow Smith et al. in this work.",
        "Results, e.g. on CIFAR-10, improve by 3.5 points (Fig. 2).",
        "Does it scale?",
        "Yes! the lower-case start continues.",
        '"Quoted."',
        "Last one",
    ]


def test_greedy_oracle_picks_matching_sentences_and_stops_when_rouge_stops_rising():
    sentences = [
        "The weather was cold all week.",
        "We propose a fast sparse attention method.",
        "It halves memory on long documents.",
        "Prior work used dense attention.",
    ]
    # One sentence says it all: adding any other would only lower precision.
    assert greedy_oracle(sentences, "We propose a fast sparse attention method.") == [1]
    # The summary joins two sentences: both are picked, in document order.
    assert greedy_oracle(sentences, "A fast sparse attention method that halves memory on long documents.") == [1, 2]
    # At most max_sentences: the one sharing more words ("halves memory on long documents").
    assert greedy_oracle(
        sentences, "A fast sparse attention method that halves memory on long documents.", max_sentences=1
    ) == [2]
    # Nothing in common: no label at all.
    assert greedy_oracle(sentences, "Zebras graze quietly.") == []


def test_trigram_blocking_skips_a_repeating_sentence():
    sentences = ["We train a big model on text.", "We train a big model on images.", "Results are strong."]
    scores = [0.9, 0.8, 0.1]
    assert trigrams(sentences[0]) & trigrams(sentences[1])
    assert select_sentences(sentences, scores, max_sentences=2, block_trigrams=True) == [0, 2]
    assert select_sentences(sentences, scores, max_sentences=2, block_trigrams=False) == [0, 1]


def test_selection_is_in_document_order_and_keeps_the_budget():
    sentences = ["One two three.", "Four five six seven eight nine.", "Ten eleven.", "Twelve thirteen fourteen."]
    scores = [0.1, 0.2, 0.9, 0.5]
    assert select_sentences(sentences, scores, max_sentences=2) == [2, 3]  # best two, document order
    assert select_sentences(sentences, scores, max_sentences=3) == [1, 2, 3]
    # Word budget: the 6-word sentence does not fit beside the best two (5 words).
    assert select_sentences(sentences, scores, max_sentences=3, max_words=8) == [0, 2, 3]
    # Nothing fits: the best sentence alone (the summary cuts it to the budget).
    assert select_sentences(sentences, scores, max_sentences=1, max_words=1) == [2]


def make_document(rng: random.Random) -> tuple[str, str]:
    """Sentences of filler words; the one holding a positive cue word is the summary."""

    def sentence(words):
        return " ".join(words).capitalize() + "."

    sentences = [sentence(rng.choices(FILLER, k=rng.randint(3, 6))) for _ in range(rng.randint(3, 5))]
    key = rng.randrange(len(sentences))
    words = rng.choices(FILLER, k=rng.randint(3, 5))
    words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE))
    sentences[key] = sentence(words)
    return " ".join(sentences), sentences[key]


@pytest.fixture(scope="module")
def cue_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cue_docs")
    rng = random.Random(0)
    for split, n in (("train", 480), ("validation", 48), ("test", 48)):
        with open(folder / f"{split}.jsonl", "w") as fh:
            for _ in range(n):
                document, summary = make_document(rng)
                fh.write(json.dumps({"document": document, "summary": summary}) + "\n")
    return folder


def extractive_config(tiny_bert, data, folder, **extra) -> dict:
    return {
        "task": "summarization",
        "model": str(tiny_bert),
        "output_dir": str(folder / "run"),
        "trackers": [],
        "data": {
            "train": str(data / "train.jsonl"),
            "validation": str(data / "validation.jsonl"),
            "test": str(data / "test.jsonl"),
            "text_column": "document",
            "summary_column": "summary",
        },
        "extractive": {"enabled": True, "max_sentences": 1, "head_layers": 1},
        "epochs": 6,
        "batch_size": 16,
        "lr": 3e-3,
        "max_length": 64,
        "seed": 0,
        **extra,
    }


@pytest.fixture(scope="module")
def extractive_run(tiny_bert, cue_data, tmp_path_factory):
    return toolkit.train(extractive_config(tiny_bert, cue_data, tmp_path_factory.mktemp("extractive")))


def test_tiny_extractive_model_learns_to_pick_the_cue_sentence(extractive_run, cue_data):
    # A picked sentence that is the summary scores ROUGE-L 100; a random one of 3-5 sentences about 30-40.
    assert extractive_run.metrics["test"]["rougeL"] > 90
    assert check_run_folder(extractive_run.dir)["pipeline_tag"] == "summarization"
    losses = [json.loads(line) for line in (extractive_run.dir / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in losses if r.get("split") == "train"]
    assert train[-1] < 0.5 * train[0]


def test_extractive_reload_predicts_the_same_and_explains(extractive_run, cue_data):
    rows = [json.loads(line) for line in (cue_data / "test.jsonl").read_text().splitlines()][:12]
    texts = [r["document"] for r in rows]
    first = toolkit.load(extractive_run.dir)
    again = toolkit.load(extractive_run.dir)
    answers = first(texts)
    assert answers == again(texts)
    assert set(answers[0]) == {"output", "truncated"}
    assert sum(a["output"] == r["summary"] for a, r in zip(answers, rows)) >= 11
    explained = first.explain(texts[0], max_sentences=2)
    picked = [s["text"] for s in explained["sentences"] if s["picked"]]
    assert len(picked) == 2 and explained["output"] == " ".join(picked)  # document order
    assert abs(sum(s["score"] for s in explained["sentences"]) - 1) < 1e-4
    assert not answers[0]["truncated"] and first(" ".join(texts))["truncated"]  # 12 documents overflow 64 tokens
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="at least 1"):
        first(texts[0], max_words=0)
    # Scores from the reloaded checkpoint equal the in-memory model's.
    import torch

    from toolkit.recipes.summarization.extractive import collate, encode_document

    features, _, _ = encode_document(split_sentences(texts[0]), first.tokenizer, 64)
    extractive_run.model.eval()
    with torch.no_grad():
        logits = extractive_run.model(**collate(first.tokenizer)([features]))["logits"][0].softmax(-1)
    full = toolkit.load(extractive_run.dir, precision="fp32")  # the returned model computes in fp32, as a reload does
    assert torch.allclose(logits, torch.tensor([s["score"] for s in full.explain(texts[0])["sentences"]]), atol=1e-5)


def test_extractive_cli_predict_and_eval(extractive_run, cue_data):
    rows = [json.loads(line) for line in (cue_data / "test.jsonl").read_text().splitlines()][:2]
    result = run_cli("predict", str(extractive_run.dir), rows[0]["document"], rows[1]["document"])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["input"] for line in lines] == [r["document"] for r in rows]
    assert [line["output"] for line in lines] == [r["summary"] for r in rows]
    result = run_cli("eval", str(extractive_run.dir))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["rougeL"] > 90
    refused = run_cli("export", str(extractive_run.dir))  # ONNX exports are for abstractive runs
    assert refused.returncode == 2 and "this run is extractive" in refused.stderr
    assert not (extractive_run.dir / "best/onnx").exists()


def test_extractive_refuses_an_encoder_decoder(tiny_t5, cue_data, tmp_path):
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match="encoder-decoder"):
        toolkit.train(extractive_config(tiny_t5, cue_data, tmp_path))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_extractive_minilm_beats_lead_1_on_scitldr(tmp_path):
    """Transfer for real: the packaged MiniLM, fine-tuned on 320 abstracts for one epoch, picks better sentences
    than the first one on 200 abstracts of the SciTLDR test split."""
    data = require_shared("summarization", "scitldr")
    from toolkit.data import load_table
    from toolkit.recipes.summarization.metrics import summarization_metrics
    from toolkit.splits import sample

    run = toolkit.train(
        "recipes/configs/summarization_scitldr.yaml",
        output_dir=str(tmp_path / "run"),
        trackers=[],
        epochs=1,
        max_train_minutes=None,
        data={"max_train_rows": 320, "max_eval_rows": 50, "max_test_rows": 200},
    )
    seed = toolkit.api.read_run_config(run.dir).seed
    rows = sample(load_table(str(data / "test.jsonl")), 200, seed)  # the 200 test rows the run was scored on
    lead_1 = summarization_metrics([split_sentences(d)[0] for d in rows["document"]], list(rows["summary"]))
    assert run.metrics["test"]["count"] == len(rows) == 200
    print(f"test ROUGE-L: fine-tuned {run.metrics['test']['rougeL']:.2f}, lead-1 {lead_1['rougeL']:.2f}")
    assert run.metrics["test"]["rougeL"] > lead_1["rougeL"] + 2


@pytest.mark.slow
def test_extractive_app_highlights_the_picked_sentence(extractive_run, cue_data):
    from gradio_client import Client
    from playwright.sync_api import expect, sync_playwright

    from toolkit.apps.summarization import build_demo

    row = json.loads((cue_data / "test.jsonl").read_text().splitlines()[0])
    demo, url = serve(build_demo, extractive_run.dir)
    try:
        summary, spans, scores, note = Client(url, verbose=False).predict(
            row["document"], None, 1, 0, api_name="/summarize"
        )
        assert summary == row["summary"] and note == ""
        picked = [s["token"] for s in spans if s["class_or_confidence"] == "picked"]
        assert [p.strip() for p in picked] == [row["summary"]]
        assert len(scores["data"]) == len(split_sentences(row["document"]))
        with sync_playwright() as p:
            page = browser(p).new_page()
            page.goto(url)
            page.locator("#text textarea").fill(row["document"])
            page.locator("#summarize").click()
            expect(page.locator("#summary textarea")).to_have_value(row["summary"], timeout=30_000)
            # The picked sentence is drawn as a highlighted span in the text, the others are not.
            highlighted = page.locator("#highlighted .token.highlighted")
            expect(highlighted).to_have_count(1)
            expect(highlighted.first).to_contain_text(row["summary"])
            expect(page.locator("#scores")).to_contain_text(row["summary"])
    finally:
        demo.close()


def test_extractive_summaries_answer_the_inference_client(extractive_run, cue_data, monkeypatch):
    from conftest import api_served, inference_client, post_json

    rows = [json.loads(line) for line in (cue_data / "test.jsonl").read_text().splitlines()][:3]
    expected = toolkit.load(extractive_run.dir)([r["document"] for r in rows])
    with api_served(extractive_run.dir) as server:
        client = inference_client(server.url, monkeypatch)
        assert client.summarization(rows[0]["document"]).summary_text == expected[0]["output"]
        status, answer = post_json(
            server.url, {"inputs": [r["document"] for r in rows], "parameters": {"max_sentences": 1}}
        )
        assert status == 200 and [a["summary_text"] for a in answer] == [e["output"] for e in expected]
