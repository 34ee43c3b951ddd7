import json
from pathlib import Path

import pandas as pd
import pytest

from toolkit.data import load_table, require_columns
from toolkit.errors import ToolkitError
from toolkit.splits import encode_labels, label_names

ROWS = [{"text": "good film", "label": "positive"}, {"text": "bad film", "label": "negative"}]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_every_file_format_loads_the_same_rows(tmp_path, suffix):
    frame = pd.DataFrame(ROWS)
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS))
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    table = load_table(str(path))
    assert table["text"] == ["good film", "bad film"] and table["label"] == ["positive", "negative"]


def test_saved_datasets_folder_and_its_splits(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:1])})
    dd.save_to_disk(tmp_path / "saved")
    assert len(load_table(str(tmp_path / "saved"), "test")) == 1
    with pytest.raises(ToolkitError, match="no split 'validation'; it has: train, test"):
        load_table(str(tmp_path / "saved"), "validation")


def test_bad_files_get_clear_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ToolkitError, match="is empty"):
        load_table(str(empty))
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(ToolkitError, match="has no rows"):
        load_table(str(header_only))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 cr\xe8me,positive\n".encode("latin-1"))
    with pytest.raises(ToolkitError, match="not UTF-8.*iconv"):
        load_table(str(latin))
    with pytest.raises(ToolkitError, match="does not exist"):
        load_table(str(tmp_path / "nope.csv"))
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(ToolkitError, match="unsupported type '.xlsx'"):
        load_table(str(tmp_path / "data.xlsx"))


def test_hub_id_offline_fails_fast_and_clearly():
    import time

    start = time.perf_counter()
    with pytest.raises(ToolkitError, match="HF_HUB_OFFLINE=1"):
        load_table("someone/no-such-dataset")
    assert time.perf_counter() - start < 10


def test_missing_column_suggests_the_close_name(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame([{"review": "ok", "label": "a"}]).to_csv(path, index=False)
    with pytest.raises(ToolkitError, match="column 'reviews' is missing.*Did you mean 'review'"):
        require_columns(load_table(str(path)), ["reviews"], "data.train")


def test_labels_sort_naturally_and_unknown_labels_are_named():
    assert label_names([10, 2, 1, 2]) == ["1", "2", "10"]
    assert label_names(["pos", "neg"]) == ["neg", "pos"]
    assert label_names(["10", "2", "7"]) == ["2", "7", "10"]  # image class folders named by number
    assert encode_labels([2, 10], ["1", "2", "10"], "x") == [1, 2]
    with pytest.raises(ToolkitError, match="labels that training never saw: neutral"):
        encode_labels(["pos", "neutral"], ["neg", "pos"], "data.validation")


def test_rows_without_a_label_are_skipped_never_a_class(tiny_config, tmp_path):
    import csv

    from conftest import run_cli, write_config

    rows = list(csv.reader(open(tiny_config["data"]["train"], encoding="utf-8")))
    header, body = rows[0], rows[1:]
    body[0][1], body[1][1], body[2][1], body[3][1] = "", "NaN", "null", " "
    train = tmp_path / "train_with_gaps.csv"
    with open(train, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *body])
    config = write_config(tmp_path / "tiny.yaml", {**tiny_config, "data": {**tiny_config["data"], "train": str(train)}})
    out = tmp_path / "run"
    done = run_cli("train", str(config), f"output_dir={out}", "epochs=1")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "best/labels.json").read_text()) == ["negative", "positive"]
    assert "skipped 4 rows with no label" in done.stderr

    refused = run_cli("train", str(config), f"output_dir={tmp_path / 'strict'}", "data.missing_labels=error")
    assert refused.returncode == 2 and "4 of 320 rows have no label" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "strict").exists()


def test_integer_labels_with_nulls_stay_integers(tmp_path):
    from toolkit.data import drop_missing_labels

    path = tmp_path / "data.jsonl"
    path.write_text(
        "".join(json.dumps({"text": f"row {i}", "label": v}) + "\n" for i, v in enumerate([0, 1, None, 1, 0]))
    )
    table = drop_missing_labels(load_table(str(path)), "label", "data.train")
    assert label_names(list(table["label"])) == ["0", "1"] and len(table) == 4


def test_text_and_images_share_one_split_scheme(tmp_path):
    """The same seed, row limit and holdout pick the same row positions from a text table and an image manifest."""
    import cv2
    import numpy as np

    from toolkit.api import resolve_config
    from toolkit.data import load_splits
    from toolkit.recipes.images import data as imlib

    n = 40
    pd.DataFrame({"text": [f"row {i}" for i in range(n)], "label": ["a", "b"] * (n // 2)}).to_csv(
        tmp_path / "t.csv", index=False
    )
    for i in range(n):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "label": ["a", "b"] * (n // 2)}).to_csv(
        tmp_path / "m.csv", index=False
    )
    data = {"holdout": 0.25, "max_train_rows": 30}
    text_cfg = resolve_config(
        {
            "task": "sentiment",
            "seed": 7,
            "output_dir": str(tmp_path / "r1"),
            "data": {"train": str(tmp_path / "t.csv"), **data},
        }
    )
    image_cfg = resolve_config(
        {
            "task": "image_classification",
            "seed": 7,
            "output_dir": str(tmp_path / "r2"),
            "data": {"train": str(tmp_path / "m.csv"), **data},
        }
    )
    text = load_splits(text_cfg, ["text", "label"], ["text"], "label")
    images, skipped = imlib.load_splits(image_cfg)
    positions = {s: [int(t.split()[1]) for t in text[s]["text"]] for s in ("train", "validation")}
    assert skipped == 0 and len(positions["validation"]) == 8 and len(positions["train"]) == 22
    assert set(positions["train"]).isdisjoint(positions["validation"])
    assert positions == {s: [int(Path(p).stem) for p in images[s].items] for s in ("train", "validation")}
