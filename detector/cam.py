"""Grad-CAM over both ConVitX branches, sharing the prediction's forward pass."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image

from .model import ConVitX


def logits_and_cam(model: ConVitX, batch: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    """One forward + one backward: logits (B, 2) and heatmaps (B, S, S) in [0, 1].

    Each map explains the class the model predicted for that image; the ConvNeXt
    and Swin maps are normalised and averaged by pytorch-grad-cam.
    """
    cam = GradCAM(model=model, target_layers=model.cam_target_layers)
    # Grad-CAM needs gradients of activations, never of weights: freezing the
    # parameters (and letting the input carry the graph) skips the weight-gradient
    # half of the backward pass.
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    try:
        with torch.enable_grad():
            heatmaps = cam(input_tensor=batch.detach().requires_grad_(True), targets=None)
        logits = cam.outputs.detach()
    finally:
        # Not `with GradCAM(...)`: its __exit__ swallows IndexError.
        cam.activations_and_grads.release()
        for parameter in trainable:
            parameter.requires_grad_(True)
    return logits, heatmaps.astype(np.float32)


def resize_heatmap(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stretch an SxS map back over the image's own (width, height)."""
    image = Image.fromarray(heatmap.astype(np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32).clip(0.0, 1.0)


def overlay_heatmap(image: Image.Image, heatmap: np.ndarray, image_weight: float = 0.55) -> Image.Image:
    """Blend a jet-coloured heatmap over the image, at the heatmap's size."""
    height, width = heatmap.shape
    base = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return Image.fromarray(show_cam_on_image(base, heatmap, use_rgb=True, image_weight=image_weight))
