"""The image classifier app on a real Gradio server: gradio_client and headless Chromium, Grad-CAM, face crop."""

import cv2
import numpy as np
import pytest
from conftest import browser, image_config, serve, write_folder

import toolkit


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("app_colours")
    data = {"train": write_folder(base / "train", 24, 0), "val": write_folder(base / "val", 8, 1)}
    return toolkit.train(image_config(data, base / "run", image={"max_upload_mb": 0.1}))


@pytest.mark.slow
def test_image_app_client_browser_heatmap_and_limits(app_run, tmp_path):
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect, sync_playwright

    from toolkit.apps.image_classifier import build_demo

    red = np.zeros((48, 48, 3), np.uint8)
    red[..., 2] = 230  # BGR
    cv2.imwrite(str(tmp_path / "red.png"), red)
    expected = toolkit.load(app_run.dir)(str(tmp_path / "red.png"))
    assert expected["label"] == "red"
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    demo, url = serve(build_demo, app_run.dir)
    try:
        client = Client(url, verbose=False)
        labels, heatmap, note = client.predict(handle_file(str(tmp_path / "red.png")), False, api_name="/classify")
        assert labels["label"] == "red" and note == ""
        scores = {c["label"]: c["confidence"] for c in labels["confidences"]}
        assert scores["red"] == pytest.approx(expected["scores"]["red"], abs=1e-4)
        heat = cv2.imread(heatmap)
        assert heat is not None and heat.shape[:2] == (32, 32)  # the model's 32x32 view, coloured
        _, _, note = client.predict(handle_file(str(tmp_path / "red.png")), True, api_name="/classify")
        assert note.startswith("No face found")
        with pytest.raises(Exception, match="over the 0.1 MB limit"):
            client.predict(handle_file(str(big)), False, api_name="/classify")

        with sync_playwright() as p:
            page = browser(p).new_page()
            page.goto(url)
            page.locator("#image input[type=file]").set_input_files(str(tmp_path / "red.png"))
            page.locator("#classify").click()
            expect(page.locator("#labels")).to_contain_text("red", timeout=30_000)
            expect(page.locator("#heatmap img")).to_be_visible(timeout=30_000)
    finally:
        demo.close()


def test_face_crop_finds_the_face_in_a_real_photo():
    from skimage import data

    from toolkit.recipes.images.vision import crop_largest_face

    photo = data.astronaut()  # Eileen Collins, NASA portrait: one frontal face in the upper middle
    face = crop_largest_face(photo)
    assert face is not None and 60 < face.shape[0] < 300 and 60 < face.shape[1] < 300
    assert crop_largest_face(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)) is None


def test_image_classifier_answers_the_inference_client_from_raw_bytes(app_run, tmp_path, monkeypatch):
    import base64

    from conftest import api_served, inference_client, post_json

    red = np.zeros((48, 48, 3), np.uint8)
    red[..., 2] = 230  # BGR
    cv2.imwrite(str(tmp_path / "red.png"), red)
    expected = toolkit.load(app_run.dir)(str(tmp_path / "red.png"))
    with api_served(app_run.dir) as server:
        found = inference_client(server.url, monkeypatch).image_classification(tmp_path / "red.png")  # raw bytes
        assert found[0].label == "red" and found[0].score == pytest.approx(expected["scores"]["red"], abs=1e-5)
        encoded = base64.b64encode((tmp_path / "red.png").read_bytes()).decode()
        status, answer = post_json(server.url, {"inputs": [encoded, encoded], "parameters": {"top_k": 1}})
        assert status == 200 and [a[0]["label"] for a in answer] == ["red", "red"] and len(answer[0]) == 1
        status, answer = post_json(server.url, b"not an image", {"Content-Type": "image/png"})
        assert status == 422 and "cannot decode the image" in answer["error"]
        big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
        status, answer = post_json(server.url, cv2.imencode(".png", big)[1].tobytes(), {"Content-Type": "image/png"})
        assert status == 422 and "over the 0.1 MB limit" in answer["error"]
