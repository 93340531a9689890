"""Training augmentation, applied identically to both classes.

The robustness part (JPEG re-compression, blur, down-and-up resizing) is what
stops a detector from learning file-format shortcuts instead of generation
traces. Everything ends in the detector's own eval transform.
"""
from __future__ import annotations

import io
import random

from PIL import Image, ImageFilter
import torch
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF

from detector.config import ConVitXConfig
from detector.transforms import build_eval_transform


class RandomDownUp(torch.nn.Module):
    """Shrink by a random factor and scale back: the lost detail of a re-shared image."""

    def __init__(self, factor: tuple[float, float] = (0.35, 0.9)):
        super().__init__()
        self.factor = factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        factor = random.uniform(*self.factor)
        small = TF.resize(image, [max(8, round(height * factor)), max(8, round(width * factor))], antialias=True)
        return TF.resize(small, [height, width], interpolation=T.InterpolationMode.BICUBIC, antialias=True)


class WorkingCrop(torch.nn.Module):
    """Random resized crop to a working size between the model size and twice it.

    Degrading at up to 2x the model resolution keeps the augmentations' effect on
    what the model sees, at ~1 ms instead of ~100 ms for a 512 px image; a 32 px
    CIFAKE image is not blown up to 128 px only to be shrunk again.
    """

    def __init__(self, image_size: int, scale: tuple[float, float] = (0.5, 1.0)):
        super().__init__()
        self.image_size, self.scale = image_size, scale

    def forward(self, image):
        size = int(min(2 * self.image_size, max(self.image_size, *TF.get_size(image))))
        top, left, height, width = T.RandomResizedCrop.get_params(image, self.scale, (3 / 4, 4 / 3))
        return TF.resized_crop(image, top, left, height, width, [size, size],
                               interpolation=T.InterpolationMode.BICUBIC, antialias=True)


def build_train_transform(config: ConVitXConfig, strength: float = 1.0) -> T.Compose:
    """Crop on PIL, augment as a uint8 tensor, finish with the detector's eval transform.

    ``strength`` scales the probability of every robustness augmentation (0 turns them off).
    """
    p = lambda base: min(1.0, base * strength)  # noqa: E731
    return T.Compose(
        [
            WorkingCrop(config.image_size),
            T.PILToTensor(),
            T.RandomApply([RandomDownUp()], p=p(0.25)),
            T.RandomApply([T.GaussianBlur(kernel_size=5, sigma=(0.1, 1.5))], p=p(0.2)),
            T.RandomApply([T.JPEG(quality=(40, 95))], p=p(0.5)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.RandomRotation(10, interpolation=T.InterpolationMode.BILINEAR)], p=p(0.2)),
            T.RandomApply([T.ColorJitter(0.2, 0.2, 0.2)], p=p(0.5)),  # no hue: 3/4 of jitter's cost
            build_eval_transform(config),
        ]
    )


# Fixed degradations for the robustness table: name -> PIL function.
def jpeg(quality: int):
    def apply(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    return apply


def half_size(image: Image.Image) -> Image.Image:
    width, height = image.size
    return image.resize((max(1, width // 2), max(1, height // 2)), Image.Resampling.BILINEAR)


def blur(image: Image.Image) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=1.0))


DEGRADATIONS = {
    "clean": lambda image: image,
    "jpeg_q75": jpeg(75),
    "jpeg_q50": jpeg(50),
    "resize_0.5x": half_size,
    "blur_r1": blur,
}
