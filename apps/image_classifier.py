"""Image classification demo: an uploaded or webcam image in, the top labels with confidences and a Grad-CAM
heatmap out; optionally cropped first to the largest face OpenCV's Haar cascade finds.

Run: ``python -m toolkit.apps.image_classifier RUN_DIR`` or ``toolkit serve RUN_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gradio as gr

from toolkit.api import load
from toolkit.apps import metrics_markdown
from toolkit.errors import ToolkitError
from toolkit.recipes.images.vision import crop_largest_face
from toolkit.run import read_results


def build_demo(run_dir: str | Path, backend: str = "auto", predictor=None) -> gr.Blocks:
    run_dir = Path(run_dir)
    results = read_results(run_dir)
    classifier = predictor if predictor is not None else load(run_dir, backend=backend)

    def classify(image: str | None, crop_faces: bool):
        if not image:
            raise gr.Error("Upload an image (or take one with the webcam) to classify.")
        try:
            array = classifier.read(image)  # refuses files over image.max_upload_mb, and undecodable ones
        except ToolkitError as err:
            raise gr.Error(str(err)) from None
        note = ""
        if crop_faces:
            face = crop_largest_face(array)
            if face is None:
                note = "No face found: the whole image was classified."
            else:
                array, note = face, f"Classified the largest face ({face.shape[1]}x{face.shape[0]} px)."
        answer, heatmap = classifier.explain(array)
        return answer["scores"], heatmap, note

    examples = [str(run_dir / e) for e in results.get("examples", []) if (run_dir / e).is_file()][:4]  # inside the run
    with gr.Blocks(title=f"{run_dir.name}: image classification", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# {run_dir.name}\nImage classification over {len(classifier.labels)} classes: "
            f"{', '.join(classifier.labels[:20])}{' …' if len(classifier.labels) > 20 else ''}."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    label="Image", type="filepath", sources=["upload", "webcam"], elem_id="image", image_mode=None
                )  # the file as uploaded: the size limits apply before any decoding
                crop = gr.Checkbox(
                    label="Crop to the largest face first (OpenCV Haar cascade)", value=False, elem_id="crop"
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify")
            with gr.Column():
                labels = gr.Label(label="Top labels", num_top_classes=classifier.top_k, elem_id="labels")
                heatmap = gr.Image(label="Grad-CAM: where the top label was seen", type="numpy", elem_id="heatmap")
                note = gr.Markdown(elem_id="note")
        if examples:
            gr.Examples(examples=[[e] for e in examples], inputs=[image])
        button.click(classify, inputs=[image, crop], outputs=[labels, heatmap, note], api_name="classify")
        with gr.Accordion("Run metrics", open=False):
            gr.Markdown(metrics_markdown(results, ["accuracy", "macro_f1", "top5_accuracy"]))
    demo.queue(default_concurrency_limit=1)
    return demo


if __name__ == "__main__":
    from toolkit.web import launch

    launch(sys.argv[1] if len(sys.argv) > 1 else "runs/image_classification_hymenoptera")
