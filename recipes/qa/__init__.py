"""Extractive question answering: a pretrained encoder points at the span of a passage that answers a question.

Data: the SQuAD layout (`context`, `question`, `answers` with `text` and `answer_start`); questions without answers
(SQuAD v2) are allowed. Long passages are read in overlapping windows; a span is scored by the product of its start
and end probabilities (as transformers' question-answering pipeline scores it), the best over all windows wins, and
offset mappings turn it back into characters of the passage. Metrics: the official SQuAD exact match and F1 (0-100),
each answer scored against every gold answer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from toolkit import checks
from toolkit import splits as splitlib
from toolkit.cache import fingerprint
from toolkit.config import DataConfig, DataRole, TextConfig, at_least, between, section, setting
from toolkit.data import (
    EVAL_FIX,
    LARGE_TABLE,
    LENGTH,
    by_length,
    count_rows,
    drop_empty_text,
    encode,
    first_rows,
    is_streaming,
    keep_rows,
    lengths,
    load_table,
    progress_bars,
    require_columns,
    role_fix,
    scan,
    stream_splits,
)
from toolkit.errors import ToolkitError
from toolkit.export import export_checkpoint
from toolkit.models import (
    apply_lora,
    load_checkpoint_model,
    load_tokenizer,
    load_with_head,
    lora_merge_finalizer,
    save_model,
    tokenizer_fingerprint,
    without_gradients,
)
from toolkit.onnx_backend import open_session
from toolkit.predictor import Predictor, logits_in_parts
from toolkit.shapes import check_parameters, top_k_of
from toolkit.tasks import InputBounds, ServeShape, TaskSpec, register
from toolkit.timing import phase

log = logging.getLogger(__name__)
# A question whose context takes more windows than this is logged: its answer takes that many model passes.
LONG_CONTEXT_WINDOWS = 4

if TYPE_CHECKING:
    from toolkit.engine import Task


@dataclass
class QuestionAnsweringData(DataConfig):
    """The passage, question and answer columns of a SQuAD-style table."""

    context_column: str = setting(
        "context", "the passage", role=DataRole("context", "text", ("context", "passage", "document", "text"))
    )
    question_column: str = setting(
        "question", "the question", role=DataRole("question", "text", ("question", "query", "questions"))
    )
    answers_column: str = setting(
        "answers",
        "the answers: `text` and `answer_start` lists (empty lists: no answer in the passage)",
        role=DataRole("answers", "answers", ("answers", "answer")),
    )
    bad_answers: Literal["skip", "error"] = setting(
        "skip",
        "rows whose answer text is not at its `answer_start` in the passage, and questions too long for the "
        "window: `skip` (counted in the log) or `error`",
    )


@dataclass
class QuestionAnsweringSettings:
    """How passages are windowed and answers picked."""

    stride: int = setting(128, "tokens of overlap between consecutive windows of a long passage", at_least(0))
    max_answer_length: int = setting(30, "the longest answer, in tokens", at_least(1))
    n_best: int = setting(20, "candidate spans kept per window when picking the answer", at_least(1))
    unanswerable: Literal["auto", "yes", "no"] = setting(
        "auto", "whether an empty answer may be given: auto = when the training data has unanswered questions"
    )
    null_margin: float = setting(
        0.0, "with unanswerable questions: answer nothing when the empty answer's score beats the best span's by "
        "more than this", between(-1, 1)
    )  # fmt: skip


@dataclass
class QuestionAnsweringConfig(TextConfig):
    """Extractive question answering: a pretrained encoder with a span head."""

    data: QuestionAnsweringData = section(QuestionAnsweringData)
    qa: QuestionAnsweringSettings = section(QuestionAnsweringSettings)


SETTINGS_FILE = "qa.json"  # in a checkpoint: the window and answer settings its predictor uses
MIN_CONTEXT_TOKENS = 16  # a question must leave at least this much of each window to the passage


# ----- data -----
def answers_of(value) -> tuple[list[str], list[int]]:
    """(texts, starts) of an answers cell: {"text": [...], "answer_start": [...]} (or one of each)."""
    if not isinstance(value, dict):
        return [], []
    texts, starts = value.get("text"), value.get("answer_start")
    texts = texts if isinstance(texts, list) else ([] if texts is None else [texts])
    starts = starts if isinstance(starts, list) else ([] if starts is None else [starts])
    return texts, starts


def check_answers_column(table, cfg: QuestionAnsweringConfig, where: str) -> None:
    import datasets

    column = cfg.data.answers_column
    feature = (table.features or {}).get(column)
    fields = set(feature) if isinstance(feature, (dict, datasets.Features)) else set()
    if hasattr(feature, "feature") and isinstance(feature.feature, dict):  # Sequence({...}) of the hub's squad
        fields = set(feature.feature)
    if not {"text", "answer_start"} <= fields:
        raise ToolkitError(
            f"{where}: column '{column}' must hold the answers as "
            '{"text": ["..."], "answer_start": [character offset]} (the SQuAD layout); it holds '
            f"{feature}. Check data.answers_column."
        )


def load_splits(cfg: QuestionAnsweringConfig, tokenizer) -> dict:
    data = cfg.data
    columns = [data.context_column, data.question_column, data.answers_column]

    def tidy(table, where: str):
        require_columns(table, columns, where, role_fix(cfg))
        check_answers_column(table, cfg, where)
        table = drop_empty_text(table, [data.context_column, data.question_column], where)
        return drop_bad_rows(table, cfg, tokenizer, where)

    def load_split(split: str, source: str, where: str):
        return tidy(load_table(source, split), where)

    if cfg.data.streaming:
        return stream_splits(cfg, load_split, tidy)
    return splitlib.load_splits(
        cfg, load_split, "a JSONL/Parquet file in the SQuAD layout, a saved dataset or a hub id"
    )


def check_data(cfg: QuestionAnsweringConfig, splits: dict | None = None) -> list:
    """Answers not at their offsets (in the files as given: training skips those rows), duplicate questions,
    passages shared between train and validation or test, very short questions (``toolkit check``)."""
    data = cfg.data
    if splits is None:
        splits = load_splits(cfg, load_tokenizer(cfg.model, cfg.trust_remote_code))

    def question(row) -> str:
        return f"{row[data.question_column]} | {row[data.context_column]}"

    def first_answer(row) -> str:
        texts, _ = answers_of(row[data.answers_column])
        return texts[0] if texts else ""

    return [
        *answers_off_their_offsets(cfg),
        *checks.duplicates(splits, question, first_answer),
        *checks.leakage(splits, lambda row: str(row[data.context_column]), "questions' passages"),
        *checks.short(splits, lambda table: [str(q) for q in table[data.question_column]], "questions"),
    ]


def answers_off_their_offsets(cfg: QuestionAnsweringConfig) -> list:
    """Rows of each data file whose answer text is not at its answer_start, and where it is instead."""
    data, findings = cfg.data, []
    for split in ("train", "validation", "test"):
        source = getattr(data, split)
        if not source:
            continue
        table = load_table(source, split)
        bad, examples, total = 0, [], 0
        for row in checks.rows_of(table.select_columns([data.context_column, data.answers_column])):
            total += 1
            context = str(row[data.context_column] or "")
            texts, starts = answers_of(row[data.answers_column])
            for text, start in zip(texts, starts):
                if isinstance(start, int) and context[start : start + len(text)] == text:
                    continue
                bad += 1
                found = context.find(text)
                where = f"found at {found}" if found >= 0 else "not in its passage"
                examples.append(f"{checks.snippet(text, 30)} at {start}: {where}")
                break
        if bad:
            findings.append(
                checks.Finding("answers off their offsets", f"data.{split}", bad, total,
                               "rows have an answer that is not at its answer_start (training skips them)",
                               "answer_start must count characters from 0 in the passage as stored; re-export the "
                               "offsets, or correct the answer text", examples)
            )  # fmt: skip
    return findings


def question_limit(cfg: QuestionAnsweringConfig) -> int:
    """The most question tokens a window can hold and still read the passage in steps of at least 16 tokens."""
    return cfg.max_length - cfg.qa.stride - 3 - MIN_CONTEXT_TOKENS


def drop_bad_rows(table, cfg: QuestionAnsweringConfig, tokenizer, where: str):
    """Rows whose answer is not where it says in the passage, and questions too long for the window: skipped and
    counted (data.bad_answers=skip) or refused, naming the first."""
    import pyarrow as pa

    data, limit = cfg.data, question_limit(cfg)
    if limit < 1:
        raise ToolkitError(
            f"max_length {cfg.max_length} leaves no room for a question beside qa.stride {cfg.qa.stride}: raise "
            "max_length or lower qa.stride."
        )

    def problems(batch) -> list[str | None]:
        contexts = batch.column(data.context_column).to_pylist()
        questions = batch.column(data.question_column).to_pylist()
        answers = batch.column(data.answers_column).to_pylist()
        lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False, verbose=False)["input_ids"]]
        found = []
        for context, length, answer in zip(contexts, lengths, answers):
            texts, starts = answers_of(answer)
            if length > limit:
                found.append(
                    f"its question has {length} tokens, over the {limit} that max_length leaves beside qa.stride"
                )
            elif len(texts) != len(starts):
                found.append(f"it has {len(texts)} answer texts but {len(starts)} answer_start offsets")
            elif any(not isinstance(s, int) or context[s : s + len(t)] != t for t, s in zip(texts, starts)):
                bad = next(
                    (t, s) for t, s in zip(texts, starts) if not isinstance(s, int) or context[s : s + len(t)] != t
                )
                found.append(f"its answer {bad[0]!r} is not at character {bad[1]} of its context")
            else:
                found.append(None)
        return found

    def keep(batch):
        return pa.array([p is None for p in problems(batch)])

    if data.bad_answers == "error" and not is_streaming(table):
        offset = 0
        for batch in scan(table):
            for i, problem in enumerate(problems(batch)):
                if problem:
                    raise ToolkitError(
                        f"{where}: row {offset + i + 1}: {problem}. Fix it, or set data.bad_answers=skip to "
                        "train without such rows."
                    )
            offset += batch.num_rows
        return table
    key = (
        "qa rows",
        data.context_column,
        data.question_column,
        data.answers_column,
        limit,
        tokenizer_fingerprint(tokenizer),
    )
    return keep_rows(
        table,
        keep,
        key,
        where,
        "an answer that is not at its answer_start, or a question too long for the window",
        "no row has an answer where its answer_start says, or every question is too long. Check "
        "data.answers_column and max_length",
    )


def encode_windows(tokenizer, cfg: QuestionAnsweringConfig, questions, contexts):
    """Question + passage windows (the passage only is cut, with qa.stride tokens of overlap) with their offsets."""
    return tokenizer(
        [q.lstrip() for q in questions],
        contexts,
        truncation="only_second",
        max_length=cfg.max_length,
        stride=cfg.qa.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def context_offsets(encoded, window: int) -> list[list[int]]:
    """A window's character offsets into the passage, [-1, -1] for tokens that are not the passage's."""
    sequence = encoded.sequence_ids(window)
    return [list(o) if s == 1 else [-1, -1] for o, s in zip(encoded["offset_mapping"][window], sequence)]


def word_offsets(encoded, window: int) -> list[list[int]]:
    """For each token of a window, the characters of the whole passage word it is part of ([-1, -1] outside the
    passage): answers start and end on word boundaries, as the stock pipeline aligns them."""
    out = []
    for word, sequence in zip(encoded.word_ids(window), encoded.sequence_ids(window)):
        if sequence != 1 or word is None:
            out.append([-1, -1])
        else:
            chars = encoded.word_to_chars(window, word, sequence_index=1)
            out.append([chars.start, chars.end])
    return out


def span_tokens(offsets: list[list[int]], start: int, end: int) -> tuple[int, int] | None:
    """The first and last token of characters [start, end) in a window, or None when the window does not hold
    them whole."""
    first = next((i for i, (s, e) in enumerate(offsets) if s >= 0 and s <= start < e), None)
    last = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] >= 0 and offsets[i][0] < end), None)
    if first is None or last is None or offsets[last][1] < end or last < first:
        return None
    inside = [i for i, (s, _) in enumerate(offsets) if s >= 0]
    if start < offsets[inside[0]][0] or end > offsets[inside[-1]][1]:
        return None
    return first, last


def encode_batch(tokenizer, cfg: QuestionAnsweringConfig, evaluation: bool):
    """Rows -> windows, each pointing at its row's first answer (at [CLS] when the window lacks it); evaluation
    windows also keep their row and word offsets, to map predicted spans back to the passage."""
    data = cfg.data

    def encode(batch: dict) -> dict:
        encoded = encode_windows(tokenizer, cfg, batch[data.question_column], batch[data.context_column])
        rows = encoded.pop("overflow_to_sample_mapping")
        out = {name: encoded[name] for name in encoded if name != "offset_mapping"}
        out[LENGTH] = [len(ids) for ids in encoded["input_ids"]]
        offsets = [context_offsets(encoded, w) for w in range(len(rows))]
        starts, ends = [], []
        for window, row in enumerate(rows):
            texts, answer_starts = answers_of(batch[data.answers_column][row])
            span = span_tokens(offsets[window], answer_starts[0], answer_starts[0] + len(texts[0])) if texts else None
            starts.append(span[0] if span else 0)
            ends.append(span[1] if span else 0)
        out["start_positions"], out["end_positions"] = starts, ends
        if evaluation:
            out["example"] = [batch["example"][r] for r in rows]
            out["offsets"] = [word_offsets(encoded, w) for w in range(len(rows))]
        return out

    return encode


def make_collate(tokenizer):
    """Pads ids; an evaluation batch's rows and offsets become tensors (offsets padded with -1)."""
    import torch
    from transformers import DataCollatorWithPadding

    pad = DataCollatorWithPadding(tokenizer)

    def collate(items: list[dict]) -> dict:
        extra = {}
        if items and "offsets" in items[0]:
            offsets = [item.pop("offsets") for item in items]
            width = max(len(o) for o in offsets)
            extra["offsets"] = torch.tensor([o + [[-1, -1]] * (width - len(o)) for o in offsets])
            extra["example"] = torch.tensor([item.pop("example") for item in items])
        return {**pad(items), **extra}

    return collate


def with_row_numbers(table):
    """The table with an ``example`` column: each row's number, which its windows carry."""
    with progress_bars(len(table) >= LARGE_TABLE):  # a sampled table is flattened first
        return table.add_column(
            "example", np.arange(len(table)), new_fingerprint=fingerprint(table._fingerprint, "rows")
        )


def has_unanswerable(table, column: str) -> bool:
    if is_streaming(table):
        return any(not answers_of(row[column])[0] for row in table.take(10_000))
    import pyarrow.compute as pc

    def empty(batch):
        cell = batch.column(column)
        return pc.equal(pc.list_value_length(pc.struct_field(cell, "text")), 0)

    return count_rows(table, empty) > 0


def build_task(cfg: QuestionAnsweringConfig) -> Task:
    from toolkit.engine import Task

    with phase("data"):
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        if not getattr(tokenizer, "is_fast", False):
            raise ToolkitError(
                f"model '{cfg.model}' has no fast tokenizer: answers are mapped back to the passage through its "
                "offsets. Choose a model with a tokenizer.json."
            )
        splits = load_splits(cfg, tokenizer)
        checks.run_checks(cfg, splits, check_data)
        unanswerable = (
            cfg.qa.unanswerable == "yes"
            or cfg.qa.unanswerable == "auto"
            and has_unanswerable(splits["train"], cfg.data.answers_column)
        )
        key = {
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "max_length": cfg.max_length,
            "stride": cfg.qa.stride,
            "columns": [cfg.data.context_column, cfg.data.question_column, cfg.data.answers_column],
        }
        features = {}
        for split, table in splits.items():
            evaluation = split != "train"
            source = with_row_numbers(table) if evaluation else table
            features[split] = encode(
                source, encode_batch(tokenizer, cfg, evaluation), {**key, "evaluation": evaluation}, f"data.{split}"
            )
        for split in ("validation", "test"):
            if split in features:  # evaluate() reads the rows' passages and answers from its loader's dataset
                features[split] = by_length(features[split])
                features[split].examples = splits[split]
    with phase("model"):
        model = load_span_model(cfg)
    if cfg.peft.enabled:
        model = apply_lora(model, cfg.peft, task_type="QUESTION_ANS")
    settings = {**vars(cfg.qa), "unanswerable": unanswerable}

    def save(unwrapped, folder: Path, state_dict=None, merge_lora: bool = False) -> None:
        save_model(unwrapped, tokenizer, folder, state_dict, merge_lora)
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    examples = first_rows(splits.get("validation", splits["train"]), cfg.data.question_column)
    return Task(
        model=model,
        train_set=features["train"],
        eval_set=features.get("validation"),
        test_set=features.get("test"),
        collate=make_collate(tokenizer),
        compute_loss=lambda model, batch: model(**batch).loss,
        evaluate=lambda model, loader, accelerator: evaluate(model, loader, accelerator, cfg, settings),
        save=save,
        train_lengths=lengths(features["train"]),
        info={"unanswerable": unanswerable, "examples": examples},
        finalize=lora_merge_finalizer(cfg, save),
    )


def load_span_model(cfg: QuestionAnsweringConfig):
    return load_with_head("QuestionAnswering", cfg.model, cfg.trust_remote_code, cfg.attn_implementation)


# ----- picking answers -----
def window_candidates(start_logits, end_logits, offsets, settings: dict) -> tuple[list[tuple], float]:
    """The best spans of one window as (score, first char, end char), and its empty answer's score.

    As transformers' question-answering pipeline: softmax over the passage's tokens and [CLS] for the start and
    for the end, the empty answer is [CLS]'s product, and a span's score is its start's times its end's
    probability (start <= end, at most max_answer_length tokens)."""
    offsets = np.asarray(offsets)
    passage = offsets[:, 0] >= 0
    allowed = passage.copy()
    allowed[0] = True  # [CLS]: the empty answer
    starts = softmax(np.where(allowed, start_logits, -10_000.0))
    ends = softmax(np.where(allowed, end_logits, -10_000.0))
    null = float(starts[0] * ends[0])
    starts[0] = ends[0] = 0.0
    scores = np.outer(starts, ends)
    scores = np.tril(np.triu(scores), settings["max_answer_length"] - 1)
    scores[~passage, :] = 0.0
    scores[:, ~passage] = 0.0
    flat = scores.ravel()
    count = min(settings["n_best"], flat.size)
    best = np.argpartition(-flat, count - 1)[:count]
    best = best[np.argsort(-flat[best])]
    spans = []
    for index in best:
        first, last = divmod(int(index), scores.shape[1])
        if flat[index] > 0:
            spans.append((float(flat[index]), int(offsets[first][0]), int(offsets[last][1])))
    return spans, null


def softmax(values):
    values = np.asarray(values, dtype=np.float64)
    exp = np.exp(values - values.max())
    return exp / exp.sum()


def pick_answer(context: str, candidates: list[tuple], null: float | None, settings: dict, top_k: int = 1) -> dict:
    """The answer of one question from its windows' candidates: the best span, or the empty answer when it is
    allowed and scores higher by qa.null_margin; up to ``top_k - 1`` alternatives after it."""
    ranked = sorted(set(candidates), key=lambda c: -c[0])
    answers = [{"answer": context[s:e], "score": score, "start": s, "end": e} for score, s, e in ranked]
    if settings.get("unanswerable") and null is not None:
        best = answers[0]["score"] if answers else 0.0
        empty = {"answer": "", "score": null, "start": 0, "end": 0}
        answers = [empty, *answers] if null > best + settings.get("null_margin", 0.0) else [*answers, empty]
    if not answers:
        answers = [{"answer": "", "score": 0.0, "start": 0, "end": 0}]
    return {**answers[0], "alternatives": answers[1:top_k]} if top_k > 1 else answers[0]


def squad_metrics(predictions: list[str], golds: list[list[str]]) -> dict:
    """The official SQuAD exact match and F1 (0-100; lower case, no punctuation or articles), each prediction
    scored against its best gold answer; a question without answers scores 100 for an empty prediction."""
    from torchmetrics.functional.text import squad

    answered = [(i, g) for i, g in enumerate(golds) if g]
    empty = [i for i, g in enumerate(golds) if not g]
    total = {"exact_match": 0.0, "f1": 0.0}
    if answered:
        scores = squad(
            [{"prediction_text": predictions[i], "id": str(i)} for i, _ in answered],
            [{"answers": {"text": g, "answer_start": [0] * len(g)}, "id": str(i)} for i, g in answered],
        )
        for name in total:
            total[name] += float(scores[name]) * len(answered)
    right = sum(1 for i in empty if not predictions[i].strip())
    out = {name: value / max(1, len(golds)) + 100.0 * right / max(1, len(golds)) for name, value in total.items()}
    out["count"] = len(golds)
    if empty:
        out["no_answer_accuracy"] = 100.0 * right / len(empty)
    return out


ANSWER_LENGTHS = ((1, 1), (2, 3), (4, 6), (7, None))  # words in the first gold answer


def by_answer_length(predictions: list[str], golds: list[list[str]]) -> dict:
    """Exact match and F1 of the questions whose (first) gold answer has 1, 2-3, 4-6 and 7 or more words, and of
    the unanswerable ones: where a model's answers go wrong."""
    groups: dict[str, list[int]] = {}
    for i, gold in enumerate(golds):
        words = len(gold[0].split()) if gold else 0
        name = "no answer" if not gold else next(
            f"{low}" if low == high else f"{low}+" if high is None else f"{low}-{high}"
            for low, high in ANSWER_LENGTHS
            if words >= low and (high is None or words <= high)
        )  # fmt: skip
        groups.setdefault(name, []).append(i)
    order = ["1", "2-3", "4-6", "7+", "no answer"]
    return {
        (name if name == "no answer" else f"{name} word" + ("" if name == "1" else "s")): squad_metrics(
            [predictions[i] for i in groups[name]], [golds[i] for i in groups[name]]
        )
        for name in order
        if name in groups
    }


@without_gradients
def evaluate(model, loader, accelerator, cfg: QuestionAnsweringConfig, settings: dict) -> dict:
    """Loss, then every window's candidate spans (gathered from every process), the best answer per question,
    and SQuAD exact match and F1 against the rows' gold answers."""
    import torch

    rows, losses = [], []
    for batch in loader:
        offsets, example = batch.pop("offsets"), batch.pop("example")
        out = model(**batch)
        found = []
        for i in range(len(example)):
            width = int(batch["attention_mask"][i].sum())
            spans, null = window_candidates(
                out.start_logits[i, :width].float().cpu().numpy(),
                out.end_logits[i, :width].float().cpu().numpy(),
                offsets[i, :width].cpu().numpy(),
                settings,
            )
            found.append((int(example[i]), spans, null))
        rows.extend(accelerator.gather_for_metrics(found, use_gather_object=True))
        losses.append(accelerator.gather_for_metrics(out.loss.detach().float().repeat(len(example))).cpu())
    examples = loader.dataset.examples
    candidates: dict[int, list] = {}
    nulls: dict[int, float] = {}
    for row, spans, null in rows:
        candidates.setdefault(row, []).extend(spans)
        nulls[row] = min(nulls.get(row, null), null)
    contexts = examples[cfg.data.context_column]
    golds = [answers_of(a)[0] for a in examples[cfg.data.answers_column]]
    predictions = [
        pick_answer(contexts[i], candidates.get(i, []), nulls.get(i), settings)["answer"] for i in range(len(golds))
    ]
    metrics = squad_metrics(predictions, golds)
    return {"loss": float(torch.cat(losses).mean()), **metrics}


# ----- predicting -----
class QuestionAnswerer(Predictor):
    """Call with ``{"question": ..., "context": ...}`` (or a JSON string of one, or a list of them): an answer is
    ``{"answer": text, "score", "start", "end"}``, character offsets into the context (``answer`` is empty when
    the run allows unanswerable questions and finds none). ``top_k=N`` adds ``alternatives``."""

    task_verb = "answer"
    reads_windows = True
    default_batch_size = 16
    # Windows are long (up to max_length tokens), so a CPU gains nothing from more rows, and a batch pads to its
    # longest: 128 random SQuAD questions, as requests of 16, sorted by length, answered 22 questions/s in batches
    # of 4 against 11 in batches of 16 and 19 one by one (a MiniLM run, 2 Zen 3 cores).
    cpu_batch_size = 4

    def load(self) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.folder)
        self.settings = json.loads((self.folder / SETTINGS_FILE).read_text())
        self.load_model()

    def load_model(self) -> None:
        self.model = load_checkpoint_model(self.folder, "QuestionAnswering", **self.attention()).eval().to(self.device)

    def logits(self, feed: dict):
        import torch

        with torch.inference_mode(), self.computing():
            out = self.model(**{k: torch.from_numpy(v).to(self.device) for k, v in feed.items()})
            return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()

    def is_single(self, inputs) -> bool:
        return isinstance(inputs, (dict, str))

    def input_size(self, item) -> int:
        pair = self.as_pair(item)
        return len(pair["question"]) + len(pair["context"])

    def check(self, inputs: list) -> None:
        for i, item in enumerate(inputs):
            item = self.as_pair(item, i)
            if not item["question"].strip() or not item["context"].strip():
                raise ToolkitError(f"input {i + 1}: give a non-empty question and context.")

    @staticmethod
    def as_pair(item, i: int = 0) -> dict:
        if isinstance(item, str):
            try:
                item = json.loads(item)
            except ValueError:
                item = None
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("question", "context")):
            raise ToolkitError(
                f'input {i + 1}: give {{"question": "...", "context": "..."}} (a dict, or that JSON as text).'
            )
        return {"question": item["question"], "context": item["context"]}

    def length_of(self, item) -> int:
        return self.input_size(item)  # a batch of similar passages pads little: 16 random SQuAD pairs padded 2x

    def in_batches(self, inputs, answer, by_length: bool = True):
        pairs = [self.as_pair(item, i) for i, item in enumerate(inputs)]
        return super().in_batches(pairs, answer, by_length=by_length)

    def predict_batch(self, pairs: list[dict], top_k: int = 1) -> list[dict]:
        questions, contexts = [p["question"] for p in pairs], [p["context"] for p in pairs]
        cfg = self.cfg
        encoded = encode_windows(self.tokenizer, cfg, questions, contexts)
        rows = encoded["overflow_to_sample_mapping"]
        width = max(len(ids) for ids in encoded["input_ids"])
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]
        pad = {"input_ids": self.tokenizer.pad_token_id or 0}
        feed = {
            n: np.array([v + [pad.get(n, 0)] * (width - len(v)) for v in encoded[n]], dtype=np.int64) for n in names
        }
        if len(rows) > LONG_CONTEXT_WINDOWS * len(pairs):
            log.warning(
                "long contexts: %d questions are read over %d windows of %d tokens (the time grows with them; a "
                "request may hold up to %s characters)", len(pairs), len(rows), cfg.max_length,
                f"{self.bounds.max_chars:,}" if self.bounds and self.bounds.max_chars else "any number of",
            )  # fmt: skip
        starts, ends = logits_in_parts(self.logits, feed, self.batch_size)
        candidates: list[list] = [[] for _ in pairs]
        nulls: list = [None] * len(pairs)
        for window, row in enumerate(rows):
            size = len(encoded["input_ids"][window])
            spans, null = window_candidates(
                starts[window, :size], ends[window, :size], word_offsets(encoded, window), self.settings
            )
            candidates[row].extend(spans)
            nulls[row] = null if nulls[row] is None else min(nulls[row], null)
        return [pick_answer(c, found, n, self.settings, top_k) for c, found, n in zip(contexts, candidates, nulls)]


class OnnxQuestionAnswerer(QuestionAnswerer):
    """The ONNX twin of :class:`QuestionAnswerer`: the same answers from an exported checkpoint. (The tokenizer
    comes from transformers, which needs no torch to tokenize.)"""

    uses_torch = False

    def load_model(self) -> None:
        self.session = open_session(self.folder)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, feed: dict):
        start, end = self.session.run(None, {name: feed[name] for name in self.input_names})
        return start, end


def evaluate_run(predictor, cfg: QuestionAnsweringConfig, source: str, split: str) -> dict:
    """Score a finished run's predictor on SQuAD-style data with the run's own columns."""
    data = cfg.data
    where = f"'{source}'"
    table = load_table(source, split)
    require_columns(table, [data.context_column, data.question_column, data.answers_column], where, EVAL_FIX)
    table = drop_empty_text(table, [data.context_column, data.question_column], where)
    pairs = [{"question": q, "context": c} for q, c in zip(table[data.question_column], table[data.context_column])]
    answers = predictor(pairs)
    predictions, golds = [a["answer"] for a in answers], [answers_of(a)[0] for a in table[data.answers_column]]
    return {**squad_metrics(predictions, golds), "per_answer_length": by_answer_length(predictions, golds)}


def export_answerer(folder: Path, path: Path, cfg, quantize: bool) -> str:
    export_checkpoint(folder, path, quantize, "QuestionAnswering", ("start_logits", "end_logits"))
    return "toolkit.recipes.qa:OnnxQuestionAnswerer"


MAX_TOP_K = 20  # answers per question the JSON API gives at most


def answers_asked(parameters: dict) -> int:
    """top_k: 1 unless asked (the Inference API's default), at most MAX_TOP_K."""
    return top_k_of(parameters, MAX_TOP_K) if parameters.get("top_k") is not None else 1


def serve_inputs(inputs) -> tuple[list, bool]:
    """{"question", "context"}, or a list of them."""
    if isinstance(inputs, dict):
        return [inputs], True
    if isinstance(inputs, list) and all(isinstance(item, dict) for item in inputs):
        return inputs, False
    raise ToolkitError('inputs must be {"question": "...", "context": "..."} or a list of them.')


def serve_parameters(parameters: dict) -> dict:
    check_parameters(
        parameters,
        {
            "top_k": "answers per question (more than 1: a list, best first)",
            "handle_impossible_answer": "ignored: the run's own setting decides",
            "doc_stride": "ignored: windows follow the run's settings",
            "max_answer_len": "ignored: the run's own setting decides",
        },
    )
    top_k = answers_asked(parameters)
    return {"top_k": top_k} if top_k > 1 else {}


def serve_answers(answers: list[dict], single: bool, parameters: dict):
    """{answer, score, start, end} per question; with top_k above 1 a list of them, best first."""
    fields = ("answer", "score", "start", "end")

    def shaped(found: dict):
        best = {k: found[k] for k in fields}
        if answers_asked(parameters) == 1:
            return best
        return [best, *({k: a[k] for k in fields} for a in found.get("alternatives", []))]

    rows = [shaped(found) for found in answers]
    return rows[0] if single else rows


SERVE = ServeShape(
    read=serve_inputs,
    write=serve_answers,
    options=serve_parameters,
    example='{"inputs": {"question": "Who wrote it?", "context": "It was written by Ada Lovelace."}}',
    client_call='question_answering(question="Who wrote it?", context="It was written by Ada Lovelace.")',
    describe="inputs: {question, context} or a list of them. Answers {answer, score, start, end} (character offsets "
    "into the context) per question.",
)


def load_predictor(folder: Path, cfg: QuestionAnsweringConfig, **kwargs):
    return QuestionAnswerer(folder, cfg=cfg, **kwargs)


register(
    TaskSpec(
        rank=16,
        name="qa",
        aliases=("question_answering", "extractive_qa"),
        description="Extractive question answering: a pretrained encoder finds the answer's span in a passage.",
        build=build_task,
        predictor=load_predictor,
        evaluate_run=evaluate_run,
        check_data=check_data,
        app="toolkit.apps.qa",
        example_config="recipes/configs/qa_squad.yaml",
        metrics=("f1", "exact_match", "loss"),
        config=QuestionAnsweringConfig,
        # Every window of a context is a model pass: 20,000 characters (a long article; a SQuAD context is under
        # 4,000) are 24 windows of 256 tokens, 2.3 s for MiniLM on 2 CPU cores (benchmarks/input_bounds.py).
        input_bounds=InputBounds(max_chars=20_000, max_inputs=64),
        export=export_answerer,
        usage='predict({"question": "Who wrote it?", "context": "It was written by Ada Lovelace."})',
        pipeline_tag="question-answering",
        serve=SERVE,
        # transformers 5.3 removed the question-answering pipeline: the stock way is the model and tokenizer classes.
        stock_usage="from transformers import AutoModelForQuestionAnswering, AutoTokenizer\n"
        'tokenizer = AutoTokenizer.from_pretrained("{folder}")\n'
        'model = AutoModelForQuestionAnswering.from_pretrained("{folder}")\n'
        'inputs = tokenizer("Who wrote it?", "It was written by Ada Lovelace.", return_tensors="pt")\n'
        "out = model(**inputs)\n"
        "start, end = int(out.start_logits.argmax()), int(out.end_logits.argmax())\n"
        "print(tokenizer.decode(inputs.input_ids[0, start : end + 1]))",
    )
)
