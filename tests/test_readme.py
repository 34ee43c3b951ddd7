"""The README's commands name real things: every `toolkit` line a real subcommand, every config and file path an
existing one, every `make` target one the Makefile has. (Its notebook snippet runs in tests/test_notebook.py.)"""

from __future__ import annotations

import re
import shlex

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shell_lines(path):
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                yield line


def test_every_documented_command_names_a_real_subcommand_config_and_target():
    from toolkit.cli import COMMANDS

    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    checked = 0
    for path in DOCS:
        for line in shell_lines(path):
            words = shlex.split(line)
            if "toolkit" in words:
                after = words[words.index("toolkit") + 1 :]
                assert after and (after[0] in COMMANDS or after[0] == "--help"), f"{path.name}: {line}"
                checked += 1
            if words[0] == "make":
                assert words[1] in targets, f"{path.name}: {line}"
            for word in words:
                value = word.split("=", 1)[-1]
                if value.startswith(("recipes/", "benchmarks/", "apps/", "docs/")):
                    assert (ROOT / value).exists(), f"{path.name}: {line} names {value}, which does not exist"
    assert checked >= 10
