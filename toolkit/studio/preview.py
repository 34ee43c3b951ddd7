"""A data file's preview for the Train form: its first rows, the column each role would use, and label counts."""

from __future__ import annotations

from pathlib import Path

from ..errors import ToolkitError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

PREVIEW_ROWS = 10_000  # rows of a data file read for its preview, column guesses and label counts


def preview_data(source: str, roles: dict | None = None, configured: dict | None = None, rows: int = 5) -> dict:
    """What the Train tab shows of a data file or image folder: columns, the first rows, a column for each of the
    task's data ``roles`` ({data key: DataRole}, guessed: the ``configured`` names first), and the label counts.
    A hub id is not fetched here (the run loads it)."""
    from ..data import guess_columns

    path = Path(source).expanduser()
    if path.is_dir() and not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
        counts = {}
        for folder in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            counts[folder.name] = sum(1 for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not any(counts.values()):
            raise ToolkitError(f"'{source}' holds no class folders of images (e.g. ants/*.jpg, bees/*.jpg).")
        return {"kind": "images", "columns": ["image", "label"], "rows": [], "roles": {}, "label_counts": counts}
    if not path.is_file():
        return {
            "kind": "hub",
            "columns": [],
            "rows": [],
            "roles": {},
            "label_counts": {},
            "note": f"'{source}' is not a file here: the run loads it as a hub dataset (this needs internet).",
        }
    from ..data import count_rows_in_file, preview_frame

    table = preview_frame(path, PREVIEW_ROWS)
    if table.empty:
        raise ToolkitError(f"data file '{source}' has no rows.")
    columns = [str(c) for c in table.columns]
    table.columns = columns
    roles = roles or {}
    chosen = guess_columns(roles, columns, table, configured)
    label = next((chosen[k] for k, role in roles.items() if role.kind == "label" and chosen.get(k)), None)
    counts = {str(k): int(v) for k, v in table[label].value_counts().items()} if label else {}
    head = table.head(rows).astype(str).map(lambda v: v if len(v) <= 200 else v[:200] + "…")
    return {
        "kind": "table",
        "columns": columns,
        "rows": head.values.tolist(),
        "roles": chosen,
        "label_column": label,
        "label_counts": counts,
        # Large files: the guesses and label counts come from the first PREVIEW_ROWS rows.
        "count": len(table) if len(table) < PREVIEW_ROWS else count_rows_in_file(path),
        "sampled": len(table) >= PREVIEW_ROWS,
    }
