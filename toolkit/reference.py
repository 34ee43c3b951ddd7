"""The configuration reference (docs/configuration.md below its marker), generated from the config dataclasses: the
keys of every task, then each registered task's own keys, data columns and sections.

Rewrite it with ``python -m toolkit.reference docs/configuration.md``; tests/test_config.py checks it is current.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from pathlib import Path

from .config import Config, DataConfig

MARKER = "<!-- Generated from the config dataclasses by `python -m toolkit.reference docs/configuration.md`: edit those, not the text below. -->"


def shown_default(f: dataclasses.Field) -> str:
    if f.metadata.get("shown"):
        return f.metadata["shown"]
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`" if value else "empty"
    if isinstance(value, list):
        return f"`[{', '.join(map(str, value))}]`"
    return f"{value:g}".replace("e-0", "e-") if isinstance(value, float) else str(value)


def meaning(f: dataclasses.Field) -> str:
    doc = f.metadata.get("doc", "")
    check = f.metadata.get("check")
    if check:
        doc += f" ({check[0]})"
    return doc.replace("|", "\\|").replace("\n", " ")


def plain_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("section")]


def sections(cls: type) -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.metadata.get("section")}


def key_table(fields: list[dataclasses.Field], prefix: str = "", roles: bool = False) -> list[str]:
    head = ["| key | column for | default | meaning |", "|---|---|---|---|"] if roles else \
        ["| key | default | meaning |", "|---|---|---|"]
    rows = []
    for f in fields:
        role = f.metadata.get("role")
        cells = [f"`{prefix}{f.name}`", *([f"{role.name} ({role.kind})" if role else ""] if roles else []),
                 shown_default(f), meaning(f)]
        rows.append("| " + " | ".join(cells) + " |")
    return head + rows


def own_fields(cls: type, base: type) -> list[dataclasses.Field]:
    """The fields ``cls`` adds to ``base`` or redefines with another default."""
    inherited = {f.name: f for f in dataclasses.fields(base)}
    out = []
    for f in plain_fields(cls):
        old = inherited.get(f.name)
        if old is None or (old.default, old.metadata.get("doc")) != (f.default, f.metadata.get("doc")):
            out.append(f)
    return out


def docstring(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def configuration_reference() -> str:
    from .tasks import all_tasks

    lines = [MARKER, "", "## Every task", "", docstring(Config), "", "### Top level", ""]
    lines += key_table([f for f in plain_fields(Config)])
    lines += ["", "### `data`", "", docstring(DataConfig), ""] + key_table(plain_fields(DataConfig), "data.")
    documented: dict[type, str] = {}
    for spec in all_tasks():
        cls = spec.config
        data_cls = typing.get_type_hints(cls)["data"]
        aliases = f" (alias {', '.join(f'`{a}`' for a in spec.aliases)})" if spec.aliases else ""
        lines += ["", f"## `task: {spec.name}`{aliases}", "", docstring(cls), ""]
        top = own_fields(cls, Config)
        if top:
            lines += ["Its keys:", ""] + key_table(top) + [""]
        columns = own_fields(data_cls, DataConfig)
        if columns:
            lines += ["Its `data` keys (columns and their roles):", ""] + key_table(columns, "data.", roles=True) + [""]
        for name, section_cls in sections(cls).items():
            if name == "data" or section_cls in (Config, DataConfig):
                continue
            if section_cls in documented:
                lines += [f"`{name}`: as under {documented[section_cls]}.", ""]
                continue
            documented[section_cls] = f"`task: {spec.name}`"
            lines += [f"### `{name}`", "", docstring(section_cls), ""] + key_table(plain_fields(section_cls), f"{name}.")
            lines += [""]
        lines += [f"Metrics on validation: {', '.join(f'`{m}`' for m in spec.metrics)} (the first picks `best/`; lower "
                  f"wins for {', '.join(f'`{m}`' for m in spec.lower_is_better)})."]
    return "\n".join(lines).rstrip() + "\n"


def rewrite(path: Path) -> bool:
    """Replace what follows the marker in ``path`` with the current reference; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    head = text.split(MARKER)[0].rstrip() + "\n\n"
    new = head + configuration_reference()
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/configuration.md")
    print(f"{target}: {'rewritten' if rewrite(target) else 'already current'}")
