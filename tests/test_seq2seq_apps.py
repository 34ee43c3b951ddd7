"""Translation and summarization apps on real Gradio servers: gradio_client and headless Chromium."""

import pytest
from conftest import api_served, browser, inference_client, post_json, serve
from conftest import seq2seq_config as config

import toolkit


@pytest.fixture(scope="module")
def summary_run(tiny_t5, copy_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("summary_run")
    values = config(tiny_t5, copy_data, folder, task="summarization", max_steps=20, eval_every=20)
    data = {k: v for k, v in values["data"].items() if not k.endswith("_lang")}
    values["data"] = {**data, "text_column": "en", "summary_column": "de"}
    return toolkit.train(values)


@pytest.mark.slow
def test_translation_app_client_and_browser(copy_run):
    from gradio_client import Client
    from playwright.sync_api import expect, sync_playwright

    from toolkit.apps.translation import build_demo

    demo, url = serve(build_demo, copy_run.dir)
    try:
        output, note = Client(url, verbose=False).predict("red cat one two", 1, 16, api_name="/translate")
        assert output == "red cat one two" and note == ""
        _, note = Client(url, verbose=False).predict(" ".join(["tree"] * 40), 1, 16, api_name="/translate")
        assert "cut to fit" in note
        with sync_playwright() as p:
            page = browser(p).new_page()
            page.goto(url)
            expect(page.get_by_text("en → de")).to_be_visible()
            page.locator("#source textarea").fill("blue dog seven")
            page.locator("#translate").click()
            expect(page.locator("#output textarea")).to_have_value("blue dog seven", timeout=30_000)
    finally:
        demo.close()


@pytest.mark.slow
def test_summarization_app_text_upload_and_browser(summary_run, tmp_path):
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect, sync_playwright

    from toolkit.apps.summarization import build_demo

    expected = toolkit.load(summary_run.dir)("red cat one two sun moon", max_new_tokens=12)["output"]
    demo, url = serve(build_demo, summary_run.dir)
    try:
        client = Client(url, verbose=False)
        assert client.predict("red cat one two sun moon", None, 12, api_name="/summarize")[0] == expected
        upload = tmp_path / "doc.txt"
        upload.write_text("red cat one two sun moon")
        assert client.predict("", handle_file(str(upload)), 12, api_name="/summarize")[0] == expected
        latin = tmp_path / "latin.txt"
        latin.write_bytes("caf\xe9".encode("latin-1"))
        with pytest.raises(Exception, match="not UTF-8"):
            client.predict("", handle_file(str(latin)), 12, api_name="/summarize")
        with sync_playwright() as p:
            page = browser(p).new_page()
            page.goto(url)
            page.locator("#text textarea").fill("red cat one two sun moon")
            page.locator("input[type=range]").first.fill("12")
            page.locator("#summarize").click()
            expect(page.locator("#summary textarea")).to_have_value(expected, timeout=30_000)
    finally:
        demo.close()


def test_translation_and_summarization_answer_the_inference_client(copy_run, summary_run, monkeypatch):
    for run, method, field in (
        (copy_run, "translation", "translation_text"),
        (summary_run, "summarization", "summary_text"),
    ):
        predictor = toolkit.load(run.dir)
        expected = predictor(["red cat one two", "blue dog"])
        beamed = predictor("blue dog", num_beams=2, max_new_tokens=16)
        with api_served(run.dir) as server:
            client = inference_client(server.url, monkeypatch)
            assert getattr(client, method)("red cat one two")[field] == expected[0]["output"]
            beams = getattr(client, method)("blue dog", generate_parameters={"num_beams": 2, "max_new_tokens": 16})
            assert beams[field] == beamed["output"]
            status, answer = post_json(server.url, {"inputs": ["red cat one two", "blue dog"]})
            assert status == 200 and [a[field] for a in answer] == [e["output"] for e in expected]
            status, answer = post_json(server.url, {"inputs": "x", "parameters": {"num_beams": 99}})
            assert status == 422 and "num_beams must be a whole number from 1 to 16" in answer["error"]
