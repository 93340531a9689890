"""Small adjustments to Gradio's components and queue that the page and the API rely on."""
from __future__ import annotations

import gradio as gr

BUSY_MESSAGE = "The server is busy: too many requests are waiting. Please retry in a few seconds."

# Run in the browser when a new analysis starts (upload, example, clear, batch run): close every toast
# still on screen, so a warning about the previous image never sits beside the next one's verdict.
CLOSE_TOASTS = "() => { document.querySelectorAll('[data-testid=\"toast-close\"]').forEach(b => b.click()); }"


def raw_image_input(**kwargs) -> gr.Image:
    """gr.Image's widget (upload, drag-and-drop, paste) that hands ``fn`` the uploaded file untouched.

    gr.Image opens the upload with PIL before our function runs, so a file that
    is not an image, or a decompression bomb, fails there with an opaque server
    error. Passing the path through lets ``detector.load_image`` apply its one
    decode policy (16-bit, EXIF, alpha...) and its readable errors.
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    # An instance attribute rather than a subclass: Gradio writes a .pyi stub
    # next to every module that defines a Component subclass.
    image.preprocess = _uploaded_path
    return image


def _uploaded_path(payload) -> str | None:
    if payload is None:
        return None
    if not payload.path:
        raise gr.Error("No image file was received: upload the image as a file.", print_exception=False)
    return payload.path


def verdict_label(**kwargs) -> gr.Label:
    """gr.Label whose label is the fused verdict, not the model's top class, so the two can never disagree."""
    component = gr.Label(**kwargs)

    def postprocess(value):
        if not value:
            return {}
        confidences = sorted((value.get("confidences") or {}).items(), key=lambda kv: kv[1], reverse=True)
        return {"label": value["label"], "confidences": [{"label": k, "confidence": v} for k, v in confidences]}

    # An instance attribute rather than a subclass (Gradio writes .pyi stubs for Component subclasses).
    component.postprocess = postprocess
    return component


def busy_message_when_queue_full(demo: gr.Blocks) -> None:
    """A full queue answers HTTP 503 with a plain 'busy, retry' message instead of Gradio's internal sizes.

    Wraps the queue's push (no public hook exists in Gradio 6); if Gradio changes it, its own message stays.
    """
    queue = getattr(demo, "_queue", None)
    push = getattr(queue, "push", None)
    if push is None:
        return

    async def push_with_message(*args, **kwargs):
        ok, message, state = await push(*args, **kwargs)
        return ok, (BUSY_MESSAGE if state == "queue_full" else message), state

    queue.push = push_with_message
