"""Training views and augmentation, applied identically to both classes.

Tiles keep the pixel grid: flips, 90-degree rotations, colour jitter and random
masking never resample. Web damage (a resize of the whole image, JPEG
re-compression at a random quality and grid phase) is applied to *both*
classes, so the model learns to survive the web rather than to detect
resampling. The tiles themselves are never resized.
"""
from __future__ import annotations

import io
import random

import numpy as np
import torch
from PIL import Image, ImageFilter
from torchvision.transforms.v2 import functional as TF

from detector.config import PreprocessConfig
from detector.transforms import global_view, mirror_pad, normalize

RESAMPLERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS, Image.Resampling.BOX)


def _jpeg(array: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


class TrainViews:
    """PIL image -> (tiles (n, 3, t, t), global view (3, g, g)), normalised, augmented.

    ``strength`` scales the probability of every degradation (0 turns them off,
    leaving only flips, rotations and crops). ``whole_crop`` (probability of cropping the whole image first) and
    ``resize_small`` (resize images down to ``min_side`` too, e.g. CIFAKE's 32 px to 16) are the second recipe:
    it survives halved thumbnails but, at the embedded model's budget, cost clean AUC (weights/README.md).
    """

    def __init__(self, config: PreprocessConfig, strength: float = 1.0, tiles: int | None = None,
                 whole_crop: float = 0.0, resize_small: bool = False):
        self.config, self.strength = config, strength
        self.tiles = tiles or config.train_tiles
        self.whole_crop, self.resize_small = whole_crop, resize_small

    def _p(self, base: float) -> bool:
        return random.random() < min(1.0, base * self.strength)

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        tile = self.config.tile_size
        shortest = min(image.size)
        if self.whole_crop and self._p(self.whole_crop) and shortest >= 2 * self.config.min_side:
            # A cropped copy: what the global view sees changes, and small images get smaller still.
            keep = random.uniform(0.6, 1.0)
            width = max(self.config.min_side, round(image.width * keep))
            height = max(self.config.min_side, round(image.height * keep))
            left, top = random.randint(0, image.width - width), random.randint(0, image.height - height)
            image = image.crop((left, top, left + width, top + height))
            shortest = min(image.size)
        if self.resize_small:
            # Small images too (CIFAKE's 32 px down to 16): a model never shown them collapses on a halved thumbnail.
            if self._p(0.4) and shortest >= 2 * self.config.min_side:
                factor = random.uniform(max(0.5, self.config.min_side / shortest), 1.25)
                image = image.resize((max(8, round(image.width * factor)), max(8, round(image.height * factor))),
                                     random.choice(RESAMPLERS))
        elif self._p(0.3) and shortest > 2 * self.config.min_side:
            # A re-shared copy: the whole image resized (down, or slightly up), any resampler.
            factor = random.uniform(0.5, 1.25)
            image = image.resize((max(8, round(image.width * factor)), max(8, round(image.height * factor))),
                                 random.choice(RESAMPLERS))
        glob = global_view(image, self.config.global_size)
        quality = random.randint(50, 95) if self._p(0.5) else None
        margin = 8 if quality else 0  # JPEG a slightly larger crop, then cut: a random 8x8 grid phase
        array = np.asarray(image)
        array, _, _ = mirror_pad(array, tile + margin)
        height, width = array.shape[:2]
        crops = []
        for _ in range(self.tiles):
            y, x = random.randint(0, height - tile - margin), random.randint(0, width - tile - margin)
            crop = array[y : y + tile + margin, x : x + tile + margin]
            if quality:
                dy, dx = random.randint(0, margin), random.randint(0, margin)
                crop = _jpeg(np.ascontiguousarray(crop), quality)[dy : dy + tile, dx : dx + tile]
            if self._p(0.1):
                crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).filter(
                    ImageFilter.GaussianBlur(radius=random.uniform(0.3, 1.0))))
            crop = np.rot90(crop, random.randint(0, 3))
            crops.append(crop[:, ::-1] if random.random() < 0.5 else crop)
        tiles = torch.from_numpy(np.stack([np.ascontiguousarray(c) for c in crops])).permute(0, 3, 1, 2)
        glob_t = torch.from_numpy(np.array(glob)).permute(2, 0, 1)
        if random.random() < 0.5:
            glob_t = TF.horizontal_flip(glob_t)
        if self._p(0.5):
            # One jitter for the whole image: its tiles and global view stay consistent.
            brightness, contrast, saturation = (random.uniform(0.8, 1.2) for _ in range(3))
            both = torch.cat([tiles, glob_t[None]], 0) if tile == self.config.global_size else None
            jitter = lambda t: TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(t, brightness), contrast), saturation)  # noqa: E731
            if both is not None:
                both = jitter(both)
                tiles, glob_t = both[:-1], both[-1]
            else:
                tiles, glob_t = jitter(tiles), jitter(glob_t[None])[0]
        tiles = normalize(tiles, self.config, channels_last=False)
        if self._p(0.2):
            # SAFE's RandomMask: hide a patch, so no single spot carries the verdict.
            for t in tiles:
                h, w = random.randint(tile // 8, tile // 2), random.randint(tile // 8, tile // 2)
                y, x = random.randint(0, tile - h), random.randint(0, tile - w)
                t[:, y : y + h, x : x + w] = 0.0
        return tiles, normalize(glob_t, self.config, channels_last=False)


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


def center_crop(image: Image.Image, fraction: float = 0.7) -> Image.Image:
    width, height = image.size
    w, h = max(1, round(width * fraction)), max(1, round(height * fraction))
    left, top = (width - w) // 2, (height - h) // 2
    return image.crop((left, top, left + w, top + h))


DEGRADATIONS = {
    "clean": lambda image: image,
    "jpeg_q75": jpeg(75),
    "jpeg_q50": jpeg(50),
    "resize_0.5x": half_size,
    "blur_r1": blur,
    "crop_0.7": center_crop,
}
