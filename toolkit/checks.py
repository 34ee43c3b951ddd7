"""Data checks before training: what in the data will cost the model, each with its count, examples and the fix.

A task declares its checks beside its data roles (``TaskSpec.check_data``): it loads its splits as training does and
runs the checks that fit its data, from here (duplicates, leakage, labels, imbalance, truncation, short inputs) and
of its own (a tag scheme, answer offsets, image sizes). ``toolkit check CONFIG`` prints them; ``toolkit train`` runs
them first; the studio's data preview shows them. ``data.checks``: ``warn`` (the default), ``error`` refuses the data,
``off`` skips them.
"""

from __future__ import annotations

import logging
import os
import re
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from .errors import ToolkitError

log = logging.getLogger(__name__)

EXAMPLES = 3  # examples shown per finding
SHORT_CHARACTERS = 3  # an input under this many characters (spaces aside) says next to nothing
IMBALANCE_RATIO = 10.0  # the largest class this many times the smallest
FEW_PER_CLASS = 10  # a class with fewer training rows than this cannot be learned well
TRUNCATED_SHARE = 0.01  # truncation is reported once this share of rows loses tokens


@dataclass
class Finding:
    """One problem in the data: ``count`` of ``total`` rows of ``where`` (``what`` they are), examples, the fix."""

    check: str
    where: str
    count: int
    total: int
    what: str
    fix: str
    examples: list[str] = field(default_factory=list)

    def line(self) -> str:
        share = self.count / self.total if self.total else None
        share = "" if share is None else " (<0.1%)" if 0 < share < 0.001 else f" ({share:.1%})"
        shown = "; ".join(self.examples[:EXAMPLES])
        examples = f" e.g. {shown}." if shown else ""
        return f"{self.where}: {self.count:,} of {self.total:,}{share} {self.what}.{examples} Fix: {self.fix}"

    def as_dict(self) -> dict:
        return {
            "check": self.check,
            "where": self.where,
            "count": self.count,
            "total": self.total,
            "what": self.what,
            "examples": self.examples[:EXAMPLES],
            "fix": self.fix,
        }


def snippet(value, limit: int = 60) -> str:
    text = " ".join(str(value).split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def normalized(text: str) -> str:
    """A text as near-duplicate detection sees it: case, accents, punctuation and spacing dropped."""
    text = unicodedata.normalize("NFKD", str(text).casefold())
    return re.sub(r"[\W_]+", " ", "".join(c for c in text if not unicodedata.combining(c))).strip()


def keyed(table, key: Callable[[dict], str]) -> list[str]:
    return [key(row) for row in rows_of(table)]


def rows_of(table) -> Iterable[dict]:
    """Rows of a ``datasets.Dataset`` as dicts, read in batches (fast), or of any iterable of dicts."""
    if hasattr(table, "iter"):
        for batch in table.iter(batch_size=1_000):
            columns = list(batch)
            for values in zip(*(batch[c] for c in columns)):
                yield dict(zip(columns, values))
    else:
        yield from table


# --- checks any task with rows of text (or other keys) can run ---------------------------------------------------


def duplicates(splits: dict, key: Callable[[dict], str], label: Optional[Callable[[dict], str]] = None) -> list:
    """Rows that repeat an earlier row of the same split: exactly (by ``key``), and after normalizing the text
    (near-duplicates); with ``label``, the repeats whose label disagrees are counted apart (one of them is wrong)."""
    findings = []
    for split, table in splits.items():
        rows = list(rows_of(table))  # one pass over the table for inputs and labels
        keys = [key(row) for row in rows]
        labels = [label(row) for row in rows] if label else None
        exact = repeats(keys)
        near = [i for i in repeats([normalized(k) for k in keys]) if i not in set(exact)]
        where = f"data.{split}"
        if exact:
            findings.append(
                Finding("duplicates", where, len(exact), len(keys), "rows repeat an earlier row exactly",
                        "drop the repeats (they weigh those rows twice, and inflate scores where they cross splits)",
                        [snippet(keys[i]) for i in exact])
            )  # fmt: skip
        if near:
            findings.append(
                Finding("near-duplicates", where, len(near), len(keys),
                        "rows repeat an earlier row but for case, accents, punctuation or spacing",
                        "drop the repeats, or keep one spelling", [snippet(keys[i]) for i in near])
            )  # fmt: skip
        if labels is not None:
            conflicts = conflicting(keys, labels)
            if conflicts:
                findings.append(
                    Finding("conflicting labels", where, len(conflicts), len(keys),
                            "rows have the same input as another row but a different label",
                            "give each input one label (`toolkit label-issues` ranks the likely wrong ones)",
                            [f"{snippet(keys[i])} labelled {', '.join(sorted(ls))}" for i, ls in conflicts])
                )  # fmt: skip
    return findings


def repeats(keys: list[str]) -> list[int]:
    seen, out = set(), []
    for i, k in enumerate(keys):
        if k in seen:
            out.append(i)
        seen.add(k)
    return out


def conflicting(keys: list[str], labels: list[str]) -> list[tuple[int, set]]:
    by_key: dict[str, set] = defaultdict(set)
    first: dict[str, int] = {}
    for i, (k, lab) in enumerate(zip(keys, labels)):
        by_key[k].add(str(lab))
        first.setdefault(k, i)
    return [(first[k], ls) for k, ls in by_key.items() if len(ls) > 1]


def leakage(splits: dict, key: Callable[[dict], str], what: str = "rows") -> list:
    """Validation or test rows whose input (normalized) is also in train: the scores they give are memory, not
    generalization."""
    if "train" not in splits:
        return []
    train = {normalized(k) for k in keyed(splits["train"], key)}
    findings = []
    for split in ("validation", "test"):
        if split not in splits:
            continue
        keys = keyed(splits[split], key)
        leaked = [i for i, k in enumerate(keys) if normalized(k) in train]
        if leaked:
            findings.append(
                Finding("leakage", f"data.{split}", len(leaked), len(keys), f"{what} are also in data.train",
                        f"drop them from data.{split} (or split by source, e.g. by document, so no input is in both)",
                        [snippet(keys[i]) for i in leaked])
            )  # fmt: skip
    return findings


def label_coverage(splits: dict, labels_of: Callable[[object], Counter], what: str = "labels") -> list:
    """Labels that only some splits have: ones validation or test lack are never measured, and ones train lacks
    are never learned."""
    counts = {split: labels_of(table) for split, table in splits.items()}
    findings = []
    train = set(counts.get("train", ()))
    for split, seen in counts.items():
        if split == "train":
            continue
        unseen = sorted(set(seen) - train)
        if unseen:
            findings.append(
                Finding("labels not in train", f"data.{split}", sum(seen[lab] for lab in unseen),
                        sum(seen.values()), f"{what} have labels data.train never shows ({', '.join(unseen[:10])})",
                        "add training rows with these labels, or drop them here", unseen[:EXAMPLES])
            )  # fmt: skip
        unmeasured = sorted(train - set(seen))
        if unmeasured and seen:
            findings.append(
                Finding("labels not measured", f"data.{split}", len(unmeasured), len(train),
                        f"training labels never appear here, so data.{split} cannot score them "
                        f"({', '.join(unmeasured[:10])})",
                        f"add data.{split} rows with these labels", unmeasured[:EXAMPLES])
            )  # fmt: skip
    return findings


def imbalance(counts: Counter, where: str = "data.train", what: str = "rows") -> list:
    """Classes far smaller than the largest, or too small to learn."""
    if len(counts) < 2:
        return []
    largest = max(counts.values())
    small = sorted((n, lab) for lab, n in counts.items() if n * IMBALANCE_RATIO <= largest or n < FEW_PER_CLASS)
    if not small:
        return []
    total = sum(counts.values())
    return [
        Finding("class imbalance", where, sum(n for n, _ in small), total,
                f"{what} are in classes with under a tenth of the largest class's {largest:,} or under "
                f"{FEW_PER_CLASS} rows",
                "collect more rows of these classes, and judge the model by macro_f1 (metric: macro_f1)",
                [f"{lab}: {n:,}" for n, lab in small])
    ]  # fmt: skip


def truncation(splits: dict, texts: Callable[[object], list[str]], tokenizer, max_length: int, what: str) -> list:
    """Rows longer than ``max_length`` tokens: training and prediction see only their start."""
    findings = []
    for split, table in splits.items():
        values = texts(table)
        if not values:
            continue
        counts = [len(ids) for ids in tokenizer(values, add_special_tokens=True, verbose=False)["input_ids"]]
        long = [i for i, n in enumerate(counts) if n > max_length]
        if len(long) < max(1, TRUNCATED_SHARE * len(counts)):
            continue
        lost = sum(counts[i] - max_length for i in long) / sum(counts)
        longest = max(counts)
        findings.append(
            Finding("truncated", f"data.{split}", len(long), len(counts),
                    f"{what} are longer than max_length={max_length} tokens and are cut ({lost:.1%} of all tokens "
                    f"lost; the longest has {longest:,})",
                    f"raise max_length (the model's limit: {getattr(tokenizer, 'model_max_length', '?')}) if the "
                    "end of long inputs matters",
                    [f"{counts[i]} tokens: {snippet(values[i], 40)}" for i in long])
        )  # fmt: skip
    return findings


def short(splits: dict, texts: Callable[[object], list[str]], what: str) -> list:
    """Inputs of under SHORT_CHARACTERS characters: next to nothing to learn from (empty ones are skipped when
    the data loads, and counted there)."""
    findings = []
    for split, table in splits.items():
        values = texts(table)
        tiny = [i for i, v in enumerate(values) if len("".join(str(v).split())) < SHORT_CHARACTERS]
        if tiny:
            findings.append(
                Finding("very short", f"data.{split}", len(tiny), len(values),
                        f"{what} have under {SHORT_CHARACTERS} characters", "check them: drop them or fill them in",
                        [snippet(values[i]) for i in tiny])
            )  # fmt: skip
    return findings


# --- running them ----------------------------------------------------------------------------------------------


def report(findings: list[Finding], policy: str) -> None:
    """Each finding as one warning line; with data.checks=error, any finding refuses the data (one error line)."""
    shown = os.environ.get("RANK", "0") == "0"  # several processes find the same: the first one says it
    for finding in findings if shown else []:
        log.warning("data check: %s", finding.line())
    if findings and policy == "error":
        names = ", ".join(dict.fromkeys(f"{f.check} in {f.where}" for f in findings))
        raise ToolkitError(
            f"the data fails {len(findings)} check(s) ({names}): fix the data as each warning above says, or set "
            "data.checks=warn to train anyway."
        )


def run_checks(cfg, splits: dict, checks: Callable[[object, dict], list[Finding]]) -> list[Finding]:
    """A task's checks on the splits it loaded, reported by data.checks; streams are not read ahead."""
    policy = getattr(cfg.data, "checks", "warn")
    from .data import is_streaming

    if policy == "off" or any(is_streaming(t) for t in splits.values()):
        return []
    tic = time.perf_counter()
    findings = checks(cfg, splits)
    log.info("data checks: %d finding(s) in %.1f s", len(findings), time.perf_counter() - tic)
    report(findings, policy)
    return findings
