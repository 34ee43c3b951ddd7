"""Extractive question answering: the packaged MiniLM learns to answer SQuAD questions; best/ answers the same
through toolkit, stock transformers classes, ONNX Runtime and the app; long passages, unanswerable questions and
bad rows are handled."""

import json
import time
import unicodedata

import pytest
from conftest import ROOT, assert_train_errors, require_shared, run_cli, write_config

TRAIN_ROWS = 1_200


def squad_rows(split: str, count: int | None = None) -> list[dict]:
    lines = (require_shared("qa", "squad") / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:count]]


def short_passage(row: dict) -> dict | None:
    """The row with its passage cut to the sentence that holds the first answer (answers moved with it; those
    outside dropped): real questions at a fraction of the tokens, for a quick test."""
    import re

    context, start = row["context"], row["answers"]["answer_start"][0]
    bounds = [0, *(m.end() for m in re.finditer(r"[.!?]\s+", context)), len(context)]
    at = max(i for i, b in enumerate(bounds[:-1]) if b <= start)
    first, last = bounds[at], bounds[at + 1]
    kept = [
        (t, s - first)
        for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])
        if first <= s and s + len(t) <= last
    ]
    if not kept:
        return None
    answers = {"text": [t for t, _ in kept], "answer_start": [s for _, s in kept]}
    return dict(row, context=context[first:last], answers=answers)


def write_short(split: str, count: int, path):
    rows = [r for r in map(short_passage, squad_rows(split)) if r][:count]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    import toolkit

    folder = tmp_path_factory.mktemp("qa")
    return toolkit.train(
        str(ROOT / "recipes/configs/qa_squad.yaml"),
        [
            f"data.train={write_short('train', TRAIN_ROWS, folder / 'train.jsonl')}",
            f"data.validation={write_short('validation', 200, folder / 'validation.jsonl')}",
            "epochs=1",
            "lr=2e-4",
            "max_length=96",
            "qa.stride=32",
            f"output_dir={folder / 'run'}",
            "trackers=[]",
        ],
    )


def test_minilm_learns_to_answer_squad_questions(qa_run):
    from conftest import check_run_folder

    meta = check_run_folder(qa_run.dir)
    assert meta["pipeline_tag"] == "question-answering"
    assert "AutoModelForQuestionAnswering" in (qa_run.dir / "README.md").read_text()
    results = json.loads((qa_run.dir / "results.json").read_text())
    validation = results["validation"]
    # 1,200 questions, each with the sentence that holds its answer, one epoch: well above answering with that
    # whole sentence.
    from toolkit.recipes.qa import squad_metrics

    rows = [json.loads(line) for line in (qa_run.dir.parent / "validation.jsonl").read_text().splitlines()]
    whole_sentence = squad_metrics([r["context"] for r in rows], [r["answers"]["text"] for r in rows])
    assert validation["f1"] > 2 * whole_sentence["f1"], (validation, whole_sentence)
    assert validation["exact_match"] > 20, validation
    assert results["unanswerable"] is False


def uncased(text: str) -> str:
    """``text`` as an uncased BERT tokenizer decodes it: lower case, accents stripped ("Île" -> "ile"), no spaces."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c) and not c.isspace())


def test_toolkit_stock_model_and_onnx_give_the_same_answers(qa_run):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    import toolkit
    from toolkit.api import evaluate

    rows = [r for r in map(short_passage, squad_rows("validation", 40)) if r][:24]
    pairs = [{"question": r["question"], "context": r["context"]} for r in rows]
    answer = toolkit.load(qa_run.dir, backend="torch", precision="fp32")  # as stock transformers and ONNX compute
    ours = answer(pairs)
    assert all(pairs[i]["context"][a["start"] : a["end"]] == a["answer"] for i, a in enumerate(ours))

    # The stock classes, as the transformers task guide decodes (the question-answering pipeline is gone in 5.3):
    # where its start and end make a span inside the passage, it is ours (both pick the best start and end).
    best = str(qa_run.dir / "best")
    tokenizer, model = AutoTokenizer.from_pretrained(best), AutoModelForQuestionAnswering.from_pretrained(best)
    compared = 0
    for pair, mine in zip(pairs, ours):
        inputs = tokenizer(pair["question"], pair["context"], return_tensors="pt")
        if inputs.input_ids.shape[1] > 128:  # one window, as the run's predictor reads it
            continue
        with torch.no_grad():
            out = model(**inputs)
        start, end = int(out.start_logits.argmax()), int(out.end_logits.argmax())
        sequence = inputs.sequence_ids(0)
        if start <= end < start + 30 and sequence[start] == sequence[end] == 1:
            stock = tokenizer.decode(inputs.input_ids[0, start : end + 1])
            assert uncased(stock) == uncased(mine["answer"]), (stock, mine)
            compared += 1
    assert compared >= 12

    long_context = " ".join(r["context"] for r in squad_rows("validation", 60)[::6])  # several windows
    question = rows[0]["question"]
    assert len(tokenizer(question, long_context)["input_ids"]) > 600
    far = answer({"question": question, "context": long_context}, top_k=3)
    assert far["answer"] and len(far["alternatives"]) == 2 and far["score"] >= far["alternatives"][0]["score"]

    scored = evaluate(qa_run.dir, split="validation", backend="torch")
    assert scored["f1"] == pytest.approx(json.loads((qa_run.dir / "results.json").read_text())["validation"]["f1"])

    from toolkit.export import export_run

    export_run(qa_run.dir)
    onnx = toolkit.load(qa_run.dir)
    assert type(onnx).__name__ == "OnnxQuestionAnswerer"
    assert [a["answer"] for a in onnx(pairs)] == [a["answer"] for a in ours]


def test_app_highlights_the_answer(qa_run):
    """`toolkit serve` of a QA run: the answer highlighted in the passage, and only its own host served."""
    from conftest import served
    from gradio_client import Client
    from test_guard import request

    row = short_passage(squad_rows("validation", 1)[0])
    expected = __import__("toolkit").load(qa_run.dir)({"question": row["question"], "context": row["context"]})
    with served(qa_run.dir) as server:
        assert request(server.port, "GET", "/", f"evil.example:{server.port}")[0] == 421
        marked, found = Client(server.url, verbose=False).predict(row["context"], row["question"], api_name="/answer")
        highlighted = [s["token"] for s in marked if s.get("class_or_confidence") == "answer"]
        assert highlighted == [expected["answer"]] and found["answer"] == expected["answer"]
        assert found["score"] == pytest.approx(expected["score"], abs=1e-4)


def tiny_rows() -> list[dict]:
    """SQuAD-style rows in the tiny model's vocabulary."""
    words = ["film", "story", "plot", "book", "phone", "movie", "show", "food", "service", "acting"]
    return [
        {"context": f"the {w} was a story with plot and acting", "question": "what was it?",
         "answers": {"text": [w], "answer_start": [4]}}
        for w in words * 4
    ]  # fmt: skip


def test_unanswerable_questions_train_and_bad_rows_are_counted(tmp_path, tiny_bert, caplog):
    import toolkit

    rows = tiny_rows()
    broken = dict(rows[1], answers={"text": ["not in the passage"], "answer_start": [3]})
    unanswerable = [
        dict(r, question="who was very quite?", answers={"text": [], "answer_start": []}) for r in rows[:20]
    ]
    train = [*rows, broken, *unanswerable]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    run = toolkit.train(
        {
            "task": "question_answering",
            "model": str(tiny_bert),
            "data": {"train": str(tmp_path / "train.jsonl"), "holdout": 0.2},
            "max_steps": 3,
            "batch_size": 8,
            "max_length": 64,
            "qa": {"stride": 16},
            "output_dir": str(tmp_path / "run"),
            "trackers": [],
        }
    )
    results = json.loads((run.dir / "results.json").read_text())
    assert results["unanswerable"] is True and "no_answer_accuracy" in results["validation"]
    assert any("skipped 1 rows" in r.message for r in caplog.records)
    answer = toolkit.load(run.dir)({"question": "what?", "context": rows[0]["context"]})
    assert set(answer) == {"answer", "score", "start", "end"}

    # Streamed, the misplaced answer is skipped as it passes.
    streamed = toolkit.train(
        {
            "task": "qa",
            "model": str(tiny_bert),
            "data": {"train": str(tmp_path / "train.jsonl"), "streaming": True, "max_eval_rows": 10},
            "max_steps": 3,
            "batch_size": 8,
            "max_length": 64,
            "qa": {"stride": 16},
            "output_dir": str(tmp_path / "streamed"),
            "trackers": [],
        }
    )
    assert streamed.metrics["steps"] == 3 and streamed.metrics["validation"]["count"] == 10


def test_bad_question_answering_data_is_one_clear_error(tmp_path, tiny_bert):
    good = tiny_rows()[:8]
    files = {
        "wrong_start": [*good, dict(good[0], answers={"text": ["film"], "answer_start": [7]})],
        "flat_answers": [dict(r, answers="film") for r in good],
        "long_question": [*good, dict(good[0], question="why " * 200)],
    }
    for name, rows in files.items():
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = write_config(
        tmp_path / "qa.yaml",
        {
            "task": "qa",
            "model": str(tiny_bert),
            "data": {"train": str(tmp_path / "wrong_start.jsonl"), "bad_answers": "error"},
            "max_length": 64,
            "qa": {"stride": 16},
            "max_steps": 2,
            "trackers": [],
            "output_dir": str(tmp_path / "out"),
        },
    )
    cases = {
        "": "row 9: its answer 'film' is not at character 7 of its context",
        "data.train=FLAT_ANSWERS": "column 'answers' must hold the answers",
        "data.train=LONG_QUESTION": "row 9: its question has",
        "max_length=40 qa.stride=32": "leaves no room for a question",
        "data.train=LONG_QUESTION data.bad_answers=maybe": "bad_answers",
    }
    assert_train_errors(config, cases, {name: tmp_path / f"{name}.jsonl" for name in files}, tmp_path / "out")


def test_long_contexts_are_read_in_windows_up_to_the_bound_then_refused(qa_run, caplog):
    """A context up to the task's bound (20,000 characters) is answered over its windows, in bounded time, with a
    warning; a 1 MB one is refused at once, by the predictor and by `toolkit predict`, with one error line."""
    import toolkit
    from toolkit.errors import ToolkitError

    answerer = toolkit.load(qa_run.dir, backend="torch")
    bound = answerer.bounds.max_chars
    assert bound == 20_000
    question, fact = "Which city hosted the final?", "The final was hosted by Lisbon. "
    filler = "The committee met again and discussed the budget for the coming year. "
    context = filler * ((bound - len(fact) - len(question)) // len(filler)) + fact
    started = time.perf_counter()
    with caplog.at_level("WARNING"):
        found = answerer({"question": question, "context": context})
    took = time.perf_counter() - started
    print(f"a {len(context):,}-character context: {took:.2f} s")
    assert took < 30 and found["start"] >= 0 and "long contexts" in caplog.text

    huge = {"question": question, "context": filler * 15_000}  # about 1 MB
    started = time.perf_counter()
    size = len(huge["question"]) + len(huge["context"])
    with pytest.raises(ToolkitError, match=f"input 1 has {size:,} characters, over the 20,000"):
        answerer(huge)
    assert time.perf_counter() - started < 1
    done = run_cli("predict", str(qa_run.dir), "-", input=json.dumps(huge) + "\n", timeout=120)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "over the 20,000" in errors[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_qa_answers_the_inference_client(qa_run, monkeypatch):
    from conftest import api_served, inference_client, post_json

    import toolkit

    pair = {"question": "Who wrote the book?", "context": "The book was written by Ada Lovelace in London."}
    expected = toolkit.load(qa_run.dir)(pair)
    with api_served(qa_run.dir) as server:
        found = inference_client(server.url, monkeypatch).question_answering(**pair)
        assert (found.answer, found.start, found.end) == (expected["answer"], expected["start"], expected["end"])
        assert found.score == pytest.approx(expected["score"], abs=1e-5)
        status, answer = post_json(server.url, {"inputs": [pair, pair], "parameters": {"top_k": 2}})
        assert status == 200 and len(answer) == 2 and len(answer[0]) == 2 and answer[0][0]["answer"] == found.answer
        status, answer = post_json(server.url, {"inputs": {"question": "x"}})
        assert status == 422 and 'give {"question": "...", "context": "..."}' in answer["error"]
