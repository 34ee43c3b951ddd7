"""Data checks (`toolkit check`, and the start of `toolkit train`): problems planted in real data are found, counted
and explained, for each kind of task; data.checks=error refuses such data before a run folder exists."""

import csv
import json
import shutil

from conftest import ROOT, require_shared, run_cli, write_config


def findings_by_check(findings) -> dict:
    out = {}
    for f in findings:
        f = f if isinstance(f, dict) else f.as_dict()
        out.setdefault(f["check"], []).append(f)
    return out


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path, rows: list[dict]):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_check_counts_what_was_planted_in_sentiment_data(tmp_path):
    """rt-polarity rows with repeats, a relabelled copy, test rows copied from train, a near-empty review, long
    reviews and a rare third label: `toolkit check` counts each, shows examples and fixes, and exits 1."""
    data = require_shared("sentiment", "rt-polarity")
    train, test = read_csv(data / "train.csv")[:400], read_csv(data / "test.csv")[:100]
    clean = run_cli("check", str(ROOT / "recipes/configs/sentiment_minilm.yaml"), "--json",
                    f"data.train={write_csv(tmp_path / 'clean_train.csv', train)}",
                    f"data.validation={write_csv(tmp_path / 'clean_test.csv', test)}", "data.test=null")  # fmt: skip
    assert clean.returncode in (0, 1), clean.stderr[-2000:]
    clean_found = findings_by_check(json.loads(clean.stdout))
    before = {check: sum(f["count"] for f in found) for check, found in clean_found.items()}

    other = {"positive": "negative", "negative": "positive"}
    planted = (
        train
        + [
            *train[:3],  # exact repeats
            {**train[3], "text": train[3]["text"].upper() + " !!"},  # a near-duplicate
            {**train[4], "label": other[train[4]["label"]]},  # the same review, the other label
            {"text": "ok", "label": "positive"},
            *({"text": " ".join([r["text"]] * 12), "label": r["label"]} for r in train[10:30]),  # 20 long reviews
            {"text": "a neutral review of a film", "label": "neutral"},
            {"text": "another neutral view of it", "label": "neutral"},
        ]
    )
    planted_test = test + train[50:52]  # two training reviews in the test set
    config = write_config(
        tmp_path / "c.yaml",
        {"task": "sentiment", "model": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 64,
         "data": {"train": str(write_csv(tmp_path / "train.csv", planted)),
                  "validation": str(write_csv(tmp_path / "test.csv", planted_test))}},
    )  # fmt: skip
    done = run_cli("check", str(config))
    assert done.returncode == 1, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    as_json = run_cli("check", str(config), "--json")
    found = findings_by_check(json.loads(as_json.stdout))

    def count(check: str, where: str) -> int:
        return sum(f["count"] for f in found.get(check, []) if f["where"] == where)

    assert count("duplicates", "data.train") >= 3 + 1  # the relabelled copy repeats its text too
    assert count("near-duplicates", "data.train") >= 1
    assert count("conflicting labels", "data.train") >= 1
    assert count("leakage", "data.validation") == before.get("leakage", 0) + 2
    assert count("very short", "data.train") >= 1
    assert count("truncated", "data.train") >= 20
    assert "neutral: 2" in found["class imbalance"][0]["examples"]
    assert any("neutral" in f["what"] for f in found["labels not measured"])
    truncated = next(f for f in found["truncated"] if f["where"] == "data.train")
    assert "of all tokens lost" in truncated["what"] and "raise max_length" in truncated["fix"]
    assert any(line.startswith("leakage: data.validation: ") and "Fix: " in line for line in lines), lines


def test_train_refuses_data_that_fails_a_check_when_asked(tiny_config, tmp_path, text_data):
    """data.checks=error: one error line naming the checks, before anything is written; the default warns and
    trains."""
    rows = read_csv(text_data["train"])
    train = write_csv(tmp_path / "train.csv", rows + rows[:5])
    values = {**tiny_config, "epochs": 1, "data": {**tiny_config["data"], "train": str(train)}}
    config = write_config(tmp_path / "c.yaml", values)
    refused = run_cli("train", str(config), "data.checks=error")
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode != 0 and len(errors) == 1, refused.stderr[-2000:]
    assert "duplicates in data.train" in errors[0] and "data.checks=warn" in errors[0]
    assert not (tmp_path / "run").exists()
    trained = run_cli("train", str(config))
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "data check: data.train: 5 of 325" in trained.stderr and "repeat an earlier row exactly" in trained.stderr


def test_check_finds_tags_that_break_their_scheme(tmp_path):
    import toolkit

    data = require_shared("ner", "conll2003")
    rows = [json.loads(line) for line in (data / "validation.jsonl").read_text().splitlines()[:300]]
    broken = 0
    for row in rows:  # B-X -> I-X after an O: an IOB2 entity that begins with I-
        tags = row["ner_tags"] if "ner_tags" in row else row["tags"]
        at = next((i for i, t in enumerate(tags) if str(t).startswith("B-") and (i == 0 or tags[i - 1] == "O")), None)
        if at is not None and broken < 4:
            tags[at] = "I-" + tags[at][2:]
            broken += 1
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = findings_by_check(
        toolkit.check(str(ROOT / "recipes/configs/ner_conll2003.yaml"), [f"data.train={path}", "data.validation=null",
                      "data.test=null", "data.holdout=0", "data.tag_scheme=iob2"])
    )  # fmt: skip
    scheme = found["tag scheme"][0]
    assert scheme["count"] == broken == 4 and "continues no" in scheme["examples"][0], scheme
    assert "data.tag_scheme=iob1" in scheme["fix"]


def test_check_finds_answers_off_their_offsets(tmp_path):
    import toolkit

    lines = (require_shared("qa", "squad") / "validation.jsonl").read_text().splitlines()[:200]
    rows = [json.loads(line) for line in lines]
    for row in rows[:3]:
        row["answers"]["answer_start"] = [s + 1 for s in row["answers"]["answer_start"]]  # counted from 1
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = findings_by_check(
        toolkit.check(str(ROOT / "recipes/configs/qa_squad.yaml"), [f"data.train={path}", "data.validation=null",
                      "data.test=null", "data.holdout=0"])
    )  # fmt: skip
    off = found["answers off their offsets"][0]
    assert off["count"] == 3 and off["total"] == 200 and "found at" in off["examples"][0], off


def test_check_finds_tiny_grey_duplicated_and_leaked_images(tmp_path):
    from PIL import Image

    import toolkit

    source = require_shared("images", "hymenoptera")
    for split, count in (("train", 12), ("val", 4)):
        for kind in ("ants", "bees"):
            folder = tmp_path / split / kind
            folder.mkdir(parents=True)
            for path in sorted((source / split / kind).glob("*.jpg"))[:count]:
                shutil.copy(path, folder / path.name)
    ants = sorted((tmp_path / "train" / "ants").glob("*.jpg"))
    shutil.copy(ants[0], tmp_path / "train" / "ants" / "copy.jpg")  # byte for byte
    with Image.open(ants[1]) as image:  # the same picture at half the size, recompressed
        image.resize((image.width // 2, image.height // 2)).save(
            tmp_path / "train" / "bees" / "resized.jpg", quality=70
        )
    Image.open(ants[2]).resize((20, 16)).save(tmp_path / "train" / "ants" / "tiny.png")
    Image.open(ants[3]).convert("L").save(tmp_path / "train" / "ants" / "grey.jpg")
    shutil.copy(ants[4], tmp_path / "val" / "ants" / "leaked.jpg")
    found = findings_by_check(
        toolkit.check(str(ROOT / "recipes/configs/image_classification_hymenoptera.yaml"),
                      [f"data.train={tmp_path / 'train'}", f"data.validation={tmp_path / 'val'}", "data.test=null"])
    )  # fmt: skip
    assert found["duplicates"][0]["count"] == 1
    assert found["conflicting labels"][0]["count"] >= 1  # the resized ant among the bees
    assert found["tiny images"][0]["examples"] == ["tiny.png (20x16)"]
    assert "grey.jpg (L)" in found["image modes"][0]["examples"]
    assert found["leakage"][0]["where"] == "data.validation" and found["leakage"][0]["count"] == 1


def test_check_finds_sources_with_two_translations(tmp_path):
    import toolkit

    lines = (require_shared("translation", "multi30k") / "train.jsonl").read_text().splitlines()[:300]
    rows = [json.loads(line) for line in lines]
    first = rows[0]
    rows.append({**first, next(k for k in first if k != "en"): "eine ganz andere Übersetzung"})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:2]))
    found = findings_by_check(
        toolkit.check(str(ROOT / "recipes/configs/translation_multi30k_en_de.yaml"),
                      [f"data.train={path}", f"data.validation={test}", "data.test=null"])
    )  # fmt: skip
    assert found["conflicting labels"][0]["count"] == 1
    assert found["leakage"][0]["count"] == 2


def test_checks_off_reports_nothing(tmp_path, tiny_config, text_data):
    import toolkit

    rows = read_csv(text_data["train"])
    values = {**tiny_config, "data": {**tiny_config["data"], "train": str(write_csv(tmp_path / "train.csv", rows * 2))}}
    assert toolkit.check(values)  # found
    assert not toolkit.check(values, ["data.checks=off"])  # a bare off, as YAML reads it, is the word
