"""The README's notebook snippet, run as written in a real Jupyter kernel (nbclient + ipykernel), twice."""

from __future__ import annotations

import json
import os
import re

import pytest
from conftest import ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def readme_notebook_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Notebook\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_notebook(cells: list[str], cwd) -> list:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=dict(os.environ))  # the kernel sees the tests' offline settings
    return nb.cells


def texts(cell) -> list[str]:
    """Everything a cell printed or displayed, as text."""
    out = []
    for output in cell.outputs:
        if output.output_type == "stream":
            out.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            out.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            out.append(f"{output.ename}: {output.evalue}")
    return out


def test_readme_snippet_runs_twice_with_one_progress_bar(tmp_path):
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    snippet = readme_notebook_snippet()
    assert "toolkit.train(" in snippet and "output_dir" not in snippet
    # The snippet as written, then again in a later cell (a user re-running it); each ends by showing where it ran.
    where = "print(repr(str(run.dir)))"
    cells = run_notebook([snippet, where, snippet, where], tmp_path)

    run_dirs = []
    for cell, printed in zip(cells[::2], cells[1::2]):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
        shown = "\n".join(texts(cell))
        assert "accuracy" in shown  # toolkit.evaluate's metrics, the cell's last expression
        run_dirs.append(re.fullmatch(r"'(runs/[^']+)'\n", "".join(texts(printed))).group(1))

        # One progress bar: the training one, as a widget; no nested bars, no raw escape codes in the output.
        bars = [
            o
            for o in cell.outputs
            if o.output_type == "display_data" and "application/vnd.jupyter.widget-view+json" in o.data
        ]
        assert len(bars) == 1 and bars[0].data["text/plain"].startswith("train sentiment_minilm"), [
            b.data["text/plain"] for b in bars
        ]
        assert "\x1b[" not in shown and "Loading weights" not in shown and "Writing model shards" not in shown

    first, second = run_dirs
    assert first == "runs/sentiment_minilm"
    assert re.fullmatch(r"runs/sentiment_minilm-\d{8}-\d{6}(-\d+)?", second), second
    for run_dir in run_dirs:  # both runs finished and are intact: the second never touched the first
        results = json.loads((tmp_path / run_dir / "results.json").read_text())
        assert results["validation"]["accuracy"] > 0.5
    assert "already holds a run" in "\n".join(texts(cells[2]))
