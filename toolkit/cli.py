"""The ``toolkit`` command: train, eval, predict, serve. Printing happens here, not in the library."""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from .errors import ToolkitError, TrainingStopped

EPILOG = """examples:
  toolkit train recipes/configs/sentiment_minilm.yaml epochs=1 lr=3e-5
  toolkit train --resume runs/sentiment_minilm
  toolkit sweep recipes/configs/sentiment_minilm.yaml data.train=mine.csv --trials 12 --budget 30m
  toolkit eval runs/sentiment_minilm --data test.csv
  toolkit predict runs/sentiment_minilm "a gripping film" "a dull mess"
  toolkit export runs/sentiment_minilm --quantize int8
  toolkit serve runs/sentiment_minilm --port 7860
  toolkit studio --runs runs
  accelerate launch --config_file recipes/accelerate/ddp.yaml -m toolkit train CONFIG
"""

STUDIO_APP = "toolkit.apps.studio"  # the studio's web pages (apps/studio/): a module with launch(runs, ...)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="toolkit",
        description="Fine-tune, evaluate, predict with and serve models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_training_commands(sub)
    add_run_commands(sub)
    add_push_command(sub)
    add_serve_command(sub)
    sub.add_parser("tasks", help="the tasks: their data columns (roles), metrics and an example config")
    add_studio_command(sub)
    return parser


def add_training_commands(sub) -> None:
    p = sub.add_parser("train", help="fine-tune from a YAML config")
    p.add_argument("config", nargs="?", help="YAML config (see recipes/configs/)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. data.train=my.csv lr=3e-5")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last/ checkpoint with its saved config")
    p = sub.add_parser("check", help="check a config's data before training: duplicates, leakage, labels, ...")
    p.add_argument("config", help="YAML config (see recipes/configs/)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. data.train=my.csv")
    p.add_argument("--json", action="store_true", help="the findings as one JSON list")
    p = sub.add_parser(
        "label-issues", help="rank the training rows whose label is most likely wrong (k folds + cleanlab)"
    )
    p.add_argument("config", help="YAML config (see recipes/configs/)")
    p.add_argument("overrides", nargs="*", help="dotted.key=value overrides, e.g. data.train=my.csv")
    p.add_argument("--out", required=True, help="the CSV to write: row, label, suggested, score, issue, input")
    p.add_argument(
        "--method", choices=["finetune", "probe"], default="finetune",
        help="finetune (default): the task's own model, trained on k-1 folds; probe: a logistic regression on the "
        "frozen encoder's features (faster, ranks less well)",
    )  # fmt: skip
    p.add_argument("--folds", type=int, default=5, help="folds (default: 5)")
    p.add_argument("--minutes", type=float, help="the folds' training budget in all (default: 8)")
    p = sub.add_parser("label", help="a labelling loop with Label Studio: push rows with predictions, pull annotations")
    label = p.add_subparsers(dest="label_command", required=True)
    q = label.add_parser("push", help="rows of a file, pre-annotated with a run's predictions, into a project")
    q.add_argument("run")
    q.add_argument("--data", required=True, help="the rows to label (a data file with the run's text column)")
    q.add_argument("--select", default="uncertain", help="uncertain (default), suspect or all")
    q.add_argument("--count", type=int, default=100, help="how many rows uncertain or suspect selects (default 100)")
    q.add_argument("--project", help="the project's title (default: toolkit RUN); created if it does not exist")
    q.add_argument("--url", help="Label Studio's URL (default: LABEL_STUDIO_URL, else http://localhost:8080)")
    q.add_argument("--token", help="its API token (default: LABEL_STUDIO_API_KEY)")
    q = label.add_parser("pull", help="a project's annotations as training data")
    q.add_argument("project", help="the project's id or title")
    q.add_argument("--out", required=True, help="the file to write (.csv, .jsonl or .parquet)")
    q.add_argument("--url")
    q.add_argument("--token")
    p = sub.add_parser("sweep", help="search settings for a config: many trials, the best one named")
    p.add_argument("config", help="YAML config (see recipes/configs/)")
    p.add_argument(
        "overrides", nargs="*", help="dotted.key=value overrides for every trial; output_dir=the sweep's folder"
    )
    p.add_argument("--trials", type=int, default=10, help="how many trials in all (default: 10)")
    p.add_argument("--budget", help="wall time for the whole sweep, e.g. 30m or 2h (default: none)")
    p.add_argument("--space", help="a YAML search space (default: the task's, around the config's values)")
    p.add_argument("--pruner", default="median", choices=["median", "halving", "none"])
    p.add_argument("--backend", default="optuna", choices=["optuna", "ray"], help="ray: trials as Ray Tune trials")
    p.add_argument("--address", help="a Ray cluster's HOST:PORT (default: ray.init()'s: RAY_ADDRESS, else local)")


def add_run_commands(sub) -> None:
    """The commands that read a finished run: eval, predict, export."""
    p = sub.add_parser("eval", help="score a run's best checkpoint; prints metrics as JSON on the last line")
    p.add_argument("run")
    p.add_argument("--data", help="data file/folder/hub id (default: the run's test split, else validation)")
    p.add_argument(
        "--split", help="train, validation or test: one of the run's configured splits, or the hub split for --data"
    )
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--reliability", metavar="PNG", help="classifiers: also draw the reliability plot to this file")
    add_backend(p)
    add_precision(p, "default: what the run's own evaluation used, in results.json")
    p = sub.add_parser("predict", help="predict for each input; one JSON object per line")
    p.add_argument("run")
    p.add_argument("inputs", nargs="+", help="texts (use - to read one input per line from stdin)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    add_backend(p)
    add_precision(p, "default: the run's eval_precision on this machine")
    p = sub.add_parser("export", help="write a run's checkpoint as ONNX; predict, serve and eval then use it")
    p.add_argument("run")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument(
        "--quantize",
        default="none",
        choices=["none", "int8"],
        help="int8: dynamically quantized weights (smaller, faster on CPU, scores differ slightly)",
    )
    p.add_argument(
        "--mlflow",
        action="store_true",
        help="log best/ as an MLflow model (mlflow.pyfunc.load_model predicts as toolkit predict) to "
        "MLFLOW_TRACKING_URI, in the run's own MLflow run where it has one, instead of writing ONNX",
    )
    p.add_argument("--register", metavar="NAME", help="with --mlflow: also register it as a version of model NAME")


def add_push_command(sub) -> None:
    p = sub.add_parser("push", help="upload a run's best/ to the Hugging Face Hub with its model card and results")
    p.add_argument("run")
    p.add_argument("repo_id", help="OWNER/NAME (created if it does not exist)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--onnx", action="store_true", help="include the ONNX export (written first if the run has none)")


def add_serve_command(sub) -> None:
    p = sub.add_parser("serve", help="serve a run: its Gradio app, and a JSON API (POST /predict) on the same port")
    p.add_argument("run")
    add_web_flags(p, "127.0.0.1 (this machine only); 0.0.0.0 for every network")
    p.add_argument("--no-auth", action="store_true", help="serve beyond this machine without a login, knowingly")
    add_guard_flags(p)
    p.add_argument("--share", action="store_true", help="ask Gradio for a public link (needs internet)")
    p.add_argument("--max-batch", type=int, default=64, help="the JSON API's most inputs per model call (64)")
    p.add_argument(
        "--max-wait-ms", type=float, default=4, help="how long a request waits for others to batch with (4 ms)"
    )
    p.add_argument("--max-queue", type=int, default=512, help="requests that may wait; more get 503 (512)")
    p.add_argument("--timeout", type=float, default=60, help="seconds a request may wait; then 504 (60)")
    add_backend(p, ray=True)
    p.add_argument("--replicas", type=int, default=1, help="with --backend ray: copies of the model (1)")
    p.add_argument(
        "--address", default=None, help="with --backend ray: a Ray cluster's HOST:PORT (default: Ray on this machine)"
    )


def add_studio_command(sub) -> None:
    p = sub.add_parser("studio", help="one web app to train, watch, compare, try and evaluate runs")
    p.add_argument("--runs", default="runs", help="the folder of runs it shows and trains into (default: runs)")
    add_web_flags(p, "127.0.0.1 (this machine only); another host needs --auth")
    p.add_argument("--max-upload-mb", type=float, default=200, help="refuse larger uploads (default: 200)")
    add_guard_flags(p)
    p.add_argument("--max-loaded", type=int, default=3, help="models kept loaded for the Try tab (default: 3)")
    p.add_argument("--max-running", type=int, default=1, help="runs that train at once; the others wait (default: 1)")
    p.add_argument(
        "--allow-remote-code",
        action="store_true",
        help="let jobs set trust_remote_code or load models from uploads (runs their Python: trusted users only)",
    )


def add_web_flags(parser, host_help: str) -> None:
    """Where a web server listens, and its login."""
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--host", default="127.0.0.1", help=host_help)
    parser.add_argument(
        "--auth",
        metavar="USER:PASSWORD",
        default=os.environ.get("TOOLKIT_AUTH"),
        help="ask for this login (Gradio auth); also read from TOOLKIT_AUTH",
    )


def add_backend(parser, ray: bool = False) -> None:
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "onnx", "torch", *(["ray"] if ray else [])],
        help="auto: the ONNX export when `toolkit export` wrote one, else torch"
        + ("; ray: the JSON API as a Ray Serve deployment (--replicas, --address)" if ray else ""),
    )


def add_precision(parser, default: str) -> None:
    parser.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16"],
        help=f"what the model computes in with --backend torch ({default})",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with key=value overrides accepted after the flags too (`toolkit sweep CONFIG --trials 12
    lr=1e-3`), as options and operands mix in most command lines: argparse stops filling a positional list at the
    first flag and leaves the rest over."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = [item for item in rest if "=" in item and not item.startswith("-")]
    unknown = [item for item in rest if item not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "datasets", "huggingface_hub", "onnxscript", "onnx_ir"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingStopped as stopped:
        print(f"toolkit train {stopped}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The ``toolkit`` command (and ``python -m toolkit``): :func:`main`, then :func:`exit_now`."""
    exit_now(main())


def exit_now(code: int) -> None:
    """End the process once the command is done, without the interpreter's teardown: unloading some 4,000 modules
    (torch, transformers, ...) took 2 s after every command, 6% of a short training run. The atexit handlers still
    run (logging, trackers, temporary folders, worker processes). Only where every other thread is a daemon: a
    tracker still uploading keeps the normal exit, which waits for it."""
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_train(args) -> int:
    from . import api, interrupt

    interrupt.install_stop_handlers()  # Ctrl+C / SIGTERM: save last/ after the current step, then stop
    interrupt.watch_parent()  # started by a sweep or the studio: stop the same way when it is gone

    if args.resume:
        if args.config:
            args.overrides.insert(0, args.config)  # `train --resume RUN key=value` lands here
        run = (
            api.resume(args.resume)
            if not args.overrides
            else api.train(
                api.read_run_config(args.resume), [*args.overrides, f"output_dir={args.resume}", "resume=true"]
            )
        )
    elif not args.config:
        raise ToolkitError("give a config file (e.g. recipes/configs/sentiment_minilm.yaml) or --resume RUN.")
    else:
        run = api.train(args.config, args.overrides)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(f"run: {run.dir}")
        print(json.dumps(_summary(run.metrics)))
    return 0


def cmd_check(args) -> int:
    """Exit status 0 when the data passes every check, 1 when something was found (as linters do)."""
    from . import api

    findings = api.check(args.config, args.overrides)
    if args.json:
        print(json.dumps([f.as_dict() for f in findings], indent=1))
    elif not findings:
        print("data checks: nothing found")
    for finding in [] if args.json else findings:
        print(f"{finding.check}: {finding.line()}")
    return 1 if findings else 0


def cmd_label_issues(args) -> int:
    from .label_issues import find_label_issues

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ToolkitError(f"--out {args.out}: give a .csv file to write.")
    if not out.parent.is_dir():
        raise ToolkitError(f"--out {args.out}: folder '{out.parent}' does not exist.")
    ranked = find_label_issues(args.config, args.overrides, args.method, args.folds, args.minutes)
    partial = out.with_name(out.name + ".partial")
    ranked.to_csv(partial, index=False)
    partial.replace(out)  # a reader never sees half a file
    flagged = int(ranked["issue"].sum())
    print(f"{len(ranked):,} rows ranked, most suspect first; cleanlab flags {flagged:,} as likely mislabelled: {out}")
    for record in ranked.head(5).to_dict("records"):
        print(f"  row {record['row']}: {record['label']} -> {record['suggested']} ({record['score']:.3f}) "
              f"{str(record['input'])[:70]!r}")  # fmt: skip
    return 0


def cmd_label(args) -> int:
    from . import labelstudio

    if args.label_command == "push":
        done = labelstudio.push(args.run, args.data, args.select, args.count, args.project, args.url, args.token)
        print(f"{done['tasks']} rows sent to project {done['project']} ('{done['title']}'): {done['url']}")
        return 0
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
        raise ToolkitError(f"--out {args.out}: give a .csv, .jsonl or .parquet file to write.")
    rows = labelstudio.pull(args.project, out, args.url, args.token)
    print(f"{rows} annotated rows written to {out}")
    return 0


def cmd_sweep(args) -> int:
    from . import api, interrupt
    from .sweeps import SUMMARY

    interrupt.install_stop_handlers()  # Ctrl+C: the running trial is told to save last/ for the next time
    interrupt.watch_parent()  # started by the studio: stop the same way when it is gone
    found = api.sweep(
        args.config, args.overrides, args.trials, args.budget, args.space, args.pruner, args.backend, args.address
    )
    print((found.dir / SUMMARY).read_text())
    if found.best_dir is None:
        print("no trial finished", file=sys.stderr)
        return 1
    print(f"best: {found.dir / 'best'} -> {found.best_dir.name} (validation {found.metric} {found.best_value:.4g})")
    return 0


def _summary(results: dict) -> dict:
    out = {k: v for k, v in results.items() if not isinstance(v, (dict, list))}
    for split in ("validation", "test"):
        for key, value in results.get(split, {}).items():
            if isinstance(value, (int, float)):
                out[f"{split}_{key}"] = value
    return out


def cmd_eval(args) -> int:
    from . import api

    if args.reliability and not Path(args.reliability).absolute().parent.is_dir():
        folder = Path(args.reliability).parent
        raise ToolkitError(f"--reliability {args.reliability}: folder '{folder}' does not exist.")

    metrics = api.evaluate(
        args.run,
        data=args.data,
        split=args.split,
        checkpoint=args.checkpoint,
        backend=args.backend,
        precision=args.precision,
    )
    if args.reliability:
        if "errors" not in metrics:
            raise ToolkitError("this task's evaluation has no probabilities to draw a reliability plot from.")
        from .metrics import reliability_plot

        reliability_plot(metrics["errors"], args.reliability)
    print(json.dumps(metrics))
    return 0


def cmd_predict(args) -> int:
    from . import api

    inputs = read_stdin_lines() if args.inputs == ["-"] else args.inputs
    predictor = api.load(args.run, args.checkpoint, backend=args.backend, precision=args.precision)
    from .predictor import bounds_of

    part = bounds_of(predictor).max_inputs  # a request's worth at a time: answers stream out, memory stays flat
    for start in range(0, len(inputs), part):
        chunk = inputs[start : start + part]
        try:
            answers = predictor(chunk)
        except ToolkitError as err:  # "input 3 ..." names the line of the whole input, not of this part
            raise ToolkitError(renumbered(str(err), start)) from None
        for text, answer in zip(chunk, answers):
            print(json.dumps({"input": text, **answer}), flush=True)
    return 0


def renumbered(message: str, offset: int) -> str:
    """A predictor's "input N ..." message, N counted from ``offset`` + 1."""
    import re

    return re.sub(r"^input (\d+)", lambda m: f"input {int(m.group(1)) + offset}", message)


def read_stdin_lines() -> list[str]:
    """One input per non-blank line of stdin; bytes that are not UTF-8 are kept (as surrogates) so that the input
    check can name them instead of a decoding traceback."""
    lines = [raw.decode("utf-8", "surrogateescape").rstrip("\r\n") for raw in sys.stdin.buffer]
    inputs = [line for line in lines if line.strip()]
    if not inputs:
        raise ToolkitError(
            "no input on stdin: give one text per line (e.g. `echo 'a gripping film' | toolkit predict "
            "RUN -`), or the texts as arguments."
        )
    return inputs


class Parser(argparse.ArgumentParser):
    """argparse with one `error:` line (and where to look) instead of its usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def check_port(host: str, port: int) -> None:
    """A port out of range or already taken is an error line now, not a traceback after the model has loaded."""
    import socket

    if not 1 <= port <= 65535:
        raise ToolkitError(f"--port {port} is not a port number: use 1-65535 (e.g. --port 7860).")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is not "in use"
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ToolkitError(
                f"cannot serve on {host}:{port}: {err.strerror or err}. Another program may be using "
                f"that port: choose another with --port N."
            ) from err


def add_guard_flags(p) -> None:
    """Who a server answers (docs/security.md): the studio's and `toolkit serve`'s flags alike."""
    p.add_argument(
        "--allowed-hosts",
        metavar="NAME,...",
        default=os.environ.get("TOOLKIT_ALLOWED_HOSTS"),
        help="other host names it answers for (a reverse proxy's); requests naming any other host are refused",
    )
    p.add_argument(
        "--allowed-origins",
        metavar="ORIGIN,...",
        default=os.environ.get("TOOLKIT_ALLOWED_ORIGINS"),
        help="other web origins whose pages may call it, e.g. https://app.example.org (scheme, host and port); "
        "pages from any other origin may only read, and cannot see the answers",
    )
    p.add_argument(
        "--trusted-proxy",
        metavar="ADDRESS,...",
        default=os.environ.get("TOOLKIT_TRUSTED_PROXY"),
        help="the reverse proxy's address (e.g. 127.0.0.1): only its X-Forwarded-Host/-Proto headers are believed",
    )


def comma_list(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def guard_options(args) -> dict:
    """The launch keywords of add_guard_flags' flags; a malformed origin is an error, not a silent no-op."""
    from .guard import parse_origin

    origins = comma_list(args.allowed_origins)
    for origin in origins:
        if parse_origin(origin) is None or origin.rstrip("/").count("/") > 2:
            raise ToolkitError(
                f"--allowed-origins {origin} is not an origin: write scheme://host[:port], e.g. "
                f"https://app.example.org or http://localhost:3000 (no path)."
            )
    return {
        "allowed_hosts": comma_list(args.allowed_hosts),
        "allowed_origins": origins,
        "trusted_proxies": comma_list(args.trusted_proxy),
    }


def is_loopback(host: str) -> bool:
    from .guard import is_loopback as loopback

    return loopback(host)


def serve_auth(args) -> tuple[str, str] | None:
    """The login to ask for; serving beyond this machine (another --host, or --share) needs one or --no-auth."""
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise ToolkitError("--auth takes USER:PASSWORD, e.g. --auth alice:a-long-passphrase.")
        return user, password
    if (args.share or not is_loopback(args.host)) and not args.no_auth:
        where = "a public share link" if args.share else f"--host {args.host}"
        raise ToolkitError(
            f"{where} makes the app reachable from other machines, and anyone who reaches it can run "
            f"the model: add --auth USER:PASSWORD, or --no-auth to serve without a login knowingly."
        )
    return None


def cmd_serve(args) -> int:
    auth = serve_auth(args)
    guard = guard_options(args)
    check_port(args.host, args.port)
    if args.backend == "ray":
        return serve_ray(args, auth, guard)
    if args.replicas != 1 or args.address:
        raise ToolkitError("--replicas and --address are for --backend ray (a Ray Serve deployment).")
    from .web import launch, private_gradio_cache

    private_gradio_cache()
    signal.signal(signal.SIGTERM, _stop)  # `kill`, systemd, docker stop: shut down as Ctrl+C does, removing temp files
    launch(
        args.run,
        host=args.host,
        port=args.port,
        share=args.share,
        backend=args.backend,
        auth=auth,
        serve_options=serve_options(args, auth),
        **guard,
    )
    return 0


def serve_ray(args, auth, guard: dict) -> int:
    """The JSON API on Ray Serve (toolkit/serve_ray.py): the same routes, guard and login, ``--replicas`` copies."""
    from toolkit.run import read_run_config
    from toolkit.serve_ray import serve_on_ray
    from toolkit.tasks import get_task

    from .guard import own_names

    if args.replicas < 1:
        raise ToolkitError(f"--replicas {args.replicas}: give 1 or more.")
    if args.share:
        raise ToolkitError("--share is for the Gradio app; --backend ray serves the JSON API alone.")
    task = read_run_config(args.run).task
    if get_task(task).serve is None:
        raise ToolkitError(f"'{task}' runs have no JSON API to deploy on Ray.")
    host_guard = {
        "names": own_names(args.host, guard["allowed_hosts"]),
        "origins": guard["allowed_origins"],
        "trusted_proxies": guard["trusted_proxies"],
    }
    serve_on_ray(args.run, args.host, args.port, serve_options(args, auth), host_guard, args.replicas, args.address)
    return 0


def serve_options(args, auth):
    """The JSON API's batching and bounds from the flags; nonsense values are one error line."""
    from toolkit.serving import ServeOptions

    for flag, value, low in (("--max-batch", args.max_batch, 1), ("--max-queue", args.max_queue, 1)):
        if value < low:
            raise ToolkitError(f"{flag} {value}: give {low} or more.")
    if args.max_wait_ms < 0 or args.timeout <= 0:
        raise ToolkitError("--max-wait-ms must be 0 or more and --timeout above 0 (seconds).")
    return ServeOptions(
        max_batch=args.max_batch, max_wait=args.max_wait_ms / 1000, max_queue=args.max_queue, timeout=args.timeout,
        auth=auth,
    )  # fmt: skip


def cmd_studio(args) -> int:
    args.share = args.no_auth = False
    if not is_loopback(args.host) and not args.auth:
        raise ToolkitError(
            f"--host {args.host} makes the studio reachable from other machines, and anyone who reaches "
            f"it can start training processes and read every run: add --auth USER:PASSWORD."
        )
    auth = serve_auth(args)
    guard = guard_options(args)
    runs = Path(args.runs)
    if runs.exists() and not runs.is_dir():
        raise ToolkitError(f"--runs {runs} is a file: give a folder (it is created if missing).")
    check_port(args.host, args.port)
    (runs / ".studio").mkdir(parents=True, exist_ok=True)
    # Gradio's own files (uploads, downloads) go under the runs folder's .studio/: nothing else is ever served.
    os.environ["GRADIO_TEMP_DIR"] = str((runs / ".studio").resolve())
    from .web import private_gradio_cache

    private_gradio_cache()
    launch = importlib.import_module(STUDIO_APP).launch  # by name, as toolkit serve finds a task's app

    signal.signal(signal.SIGTERM, _stop)
    print(f"studio: http://{args.host}:{args.port} (runs in {runs})", flush=True)
    launch(
        runs,
        host=args.host,
        port=args.port,
        auth=auth,
        max_upload_mb=args.max_upload_mb,
        max_loaded=args.max_loaded,
        max_running=max(1, args.max_running),
        allow_remote_code=args.allow_remote_code,
        **guard,
    )
    return 0


def cmd_tasks(args) -> int:
    from .tasks import all_tasks

    for spec in all_tasks():
        aliases = f" (alias {', '.join(spec.aliases)})" if spec.aliases else ""
        columns = ", ".join(f"{role.name}: data.{key}" for key, role in spec.roles.items()) or "none"
        print(f"{spec.name}{aliases}: {spec.description}")
        print(f"  columns  {columns}")
        print(f"  metrics  {', '.join(spec.metrics)} (the first picks best/)")
        if spec.example_config:
            print(f"  example  toolkit train {spec.example_config}")
    return 0


def cmd_export(args) -> int:
    if args.register and not args.mlflow:
        raise ToolkitError("--register names an MLflow registered model: use it with --mlflow.")
    if args.mlflow:
        from .mlflow_model import log_run_model

        uri = log_run_model(args.run, args.register)
        print(f"logged: {uri} (mlflow.pyfunc.load_model('{uri}') predicts as `toolkit predict {args.run}`)")
        if args.register:
            print(f"registered: {args.register} (its newest version)")
        return 0
    from .export import export_run

    folder = export_run(args.run, args.checkpoint, quantize=args.quantize == "int8")
    print(f"exported: {folder} (toolkit predict/serve/eval use it; --backend torch for the original weights)")
    if args.quantize == "int8":
        from .export import quantization_change

        change = quantization_change(args.run, args.checkpoint)
        if "skipped" in change:
            print(f"int8 accuracy change not measured: {change['skipped']}")
        else:
            print(
                f"int8 changes {change['split']} {change['metric']} by {change['change']:+.4f} "
                f"({change['torch']:.4f} with the original weights, {change['int8']:.4f} with int8). If that is too "
                f"much, export without --quantize."
            )
    return 0


def cmd_push(args) -> int:
    from .push import push

    url = push(args.run, args.repo_id, private=args.private, onnx=args.onnx)
    print(f"pushed: {url}")
    return 0


def _stop(signum, frame):
    raise KeyboardInterrupt


COMMANDS = {
    "train": cmd_train,
    "check": cmd_check,
    "label-issues": cmd_label_issues,
    "label": cmd_label,
    "sweep": cmd_sweep,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "export": cmd_export,
    "push": cmd_push,
    "tasks": cmd_tasks,
    "serve": cmd_serve,
    "studio": cmd_studio,
}


if __name__ == "__main__":
    sys.exit(main())
