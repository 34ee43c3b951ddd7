"""A labelling loop with Label Studio: rows pre-annotated with a run's predictions go to a Label Studio project
(`toolkit label push`); the annotations come back as training data (`toolkit label pull`).

It speaks Label Studio's REST API through httpx (the server's URL and token from LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY, or --url and --token): label-studio-sdk 2.x pins numpy and OpenCV below what the toolkit uses.
Tasks whose answers are labels of whole inputs (text classification) have a labelling view here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional
from xml.sax.saxutils import quoteattr

import numpy as np

from .errors import ToolkitError

SELECTIONS = ("uncertain", "suspect")
ROW_KEY = "toolkit_row"  # each task's row of the pushed file


class Client:
    """Label Studio's REST API, with one clear error for a server that does not answer or refuses the token."""

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None):
        import httpx

        self.url = (url or os.environ.get("LABEL_STUDIO_URL") or "http://localhost:8080").rstrip("/")
        token = token or os.environ.get("LABEL_STUDIO_API_KEY")
        if not token:
            raise ToolkitError(
                "no Label Studio token: set LABEL_STUDIO_API_KEY (Account & Settings > Access Token) or pass --token."
            )
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Token {token}"}, timeout=60)

    def call(self, method: str, path: str, **kwargs):
        import httpx

        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise ToolkitError(
                f"Label Studio at {self.url} does not answer ({err}). Start it, or set LABEL_STUDIO_URL."
            ) from None
        if answer.status_code in (401, 403):
            raise ToolkitError(f"Label Studio at {self.url} refuses the token: check LABEL_STUDIO_API_KEY.")
        if answer.status_code >= 400:
            raise ToolkitError(f"Label Studio answered {answer.status_code} to {method} {path}: {answer.text[:300]}")
        return answer.json() if answer.content else None

    def project(self, title: str) -> Optional[dict]:
        found = self.call("GET", "/api/projects", params={"title": title, "page_size": 1000})
        found = found.get("results", found) if isinstance(found, dict) else found
        return next((p for p in found if p.get("title") == title), None)


def classification_view(text: str, label: str, names: list[str]) -> str:
    choices = "".join(f"<Choice value={quoteattr(n)}/>" for n in names)
    return (
        f"<View><Text name={quoteattr(text)} value={quoteattr('$' + text)}/>"
        f'<Choices name={quoteattr(label)} toName={quoteattr(text)} choice="single" showInline="true">{choices}'
        "</Choices></View>"
    )


def push(run_dir, data: str, select: str = "uncertain", count: int = 100, project: Optional[str] = None,
         url: Optional[str] = None, token: Optional[str] = None) -> dict:  # fmt: skip
    """Rows of ``data`` pre-annotated with the run's predictions, into the Label Studio project ``project`` (created
    with the run's labels, or added to): ``select`` the ``count`` most uncertain rows (lowest top probability),
    the ``count`` most suspect (a given label the model disagrees with most), or ``all``. Returns {project id,
    title, url, tasks}."""
    from .api import load
    from .data import drop_empty_text, load_table
    from .run import read_run_config

    cfg = read_run_config(run_dir)
    text = getattr(cfg.data, "text_column", None)
    label = getattr(cfg.data, "label_column", None)
    predictor = load(run_dir)
    if text is None or label is None or not hasattr(predictor, "labels"):
        raise ToolkitError(f"'{cfg.task}' runs have no Label Studio view here yet: text classification runs do.")
    if select not in (*SELECTIONS, "all"):
        raise ToolkitError(f"--select {select}: use uncertain, suspect or all.")
    table = load_table(data, "train")
    if text not in table.column_names:
        raise ToolkitError(f"'{data}' has no column '{text}' (the run's data.text_column).")
    from .label_issues import ROW_COLUMN, numbered

    table = drop_empty_text(numbered(table), [text], f"'{data}'")
    texts, rows = [str(t) for t in table[text]], list(table[ROW_COLUMN])
    answers = predictor(texts) if texts else []  # in batches, as prediction reads them
    probs = np.array([[a["scores"].get(n, 0.0) for n in predictor.labels] for a in answers]).reshape(
        len(texts), len(predictor.labels)
    )
    chosen = choose(select, count, probs, predictor.labels, table[label] if label in table.column_names else None)
    client = Client(url, token)
    title = project or f"toolkit {Path(run_dir).name}"
    found = client.project(title)
    if found is None:
        found = client.call("POST", "/api/projects", json={
            "title": title, "label_config": classification_view(text, label, predictor.labels),
            "description": f"toolkit run {Path(run_dir).absolute()}",
        })  # fmt: skip
    tasks = [
        {
            "data": {text: texts[i], ROW_KEY: rows[i]},
            "predictions": [
                {
                    "model_version": Path(run_dir).name,
                    "score": float(probs[i].max()),
                    "result": [
                        {
                            "from_name": label,
                            "to_name": text,
                            "type": "choices",
                            "value": {"choices": [predictor.labels[int(probs[i].argmax())]]},
                        }
                    ],
                }
            ],
        }  # fmt: skip
        for i in chosen
    ]
    client.call("POST", f"/api/projects/{found['id']}/import", json=tasks)
    done = {"project": found["id"], "title": title, "url": f"{client.url}/projects/{found['id']}", "tasks": len(tasks)}
    remember(Path(run_dir), done)
    return done


PROJECTS_FILE = "labelstudio.json"  # in the run folder: the projects its rows went to (the studio links them)


def remember(run_dir: Path, done: dict) -> None:
    import json

    path = run_dir / PROJECTS_FILE
    try:
        known = json.loads(path.read_text()) if path.is_file() else []
    except ValueError:
        known = []
    known = [p for p in known if p.get("url") != done["url"]] + [{k: done[k] for k in ("title", "url")}]
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(known, indent=1))
    partial.replace(path)


def projects_of(run_dir: Path) -> list[str]:
    """Markdown links to the Label Studio projects a run's rows were pushed to."""
    import json

    path = Path(run_dir) / PROJECTS_FILE
    try:
        known = json.loads(path.read_text()) if path.is_file() else []
    except ValueError:
        return []
    return [f"- Label Studio: [{p['title']}]({p['url']})" for p in known if isinstance(p, dict) and p.get("url")]


def choose(select: str, count: int, probs: np.ndarray, names: list[str], given) -> list[int]:
    """Row indices to label, most useful first."""
    if select == "all":
        return list(range(len(probs)))
    if select == "uncertain":
        return [int(i) for i in np.argsort(probs.max(1), kind="stable")[:count]]
    if given is None:
        raise ToolkitError("--select suspect needs the data's labels (the run's data.label_column).")
    index = {n: i for i, n in enumerate(names)}
    agreement = np.array([probs[i, index[str(g)]] if str(g) in index else 0.0 for i, g in enumerate(given)])
    return [int(i) for i in np.argsort(agreement, kind="stable")[:count]]


def pull(project, out: Path, url: Optional[str] = None, token: Optional[str] = None) -> int:
    """The annotated tasks of a project (its id or title) as a training file (CSV, JSONL or Parquet, by ``out``'s
    name) with the project's text and label columns and the pushed row; the latest annotation of each task wins.
    Returns the rows written."""
    import pandas as pd

    from .label_issues import write_frame

    client = Client(url, token)
    found = client.call("GET", f"/api/projects/{project}") if str(project).isdigit() else client.project(str(project))
    if not found:
        raise ToolkitError(f"Label Studio at {client.url} has no project '{project}'.")
    tasks = client.call("GET", f"/api/projects/{found['id']}/export", params={"exportType": "JSON"})
    records = []
    for task in tasks:
        annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled") and a.get("result")]
        if not annotations:
            continue
        latest = max(annotations, key=lambda a: (a.get("updated_at") or "", a.get("id", 0)))
        choice = next((r for r in latest["result"] if r.get("type") == "choices"), None)
        if choice is None:
            continue
        data = dict(task["data"])
        row = data.pop(ROW_KEY, None)
        records.append({**data, choice["from_name"]: choice["value"]["choices"][0], ROW_KEY: row})
    if not records:
        raise ToolkitError(f"project '{found['title']}' has no annotated tasks yet: label some in Label Studio first.")
    write_frame(pd.DataFrame.from_records(records), Path(out))
    return len(records)
