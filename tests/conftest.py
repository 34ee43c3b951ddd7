"""Shared fixtures: a tiny random BERT with a tokenizer trained here, and small learnable text data."""

from __future__ import annotations

import os

# Nothing may reach the hub in tests; set before transformers/datasets/gradio are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the suite in one worker process per CPU (pytest -n auto): each trains with its share of the
    # CPUs, so that two compute-bound tests share the cores instead of 2 x N spinning threads fighting over them.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))

import csv
import json
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from toolkit import hardware
from toolkit.apps.screenshots import BROWSER_ARGS  # headless Chromium as root, as the docs' screenshots are taken

ROOT = Path(__file__).resolve().parents[1]

# The longest test files (minutes each on 2 cores), started first: `--dist loadfile` hands files to the workers in
# collection order, so a long file collected last would leave one worker idle while the other finishes it.
LONGEST_FIRST = [  # by their summed test time in a `make test --durations=0` run
    "test_sweep.py",
    "test_studio.py",
    "test_extractive.py",
    "test_seq2seq.py",
    "test_qa.py",
    "test_ner.py",
    "test_gan.py",
    "test_tracking.py",
    "test_labelstudio.py",
    "test_label_issues.py",
    "test_cli.py",
    "test_studio_sweep.py",
    "test_serve_api.py",
    "test_seq2seq_apps.py",
    "test_run_safety.py",
    "test_transfer.py",
    "test_bad_input.py",
    "test_streaming.py",
    "test_images.py",
    "test_task_registry.py",
]


def emulation_slowdown() -> int:
    """How many times slower training runs than this machine's own precision: 5 where TOOLKIT_PRECISION=bf16 forces
    bf16 on a CPU that only emulates it, else 1. Time bars and timeouts are multiplied by it. (Measured on 2 Zen 3
    cores, test workers side by side: the tiny T5 copy run trains in 45.8 s in fp32 and in 191 s in bf16, 4.2x.)"""
    forced = os.environ.get(hardware.PRECISION_ENV, "").strip()
    if hardware.PRECISION_NAMES.get(forced) != "bf16":
        return 1
    _, flags = hardware.read_cpu()
    return 5 if hardware.native_bf16_cpu(flags) is False else 1


SLOWDOWN = emulation_slowdown()


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the tests of one file keep their order
    if SLOWDOWN > 1:
        for item in items:
            own = item.get_closest_marker("timeout")
            limit = float(own.args[0] if own else config.getini("timeout"))
            item.add_marker(pytest.mark.timeout(limit * SLOWDOWN), append=False)


SHARED_DATA = ROOT.parent / "shared" / "data"

POSITIVE = ["good", "great", "wonderful", "superb", "lovely", "brilliant", "delightful", "excellent"]
NEGATIVE = ["bad", "awful", "terrible", "dull", "boring", "dreadful", "poor", "horrible"]
FILLER = [
    "the",
    "film",
    "was",
    "a",
    "story",
    "with",
    "plot",
    "and",
    "acting",
    "really",
    "quite",
    "very",
    "food",
    "service",
    "book",
    "phone",
    "movie",
    "it",
    "this",
    "show",
]


def make_sentence(rng: random.Random, label: str) -> str:
    words = rng.choices(FILLER, k=rng.randint(3, 12))
    cue = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
    words.insert(rng.randrange(len(words) + 1), cue)
    return " ".join(words)


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def text_data(tmp_path_factory) -> dict[str, Path]:
    """train/validation/test CSVs where one cue word decides the label (learnable in seconds)."""
    folder = tmp_path_factory.mktemp("text_data")
    rng = random.Random(0)
    out = {}
    for split, n in (("train", 320), ("validation", 64), ("test", 64)):
        rows = [(make_sentence(rng, label), label) for label in ["positive", "negative"] * (n // 2)]
        out[split] = write_rows(folder / f"{split}.csv", rows)
    return out


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, text_data) -> Path:
    """A 2-layer, 32-wide random BERT (seeded) with a WordPiece tokenizer over the test vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_bert")
    # A fixed vocabulary (not a trained one): token ids, and so the random model, are the same every run.
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    words += [c for c in "abcdefghijklmnopqrstuvwxyz!,.-'" if c not in words] + [
        f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"
    ]
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    torch.manual_seed(0)  # the same tiny model every session
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_config(tiny_bert, text_data, tmp_path) -> dict:
    """A fast sentiment config on the tiny model; tests override what they exercise."""
    return {
        "task": "sentiment",
        "model": str(tiny_bert),
        "data": {
            "train": str(text_data["train"]),
            "validation": str(text_data["validation"]),
            "test": str(text_data["test"]),
        },
        "epochs": 4,
        "batch_size": 16,
        "lr": 3e-3,
        "max_length": 32,
        "seed": 0,
        "precision": "no",
        "log_every": 5,
        "output_dir": str(tmp_path / "run"),
        "trackers": [],
    }


def write_config(path: Path, values: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(values))
    return path


def run_cli(
    *args: str, cwd: Path = ROOT, timeout: float = 300, env_extra: dict | None = None, **popen
) -> subprocess.CompletedProcess:
    """Run ``python -m toolkit ARGS`` as a user would (``env_extra``: environment variables set for it)."""
    return subprocess.run(
        [sys.executable, "-m", "toolkit", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})},
        **popen,
    )


def run_cli_many(cases: list[list[str]], timeout: float = 120) -> list[subprocess.CompletedProcess]:
    """Run each argv of ``cases`` as `toolkit ARGV` in a process of its own, forked from one that has imported the
    CLI once (tests/cli_many.py): the same exit codes and output as separate `python -m toolkit` runs, without
    paying Python's and torch's start-up for each."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        (out / "cases.json").write_text(json.dumps(cases))
        done = subprocess.run(
            [sys.executable, str(ROOT / "tests/cli_many.py"), str(out / "cases.json"), str(out), str(timeout)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=timeout * len(cases),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results = []
        for i, argv in enumerate(cases):
            code = int((out / f"{i}.code").read_text())
            stdout, stderr = ((out / f"{i}.{s}").read_text(errors="replace") for s in ("out", "err"))
            results.append(subprocess.CompletedProcess(["toolkit", *argv], code, stdout, stderr))
        return results


def assert_train_errors(config: Path, cases: dict, files: dict, output_dir: Path) -> None:
    """Each case ("key=value ..." overrides, where a file's NAME in capitals stands for its path in ``files``: the
    expected error text) through the real `toolkit train CONFIG`: exit 2, one `error:` line that holds the
    expected text, no traceback, and ``output_dir`` never created."""
    argvs = []
    for overrides in cases:
        for name, path in files.items():
            overrides = overrides.replace(name.upper(), str(path))
        argvs.append(["train", str(config), *overrides.split()])
    failures = []
    for (overrides, expected), done in zip(cases.items(), run_cli_many(argvs)):
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        if done.returncode != 2 or len(errors) != 1 or expected not in errors[0] or "Traceback" in done.stderr:
            failures.append(f"{overrides or '(as written)'}: exit {done.returncode}: {done.stderr[-500:]}")
    assert not failures, "\n".join(failures)
    assert not output_dir.exists()


def train_then_kill(config, output_dir: Path, ready, timeout: float = 240) -> dict:
    """Start `toolkit train CONFIG output_dir=...`, SIGKILL it as soon as last/state.json's counters satisfy
    ``ready``, and return those counters."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "train", str(config), f"output_dir={output_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    state = Path(output_dir) / "last" / "state.json"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            counters = json.loads(state.read_text())
        except (OSError, ValueError):
            counters = {}
        if counters and ready(counters):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return json.loads(state.read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real data not found at {path}: these tests need the shared data folder beside the repo (../shared/data)"
        )
    return path


# Sequence-to-sequence: a tiny random T5 over a word-level vocabulary, and a copy task (target = source).
WORDS = "red green blue cat dog bird one two three four five six seven eight nine ten house tree sun moon".split()


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny_t5")
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=32
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(vocab),
        d_model=64,
        d_ff=128,
        d_kv=16,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        dropout_rate=0.0,
    )
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def copy_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("copy")
    rng = random.Random(0)
    for split, n in (("train", 2000), ("validation", 64), ("test", 64)):
        with open(folder / f"{split}.jsonl", "w") as fh:
            for _ in range(n):
                text = " ".join(rng.choices(WORDS, k=rng.randint(3, 8)))
                fh.write(json.dumps({"en": text, "de": text}) + "\n")
    return folder


def seq2seq_config(tiny_t5, copy_data, tmp_path, **extra):
    """A tiny T5 translation config on the copy task; tests override what they exercise."""
    return {
        "task": "translation",
        "model": str(tiny_t5),
        "output_dir": str(tmp_path / "run"),
        "trackers": [],
        "data": {
            "train": str(copy_data / "train.jsonl"),
            "validation": str(copy_data / "validation.jsonl"),
            "test": str(copy_data / "test.jsonl"),
            "source_lang": "en",
            "target_lang": "de",
        },
        "epochs": 25,
        "batch_size": 32,
        "lr": 3e-3,
        "warmup_ratio": 0.05,
        "max_length": 16,
        "max_target_length": 16,
        "generation": {"num_beams": 1, "max_new_tokens": 12},
        "seed": 0,
        **extra,
    }


@pytest.fixture(scope="session")
def copy_run(tiny_t5, copy_data, tmp_path_factory):
    import toolkit

    return toolkit.train(seq2seq_config(tiny_t5, copy_data, tmp_path_factory.mktemp("copy_run")))


def check_run_folder(run_dir: Path) -> dict:
    """A run folder any Hugging Face user can take away: its model card is in best/ too, huggingface_hub parses
    its metadata and model-index results back to the run's validation metrics, and nothing in it names this
    machine (no absolute paths in results.json, no local-loading flags in a saved tokenizer). Returns the card's
    metadata."""
    import json

    from huggingface_hub import ModelCard

    run_dir = Path(run_dir)
    results_text = (run_dir / "results.json").read_text()
    assert str(run_dir) not in results_text and '"/' not in results_text, results_text[:500]
    for config in run_dir.glob("best/**/tokenizer_config.json"):
        assert not {"is_local", "local_files_only"} & set(json.loads(config.read_text())), config
    assert (run_dir / "best" / "README.md").read_text() == (run_dir / "README.md").read_text()
    card = ModelCard.load(run_dir / "best" / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] in ("transformers", "timm", "pytorch") and "toolkit" in meta["tags"]
    validation = json.loads((run_dir / "results.json").read_text()).get("validation") or {}
    parsed = {r.metric_type: r.metric_value for r in card.data.eval_results or [] if r.dataset_split == "validation"}
    expected = {k: v for k, v in validation.items() if isinstance(v, (int, float)) and k != "count"}
    assert parsed == expected
    return meta


# Shared by several test modules: configs, data, servers and the browser.


def gan_config(out, **extra):
    values = {
        "task": "gan",
        "data": {"train": "sklearn:digits[:640]", "holdout": 0},
        "image": {"channels": 1, "size": 28, "random_resized_crop": False, "hflip": 0.0},
        "gan": {"latent_dim": 16, "channels": 8, "conditional": True, "grid_rows": 4},
        "epochs": 2,
        "batch_size": 32,
        "lr": 2e-4,
        "weight_decay": 0.0,
        "warmup_ratio": 0.0,
        "scheduler": "constant",
        "max_grad_norm": None,
        "seed": 0,
        "output_dir": str(out),
        "trackers": [],
        "log_every": 5,
    }
    for key, value in extra.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    return values


def image_config(folders, out, **extra):
    data = folders
    values = {
        "task": "image_classification",
        "model": "test_efficientnet",
        "data": {"train": str(data["train"]), "validation": str(data["val"]), "test": str(data["val"])},
        "image": {"pretrained": False, "size": 32, "rotation": 0},
        "epochs": 3,
        "batch_size": 8,
        "lr": 3e-3,
        "seed": 0,
        "output_dir": str(out),
        "trackers": [],
        "log_every": 2,
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            values[key] = {**values.get(key, {}), **value}
        else:
            values[key] = value
    return values


def timm_reload(best: Path):
    """An image run's best/ loaded by timm alone, as its model card shows (eval mode)."""
    import timm

    config = json.loads((best / "config.json").read_text())
    return timm.create_model(
        config["architecture"],
        num_classes=config["num_classes"],
        pretrained=True,
        pretrained_cfg_overlay=dict(config["pretrained_cfg"], file=str(best / "model.safetensors")),
    ).eval()


def write_folder(root, per_class=24, seed=0, classes=("blue", "red")):
    """An ImageFolder whose class is the dominant colour, with noise, mixed sizes and formats."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(36, 60, size=2)
            image = rng.integers(0, 90, size=(h, w, 3), dtype=np.uint8)
            image[:, :, 2 if c == 1 else 0] += 150  # BGR: red or blue dominates
            cv2.imwrite(str(root / name / f"{i}.{'png' if i % 3 else 'jpg'}"), image)
    return root


def serve(build_demo, run_dir):
    demo = build_demo(run_dir)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, max_file_size="1mb")
    return demo, f"http://127.0.0.1:{port}/"


class served:
    """`toolkit serve RUN` as a user starts it (a subprocess on a free port), waited for until it answers; the
    block gets its URL and port; SIGTERM at the end."""

    def __init__(self, run_dir, *args: str, env: dict | None = None, ready_path: str = "/", wait: float = 120):
        self.run_dir, self.args, self.port, self.env = run_dir, args, free_port(), env or {}
        self.url, self.wait = f"http://127.0.0.1:{self.port}/", wait
        self.ready_url = self.url + ready_path.lstrip("/")

    def __enter__(self):
        import time
        import urllib.request

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "serve", str(self.run_dir), "--port", str(self.port), *self.args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
        )
        deadline = time.time() + self.wait * SLOWDOWN
        while time.time() < deadline and self.proc.poll() is None:
            try:
                urllib.request.urlopen(self.ready_url, timeout=5)
                return self
            except OSError:
                time.sleep(0.5)
        self.proc.kill()
        pytest.fail(f"`toolkit serve` did not start: {self.proc.stderr.read()[-2000:]}")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)


class api_served:
    """A run's app and JSON API served in this process (toolkit.web.launch, what `toolkit serve` runs), on a free port;
    the block gets the /predict URL and the port."""

    def __init__(self, run_dir):
        self.run_dir, self.port = run_dir, free_port()
        self.url = f"http://127.0.0.1:{self.port}/predict"

    def __enter__(self):
        from toolkit.web import launch

        self.demo = launch(self.run_dir, port=self.port, prevent_thread_lock=True)
        return self

    def __exit__(self, *exc):
        self.demo.close()


def inference_client(url: str, monkeypatch, **options):
    """The stock huggingface_hub.InferenceClient, let through huggingface_hub's offline switch (set for the tests:
    it blocks every request, even to this machine)."""
    import huggingface_hub.constants
    from huggingface_hub import InferenceClient

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    return InferenceClient(model=url, **options)


def post_json(url: str, body, headers: dict | None = None) -> tuple[int, object]:
    """(status, JSON answer) of one POST of ``body`` (bytes as they are, anything else as JSON)."""
    import urllib.error

    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def browser(playwright):
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium for these tests")
    return playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)


# ----- the studio as a user starts it (test_studio*.py) -----


def start_studio(runs: Path, port: int, *options: str) -> subprocess.Popen:
    """`toolkit studio` as a user starts it, once it answers."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toolkit",
            "studio",
            "--runs",
            str(runs),
            "--port",
            str(port),
            "--max-upload-mb",
            "1",
            *options,
        ],  # fmt: skip
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        assert server.poll() is None, server.stderr.read().decode()[-3000:]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return server
        except OSError:
            time.sleep(0.3)
    server.kill()
    pytest.fail("toolkit studio did not answer within 90 s")


def stop_studio(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def wait_for(client, name: str, done, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        live = client.predict(name, api_name="/live")
        if done(live):
            return live
        time.sleep(0.1)
    pytest.fail(f"run {name} never reached the state wanted; last: {json.dumps(live)[:2000]}")


def pick(page, dropdown: str, option: str) -> None:
    """Choose ``option`` in a Gradio dropdown (its choices refresh when it opens)."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.locator(f"{dropdown} input").blur()  # closes the list; the next click opens it again
