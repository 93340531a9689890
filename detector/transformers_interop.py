"""ConVitX in ``transformers.pipeline("image-classification")``, without remote code.

``import detector`` registers the three classes below with transformers' Auto classes
(``AutoConfig``, ``AutoModelForImageClassification``, ``AutoImageProcessor``) as soon as
transformers is imported, so no ``trust_remote_code`` and no code in the checkpoint:

    import detector
    from transformers import pipeline
    classify = pipeline("image-classification", model="path/to/checkpoint")  # or "org/name", revision=...
    classify("photo.jpg")  # [{"label": "ai_generated", "score": 0.93}, {"label": "real", "score": 0.07}]

How the Auto classes find it: ``config.json`` carries ``"model_type": "convitx"`` and the folder a
``preprocessor_config.json`` naming ``ConVitXImageProcessor`` (both written by ``save_checkpoint``;
re-save an older checkpoint with it to add them). Weights are loaded by ``detector.hub.load_checkpoint``
(safetensors only, one pinned snapshot), so the pipeline runs the very model ``Detector`` runs.

Scores equal ``Detector``'s probabilities: the model returns the calibrated log-probabilities of
``DecisionRule.p_fake`` (temperature included), which the pipeline's softmax maps back to themselves.
The verdict with its uncertain band is ``Detector``'s job; the pipeline only reports the two scores.

Images: the processor turns each image into its native-resolution tiles (padded to ``max_tiles``,
with a mask) and its global view, so images of any size batch together (``batch_size=`` works).
The pipeline decodes paths and URLs with transformers' own loader (EXIF applied, then
``convert("RGB")``): alpha is dropped rather than composited on white and 16-bit images are
clipped, unlike ``detector.load_image``. Pass ``detector.load_image(path)`` (a PIL image) or an
array for exactly ``Detector``'s decoding. Images too small or flat to judge raise
``CannotJudgeError``, as in ``Detector``.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.modeling_outputs import ImageClassifierOutput

from .config import LABELS, MODEL_TYPE, ConVitXConfig, PreprocessConfig
from .hub import HUB_PREFIX, load_checkpoint, save_checkpoint
from .images import load_image
from .model import ConVitX
from .transforms import image_to_views

PREPROCESS_KEYS = tuple(f.name for f in dataclasses.fields(PreprocessConfig))
# config.json keys that belong to ConVitXConfig (today's layout, and the 0.1 flat layout it still reads)
CONVITX_KEYS = {f.name for f in dataclasses.fields(ConVitXConfig)} | {
    "image_size", "convnext", "convnext_kwargs", "swin", "swin_kwargs", "mean", "std",
    "temperature", "threshold", "uncertain_band", "labels",
}


class ConVitXTransformersConfig(PreTrainedConfig):
    """transformers' view of a ConVitX ``config.json``: its keys kept as they are, labels as ``id2label``."""

    model_type = MODEL_TYPE

    def __post_init__(self, **kwargs):
        self.convitx = {k: kwargs.pop(k) for k in list(kwargs) if k in CONVITX_KEYS}
        if self.id2label is None:
            labels = (self.convitx.get("decision") or {}).get("labels") or self.convitx.get("labels") or LABELS
            self.id2label = dict(enumerate(labels))
            self.label2id = {label: i for i, label in self.id2label.items()}
        super().__post_init__(**kwargs)

    @classmethod
    def from_convitx(cls, config: ConVitXConfig) -> "ConVitXTransformersConfig":
        return cls(**config.to_dict())

    @property
    def convitx_config(self) -> ConVitXConfig:
        return ConVitXConfig.from_dict(dict(self.convitx))


class ConVitXImageProcessor(BaseImageProcessor):
    """One image -> ``pixel_values`` (max_tiles, 3, t, t) tiles, zero-padded, ``tile_mask`` (max_tiles,)
    and ``global_pixel_values`` (3, g, g): ``detector.transforms.image_to_views``, nothing else."""

    model_input_names = ["pixel_values", "tile_mask", "global_pixel_values"]

    def __init__(self, **kwargs):
        preprocess = {k: kwargs.pop(k) for k in PREPROCESS_KEYS if k in kwargs}
        super().__init__(**kwargs)
        self.preprocess_config = PreprocessConfig(**preprocess)  # validates the sizes

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in super().to_dict().items() if k != "preprocess_config"}
        return {**data, **dataclasses.asdict(self.preprocess_config)}

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        config = self.preprocess_config
        images = images if isinstance(images, (list, tuple)) else [images]
        tiles, masks, globals_ = [], [], []
        for image in images:
            if isinstance(image, torch.Tensor):
                image = image.numpy()
            views = image_to_views(load_image(image), config)
            n = len(views.boxes)
            padded = torch.zeros((config.max_tiles, *views.tiles.shape[1:]), dtype=views.tiles.dtype)
            padded[:n] = views.tiles
            mask = torch.zeros(config.max_tiles, dtype=torch.bool)
            mask[:n] = True
            tiles.append(padded), masks.append(mask), globals_.append(views.global_view)
        data = {"pixel_values": torch.stack(tiles), "tile_mask": torch.stack(masks),
                "global_pixel_values": torch.stack(globals_)}
        return BatchFeature(data=data, tensor_type=return_tensors)

    @classmethod
    def from_convitx(cls, config: ConVitXConfig) -> "ConVitXImageProcessor":
        return cls(**dataclasses.asdict(config.preprocess))


class ConVitXForImageClassification(PreTrainedModel):
    """A ConVitX (``self.convitx``) behind transformers' image-classification interface.

    ``logits`` are the calibrated log-probabilities (``DecisionRule.p_fake``, temperature included),
    so softmax gives exactly ``Detector``'s probabilities. Loading and saving go through
    ``detector.hub``, so the checkpoint layout stays the one ``Detector`` reads.
    """

    config_class = ConVitXTransformersConfig
    base_model_prefix = "convitx"
    main_input_name = "pixel_values"

    def __init__(self, config: ConVitXTransformersConfig, convitx: ConVitX | None = None):
        super().__init__(config)
        self.convitx = convitx if convitx is not None else ConVitX(config.convitx_config)
        self.post_init()

    def _init_weights(self, module) -> None:
        """ConVitX and timm initialise their own layers; transformers' generic init (run by ``post_init``)
        would overwrite them, including the weights of a loaded checkpoint."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, revision: str | None = None,
                        cache_dir: str | None = None, token: str | bool | None = None, dtype=None,
                        **kwargs) -> "ConVitXForImageClassification":
        """A folder, or a Hub repo id (``org/name``, with ``revision=``), through ``detector.hub.load_checkpoint``.
        Other transformers loading options (``device_map``, quantisation, ...) do not apply and are ignored."""
        ref = str(pretrained_model_name_or_path)
        if not Path(ref).expanduser().is_dir() and not ref.startswith(HUB_PREFIX):
            ref = HUB_PREFIX + ref  # transformers' refs are folders or Hub ids, never our bare-name guess
        model, config, _ = load_checkpoint(ref, revision=revision, cache_dir=cache_dir, token=token)
        wrapper = cls(ConVitXTransformersConfig.from_convitx(config), convitx=model).eval()
        if isinstance(dtype, torch.dtype):
            wrapper.to(dtype)
        return wrapper

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """The ConVitX checkpoint layout (config.json + model.safetensors + preprocessor_config.json)."""
        save_checkpoint(self.convitx, save_directory)

    def forward(self, pixel_values: torch.Tensor, tile_mask: torch.Tensor, global_pixel_values: torch.Tensor,
                **kwargs) -> ImageClassifierOutput:
        n_images, max_tiles = tile_mask.shape
        keep = tile_mask.flatten().bool()
        tiles = pixel_values.flatten(0, 1)[keep]
        owner = torch.arange(n_images, device=tile_mask.device).repeat_interleave(max_tiles)[keep]
        logits = self.convitx(tiles, owner, global_pixel_values)
        p_fake = self.convitx.config.decision.p_fake(logits)
        with np.errstate(divide="ignore"):  # p of exactly 0 or 1: log 0 = -inf, which softmax maps to 0
            log_probs = np.log(np.stack([1.0 - p_fake, p_fake], axis=1))
        return ImageClassifierOutput(logits=torch.from_numpy(log_probs).to(logits.device))


def register() -> None:
    """Register the ConVitX classes with transformers' Auto classes (idempotent)."""
    AutoConfig.register(MODEL_TYPE, ConVitXTransformersConfig, exist_ok=True)
    AutoModelForImageClassification.register(ConVitXTransformersConfig, ConVitXForImageClassification, exist_ok=True)
    # One processor for both of transformers' backends: it runs detector.transforms, neither PIL's nor torchvision's ops.
    AutoImageProcessor.register(ConVitXTransformersConfig, exist_ok=True,
                                image_processor_classes={"pil": ConVitXImageProcessor, "torchvision": ConVitXImageProcessor})


register()  # on import; ``import detector`` imports this module once transformers is imported
