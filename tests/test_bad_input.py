"""Bad input, walked through the real command line as a user types it: every case ends with exit code 2, one
`error:` line that names the problem, no traceback, and nothing created or changed on disk."""

import shutil
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_cli, run_cli_many, write_config


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_bert, text_data):
    """A finished tiny run, a copy with damaged weights, and a folder of bad files."""
    root = tmp_path_factory.mktemp("bad_input")
    config = {
        "task": "sentiment",
        "model": str(tiny_bert),
        "epochs": 1,
        "batch_size": 16,
        "max_length": 32,
        "precision": "no",
        "trackers": [],
        "seed": 0,
        "output_dir": str(root / "default_out"),
        "data": {k: str(v) for k, v in text_data.items()},
    }
    good = write_config(root / "good.yaml", config)
    run = root / "run"
    done = run_cli("train", str(good), f"output_dir={run}", "save_every=5")
    assert done.returncode == 0, done.stderr
    damaged = root / "damaged_run"
    shutil.copytree(run, damaged)
    for name in ("best/model.safetensors", "last/model.safetensors"):
        weights = damaged / name
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_weights = root / "no_weights_run"
    shutil.copytree(run, no_weights)
    (no_weights / "best/model.safetensors").unlink()
    files = root / "files"
    files.mkdir()
    (files / "broken.yaml").write_text("task: sentiment\ndata:\n  train: [unclosed\n  lr: 3\n")
    (files / "binary.csv").write_bytes(b"PK\x03\x04\x00\x00binary\x00zip\x00" * 50)
    (files / "empty.csv").write_text("")
    (files / "header_only.csv").write_text("text,label\n")
    (files / "latin1.csv").write_bytes("text,label\ncaf\xe9 cr\xe8me,positive\n".encode("latin-1"))
    (files / "data.xlsx").write_bytes(b"not really")
    (files / "not_a_dataset").mkdir()
    (files / "a_file").write_text("x")
    (files / "project").mkdir()
    (files / "project/config.yaml").write_text("mine: true\n")
    (files / "project/keep.py").write_text("print(1)\n")
    (files / "no_label.csv").write_text("text,label\ngood film,\nbad film,NaN\n")
    (files / "other_columns.csv").write_text("review,sentiment\ngood film,positive\n")
    (files / "one_label.csv").write_text("text,label\ngood film,positive\ngreat film,positive\n")
    return {"root": root, "good": good, "run": run, "damaged": damaged, "files": files, "no_weights": no_weights}


def busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


# (command line with {good} {run} {damaged} {files} {root} {port} placeholders, words the error must hold)
CASES = [
    ("train {files}/missing.yaml", "does not exist"),
    ("train {files}/broken.yaml", "line 4, column"),
    ("train {files}/binary.csv", "not a text file"),
    ("train", "give a config file"),
    ("train {good} epoch=2", "Did you mean epochs"),
    ("train {good} lr=fast", "expected float"),
    ("train {good} precision=fp8", "'auto' or 'no' or 'fp16' or 'bf16'"),
    ("train {good} task=regression", "unknown task 'regression'"),
    ("train {good} novalue", "key=value"),
    ("train {good} epochs=-1", "'epochs' is -1"),
    ("train {good} epochs=0", "'epochs' is 0"),
    ("train {good} max_length=0", "'max_length' is 0"),
    ("train {good} batch_size=0", "'batch_size' is 0"),
    ("train {good} grad_accum=0", "'grad_accum' is 0"),
    ("train {good} eval_every=0", "'eval_every' is 0"),
    ("train {good} data.holdout=1.5", "'data.holdout' is 1.5"),
    ("train {good} data.max_train_rows=-5", "'data.max_train_rows' is -5"),
    ("train {good} lr=-0.001", "'lr' is -0.001"),
    ("train {good} warmup_ratio=2", "'warmup_ratio' is 2"),
    ("train {good} seed=-3", "'seed' is -3"),
    ("train {good} log_every=0", "'log_every' is 0"),
    ("train {good} max_train_minutes=0", "'max_train_minutes' is 0"),
    ("train {good} generation.num_beams=0", "It is a key of task translation and summarization, not of 'sentiment'"),
    ("train {good} peft.r=0", "'peft.r' is 0"),
    ("train {good} max_length=1", "'max_length' is 1"),
    ("train {good} data.train={files}/missing.csv", "does not exist"),
    ("train {good} data.train={files}/binary.csv", "not a text file"),
    ("train {good} data.train={files}/empty.csv", "is empty"),
    ("train {good} data.train={files}/header_only.csv", "has no rows"),
    ("train {good} data.train={files}/latin1.csv", "not UTF-8"),
    ("train {good} data.train={files}/data.xlsx", "unsupported type"),
    ("train {good} data.train={files}/not_a_dataset", "not a saved dataset"),
    ("train {good} data.text_column=txt", "It is the text column: set data.text_column to the name it has"),
    ("train {good} data.label_column=lable", "Did you mean 'label'"),
    ("train {good} data.train={files}/one_label.csv", "a single label"),
    ("train {good} data.train={files}/no_label.csv", "every row's label is empty"),
    ("train {good} metric=nonsense", "nonsense"),
    ("train {good} model={files}/not_a_dataset", "could not be loaded"),
    ("train {good} output_dir={files}/a_file", "is a file"),
    ("train {good} output_dir={files}/a_file/run", "which is a file"),
    ("train {good} output_dir=/proc/toolkit_run", "cannot be written"),
    ("train {good} output_dir={files}/project overwrite=true", "not a toolkit run folder"),
    ("train {good} output_dir={run} lr=0.5", "already holds a different run"),
    ("train {good} output_dir={run} lr=0.5 resume=true", "config differs"),
    ("train --resume {files}/project", "does not hold a toolkit run"),
    ("train --resume {damaged}", "damaged"),
    ("eval {run} --split nonsense", "unknown split 'nonsense'"),
    ("eval {files}/project", "does not hold a toolkit run"),
    ("eval {run} --data {files}/missing.csv", "does not exist"),
    ("eval {damaged}", "damaged"),
    ("eval {run} --data {files}/other_columns.csv", "rename the file's columns"),
    ("predict {run} ''", "is empty"),
    ("predict {damaged} 'a good film'", "damaged"),
    ("predict {files}/missing_run 'a good film'", "not a run directory"),
    ("predict {run} 'a good film' --backend onnx", "has no ONNX export"),
    ("export {files}/project", "does not hold a toolkit run"),
    ("export {damaged}", "damaged"),
    ("serve {run} --port 99999", "not a port number"),
    ("serve {run} --port {port}", "cannot serve"),
    ("serve {damaged} --port 0", "not a port number"),
    ("serve {run} --host 0.0.0.0", "--auth USER:PASSWORD"),
    ("serve {run} --share", "--auth USER:PASSWORD"),
    ("serve {run} --auth alice", "--auth takes USER:PASSWORD"),
    ("studio --host 0.0.0.0", "--auth USER:PASSWORD"),
    ("studio --runs {files}/empty.csv", "is a file"),
    ("studio --port {port}", "cannot serve"),
    ("export {no_weights}", "holds no weights file"),
    ("serve {no_weights} --port {free}", "holds no weights file"),
    ("predict {no_weights} 'a good film'", "holds no weights file"),
    ("predict {run} 'caf\udce9 cr\udce8me'", "not valid UTF-8"),
    ("export {run} --quantize int4", "invalid choice"),
    ("studio --allowed-hosts", "expected one argument"),
]


SEPARATE = 4  # cases run as whole `python -m toolkit` processes; the others through run_cli_many


def snapshot(root):
    """Every path, and each file's size and modification time (a folder's own time changes when a lock comes and
    goes)."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "folder"
        for p in sorted(root.rglob("*"))
    }


def test_bad_input_is_one_clear_error_and_changes_nothing(workspace):
    import shlex

    assert len(CASES) >= 50
    listener = busy_port()
    try:
        from conftest import free_port

        values = {k: str(v) for k, v in workspace.items()} | {
            "port": str(listener.getsockname()[1]),
            "free": str(free_port()),
        }
        before = snapshot(workspace["root"])

        # The first cases as separate `python -m toolkit` processes, the rest forked from one that imported the
        # CLI once (the same main(), exit codes and output; minutes less of interpreter start-up).
        argvs = [shlex.split(line.format(**values)) for line, _ in CASES]
        with ThreadPoolExecutor(max_workers=2) as pool:
            whole = list(pool.map(lambda argv: run_cli(*argv, timeout=120), argvs[:SEPARATE]))
        outcomes = whole + run_cli_many(argvs[SEPARATE:])

        failures = []
        for (line, expected), done in zip(CASES, outcomes):
            errors = [x for x in done.stderr.splitlines() if x.startswith("error:")]
            if done.returncode != 2 or len(errors) != 1 or "Traceback" in done.stderr or expected not in errors[0]:
                failures.append(f"{line}: exit {done.returncode}, stderr tail: {done.stderr[-400:]}")
        assert not failures, "\n".join(failures)
        assert snapshot(workspace["root"]) == before
    finally:
        listener.close()


@pytest.mark.parametrize(
    "stdin, expected",
    [
        (b"", "no input on stdin"),
        (b"\n   \n\n", "no input on stdin"),
        (b"a good film\ncaf\xe9 cr\xe8me\n", "input 2 is not valid UTF-8 text (a byte 0xE9 at character 4)"),
    ],
)
def test_predict_from_stdin_refuses_nothing_and_bad_bytes(workspace, stdin, expected):
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "toolkit", "predict", str(workspace["run"]), "-"],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=120,
    )
    stderr = done.stderr.decode()
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and expected in errors[0] and "Traceback" not in stderr, stderr
    assert done.stdout == b""
