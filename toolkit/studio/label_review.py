"""The studio's label review: rank a config's training rows by how likely their label is wrong
(toolkit.label_issues), then go through the most suspect ones, accepting the suggested label, keeping the given one
or setting another, and write a corrected copy of the data file (never the original). No web code here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import ToolkitError

SHOWN = 200  # the most suspect rows a review goes through


@dataclass
class LabelReview:
    config: str
    overrides: list[str]
    ranked: object  # pandas DataFrame, most suspect first (find_label_issues)
    names: list[str]
    changes: dict = field(default_factory=dict)  # {row or (row, token): new label}
    position: int = 0

    @classmethod
    def start(cls, config: str, overrides: list[str], method: str = "probe", folds: int = 5) -> "LabelReview":
        from ..config import load_config
        from ..label_issues import find_label_issues
        from ..tasks import get_task

        ranked = find_label_issues(config, overrides, method, folds)
        cfg = load_config(config, overrides)
        spec = get_task(cfg.task).label_issues()
        if spec.correct is None:
            raise ToolkitError(f"task '{cfg.task}' cannot write corrected labels.")
        names = sorted(set(ranked["label"]) | set(ranked["suggested"]))
        return cls(config, overrides, ranked.head(SHOWN).reset_index(drop=True), names)

    def key(self, record: dict):
        return (int(record["row"]), int(record["token"])) if "token" in record else int(record["row"])

    def current(self) -> Optional[dict]:
        """The row under review (None once every shown row is decided)."""
        if self.position >= len(self.ranked):
            return None
        return self.ranked.iloc[self.position].to_dict()

    def decide(self, label: Optional[str]) -> None:
        """Set the current row's label (None keeps the given one), then move to the next."""
        record = self.current()
        if record is None:
            return
        if label is not None and label not in self.names:
            raise ToolkitError(f"unknown label '{label}': pick one of {', '.join(self.names)}.")
        key = self.key(record)
        if label is None or label == record["label"]:
            self.changes.pop(key, None)
        else:
            self.changes[key] = label
        self.position += 1

    def back(self) -> None:
        self.position = max(0, self.position - 1)

    def table(self):
        """The shown rows with the decision taken on each so far."""
        frame = self.ranked.copy()
        frame["decision"] = [
            self.changes.get(self.key(r), "keep" if i < self.position else "")
            for i, r in enumerate(frame.to_dict("records"))
        ]
        return frame

    def copy_name(self) -> str:
        """The corrected copy's file name: the data file's, with .corrected (image folders: a CSV manifest)."""
        from ..config import load_config
        from ..label_issues import TABLE_SUFFIXES

        source = Path(str(load_config(self.config, self.overrides).data.train))
        suffix = source.suffix if source.suffix.lower() in TABLE_SUFFIXES else ".csv"
        return f"{source.stem if source.suffix else source.name}.corrected{suffix}"

    def write(self, out: Path) -> Path:
        """The corrected copy of data.train at ``out`` (the changes so far)."""
        from ..config import load_config
        from ..tasks import get_task

        if not self.changes:
            raise ToolkitError("no label changed yet: accept a suggestion or set a label first.")
        cfg = load_config(self.config, self.overrides)
        return get_task(cfg.task).label_issues().correct(cfg, dict(self.changes), Path(out))
