"""Named-entity recognition (token classification): a pretrained encoder tags each word of a sentence.

Data: rows of words and one tag per word (JSONL/Parquet/saved/hub tables, or CoNLL column files), tags in IOB1,
IOB2 or BILOU/BIOES, read as IOB2. The first sub-token of each word carries its tag; the others are ignored by the
loss. Metrics: seqeval's entity precision, recall and F1 (CoNLL's conlleval rules), overall and per type.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from toolkit import checks
from toolkit import splits as splitlib
from toolkit.config import DataConfig, DataRole, TextConfig, section, setting
from toolkit.data import (
    EVAL_FIX,
    LENGTH,
    by_length,
    count_rows,
    encode,
    first_rows,
    is_streaming,
    keep_rows,
    lengths,
    load_table,
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
from toolkit.onnx_backend import fast_tokenizer, open_session, pad_token_id
from toolkit.predictor import Predictor, logits_in_parts
from toolkit.read_errors import quiet_readers, unreadable
from toolkit.shapes import check_parameters, texts_of
from toolkit.tasks import ServeShape, TaskSpec, register
from toolkit.timing import phase

if TYPE_CHECKING:
    from toolkit.engine import Task

# Heavy libraries (torch, transformers) are imported where they are used: declaring the task never loads them.


@dataclass
class TokenClassificationData(DataConfig):
    """The word and tag columns of a tagged table."""

    tokens_column: str = setting(
        "tokens",
        "each row's words: a list of strings",
        role=DataRole("tokens", "tokens", ("tokens", "words", "token", "sentence")),
    )
    tags_column: str = setting(
        "ner_tags",
        "one tag per word: strings such as `B-PER` (or ids of the column's class names)",
        role=DataRole("tags", "tags", ("ner_tags", "tags", "labels", "ner", "tag", "label")),
    )
    tag_scheme: Literal["auto", "iob1", "iob2", "bilou"] = setting(
        "auto",
        "how the tags mark entities: `auto` reads the prefixes; `bilou` also takes BIOES (E-, S-). All are trained "
        "as IOB2",
    )
    misaligned: Literal["error", "skip"] = setting(
        "error", "rows whose tag count differs from their word count: `error`, or `skip` (counted in the log)"
    )


@dataclass
class TokenClassificationConfig(TextConfig):
    """Token classification: a pretrained encoder with a new tagging head."""

    data: TokenClassificationData = section(TokenClassificationData)


LABELS_FILE = "labels.json"
IGNORED = -100  # the label of sub-tokens after a word's first, and of special tokens: no loss, no prediction
CONLL_SUFFIXES = (".conll", ".conll03", ".iob", ".bio", ".txt")  # column files: a word and its tag per line
SCHEME_PREFIXES = {"iob1": set("BI"), "iob2": set("BI"), "bilou": set("BILUES")}
TO_IOB2 = {"B": "B", "I": "I", "L": "I", "E": "I", "U": "B", "S": "B"}
SCHEME_ROWS = 10_000  # rows read to name the tag scheme when data.tag_scheme is auto


# ----- tags -----
def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) of a tag; ("O", "") for outside."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    return prefix, kind


def to_iob2(tags: list[str]) -> list[str]:
    """Tags of any supported scheme as IOB2: L-/E- continue an entity, U-/S- begin one, and an I- that does not
    continue an entity of its type begins one (IOB1's rule, and seqeval's reading of a stray I-)."""
    out, previous = [], ""
    for tag in tags:
        prefix, kind = split_tag(tag)
        if prefix == "O":
            out.append("O")
            previous = ""
            continue
        prefix = TO_IOB2[prefix]
        if prefix == "I" and previous != kind:
            prefix = "B"
        out.append(f"{prefix}-{kind}")
        previous = kind
    return out


def check_tags(distinct: list[str], scheme: str, where: str) -> str:
    """The scheme of these distinct tags (``scheme``, or read from their prefixes when auto); a tag that fits no
    scheme is an error naming it."""
    prefixes = set()
    for tag in distinct:
        prefix, kind = split_tag(tag)
        if prefix != "O" and (prefix not in TO_IOB2 or not kind):
            raise ToolkitError(
                f"{where}: tag {tag!r} is neither O nor a prefix (B-, I-, L-, U-, E-, S-) and a type such as "
                "B-PER. Fix the tags, or check data.tags_column."
            )
        prefixes.add(prefix)
    prefixes.discard("O")
    if scheme == "auto":
        return "bilou" if prefixes - SCHEME_PREFIXES["iob2"] else "iob2"
    extra = prefixes - SCHEME_PREFIXES[scheme]
    if extra:
        raise ToolkitError(
            f"{where}: data.tag_scheme is {scheme}, but the tags use the prefix(es) {', '.join(sorted(extra))}. "
            "Set data.tag_scheme=bilou (BILOU and BIOES) or auto."
        )
    return scheme


def tag_names(distinct: list[str]) -> list[str]:
    """The IOB2 tags the model predicts: O, then B- and I- of each entity type, types sorted."""
    types = sorted({split_tag(tag)[1] for tag in distinct} - {""})
    return ["O", *(f"{prefix}-{kind}" for kind in types for prefix in "BI")]


def entity_types(names: list[str]) -> list[str]:
    return sorted({split_tag(name)[1] for name in names} - {""})


# ----- data -----
def class_names(table, column: str) -> list[str] | None:
    """The tag names of a column of class ids (a hub dataset's ``List(ClassLabel)``), else None."""
    feature = (table.features or {}).get(column)
    inner = getattr(feature, "feature", None)
    return list(inner.names) if hasattr(inner, "names") else None


def distinct_tags(table, column: str) -> list[str]:
    """Every tag the column uses, scanned in Arrow batches (of a stream, its first rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = class_names(table, column)
    if is_streaming(table):
        found = {tag for row in table.take(SCHEME_ROWS) for tag in row[column]}
    else:
        chunks = [pc.unique(pc.list_flatten(batch.column(column))) for batch in scan(table.select_columns([column]))]
        found = set(pc.unique(pa.chunked_array(chunks)).to_pylist()) if chunks else set()
    if names is not None:
        return sorted(names[i] for i in found if i is not None)
    return sorted(str(tag) for tag in found if tag is not None)


def read_conll(path: str, tokens: str, tags: str):
    """Rows of a CoNLL column file: a word per line with its tag in the last column, blank lines between
    sentences, -DOCSTART- lines skipped."""
    words, labels = [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    yield {tokens: words, tags: labels}
                words, labels = [], []
                continue
            if len(fields) < 2:
                raise ValueError(f"line {number} has a word but no tag ({line.strip()!r})")
            words.append(fields[0])
            labels.append(fields[-1])
    if words:
        yield {tokens: words, tags: labels}


def load_conll(path: Path, tokens: str, tags: str, streaming: bool):
    """A CoNLL column file as a datasets table, written once to datasets' cache (again when the file changes)."""
    import datasets

    features = datasets.Features(
        {tokens: datasets.List(datasets.Value("string")), tags: datasets.List(datasets.Value("string"))}
    )
    stat = path.stat()
    arguments = {"path": str(path.resolve()), "tokens": tokens, "tags": tags}
    try:
        if streaming:
            return datasets.IterableDataset.from_generator(read_conll, features=features, gen_kwargs=arguments)
        with quiet_readers():
            # The file's size and time are part of the cache's name: an edited file is read again.
            table = datasets.Dataset.from_generator(
                read_conll, features=features, gen_kwargs=arguments, fingerprint=None,
                config_name=f"{stat.st_size}-{stat.st_mtime_ns}",
            )  # fmt: skip
    except Exception as err:  # noqa: BLE001 - name the file and the cause
        cause = err.__cause__ or err
        raise unreadable(path, path.suffix, cause) from err
    if len(table) == 0:
        raise ToolkitError(f"data file '{path}' has no sentences. Point the config at a CoNLL file with data.")
    return table


def load_tagged(source: str, split: str, cfg: TokenClassificationConfig, streaming: bool = False):
    path = Path(source)
    if path.is_file() and path.suffix.lower() in CONLL_SUFFIXES:
        return load_conll(path, cfg.data.tokens_column, cfg.data.tags_column, streaming)
    return load_table(source, split, streaming)


def check_columns(table, cfg: TokenClassificationConfig, where: str, fix=None) -> None:
    """Both columns exist and hold lists (of words, of tags)."""
    import datasets

    tokens, tags = cfg.data.tokens_column, cfg.data.tags_column
    require_columns(table, [tokens, tags], where, fix or role_fix(cfg))
    for column, what in ((tokens, "words"), (tags, "tags")):
        feature = (table.features or {}).get(column)
        if feature is not None and not isinstance(feature, (datasets.List, datasets.LargeList, datasets.Sequence)):
            raise ToolkitError(
                f"{where}: column '{column}' holds {getattr(feature, 'dtype', feature)}, not lists of {what}. "
                'Give each row a list, e.g. {"tokens": ["Peter", "Blackburn"], "ner_tags": ["B-PER", "I-PER"]}.'
            )


def clean(table, cfg: TokenClassificationConfig, where: str):
    """Rows without words are skipped (counted); rows whose tags are not one per word are refused, naming the
    first, or skipped with data.misaligned=skip."""
    import pyarrow.compute as pc

    tokens, tags = cfg.data.tokens_column, cfg.data.tags_column

    def words(batch):
        return pc.fill_null(pc.list_value_length(batch.column(tokens)), 0)

    def aligned(batch):
        return pc.equal(words(batch), pc.fill_null(pc.list_value_length(batch.column(tags)), -1))

    table = keep_rows(
        table,
        lambda batch: pc.greater(words(batch), 0),
        ("words", tokens),
        where,
        f"no words in {tokens}",
        f"every row's {tokens} is empty. Check data.tokens_column",
    )
    if cfg.data.misaligned == "skip" or is_streaming(table):
        return keep_rows(
            table,
            aligned,
            ("aligned", tokens, tags),
            where,
            f"a tag count that differs from the word count ({tags} against {tokens})",
            "no row has one tag per word. Check data.tags_column",
        )
    bad = count_rows(table, lambda batch: pc.invert(aligned(batch)))
    if bad:
        first = next(
            i for i, row in enumerate(table.select_columns([tokens, tags])) if len(row[tokens]) != len(row[tags] or [])
        )
        raise ToolkitError(
            f"{where}: {bad} row(s) without one tag per word (the first is row {first + 1}: "
            f"{len(table[first][tokens])} words, {len(table[first][tags] or [])} tags). Fix them, or set "
            "data.misaligned=skip to train without them."
        )
    return table


def load_splits(cfg: TokenClassificationConfig) -> dict:
    def tidy(table, where: str):
        check_columns(table, cfg, where)
        return clean(table, cfg, where)

    def load_split(split: str, source: str, where: str):
        return tidy(load_tagged(source, split, cfg), where)

    if cfg.data.streaming:

        def load_stream(split: str, source: str, where: str):
            if split != "train":
                return load_split(split, source, where)
            return tidy(load_tagged(source, split, cfg, streaming=True), where)

        return stream_splits(cfg, load_stream, tidy)
    return splitlib.load_splits(cfg, load_split, "a JSONL/Parquet file of words and tags, a CoNLL file or a hub id")


def encode_batch(tokenizer, cfg: TokenClassificationConfig, names: list[str], source_names, with_gold: bool):
    """A batch of rows -> token ids, labels on each word's first sub-token, lengths; with ``with_gold`` also every
    word's tag id (evaluation scores words that truncation cut off as missed)."""
    index = {name: i for i, name in enumerate(names)}
    tokens, tags = cfg.data.tokens_column, cfg.data.tags_column

    def encode(batch: dict) -> dict:
        encoded = tokenizer(batch[tokens], is_split_into_words=True, truncation=True, max_length=cfg.max_length)
        labels, gold = [], []
        for row, row_tags in enumerate(batch[tags]):
            if source_names is not None:
                row_tags = [source_names[t] for t in row_tags]
            ids = [index[t] for t in to_iob2(row_tags)]
            labels.append(first_subtoken_labels(encoded.word_ids(row), ids))
            gold.append(ids)
        out = {**encoded, "labels": labels, LENGTH: [len(ids) for ids in encoded["input_ids"]]}
        if with_gold:
            out["gold"] = gold
        return out

    return encode


def first_subtoken_labels(word_ids: list, ids: list[int]) -> list[int]:
    labels, previous = [], None
    for word in word_ids:
        labels.append(IGNORED if word is None or word == previous else ids[word])
        previous = word
    return labels


def make_collate(tokenizer):
    """Pads ids and labels (labels with -100); an evaluation batch's per-word gold tags become a padded tensor."""
    import torch
    from transformers import DataCollatorForTokenClassification

    pad = DataCollatorForTokenClassification(tokenizer)

    def collate(items: list[dict]) -> dict:
        gold = [item.pop("gold") for item in items] if items and "gold" in items[0] else None
        batch = pad(items)
        if gold is not None:
            width = max(len(g) for g in gold)
            batch["gold"] = torch.tensor([g + [IGNORED] * (width - len(g)) for g in gold])
        return batch

    return collate


def build_task(cfg: TokenClassificationConfig) -> Task:
    from toolkit.engine import Task

    with phase("data"):
        splits = load_splits(cfg)
        train = splits["train"]
        source_names = class_names(train, cfg.data.tags_column)
        seen = distinct_tags(train, cfg.data.tags_column)
        scheme = check_tags(seen, cfg.data.tag_scheme, "data.train")
        names = tag_names(seen)
        if len(names) < 3:
            raise ToolkitError(
                "data.train has no entities (every tag is O): tag some words, or check data.tags_column."
            )
        for split, table in splits.items():
            if split != "train":
                check_split_tags(table, cfg, names, scheme, f"data.{split}")
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        if not getattr(tokenizer, "is_fast", False):
            raise ToolkitError(
                f"model '{cfg.model}' has no fast tokenizer: tagging needs one to map words to sub-tokens. "
                "Choose a model with a tokenizer.json."
            )
        checks.run_checks(cfg, splits, lambda cfg, splits: check_data(cfg, splits, tokenizer, scheme))
        key = {
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "max_length": cfg.max_length,
            "tokens": cfg.data.tokens_column,
            "tags": cfg.data.tags_column,
            "names": names,
            "source_names": source_names,
        }
        features = {
            split: encode(
                table,
                encode_batch(tokenizer, cfg, names, source_names, with_gold=split != "train"),
                {**key, "gold": split != "train"},
                f"data.{split}",
            )
            for split, table in splits.items()
        }
    with phase("model"):
        model = load_token_classifier(cfg, names)
    if cfg.peft.enabled:
        model = apply_lora(model, cfg.peft, task_type="TOKEN_CLS")

    def save(unwrapped, folder: Path, state_dict=None, merge_lora: bool = False) -> None:
        save_model(unwrapped, tokenizer, folder, state_dict, merge_lora)
        (folder / LABELS_FILE).write_text(json.dumps(names))

    examples = [" ".join(words) for words in first_rows(splits.get("validation", train), cfg.data.tokens_column)]
    return Task(
        model=model,
        train_set=features["train"],
        eval_set=by_length(features.get("validation")),
        test_set=by_length(features.get("test")),
        collate=make_collate(tokenizer),
        compute_loss=lambda model, batch: model(**batch).loss,
        loss_weight=lambda batch: (batch["labels"] != IGNORED).sum(),
        evaluate=lambda model, loader, accelerator: evaluate(model, loader, accelerator, names),
        save=save,
        train_lengths=lengths(features["train"]),
        info={"labels": names, "types": entity_types(names), "tag_scheme": scheme, "examples": examples},
        finalize=lora_merge_finalizer(cfg, save),
    )


def check_data(cfg: TokenClassificationConfig, splits: dict | None = None, tokenizer=None, scheme=None) -> list:
    """Duplicate and leaked sentences, tags that break their scheme, entity types in one split only, imbalance
    of entity types, sentences cut by max_length (``toolkit check``; ``toolkit train`` runs it first)."""
    tokens, tags = cfg.data.tokens_column, cfg.data.tags_column
    if splits is None:
        splits = load_splits(cfg)
    names = class_names(splits["train"], tags)
    scheme = scheme or check_tags(distinct_tags(splits["train"], tags), cfg.data.tag_scheme, "data.train")
    tokenizer = tokenizer or load_tokenizer(cfg.model, cfg.trust_remote_code)

    def tag_rows(table) -> list[list[str]]:
        return [[names[t] for t in row] if names is not None else [str(t) for t in row] for row in table[tags]]

    def entities(table) -> Counter:
        return Counter(kind for row in tag_rows(table) for prefix, kind in map(split_tag, row) if prefix in "BUS")

    def sentence(row) -> str:
        return " ".join(str(w) for w in row[tokens])

    findings = [
        *checks.duplicates(splits, sentence, lambda row: " ".join(map(str, row[tags]))),
        *checks.leakage(splits, sentence, "sentences"),
        *scheme_breaks(splits, tag_rows, scheme, tokens),
        *checks.label_coverage(splits, entities, "entities"),
        *checks.imbalance(entities(splits["train"]), what="entities"),
        *truncated_sentences(splits, tokenizer, cfg.max_length, tokens),
        *checks.short(splits, lambda table: [" ".join(map(str, row)) for row in table[tokens]], "sentences"),
    ]
    return findings


def scheme_breaks(splits: dict, tag_rows, scheme: str, tokens: str) -> list:
    """Rows whose tags break their scheme: an I- that continues no entity of its type (IOB2, BILOU), a B- that
    no I-/L- of its type ends (BILOU). Training reads such an I- as a new entity, as seqeval does."""
    if scheme == "iob1":
        return []  # a stray I- begins an entity there: nothing to break
    findings = []
    for split, table in splits.items():
        rows = tag_rows(table)
        broken = [i for i, row in enumerate(rows) if first_break(row, scheme) is not None]
        if broken:
            words = table[tokens]
            findings.append(
                checks.Finding(
                    "tag scheme", f"data.{split}", len(broken), len(rows),
                    f"sentences have tags that break the {scheme.upper()} scheme",
                    "fix the tags; if the file is IOB1 (I- begins entities), set data.tag_scheme=iob1",
                    [f"{first_break(rows[i], scheme)} in {checks.snippet(' '.join(map(str, words[i])), 40)}"
                     for i in broken[: checks.EXAMPLES]],
                )
            )  # fmt: skip
    return findings


def first_break(tags: list[str], scheme: str) -> str | None:
    """The first tag of a row that breaks ``scheme`` (iob2 or bilou), described, or None."""
    open_kind = ""  # the type of the entity that the previous tag leaves open
    for position, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        inside = prefix in ("I", "L", "E")
        if inside and open_kind != kind:
            return f"{tag!r} at word {position + 1} continues no {kind} entity"
        if scheme == "bilou" and open_kind and prefix not in ("I", "L", "E"):
            return f"{tags[position - 1]!r} at word {position} is not ended by I-/L-{open_kind}"
        open_kind = kind if prefix in ("B", "I") else ""  # L-/E-, U-/S- and O leave none open
    if scheme == "bilou" and open_kind:
        return f"{tags[-1]!r} at the last word leaves its {open_kind} entity open"
    return None


def truncated_sentences(splits: dict, tokenizer, max_length: int, tokens: str) -> list:
    """Sentences whose sub-tokens pass max_length: their last words are never tagged (scored as missed)."""
    findings = []
    for split, table in splits.items():
        words = [list(map(str, row)) for row in table[tokens]]
        encoded = tokenizer(words, is_split_into_words=True, verbose=False)["input_ids"] if words else []
        counts = [len(ids) for ids in encoded]
        long = [i for i, n in enumerate(counts) if n > max_length]
        if long:
            findings.append(
                checks.Finding("truncated", f"data.{split}", len(long), len(counts),
                               f"sentences have more than max_length={max_length} sub-tokens: their last words are "
                               "never tagged", "raise max_length, or split long sentences",
                               [f"{counts[i]} sub-tokens: {checks.snippet(' '.join(words[i]), 40)}" for i in long])
            )  # fmt: skip
    return findings


def label_rows(cfg: TokenClassificationConfig):
    """data.train's sentences as `toolkit label-issues` ranks their tags: one label per word (IOB2)."""
    from toolkit.label_issues import ROW_COLUMN, LabelRows, numbered

    if not cfg.data.train:
        raise ToolkitError("no training data: set data.train=FILE, the file whose tags to check.")
    where = f"data.train ('{cfg.data.train}')"
    table = numbered(load_tagged(cfg.data.train, "train", cfg))
    check_columns(table, cfg, where)
    table = clean(table, cfg, where)
    source_names = class_names(table, cfg.data.tags_column)
    check_tags(distinct_tags(table, cfg.data.tags_column), cfg.data.tag_scheme, where)
    names = tag_names(distinct_tags(table, cfg.data.tags_column))
    index = {name: i for i, name in enumerate(names)}
    words = [[str(w) for w in row] for row in table[cfg.data.tokens_column]]
    tags = [
        to_iob2([source_names[t] for t in row] if source_names is not None else [str(t) for t in row])
        for row in table[cfg.data.tags_column]
    ]
    return LabelRows(
        table=table,
        labels=[[index[t] for t in row] for row in tags],
        names=names,
        shown=[" ".join(row) for row in words],
        numbers=list(table[ROW_COLUMN]),
        tokens=words,
    )


def word_probabilities(predictor, rows, indices, names: list[str]) -> list:
    """Per sentence, each word's tag probabilities (a [words, tags] array in ``names`` order); a word the model
    never reads gets equal odds."""
    from toolkit.label_issues import in_order

    sentences = [rows.tokens[i] for i in indices]
    even = np.full(len(predictor.labels), 1 / len(predictor.labels))
    found = predictor.in_batches(sentences, predictor.word_probabilities)
    return [
        in_order(np.array([row.get(i, even) for i in range(len(words))]), predictor.labels, names)
        for row, words in zip(found, sentences)
    ]


def frozen_word_features(cfg: TokenClassificationConfig, rows) -> list:
    """Each word as the frozen encoder's last hidden state at its first sub-token."""
    import torch
    from transformers import AutoModel

    from toolkit.models import from_pretrained_quietly, resolve_model_source

    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    model = from_pretrained_quietly(AutoModel, resolve_model_source(cfg.model), trust_remote_code=cfg.trust_remote_code)
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(rows.tokens), 32):
            batch = rows.tokens[start : start + 32]
            encoded = tokenizer(batch, is_split_into_words=True, truncation=True, max_length=cfg.max_length,
                                padding=True, return_tensors="pt")  # fmt: skip
            hidden = model(**encoded).last_hidden_state.float().numpy()
            for b, words in enumerate(batch):
                first = {}
                for position, word in enumerate(encoded.word_ids(b)):
                    if word is not None and word not in first:
                        first[word] = hidden[b, position]
                zero = np.zeros(hidden.shape[-1], dtype=np.float32)
                out.append(np.stack([first.get(i, zero) for i in range(len(words))]))
    return out


def label_issue_spec():
    from toolkit.label_issues import LabelIssueSpec, copy_with

    return LabelIssueSpec(
        rows=label_rows,
        correct=copy_with(lambda cfg: cfg.data.tags_column),
        probabilities=word_probabilities,
        features=frozen_word_features,
        token_level=True,
    )


def check_split_tags(table, cfg: TokenClassificationConfig, names: list[str], scheme: str, where: str) -> None:
    """Validation and test tags: the training scheme's prefixes, and only types training has."""
    if is_streaming(table):
        return
    seen = distinct_tags(table, cfg.data.tags_column)
    check_tags(seen, scheme if cfg.data.tag_scheme != "auto" else "auto", where)
    unknown = sorted(set(entity_types(tag_names(seen))) - set(entity_types(names)))
    if unknown:
        raise ToolkitError(
            f"{where} has entity types that training never saw: {', '.join(unknown)} (training has "
            f"{', '.join(entity_types(names))}). Fix those tags, or add examples of them to the training data."
        )


def load_token_classifier(cfg: TokenClassificationConfig, names: list[str]):
    return load_with_head("TokenClassification", cfg.model, cfg.trust_remote_code, cfg.attn_implementation, names)


# ----- metrics -----
def word_predictions(predicted, labels, gold) -> list[tuple[list[int], list[int]]]:
    """(gold tag ids, predicted tag ids) of each row's words: the prediction of a word is its first sub-token's;
    words that truncation cut off are predicted O (missed, as a user would see them)."""
    pairs = []
    for row_predicted, row_labels, row_gold in zip(predicted.tolist(), labels.tolist(), gold.tolist()):
        words = [g for g in row_gold if g != IGNORED]
        guesses = [p for p, label in zip(row_predicted, row_labels) if label != IGNORED]
        pairs.append((words, guesses + [0] * (len(words) - len(guesses))))
    return pairs


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """seqeval's entity precision, recall and F1 (conlleval's rules: a stray I- begins an entity), overall and per
    type, and the word accuracy."""
    from seqeval.metrics import accuracy_score, classification_report

    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    overall = report["micro avg"]
    return {
        "f1": float(overall["f1-score"]),
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
        "accuracy": float(accuracy_score(gold, predicted)),
        "per_type": {
            kind: {
                "precision": float(s["precision"]),
                "recall": float(s["recall"]),
                "f1": float(s["f1-score"]),
                "support": int(s["support"]),
            }
            for kind, s in report.items()
            if not kind.endswith(" avg")
        },
        "entities": int(overall["support"]),
        "count": len(gold),
    }


@without_gradients
def evaluate(model, loader, accelerator, names: list[str]) -> dict:
    """Loss and entity metrics over ``loader``, gathered from every process."""
    import torch

    pairs, losses = [], []
    for batch in loader:
        gold = batch.pop("gold")
        out = model(**batch)
        rows = word_predictions(out.logits.argmax(-1).cpu(), batch["labels"].cpu(), gold.cpu())
        pairs.extend(accelerator.gather_for_metrics(rows, use_gather_object=True))
        losses.append(accelerator.gather_for_metrics(out.loss.detach().float().repeat(len(gold))).cpu())
    metrics = entity_metrics([[names[i] for i in g] for g, _ in pairs], [[names[i] for i in p] for _, p in pairs])
    return {"loss": float(torch.cat(losses).mean()), **metrics}


# ----- predicting -----
def group_entities(tokens: list[dict], labels: list[str]) -> list[dict]:
    """Entities from tagged sub-tokens, as transformers' token-classification pipeline groups them with
    ``aggregation_strategy="simple"``: each token takes its best tag, and a run of tokens of one type is one
    entity until a B- starts the next; its score is the mean of its tokens'."""
    groups, current = [], []
    for token in tokens:
        best = int(token["probs"].argmax())
        prefix, kind = split_tag(labels[best])
        tagged = {**token, "kind": kind or "O", "prefix": prefix, "score": float(token["probs"][best])}
        if current and tagged["kind"] == current[-1]["kind"] and prefix != "B":
            current.append(tagged)
            continue
        if current:
            groups.append(current)
        current = [tagged]
    if current:
        groups.append(current)
    return [
        {
            "type": group[0]["kind"],
            "start": group[0]["start"],
            "end": group[-1]["end"],
            "score": sum(t["score"] for t in group) / len(group),
        }
        for group in groups
        if group[0]["kind"] != "O"
    ]


def entities_from_word_tags(words: list[str], tags: list[str], scores: list[float]) -> list[dict]:
    """Entities of pre-split words from their IOB2 tags: type, text, word span and character offsets in the words
    joined by single spaces."""
    starts, position = [], 0
    for word in words:
        starts.append(position)
        position += len(word) + 1
    entities, open_entity = [], None
    for i, (tag, score) in enumerate(zip(to_iob2(tags), scores)):
        prefix, kind = split_tag(tag)
        if prefix == "I" and open_entity is not None and open_entity["type"] == kind:
            open_entity["last_word"], open_entity["scores"] = i, [*open_entity["scores"], score]
            continue
        open_entity = None
        if prefix == "B":
            open_entity = {"type": kind, "first_word": i, "last_word": i, "scores": [score]}
            entities.append(open_entity)
    return [
        {
            "type": e["type"],
            "text": " ".join(words[e["first_word"] : e["last_word"] + 1]),
            "start": starts[e["first_word"]],
            "end": starts[e["last_word"]] + len(words[e["last_word"]]),
            "first_word": e["first_word"],
            "last_word": e["last_word"],
            "score": sum(e["scores"]) / len(e["scores"]),
        }
        for e in entities
    ]


class TokenTagger(Predictor):
    """Call with a text (or a list of them): an answer is ``{"entities": [{"type", "text", "start", "end",
    "score"}]}``, character offsets into the text, grouped as the stock pipeline groups them
    (``aggregation_strategy="simple"``). :meth:`tag_words` takes pre-split words instead and answers with each
    word's tag too. Texts longer than the model's input are read in consecutive windows."""

    task_verb = "tag"
    reads_windows = True

    def load(self) -> None:
        self.tokenizer, self.max_length = fast_tokenizer(self.folder, self.cfg.max_length, pad=False)
        self.pad_id = pad_token_id(self.folder, self.tokenizer)
        self.labels = json.loads((self.folder / LABELS_FILE).read_text())
        self.load_model()

    def load_model(self) -> None:
        self.model = load_checkpoint_model(self.folder, "TokenClassification", **self.attention())
        self.model = self.model.eval().to(self.device)
        taken = inspect.signature(self.model.forward).parameters  # DistilBERT, e.g., takes no token_type_ids
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in taken]

    def logits(self, feed: dict):
        """Token logits (numpy, batch x tokens x tags) for padded ids."""
        import torch

        with torch.inference_mode(), self.computing():
            inputs = {name: torch.from_numpy(feed[name]).to(self.device) for name in self.input_names}
            return self.model(**inputs).logits.float().cpu().numpy()

    def windows(self, encodings) -> list:
        """Each encoding's windows (itself and what truncation cut into the next ones), with the text it came from."""
        return [(text, window) for text, enc in enumerate(encodings) for window in (enc, *enc.overflowing)]

    def probabilities(self, encodings) -> list:
        """Per window: (its text's index, its encoding, softmax over tags of each token, numpy)."""
        windows = self.windows(encodings)
        width = max(len(w.ids) for _, w in windows)

        def padded(values, fill):
            return np.array([list(v) + [fill] * (width - len(v)) for v in values], dtype=np.int64)

        feed = {
            "input_ids": padded([w.ids for _, w in windows], self.pad_id),
            "attention_mask": padded([w.attention_mask for _, w in windows], 0),
            "token_type_ids": padded([w.type_ids for _, w in windows], 0),
        }
        logits = logits_in_parts(self.logits, feed, self.batch_size).astype(np.float64)
        exp = np.exp(logits - logits.max(-1, keepdims=True))
        probs = exp / exp.sum(-1, keepdims=True)
        return [(text, w, probs[i, : len(w.ids)]) for i, (text, w) in enumerate(windows)]

    def predict_batch(self, texts: list[str]) -> list[dict]:
        tokens: list[list[dict]] = [[] for _ in texts]
        for text, window, probs in self.probabilities(self.tokenizer.encode_batch(texts)):
            for position, (special, (start, end)) in enumerate(zip(window.special_tokens_mask, window.offsets)):
                if not special:
                    tokens[text].append({"start": start, "end": end, "probs": probs[position]})
        answers = []
        for text, found in zip(texts, tokens):
            entities = group_entities(found, self.labels)
            answers.append({"entities": [{**e, "text": text[e["start"] : e["end"]]} for e in entities]})
        return answers

    def tag_words(self, words) -> dict | list[dict]:
        """Pre-split words (a list of strings, or a list of such lists): per row ``{"tags": IOB2 tag per word,
        "entities": [{"type", "text", "start", "end", "first_word", "last_word", "score"}]}``, offsets into the
        words joined by single spaces. A word's tag is its first sub-token's, as in training."""
        if words and all(isinstance(w, str) for w in words):
            return self.tag_words([words])[0]
        rows = [list(row) for row in words]
        for i, row in enumerate(rows):
            if not row or not all(isinstance(w, str) and w.strip() for w in row):
                raise ToolkitError(f"row {i + 1}: give a non-empty list of non-empty words.")
        self.check_bounds([" ".join(row) for row in rows])
        return self.in_batches(rows, self.tag_word_batch)

    def word_probabilities(self, rows: list[list[str]]) -> list[dict]:
        """Per row of pre-split words, {word index: its first sub-token's tag probabilities} (as training labels
        words); a word that truncation's windows never reach is absent."""
        best: list[dict] = [{} for _ in rows]
        encodings = self.tokenizer.encode_batch(rows, is_pretokenized=True)
        for row, window, probs in self.probabilities(encodings):
            for position, word in enumerate(window.word_ids):
                if word is not None and word not in best[row]:
                    best[row][word] = probs[position]
        return best

    def tag_word_batch(self, rows: list[list[str]]) -> list[dict]:
        answers = []
        for row, found in zip(rows, self.word_probabilities(rows)):
            tags = [self.labels[int(found[i].argmax())] if i in found else "O" for i in range(len(row))]
            scores = [float(found[i].max()) if i in found else 1.0 for i in range(len(row))]
            answers.append({"tags": to_iob2(tags), "entities": entities_from_word_tags(row, tags, scores)})
        return answers


class OnnxTokenTagger(TokenTagger):
    """The ONNX twin of :class:`TokenTagger`: the same answers from an exported checkpoint, without torch."""

    uses_torch = False

    def load_model(self) -> None:
        self.session = open_session(self.folder)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, feed: dict):
        return self.session.run(None, {name: feed[name] for name in self.input_names})[0]


def evaluate_run(predictor, cfg: TokenClassificationConfig, source: str, split: str) -> dict:
    """Score a finished run's predictor on tagged data with the run's own columns and tags."""
    where = f"'{source}'"
    table = load_tagged(source, split, cfg)
    check_columns(table, cfg, where, EVAL_FIX)
    table = clean(table, cfg, where)
    source_names = class_names(table, cfg.data.tags_column)
    check_split_tags(table, cfg, predictor.labels, "auto", where)
    gold, predicted = [], []
    for start in range(0, len(table), 1000):
        chunk = table[start : start + 1000]
        for tags, answer in zip(chunk[cfg.data.tags_column], predictor.tag_words(chunk[cfg.data.tokens_column])):
            gold.append(to_iob2([source_names[t] for t in tags] if source_names else tags))
            predicted.append(answer["tags"])
    return entity_metrics(gold, predicted)


def export_tagger(folder: Path, path: Path, cfg, quantize: bool) -> str:
    export_checkpoint(folder, path, quantize, "TokenClassification")
    return "toolkit.recipes.ner:OnnxTokenTagger"


def load_predictor(folder: Path, cfg: TokenClassificationConfig, **kwargs):
    return TokenTagger(folder, cfg=cfg, **kwargs)


def serve_parameters(parameters: dict) -> dict:
    check_parameters(
        parameters,
        {
            "aggregation_strategy": "simple: the only one (whole entities)",
            "ignore_labels": "entity types to leave out",
            "stride": "ignored: windows follow the run's settings",
        },
    )
    if parameters.get("aggregation_strategy") not in (None, "simple"):
        raise ToolkitError("aggregation_strategy: this server groups tokens into whole entities (simple) only.")
    return {}


def serve_answers(answers: list[dict], single: bool, parameters: dict) -> list:
    """Per text, its entities as the Inference API gives them: [{entity_group, score, word, start, end}]."""
    ignored = set(parameters.get("ignore_labels") or [])
    rows = [
        [
            {"entity_group": e["type"], "score": e["score"], "word": e["text"], "start": e["start"], "end": e["end"]}
            for e in answer["entities"]
            if e["type"] not in ignored
        ]
        for answer in answers
    ]
    return rows[0] if single else rows


SERVE = ServeShape(
    read=texts_of,
    write=serve_answers,
    options=serve_parameters,
    example='{"inputs": "George Washington went to Washington."}',
    client_call='token_classification("George Washington went to Washington.")',
    describe="inputs: a text or a list of texts. Answers [{entity_group, score, word, start, end}] for one text, a "
    "list of those for several.",
)


register(
    TaskSpec(
        rank=15,
        name="ner",
        aliases=("token_classification",),
        description="Named-entity recognition (token classification): a pretrained encoder tags each word.",
        build=build_task,
        predictor=load_predictor,
        evaluate_run=evaluate_run,
        check_data=check_data,
        label_issues=label_issue_spec,
        app="toolkit.apps.ner",
        example_config="recipes/configs/ner_conll2003.yaml",
        metrics=("f1", "precision", "recall", "accuracy", "loss"),
        config=TokenClassificationConfig,
        export=export_tagger,
        usage='predict("George Washington went to Washington.")',
        pipeline_tag="token-classification",
        serve=SERVE,
        stock_usage="from transformers import pipeline\n"
        'tag = pipeline("token-classification", model="{folder}", aggregation_strategy="simple")\n'
        'tag("George Washington went to Washington.")',
    )
)
