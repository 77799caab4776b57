"""Rendering of one synthetic GTEA61 video: RGB frames, warp flow and motion maps.

The scene is a large coloured object on a low-contrast textured table seen by a shaking camera.
The object (its colour, shape and stripes) says which object the class names; its trajectory
says which action. The camera shake moves the whole RGB image, while the flow images hold the
object's motion relative to the scene (the camera's motion removed, like the warp flow of the
real data): ~128 with mild noise on the background, 128 + gain * displacement on the object.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data_pipeline._classes import object_of, objects_by_priority

__all__ = ["Appearance", "VideoSpec", "appearance_of", "render_video"]

SHAPES = ("disc", "square", "diamond", "triangle", "ring", "cross")
_GOLDEN = 0.618033988749895
# The first objects (those of small subsets) get colours far apart from each other and from the
# grey-beige table; later ones take golden-ratio hues at alternating brightness.
_PALETTE = (
    (225, 30, 30),
    (30, 70, 225),
    (40, 185, 50),
    (245, 225, 30),
    (25, 25, 25),
    (30, 215, 225),
    (215, 40, 205),
    (250, 250, 250),
    (245, 135, 20),
    (110, 40, 165),
    (20, 95, 45),
    (250, 150, 195),
)
_FLOW_GAIN = 6.4  # grey levels per pixel of motion at 256 px image height (dense_flow's bound 20)
_COMPRESS_LEVEL = 1  # fast: the synthetic frames are rewritten at will


@dataclass(frozen=True)
class Appearance:
    colour: tuple[int, int, int]
    shape: str
    striped: bool


def appearance_of(class_name: str) -> Appearance:
    """Colour, shape and stripes of the class's object (the same for every action on it)."""
    index = objects_by_priority().index(object_of(class_name))
    if index < len(_PALETTE):
        colour = _PALETTE[index]
    else:
        value = 0.95 if index % 2 else 0.6
        red, green, blue = colorsys.hsv_to_rgb((index * _GOLDEN) % 1.0, 0.85, value)
        colour = (round(red * 255), round(green * 255), round(blue * 255))
    return Appearance(colour, SHAPES[index % len(SHAPES)], bool((index // len(SHAPES)) % 2))


@dataclass(frozen=True)
class VideoSpec:
    """Everything a worker process needs to write one video."""

    rgb_dir: Path
    map_dir: Path
    flow_x_dir: Path
    flow_y_dir: Path
    n_frames: int
    action: str
    """Verb whose motion the object follows (``close`` plays ``open`` backwards)."""
    appearance: Appearance
    draw: tuple[int, ...]
    """Seed of the geometry; open/close twins share it."""
    size: tuple[int, int]
    table: tuple[int, int, int]
    skip_first_map: bool


# ---------------------------------------------------------------------------------------------
# Trajectories: t in [0, 1] -> centre and size factors. The centre is in fractions of the central
# H x H square of the frame, which the evaluation centre crop keeps, as the real videos keep the
# hands near the middle.

_Path = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _const(t: np.ndarray, value: float) -> np.ndarray:
    return np.full_like(t, value)


def _open(t: np.ndarray, rng: np.random.Generator) -> _Path:
    # Vertical rise while growing: a horizontal flip leaves it unchanged, reversal does not.
    y0, rise = rng.uniform(0.6, 0.7), rng.uniform(0.2, 0.28)
    scale = 0.8 + rng.uniform(0.35, 0.5) * t
    return _const(t, rng.uniform(0.35, 0.65)), y0 - rise * t, scale, scale


def _take(t: np.ndarray, rng: np.random.Generator) -> _Path:
    start, sign = rng.uniform(0.2, 0.3), rng.choice((-1.0, 1.0))
    x = 0.5 + sign * (start - 0.5) * (1 - 2 * t)
    return x, _const(t, rng.uniform(0.4, 0.6)), _const(t, 1.0), _const(t, 1.0)


def _put(t: np.ndarray, rng: np.random.Generator) -> _Path:
    x0, drift = rng.uniform(0.35, 0.65), rng.choice((-1.0, 1.0)) * rng.uniform(0.1, 0.15)
    ease = 1 - (1 - t) ** 2
    return x0 + drift * ease, 0.22 + 0.4 * ease, _const(t, 1.0), _const(t, 1.0)


def _pour(t: np.ndarray, rng: np.random.Generator) -> _Path:
    x0, y0 = rng.uniform(0.3, 0.4), rng.uniform(0.55, 0.65)
    return x0 + 0.3 * t, y0 - 0.3 * np.sin(np.pi * t), _const(t, 1.0), 1.0 - 0.25 * t


def _scoop(t: np.ndarray, rng: np.random.Generator) -> _Path:
    x0, y0 = rng.uniform(0.4, 0.6), rng.uniform(0.3, 0.4)
    return x0 + 0.08 * t, y0 + 0.3 * np.sin(np.pi * t), _const(t, 1.0), _const(t, 1.0)


def _shake(t: np.ndarray, rng: np.random.Generator) -> _Path:
    cycles, phase = rng.uniform(2.5, 3.5), rng.uniform(0, 2 * np.pi)
    y = rng.uniform(0.45, 0.55) + 0.1 * np.sin(2 * np.pi * cycles * t + phase)
    return _const(t, rng.uniform(0.4, 0.6)), y, _const(t, 1.0), _const(t, 1.0)


def _stir(t: np.ndarray, rng: np.random.Generator) -> _Path:
    turns, phase, radius = rng.uniform(1.0, 1.5), rng.uniform(0, 2 * np.pi), 0.18
    angle = 2 * np.pi * turns * t + phase
    x = 0.5 + radius * np.cos(angle)
    return x, 0.5 + radius * np.sin(angle), _const(t, 0.9), _const(t, 0.9)


def _spread(t: np.ndarray, rng: np.random.Generator) -> _Path:
    phase = rng.uniform(0, 2 * np.pi)
    x = rng.uniform(0.45, 0.55) + 0.2 * np.sin(3 * np.pi * t + phase)
    return x, rng.uniform(0.45, 0.55) + 0.05 * t, _const(t, 1.0), _const(t, 0.8)


def _fold(t: np.ndarray, rng: np.random.Generator) -> _Path:
    x0, y0 = rng.uniform(0.4, 0.6), rng.uniform(0.45, 0.55)
    return _const(t, x0), _const(t, y0), 1.0 + 0.3 * t, 1.0 - 0.6 * t


_TRAJECTORIES: dict[str, Callable[[np.ndarray, np.random.Generator], _Path]] = {
    "open": _open,
    "take": _take,
    "put": _put,
    "pour": _pour,
    "scoop": _scoop,
    "shake": _shake,
    "stir": _stir,
    "spread": _spread,
    "fold": _fold,
}


def _states(spec: VideoSpec, rng: np.random.Generator) -> np.ndarray:
    """Per-frame object centre and half sizes in scene pixels: ``(N + 1, 4)`` = cx, cy, sx, sy.

    Row N extrapolates one frame past the end, so the last frame has a flow too.
    """
    width, height = spec.size
    t = np.linspace(0.0, 1.0, spec.n_frames)
    trajectory = _TRAJECTORIES["open" if spec.action == "close" else spec.action]
    x, y, sx, sy = trajectory(t, rng)
    radius = height / 8  # the object is about a quarter of the frame high
    left = (width - height) / 2
    states = np.stack([left + x * height, y * height, sx * radius, sy * radius], axis=1)
    if spec.action == "close":
        states = states[::-1]
    return np.concatenate([states, 2 * states[-1:] - states[-2:-1]])


def _camera(n_frames: int, margin: int, rng: np.random.Generator) -> np.ndarray:
    """Integer camera offsets ``(N, 2)`` (x, y): a clipped random walk within ``margin``."""
    steps = rng.normal(0.0, margin / 3, size=(n_frames, 2))
    return np.clip(np.round(np.cumsum(steps, axis=0)), -margin, margin).astype(int)


def _table(
    size: tuple[int, int], colour: tuple[int, int, int], rng: np.random.Generator
) -> np.ndarray:
    """Low-contrast texture: smooth blotches plus fine grain, uint8 ``(H, W, 3)``."""
    width, height = size
    coarse = Image.fromarray((rng.random((6, 10)) * 255).astype(np.uint8))
    blotches = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=float)
    grain = rng.integers(-5, 6, size=(height, width))
    shade = (blotches / 255 - 0.5) * 30 + grain
    return np.clip(np.asarray(colour, dtype=float) + shade[..., None], 0, 255).astype(np.uint8)


def _shape_mask(shape: str, u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (u, w in about [-1, 1], w pointing down)."""
    if shape == "disc":
        return u**2 + w**2 <= 1
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(w)) <= 0.85
    if shape == "diamond":
        return np.abs(u) + np.abs(w) <= 1.1
    if shape == "triangle":
        return (w <= 0.9) & (np.abs(u) <= (w + 1) * 0.55)
    if shape == "ring":
        return (u**2 + w**2 <= 1) & (u**2 + w**2 >= 0.3)
    return ((np.abs(u) <= 0.35) & (np.abs(w) <= 1)) | ((np.abs(w) <= 0.35) & (np.abs(u) <= 1))


# ---------------------------------------------------------------------------------------------
# Frames.


@dataclass(frozen=True)
class _Frame:
    rgb: np.ndarray
    """uint8 ``(H, W, 3)``."""
    mask: np.ndarray
    """uint8 ``(H, W)``, 0 or 255."""
    flow_x: np.ndarray
    flow_y: np.ndarray


class _Scene:
    """Renders the frames of one video from its per-frame states and camera offsets."""

    def __init__(self, spec: VideoSpec, table: np.ndarray, margin: int) -> None:
        self.spec, self.table, self.margin = spec, table, margin
        self.gain = _FLOW_GAIN * 256 / spec.size[1]

    def frame(
        self, state: np.ndarray, after: np.ndarray, offset: np.ndarray, noise: np.random.Generator
    ) -> _Frame:
        width, height = self.spec.size
        ox, oy = int(offset[0]), int(offset[1])
        top, left = self.margin + oy, self.margin + ox
        rgb = self.table[top : top + height, left : left + width].copy()
        # Mild noise: 127 or 129 on a quarter of the pixels, 128 elsewhere.
        draws = noise.integers(0, 8, size=(2, height, width), dtype=np.uint8)
        flow = 128 + (draws == 7).astype(np.int16) - (draws == 0)  # (2, H, W): x then y
        mask = np.zeros((height, width), dtype=bool)
        cx, cy, sx, sy = state
        # The object in image coordinates: the camera moved by (ox, oy).
        x0, x1 = max(0, int(cx - ox - 1.2 * sx)), min(width, int(cx - ox + 1.2 * sx) + 2)
        y0, y1 = max(0, int(cy - oy - 1.2 * sy)), min(height, int(cy - oy + 1.2 * sy) + 2)
        if x0 < x1 and y0 < y1:
            ys, xs = np.mgrid[y0:y1, x0:x1]
            u, w = (xs - (cx - ox)) / sx, (ys - (cy - oy)) / sy
            inside = _shape_mask(self.spec.appearance.shape, u, w)
            mask[y0:y1, x0:x1] = inside
            rgb[y0:y1, x0:x1][inside] = self._paint(u, w)[inside]
            # Warp flow: the object's own motion in the scene, camera motion removed.
            nx, ny, nsx, nsy = after
            vx, vy = (nx - cx) + u * (nsx - sx), (ny - cy) + w * (nsy - sy)
            flow[0, y0:y1, x0:x1][inside] = np.round(128 + self.gain * vx[inside]).clip(0, 255)
            flow[1, y0:y1, x0:x1][inside] = np.round(128 + self.gain * vy[inside]).clip(0, 255)
        flow = flow.astype(np.uint8)
        return _Frame(rgb, mask.astype(np.uint8) * 255, flow[0], flow[1])

    def _paint(self, u: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Object colour with a soft radial shade and optional stripes: uint8 ``(h, w, 3)``."""
        shade = 0.8 + 0.2 * np.clip(1 - (u**2 + w**2) / 2, 0, 1)
        if self.spec.appearance.striped:
            shade = shade * np.where(np.floor((u + 2) * 2.5) % 2 == 0, 1.0, 0.6)
        colour = np.asarray(self.spec.appearance.colour, dtype=float)
        return np.clip(colour * shade[..., None], 0, 255).astype(np.uint8)


def render_video(spec: VideoSpec) -> int:
    """Write every file of one video; return its frame count.

    Geometry (trajectory, camera, table) comes from ``spec.draw``, so a ``close`` video is the
    frame-by-frame reversal of the ``open`` video with the same draw.
    """
    width, height = spec.size
    geometry = np.random.default_rng(list(spec.draw))
    states = _states(spec, geometry)
    margin = max(1, round(0.015 * width))
    camera = _camera(spec.n_frames, margin, geometry)
    table = _table((width + 2 * margin, height + 2 * margin), spec.table, geometry)
    if spec.action == "close":
        camera = camera[::-1]
    noise = np.random.default_rng([*spec.draw, 1 if spec.action == "close" else 0])
    scene = _Scene(spec, table, margin)
    for folder in (spec.rgb_dir, spec.map_dir, spec.flow_x_dir, spec.flow_y_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, spec.n_frames + 1):
        frame = scene.frame(states[k - 1], states[k], camera[k - 1], noise)
        Image.fromarray(frame.rgb).save(
            spec.rgb_dir / f"rgb{k:04d}.png", compress_level=_COMPRESS_LEVEL
        )
        if not (k == 1 and spec.skip_first_map):
            Image.fromarray(frame.mask).save(
                spec.map_dir / f"map{k:04d}.png", compress_level=_COMPRESS_LEVEL
            )
        Image.fromarray(frame.flow_x).save(
            spec.flow_x_dir / f"flow_x_{k:05d}.png", compress_level=_COMPRESS_LEVEL
        )
        Image.fromarray(frame.flow_y).save(
            spec.flow_y_dir / f"flow_y_{k:05d}.png", compress_level=_COMPRESS_LEVEL
        )
    return spec.n_frames
