"""The sentiment app on a real Gradio server: gradio_client calls and headless Chromium through Playwright."""

import base64
import csv
import json
import shutil
import urllib.request

import pytest
from conftest import BROWSER_ARGS, free_port, post_json, run_cli


@pytest.fixture(scope="module")
def trained_run(tiny_bert, text_data, tmp_path_factory):
    import toolkit

    out = tmp_path_factory.mktemp("app") / "run"
    return toolkit.train(
        {
            "task": "sentiment",
            "model": str(tiny_bert),
            "output_dir": str(out),
            "trackers": [],
            "data": {"train": str(text_data["train"]), "validation": str(text_data["validation"])},
            "epochs": 4,
            "batch_size": 16,
            "lr": 3e-3,
            "seed": 0,
        }
    )


@pytest.fixture(scope="module")
def server(trained_run):
    from toolkit.apps.sentiment import build_demo

    demo = build_demo(trained_run.dir)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, max_file_size="1mb")
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_client_classifies_text_and_csv(server, trained_run, tmp_path):
    from gradio_client import Client, handle_file

    import toolkit

    client = Client(server, verbose=False)
    answer = client.predict("the acting was wonderful", api_name="/classify")
    assert answer["label"] == "positive"
    expected = toolkit.load(trained_run.dir)("the acting was wonderful")["scores"]
    confidences = {c["label"]: c["confidence"] for c in answer["confidences"]}
    assert confidences == pytest.approx(expected, abs=1e-4)
    empty = client.predict("   ", api_name="/classify")
    assert not (empty or {}).get("label")  # no prediction: the notice is a toast, not the label's heading

    upload = tmp_path / "reviews.csv"
    formula = '=HYPERLINK("http://example.com","click")'
    with open(upload, "w", newline="") as fh:
        csv.writer(fh).writerows([["text"], ["a dreadful plot"], [""], ["a lovely story"], [formula], ["@SUM(1+1)"]])
    table, download = client.predict(handle_file(str(upload)), api_name="/classify_csv")
    assert table["headers"][:2] == ["text", "label"] and table["headers"][-1] == "note"
    rows = table["data"]
    assert [row[0] for row in rows] == ["a dreadful plot", "", "a lovely story", formula, "@SUM(1+1)"]  # input order
    assert [row[1] for row in rows[:3]] == ["negative", "", "positive"]
    assert rows[1][-1] == "skipped: empty text" and rows[0][-1] == ""
    written = list(csv.reader(open(download, encoding="utf-8")))
    assert [r[0] for r in written[1:]] == ["a dreadful plot", "", "a lovely story", "'" + formula, "'@SUM(1+1)"]
    assert written[3][1] == "positive"


def test_inputs_over_the_bound_are_refused_and_long_input_is_read_in_parts(server, trained_run):
    """One text over the task's bound (100,000 characters) is refused by the predictor, by `toolkit predict` (naming
    its line) and by the app (no prediction for it, the others in its batch answered); `toolkit predict` reads
    more lines than a request may hold (256) in parts, with every answer in order."""
    from gradio_client import Client

    import toolkit
    from toolkit.errors import ToolkitError

    predictor = toolkit.load(trained_run.dir)
    assert (predictor.bounds.max_chars, predictor.bounds.max_inputs) == (100_000, 256)
    long = "a wonderful film " * 6_000  # 102,000 characters
    with pytest.raises(ToolkitError, match="input 2 has 102,000 characters, over the 100,000"):
        predictor(["fine", long])
    lines = [f"a {'wonderful' if i % 2 else 'dreadful'} film number {i}" for i in range(300)]
    done = run_cli("predict", str(trained_run.dir), "-", input="\n".join(lines) + "\n")
    assert done.returncode == 0, done.stderr[-2000:]
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert [a["input"] for a in answers] == lines
    assert [a["label"] for a in answers[:2]] == ["negative", "positive"]
    lines[289] = long
    done = run_cli("predict", str(trained_run.dir), "-", input="\n".join(lines) + "\n")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "input 290 has 102,000 characters" in errors[0], errors

    client = Client(server, verbose=False)
    assert not (client.predict(long, api_name="/classify") or {}).get("label")
    assert client.predict("the acting was wonderful", api_name="/classify")["label"] == "positive"


def test_model_card_and_stock_pipeline_reload_best(trained_run):
    import yaml
    from conftest import check_run_folder
    from transformers import pipeline

    import toolkit

    saved = yaml.safe_load((trained_run.dir / "config.yaml").read_text())
    assert "peft" in saved and not {"gan", "image", "warm_start", "extractive", "generation"} & set(
        saved
    )  # its own only
    meta = check_run_folder(trained_run.dir)
    assert meta["pipeline_tag"] == "text-classification" and meta["library_name"] == "transformers"
    assert 'pipeline("text-classification"' in (trained_run.dir / "README.md").read_text()  # stock way shown first
    classify = pipeline("text-classification", model=str(trained_run.dir / "best"), top_k=None, device="cpu")
    ours = toolkit.load(trained_run.dir, precision="fp32")  # as the stock pipeline computes
    for text in ["a truly awful and boring film", "what a wonderful, lovely story"]:
        stock = {a["label"]: a["score"] for a in classify([text])[0]}
        assert stock == pytest.approx(ours(text)["scores"], abs=1.2e-7)  # the real label names, the same scores


def test_bad_csv_upload_gets_a_clear_error(server, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("review\nnice\n")
    with pytest.raises(Exception, match="No 'text' column; the file has: review"):
        client.predict(handle_file(str(wrong)), api_name="/classify_csv")
    unquoted = tmp_path / "unquoted.csv"
    unquoted.write_text("text\nnice\na gripping, tense film\n")  # a comma outside quotes: two fields, not one text
    with pytest.raises(Exception, match="Expected 1 fields in line 3, saw 2.*double quotes"):
        client.predict(handle_file(str(unquoted)), api_name="/classify_csv")
    blank = tmp_path / "blank.csv"
    blank.write_text("text\na lovely story\n\na dreadful plot\n")  # a blank line is an empty row, kept in place
    table, _ = client.predict(handle_file(str(blank)), api_name="/classify_csv")
    assert [row[-1] for row in table["data"]] == ["", "skipped: empty text", ""]
    huge = tmp_path / "huge.csv"
    huge.write_text("text\n" + "a lovely story\n" * 100_000)  # 1.5 MB: over the 1 MB upload limit
    with pytest.raises(Exception, match="(?i)file.*(too large|exceeds|size)"):
        client.predict(handle_file(str(huge)), api_name="/classify_csv")


def test_browser_types_submits_and_sees_the_label(server):
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium for these tests")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(server)
        page.locator("#text-input textarea").fill("a truly awful and boring film")
        page.locator("#classify").click()
        expect(page.locator("#prediction")).to_contain_text("negative", timeout=30_000)
        page.locator("#text-input textarea").fill("what a wonderful, lovely story")
        page.locator("#classify").click()
        expect(page.locator("#prediction")).to_contain_text("positive", timeout=30_000)
        page.locator("#text-input textarea").fill("   ")
        page.locator("#classify").click()  # a notice in a toast, never a message in the label's heading
        expect(page.locator(".toast-body").filter(visible=True).first).to_contain_text(
            "Type some text to classify.", timeout=10_000
        )
        expect(page.locator("#prediction")).not_to_contain_text("Type some text")
        page.screenshot(path=str(server_shot_path()))
        browser.close()


def server_shot_path():
    import tempfile
    from pathlib import Path

    return Path(tempfile.gettempdir()) / "toolkit-sentiment-app.png"


def test_serve_with_auth_asks_for_the_login_and_cleans_up_on_sigterm(trained_run, tmp_path):
    import os
    import subprocess
    import sys
    import time

    from conftest import ROOT, free_port
    from gradio_client import Client, handle_file

    port = free_port()
    server_tmp = tmp_path / "server-tmp"  # the server's temp folder: uploads, Gradio's cache, the CSV downloads
    server_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(server_tmp), "GRADIO_TEMP_DIR": str(server_tmp / "gradio")}
    env["TOOLKIT_API_TOKEN"] = "a-long-random-token"  # the JSON API also takes this bearer token
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toolkit",
            "serve",
            str(trained_run.dir),
            "--port",
            str(port),
            "--auth",
            "alice:a-long-passphrase",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 120
        while time.time() < deadline and server.poll() is None:
            try:
                client = Client(url, auth=("alice", "a-long-passphrase"), verbose=False)
                break
            except Exception:
                time.sleep(1)
        else:
            pytest.fail(f"the server did not start: {server.stderr.read() if server.poll() is not None else 'timeout'}")
        assert client.predict("a wonderful film", api_name="/classify")["label"] == "positive"
        # Only its own host, login or not: a DNS-rebinding page's Host is refused before the login is asked.
        from test_guard import request

        assert request(port, "GET", "/", f"evil.example:{port}")[0] == 421
        assert request(port, "GET", "/", f"localhost:{port}")[0] == 200
        assert request(port, "POST", "/gradio_api/upload", f"127.0.0.1:{port}", origin="http://evil.example")[0] == 403
        for page in ("http://localhost:3000", f"https://127.0.0.1:{port}"):  # another port or scheme: another site
            assert request(port, "POST", "/gradio_api/call/classify", f"127.0.0.1:{port}", origin=page)[0] == 403
        # The JSON API asks for the same login (HTTP Basic), or the bearer token; /health needs none.
        api = f"http://127.0.0.1:{port}/predict"
        status, answer = post_json(api, {"inputs": "fine"})
        assert status == 401 and "needs a login" in answer["error"]
        basic = "Basic " + base64.b64encode(b"alice:a-long-passphrase").decode()
        assert post_json(api, {"inputs": "fine"}, {"Authorization": basic})[0] == 200
        assert post_json(api, {"inputs": "fine"}, {"Authorization": "Bearer a-long-random-token"})[0] == 200
        assert post_json(api, {"inputs": "fine"}, {"Authorization": "Bearer wrong"})[0] == 401
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).status == 200
        with pytest.raises(Exception):
            Client(url, verbose=False).predict("a wonderful film", api_name="/classify")
        with pytest.raises(Exception):
            Client(url, auth=("alice", "wrong"), verbose=False)
        upload = tmp_path / "reviews.csv"
        upload.write_text("text\na wonderful film\n")
        client.predict(handle_file(str(upload)), api_name="/classify_csv")
        written = [p for p in server_tmp.rglob("*") if p.is_file()]
        assert any(p.name.startswith("predictions-") for p in written), written
    finally:
        server.terminate()  # SIGTERM, as `kill` and service managers send
        code = server.wait(timeout=30)
    assert code == 0, server.stderr.read()[-2000:]
    left = [str(p.relative_to(server_tmp)) for p in server_tmp.rglob("*") if p.is_file()]
    assert not left, f"temporary files left after SIGTERM: {left}"
