"""Draw the app's example images: small synthetic scenes, so the repo ships no third-party photos.

They are neither camera photographs nor generator outputs, so they show how
the app works, not how accurate the model is. Deterministic (fixed seed):
rerunning rewrites identical pixels.

    python examples/make_examples.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent


def _ridge(rng: np.random.Generator, width: int, base: float, roughness: float) -> np.ndarray:
    """A mountain skyline: a smoothed random walk."""
    steps = rng.normal(0.0, roughness, width).cumsum()
    steps -= np.linspace(steps[0], steps[-1], width)  # no drift from edge to edge
    kernel = np.hanning(25) / np.hanning(25).sum()
    return base + np.convolve(steps, kernel, mode="same")


def landscape(rng: np.random.Generator, width: int = 480, height: int = 320) -> Image.Image:
    """Sky, sun, three mountain ranges and a lake, with sensor-like noise and a slight blur."""
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    top, horizon = np.array([70, 120, 200.0]), np.array([250, 200, 160.0])
    pixels = np.broadcast_to(top + (horizon - top) * y**0.8, (height, width, 3)).copy()
    yy, xx = np.mgrid[0:height, 0:width]
    sun = np.exp(-(((xx - 0.7 * width) ** 2 + (yy - 0.35 * height) ** 2) / (2 * 18.0**2)))
    pixels += 0.6 * sun[..., None] * np.array([255, 240, 200.0])
    lake_top = int(0.72 * height)
    for base, colour, rough in ((0.45, (120, 110, 140), 2.5), (0.55, (80, 90, 110), 3.0), (0.64, (40, 70, 50), 2.0)):
        ridge = _ridge(rng, width, base * height, rough)
        mask = (yy >= ridge[None, :]) & (yy < lake_top)
        shade = 1.0 - 0.25 * (yy - ridge[None, :]) / height
        pixels[mask] = (np.array(colour, dtype=np.float64)[None, :] * shade[mask][:, None])
    # The lake mirrors the scene above it, darker and rippled.
    rows = np.arange(lake_top, height)
    mirrored = np.clip(2 * lake_top - rows, 0, height - 1)
    ripple = (3 * np.sin(rows[:, None] * 0.9 + xx[lake_top:] * 0.05)).astype(int)
    pixels[lake_top:] = 0.7 * pixels[np.clip(mirrored[:, None] + ripple, 0, height - 1), xx[lake_top:]]
    pixels += rng.normal(0.0, 4.0, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(0.6))


def still_life(rng: np.random.Generator, width: int = 288, height: int = 384) -> Image.Image:
    """Portrait format: shaded spheres on a table, smooth and noiseless like a render."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    wall = np.array([225, 215, 195.0]) * (0.85 + 0.15 * (1 - yy / height))[..., None]
    table = np.array([150, 95, 60.0]) * (0.7 + 0.3 * (yy / height))[..., None]
    pixels = np.where((yy > 0.55 * height)[..., None], table, wall)
    light = np.array([-0.5, -0.6, 0.62])
    light /= np.linalg.norm(light)
    spheres = ((0.3, 0.62, 48, (200, 40, 40)), (0.62, 0.6, 60, (240, 180, 40)), (0.48, 0.7, 36, (70, 150, 60)))
    for cx, cy, r, colour in spheres:
        cx, cy = cx * width, cy * height
        # A soft contact shadow, then the sphere with Lambert + specular shading.
        shadow = np.exp(-(((xx - cx - 12) / (1.3 * r)) ** 2 + ((yy - cy - r * 0.9) / (0.3 * r)) ** 2))
        pixels *= (1 - 0.5 * shadow)[..., None]
        dx, dy = (xx - cx) / r, (yy - cy) / r
        inside = dx**2 + dy**2 < 1
        dz = np.sqrt(np.clip(1 - dx**2 - dy**2, 0, 1))
        lambert = np.clip(dx * light[0] + dy * light[1] + dz * light[2], 0, 1)
        specular = np.clip(lambert, 0, 1) ** 40
        shaded = np.array(colour, dtype=np.float64) * (0.2 + 0.8 * lambert)[..., None] + 255 * specular[..., None]
        pixels[inside] = shaded[inside]
    pixels += rng.normal(0.0, 0.8, pixels.shape)  # just enough dither to avoid banding
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def city_night(rng: np.random.Generator, width: int = 512, height: int = 224) -> Image.Image:
    """A wide panorama: skyline with lit windows under a starry sky."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for row in range(height):
        t = row / height
        draw.line([(0, row), (width, row)], fill=(int(10 + 25 * t), int(12 + 20 * t), int(40 + 40 * t)))
    for _ in range(120):
        x, y = rng.integers(0, width), rng.integers(0, height // 2)
        level = int(rng.integers(120, 255))
        draw.point((int(x), int(y)), fill=(level, level, level))
    draw.ellipse((40, 20, 70, 50), fill=(235, 235, 210))
    x = 0
    while x < width:
        w, h = int(rng.integers(25, 60)), int(rng.integers(50, 170))
        top = height - h
        grey = int(rng.integers(20, 45))
        draw.rectangle((x, top, x + w, height), fill=(grey, grey, grey + 8))
        for wy in range(top + 6, height - 6, 9):
            for wx in range(x + 4, x + w - 5, 7):
                if rng.random() < 0.45:
                    warm = int(rng.integers(170, 255))
                    draw.rectangle((wx, wy, wx + 3, wy + 4), fill=(warm, int(warm * 0.8), 90))
        x += w + int(rng.integers(0, 6))
    noise = rng.normal(0.0, 3.0, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8))


def main() -> None:
    rng = np.random.default_rng(20240607)
    landscape(rng).save(HERE / "landscape.jpg", quality=88, optimize=True)
    still_life(rng).save(HERE / "still_life.png", optimize=True)
    city_night(rng).save(HERE / "city_night.jpg", quality=88, optimize=True)
    for path in sorted(HERE.glob("*.[jp][pn]g")):
        print(f"{path.name}: {Image.open(path).size}, {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
