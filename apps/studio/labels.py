"""The studio's Label issues tab: rank a config's training rows by how likely their label is wrong, go through the
most suspect ones (accept the suggestion, keep the label, or set another) and download a corrected copy of the data
file; the original is never written. The logic is toolkit.studio.label_review.LabelReview."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from toolkit.errors import ToolkitError
from toolkit.studio.form import FormValues, TrainForm
from toolkit.studio.label_review import LabelReview
from toolkit.studio.paths import shipped_configs

from .context import StudioContext, refusal


def shown(review: LabelReview | None) -> tuple:
    """The row under review (Markdown), the label picker and the table of shown rows."""
    if review is None:
        return "", gr.update(choices=[], value=None), gr.update(visible=False)
    record = review.current()
    if record is None:
        text = f"**All {len(review.ranked)} shown rows decided**: {len(review.changes)} label(s) changed."
    else:
        where = f"row {record['row']}" + (f", word {record['token']} ({record['word']!r})" if "token" in record else "")
        text = (
            f"**{review.position + 1} of {len(review.ranked)}** · {where} · score {record['score']:.3f}\n\n"
            f"> {str(record['input'])[:600]}\n\n"
            f"Label: **{record['label']}** · suggested: **{record['suggested']}** · changed so far: "
            f"{len(review.changes)}"
        )
    suggested = record["suggested"] if record is not None else None
    return text, gr.update(choices=review.names, value=suggested), gr.update(value=review.table(), visible=True)


def build(ctx: StudioContext, demo: gr.Blocks) -> SimpleNamespace:
    form = TrainForm(ctx.studio)
    with gr.Tab("Label issues", id="labels"):
        gr.Markdown(
            "Rank the training rows whose label is most likely wrong (`toolkit label-issues`), go through the most "
            "suspect ones and download a corrected copy of the file. The original file is never changed."
        )
        with gr.Row():
            config = gr.Dropdown(list(shipped_configs()), label="Config", elem_id="labels-config")
            data_file = gr.File(label="Training data to check (empty: the config's)", height=90, elem_id="labels-data")
            method = gr.Radio(
                ["probe", "finetune"], value="probe", label="Method",
                info="probe: frozen features, seconds; finetune: the task's own model on 5 folds, minutes, ranks "
                "better",
                elem_id="labels-method",
            )  # fmt: skip
        find = gr.Button("Find label issues", variant="primary", elem_id="labels-find")
        review = gr.State(None)
        current = gr.Markdown(elem_id="labels-current")
        with gr.Row():
            accept = gr.Button("Accept suggestion", elem_id="labels-accept")
            keep = gr.Button("Keep label", elem_id="labels-keep")
            label = gr.Dropdown(label="Or set", choices=[], elem_id="labels-label")
            set_label = gr.Button("Set", elem_id="labels-set")
            back = gr.Button("Back", elem_id="labels-back")
        write = gr.Button("Write corrected copy", elem_id="labels-write")
        written = gr.File(label="Corrected copy", interactive=False, elem_id="labels-file")
        rows = gr.Dataframe(
            label="Most suspect rows", interactive=False, visible=False, wrap=True, elem_id="labels-rows"
        )

    def find_label_issues(config_name, uploaded, how):
        if not config_name:
            raise refusal("Pick a config.")
        source = form.config_source(FormValues(config=config_name))
        data = form.data_source(FormValues(data_file=uploaded)) if uploaded else ""
        try:
            found = LabelReview.start(source, [f"data.train={data}"] if data else [], how)
        except ToolkitError as err:
            raise refusal(str(err)) from None
        return found, *shown(found)

    def decide_label(found: LabelReview | None, choice):
        if found is None:
            raise refusal("Find label issues first.")
        try:
            found.decide(choice)
        except ToolkitError as err:
            raise refusal(str(err)) from None
        return found, *shown(found)

    def review_back(found: LabelReview | None):
        if found is not None:
            found.back()
        return found, *shown(found)

    def write_corrected_copy(found: LabelReview | None, uploaded):
        if found is None:
            raise refusal("Find label issues first.")
        original = Path(uploaded or found.config).name
        stem, suffix = Path(original).stem, Path(original).suffix
        name = (
            f"{stem}.corrected{suffix if suffix.lower() in ('.csv', '.tsv', '.jsonl', '.json', '.parquet') else '.csv'}"
        )
        try:
            return str(found.write(Path(ctx.downloads) / name))
        except ToolkitError as err:
            raise refusal(str(err)) from None

    outputs = [review, current, label, rows]
    find.click(
        find_label_issues, [config, data_file, method], outputs, api_visibility="private", api_name="labels_find"
    )
    accept.click(lambda found: decide_label(found, found.current()["suggested"] if found and found.current() else None),
                 review, outputs, api_visibility="private", api_name="labels_accept")  # fmt: skip
    keep.click(
        lambda found: decide_label(found, None), review, outputs, api_visibility="private", api_name="labels_keep"
    )
    set_label.click(decide_label, [review, label], outputs, api_visibility="private", api_name="labels_set")
    back.click(review_back, review, outputs, api_visibility="private", api_name="labels_back")
    write.click(write_corrected_copy, review, written, api_visibility="private", api_name="labels_write")
    return SimpleNamespace()
