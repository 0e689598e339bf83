"""A procedural multi-domain image world: the embedded, offline default data set.

Classes are word compositions "<colour> <pattern> <shape>" (8 x 4 x 8 = 256 classes), rendered in five styles that
play the role of domains (as Art / Clipart / Product / Real do in Office-Home). Every image is a pure function of
(seed, style, class, index), so any site regenerates exactly its own partition in seconds and nothing is shipped.

Federated data additionally passes through an *acquisition* transform (see `Acquisition`): the federation's own
imaging conditions, absent from the tiny CLIP's pretraining. It is what leaves room for prompt learning, as real
CLIP leaves room on Office-Home (README, "The embedded world").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (247, 135, 22),
    "yellow": (240, 214, 34),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "purple": (138, 60, 190),
    "pink": (250, 140, 200),
    "brown": (120, 72, 32),
}
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted", "checkered")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "cross", "heart", "crescent")
STYLES: tuple[str, ...] = ("photo", "sketch", "clipart", "painting", "neon")

CANVAS = 64  # drawing resolution; images are returned at `image_size` (default 32)
# Bump when rendering changes: feature caches keyed on it are then rebuilt instead of silently reused.
RENDERER_VERSION = 1


@dataclass(frozen=True)
class WorldClass:
    colour: str
    pattern: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.pattern} {self.shape}"


def all_classes() -> list[WorldClass]:
    """The 256 classes in a fixed order (colour-major); a class's index is its position here."""
    return [WorldClass(c, p, s) for c in COLOURS for p in PATTERNS for s in SHAPES]


def class_names() -> list[str]:
    return [c.name for c in all_classes()]


def held_out_compositions() -> list[int]:
    """Class indices whose colour-shape pair never appears in pretraining (one shape per colour, 32 classes).

    Colour i is paired with shape i, in all four patterns: truly unseen compositions of known words.
    """
    colours, shapes = list(COLOURS), SHAPES
    held = []
    for index, cls in enumerate(all_classes()):
        if shapes.index(cls.shape) == colours.index(cls.colour):
            held.append(index)
    return held


@dataclass(frozen=True)
class Acquisition:
    """The federation's imaging conditions, applied to every federated image (never to pretraining data).

    kind: "none"; "frame" (a coloured border, like a scanner's calibration frame); "cast" (a colour cast, as a
    site's white balance); "logo" (a fixed emblem in a corner, as a watermark). strength in [0, 1].
    """

    kind: str = "none"
    colour: str = "green"
    strength: float = 1.0

    def __post_init__(self):
        if self.kind not in ("none", "frame", "cast", "logo"):
            raise ValueError(f"acquisition kind must be none, frame, cast or logo, got {self.kind!r}")
        if self.colour not in COLOURS:
            raise ValueError(f"acquisition colour must be one of {list(COLOURS)}, got {self.colour!r}")


def _rng(seed: int, style: str, class_index: int, image_index: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, STYLES.index(style), class_index, image_index, salt]))


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]] | None:
    """Outline points of a shape (None for shapes drawn as ellipses)."""
    if shape == "circle":
        return None
    if shape == "square":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(4) * math.pi / 2 + math.pi / 4]
        pts = [(x * 0.95, y * 0.95) for x, y in pts]
    elif shape == "diamond":
        pts = [(0, -1), (0.72, 0), (0, 1), (-0.72, 0)]
    elif shape == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in np.arange(3) * 2 * math.pi / 3 - math.pi / 2]
        pts = [(x * 1.1, y * 1.1 + 0.15) for x, y in pts]
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = 1.0 if k % 2 == 0 else 0.45
            a = k * math.pi / 5 - math.pi / 2
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    elif shape == "cross":
        w = 0.36
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
               (-w, -w)]
    elif shape == "heart":
        t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        x = 16 * np.sin(t) ** 3 / 17
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)) / 17 - 0.1
        pts = list(zip(x.tolist(), y.tolist()))
    elif shape == "crescent":
        t = np.linspace(-math.pi / 2, math.pi / 2, 24)
        outer = [(math.cos(a), math.sin(a)) for a in t]
        inner = [(0.35 * math.cos(a) - 0.05, 0.78 * math.sin(a)) for a in t[::-1]]
        pts = [(x - 0.25, y) for x, y in outer + inner]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in pts]


def _shape_mask(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Float mask [CANVAS, CANVAS] in {0, 1}: a centred shape, radius 0.33-0.39 of the canvas, small rotation."""
    cx = CANVAS / 2 + rng.uniform(-0.05, 0.05) * CANVAS
    cy = CANVAS / 2 + rng.uniform(-0.05, 0.05) * CANVAS
    r = rng.uniform(0.33, 0.39) * CANVAS
    angle = rng.uniform(-0.3, 0.3)
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    poly = _shape_polygon(shape, cx, cy, r, angle)
    if poly is None:
        draw.ellipse([cx - r * 0.95, cy - r * 0.95, cx + r * 0.95, cy + r * 0.95], fill=255)
    else:
        draw.polygon(poly, fill=255)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _pattern_map(pattern: str, rng: np.random.Generator) -> np.ndarray:
    """[CANVAS, CANVAS] in {0, 1}: 1 where the pattern shows the object's colour, 0 where it shows the light tone."""
    if pattern == "plain":
        return np.ones((CANVAS, CANVAS), np.float32)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    period = rng.uniform(9.0, 11.0)
    phase_u, phase_v = rng.uniform(0, period, size=2)
    if pattern == "striped":
        return (((u + phase_u) % period) < period / 2).astype(np.float32)
    if pattern == "checkered":
        a = ((u + phase_u) % (2 * period)) < period
        b = ((v + phase_v) % (2 * period)) < period
        return (a ^ b).astype(np.float32)
    if pattern == "dotted":
        du = (u + phase_u) % period - period / 2
        dv = (v + phase_v) % period - period / 2
        return (du * du + dv * dv > (period * 0.27) ** 2).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}")


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    img = Image.fromarray(np.clip(a * 255, 0, 255).astype(np.uint8))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _edges(mask: np.ndarray, width: int) -> np.ndarray:
    img = Image.fromarray((mask * 255).astype(np.uint8))
    grown = np.asarray(img.filter(ImageFilter.MaxFilter(2 * width + 1)), dtype=np.float32) / 255.0
    shrunk = np.asarray(img.filter(ImageFilter.MinFilter(2 * width + 1)), dtype=np.float32) / 255.0
    return np.clip(grown - shrunk, 0, 1)


def _compose(style: str, cls: WorldClass, rng: np.random.Generator) -> np.ndarray:
    """Render one image at CANVAS resolution, float RGB in [0, 1]."""
    colour = np.array(COLOURS[cls.colour], np.float32) / 255.0
    light = colour * 0.35 + 0.65  # the pattern's second tone: a tint of the same colour, keeps the colour legible
    mask = _shape_mask(cls.shape, rng)[..., None]
    pat = _pattern_map(cls.pattern, rng)[..., None]
    fill = pat * colour + (1 - pat) * light
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32) / CANVAS

    if style == "photo":
        c1, c2 = rng.uniform(0.25, 0.75, size=(2, 3)).astype(np.float32)
        g = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
        g = (g - g.min()) / (np.ptp(g) + 1e-6)
        background = c1 * (1 - g) + c2 * g + rng.normal(0, 0.06, (CANVAS, CANVAS, 3)).astype(np.float32)
        shadow = _blur(np.roll(mask[..., 0], (3, 3), axis=(0, 1)), 2.5)[..., None]
        background = background * (1 - 0.45 * shadow)
        lx, ly = rng.uniform(-1, 1, size=2)
        shading = (0.95 + 0.3 * ((xx - 0.5) * lx + (yy - 0.5) * ly))[..., None]
        obj = fill * shading + rng.normal(0, 0.03, (CANVAS, CANVAS, 3)).astype(np.float32)
        return background * (1 - mask) + obj * mask

    if style == "sketch":
        paper = np.float32(rng.uniform(0.9, 1.0)) + rng.normal(0, 0.02, (CANVAS, CANVAS, 1)).astype(np.float32)
        ink = np.where(pat > 0.5, 0.75, 0.0) if cls.pattern != "plain" else np.full_like(pat, 0.3)
        gaps = (_blur(rng.uniform(0, 1, (CANVAS, CANVAS)).astype(np.float32), 1.5) > 0.47)[..., None]
        outline = _edges(mask[..., 0], 1)[..., None] * gaps
        alpha = np.clip(mask * ink + outline, 0, 1)
        return paper * (1 - alpha) + colour * alpha

    if style == "clipart":
        outline = _edges(mask[..., 0], 2)[..., None]
        img = np.ones((CANVAS, CANVAS, 3), np.float32) * (1 - mask) + fill * mask
        return img * (1 - outline) + 0.05 * outline

    if style == "painting":
        canvas_tone = np.array([0.93, 0.88, 0.76], np.float32) + rng.normal(0, 0.03, 3).astype(np.float32)
        strokes = _blur(rng.normal(0, 1, (CANVAS, CANVAS)).astype(np.float32) * 0.5 + 0.5, 1.0)[..., None]
        background = canvas_tone * (0.85 + 0.3 * strokes)
        jitter_mask = _blur(mask[..., 0], 1.0)[..., None]
        brush = 0.9 + 0.25 * strokes
        img = background * (1 - jitter_mask) + fill * brush * jitter_mask
        return _blur_rgb(img, 0.8)

    if style == "neon":
        glow = _blur(_edges(mask[..., 0], 1), 1.8)[..., None] * 2.2
        dark = np.full((CANVAS, CANVAS, 3), 0.06, np.float32)
        inner = mask * pat * 0.45
        return dark + colour * np.clip(glow + inner, 0, 1.2)

    raise ValueError(f"unknown style {style!r}")


def _blur_rgb(img: np.ndarray, radius: float) -> np.ndarray:
    pil = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
    return np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def _acquire(img: np.ndarray, acquisition: Acquisition, rng: np.random.Generator) -> np.ndarray:
    if acquisition.kind == "none" or acquisition.strength <= 0:
        return img
    tint = np.array(COLOURS[acquisition.colour], np.float32) / 255.0
    s = acquisition.strength
    if acquisition.kind == "cast":
        return img * (1 - 0.5 * s) + img * tint * (0.5 * s) * 2.0
    out = img.copy()
    if acquisition.kind == "frame":
        width = max(1, int(round(CANVAS * 0.09 * s)))
        out[:width], out[-width:], out[:, :width], out[:, -width:] = tint, tint, tint, tint
        return out
    # logo: a filled disc in the top-left corner, a little jitter in place
    cx, cy = CANVAS * (0.13 + rng.uniform(-0.02, 0.02)), CANVAS * (0.13 + rng.uniform(-0.02, 0.02))
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float32)
    disc = (((xx - cx) ** 2 + (yy - cy) ** 2) < (CANVAS * 0.11 * (0.5 + 0.5 * s)) ** 2)[..., None]
    return np.where(disc, tint, out)


def render(
    style: str,
    class_index: int,
    image_index: int,
    seed: int = 0,
    image_size: int = 32,
    acquisition: Acquisition = Acquisition(),
) -> np.ndarray:
    """One image as uint8 [image_size, image_size, 3]; a pure function of its arguments."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; the world's styles are {STYLES}")
    cls = all_classes()[class_index]
    rng = _rng(seed, style, class_index, image_index)
    img = _acquire(_compose(style, cls, rng), acquisition, rng)
    pil = Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8))
    if image_size != CANVAS:
        pil = pil.resize((image_size, image_size), Image.Resampling.BOX)
    return np.asarray(pil)


def render_batch(
    style: str,
    class_indices: Sequence[int],
    image_indices: Sequence[int],
    seed: int = 0,
    image_size: int = 32,
    acquisition: Acquisition = Acquisition(),
) -> np.ndarray:
    """Images for paired (class, image index) lists as uint8 [N, H, W, 3]."""
    out = np.empty((len(class_indices), image_size, image_size, 3), np.uint8)
    for row, (c, i) in enumerate(zip(class_indices, image_indices)):
        out[row] = render(style, int(c), int(i), seed=seed, image_size=image_size, acquisition=acquisition)
    return out
