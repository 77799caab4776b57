"""Drawing one synthetic GTEA61 video: RGB frames, warp flow and motion maps, written as PNGs.

:mod:`data_pipeline.synth_scene` says what is where in every frame; this module rasterises it.
The camera shakes, so the whole RGB image moves, while the flow images hold the motion of the
moving parts relative to the scene (the camera's motion removed, like the warp flow of the real
data): 128 with mild noise on still pixels, ``128 + gain * displacement`` on moving ones. Motion
maps are binary masks of the moving parts (the object or utensil, the hand and the arm), as the
real maps mark hands and manipulated objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data_pipeline.synth_scene import Look, Part, UserStyle, build_scene, play_backwards

__all__ = ["VideoSpec", "render_video"]

_FLOW_GAIN = 6.4  # grey levels per pixel of motion at 256 px image height (dense_flow's bound 20)
_NOISE = 2.5  # sensor noise, grey levels (standard deviation)
_COMPRESS_LEVEL = 1  # fast: the synthetic frames are rewritten at will


@dataclass(frozen=True)
class VideoSpec:
    """Everything a worker process needs to write one video."""

    rgb_dir: Path
    map_dir: Path
    flow_x_dir: Path
    flow_y_dir: Path
    n_frames: int
    class_name: str
    draw: tuple[int, ...]
    """Seed of the scene; an open/close pair shares it, and close plays it backwards."""
    backwards: bool
    size: tuple[int, int]
    style: UserStyle
    skip_first_map: bool


# ---------------------------------------------------------------------------------------------
# Shapes and surfaces, in object coordinates: u across, w down, both about in [-1, 1].


def _superellipse(u: np.ndarray, w: np.ndarray, power: float) -> np.ndarray:
    return np.abs(u) ** power + np.abs(w) ** power <= 1


def _bottle(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    half_width = np.clip(0.4 + 0.6 * (w + 0.5) / 0.3, 0.4, 1.0)
    return (np.abs(u) <= half_width) & (np.abs(w) <= 1)


def _cup(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    body = (np.abs(u + 0.12) <= 0.72 - 0.12 * (w + 1) / 2) & (np.abs(w) <= 1)
    ring = ((u - 0.62) / 0.3) ** 2 + ((w + 0.1) / 0.45) ** 2
    return body | ((ring <= 1) & (ring >= 0.35))


def _spoon(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    handle = (np.abs(w) <= 0.3) & (u >= -1) & (u <= 0.4)
    return handle | (((u - 0.68) / 0.32) ** 2 + w**2 <= 1)


def _sausage(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    core = (np.abs(u) <= 0.75) & (np.abs(w) <= 1)
    return core | (((np.abs(u) - 0.75) / 0.25) ** 2 + w**2 <= 1)


def _inside(shape: str, u: np.ndarray, w: np.ndarray) -> np.ndarray:
    if shape == "jar":
        return _superellipse(u, w, 4)
    if shape in ("can", "box", "lid"):
        return _superellipse(u, w, 8)
    if shape == "bottle":
        return _bottle(u, w)
    if shape == "loaf":
        return _superellipse(u, w, 2.5)
    if shape == "wedge":
        return (np.abs(w) <= 1) & (np.abs(u) <= (w + 1) / 2)
    if shape == "sausage":
        return _sausage(u, w)
    if shape == "cup":
        return _cup(u, w)
    if shape == "spoon":
        return _spoon(u, w)
    return u**2 + w**2 <= 1  # hand


def _surface(look: Look, u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: brightness factor and whether the accent colour shows."""
    shade = 0.78 + 0.22 * np.clip(1 - (u**2 + w**2) / 2, 0, 1)
    if look.shape in ("jar", "can", "box", "bottle"):
        shade = np.where(w < -0.8, shade * 0.72, shade)  # the top, darker under its lid
    if look.pattern == "label":
        accent = (w >= -0.2) & (w <= 0.35) & (np.abs(u) <= 0.82)
    elif look.pattern == "stripes":
        accent = np.floor((u + 2) * 2.5) % 2 == 0
    elif look.pattern == "crust":
        accent = np.abs(u) ** 2.5 + np.abs(w) ** 2.5 > 0.62
    elif look.pattern == "dots":
        accent = ((u * 3.1) % 1 - 0.5) ** 2 + ((w * 2.7) % 1 - 0.5) ** 2 < 0.06
    else:
        accent = np.zeros(u.shape, dtype=bool)
    return shade, accent


# ---------------------------------------------------------------------------------------------
# Frames.


@dataclass
class _Canvas:
    """One frame being drawn: float RGB, flow (x then y, in pixels), motion mask."""

    rgb: np.ndarray
    flow: np.ndarray
    mask: np.ndarray
    offset: tuple[int, int]
    """Camera offset: scene point (x, y) is at image pixel (x - ox, y - oy)."""


def _box(canvas: _Canvas, xs: tuple[float, float], ys: tuple[float, float]) -> tuple[slice, slice]:
    height, width = canvas.mask.shape
    x0, x1 = max(0, int(np.floor(xs[0]))), min(width, int(np.ceil(xs[1])) + 1)
    y0, y1 = max(0, int(np.floor(ys[0]))), min(height, int(np.ceil(ys[1])) + 1)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def _draw_part(canvas: _Canvas, part: Part, k: int) -> None:
    if part.anchor is not None:
        _draw_arm(canvas, part, k)
        return
    cx, cy, sx, sy, angle = part.states[k]
    half_w, half_h = part.half[0] * sx, part.half[1] * sy
    if half_w < 0.5 or half_h < 0.5:
        return
    ox, oy = canvas.offset
    reach = 1.05 * float(np.hypot(half_w, half_h))
    rows, cols = _box(
        canvas, (cx - ox - reach, cx - ox + reach), (cy - oy - reach, cy - oy + reach)
    )
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return
    ys, xs = np.mgrid[rows, cols]
    dx, dy = xs + ox - cx, ys + oy - cy  # scene offsets from the centre
    cos, sin = np.cos(angle), np.sin(angle)
    u, w = (cos * dx + sin * dy) / half_w, (-sin * dx + cos * dy) / half_h
    inside = _inside(part.look.shape, u, w)
    if not inside.any():
        return
    shade, accent = _surface(part.look, u, w)
    colour = np.where(accent[..., None], part.look.accent, part.look.colour)
    painted = colour * (shade * part.tint)[..., None]
    canvas.rgb[rows, cols][inside] = painted[inside]
    if part.moving:
        nx, ny, nsx, nsy, nangle = part.states[k + 1]
        ncos, nsin = np.cos(nangle), np.sin(nangle)
        ou, ow = u * part.half[0] * nsx, w * part.half[1] * nsy
        vx = nx + ncos * ou - nsin * ow - (xs + ox)
        vy = ny + nsin * ou + ncos * ow - (ys + oy)
        canvas.flow[0, rows, cols][inside] = vx[inside]
        canvas.flow[1, rows, cols][inside] = vy[inside]
        canvas.mask[rows, cols] |= inside
    else:
        canvas.flow[:, rows, cols][:, inside] = 0.0


def _draw_arm(canvas: _Canvas, part: Part, k: int) -> None:
    """A capsule from the hand's centre to the elbow; its motion fades towards the elbow."""
    assert part.anchor is not None
    ox, oy = canvas.offset
    start = part.states[k, :2] - (ox, oy)
    end = np.asarray(part.anchor) - (ox, oy)
    radius = part.half[0]
    rows, cols = _box(
        canvas,
        (min(start[0], end[0]) - radius, max(start[0], end[0]) + radius),
        (min(start[1], end[1]) - radius, max(start[1], end[1]) + radius),
    )
    if rows.start >= rows.stop or cols.start >= cols.stop:
        return
    ys, xs = np.mgrid[rows, cols]
    segment = end - start
    along = np.clip(
        ((xs - start[0]) * segment[0] + (ys - start[1]) * segment[1]) / (segment @ segment or 1.0),
        0,
        1,
    )
    distance = np.hypot(xs - start[0] - along * segment[0], ys - start[1] - along * segment[1])
    inside = distance <= radius
    if not inside.any():
        return
    shade = (0.82 + 0.18 * (1 - distance / radius)) * part.tint
    canvas.rgb[rows, cols][inside] = (np.asarray(part.look.colour) * shade[..., None])[inside]
    velocity = part.states[k + 1, :2] - part.states[k, :2]
    canvas.flow[0, rows, cols][inside] = (velocity[0] * (1 - along))[inside]
    canvas.flow[1, rows, cols][inside] = (velocity[1] * (1 - along))[inside]
    canvas.mask[rows, cols] |= inside


def _table(size: tuple[int, int], style: UserStyle, rng: np.random.Generator) -> np.ndarray:
    """The user's table, a little larger than the frame (the camera shakes over it)."""
    width, height = size
    coarse = Image.fromarray((rng.random((6, 10)) * 255).astype(np.uint8))
    blotches = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=float)
    shade = (blotches / 255 - 0.5) * 26 + rng.normal(0.0, 3.0, size=(height, width))
    if style.grain == "planks":
        rows = np.arange(height)[:, None] / height
        phase = rng.uniform(0, 2 * np.pi)
        shade += 10 * np.sin(2 * np.pi * 5 * rows + phase) + 6 * np.sin(
            2 * np.pi * (np.arange(width)[None, :] / width * 1.5 + 9 * rows) + phase
        )
    return np.asarray(style.table, dtype=float) + shade[..., None]


def _camera(n_frames: int, margin: int, rng: np.random.Generator) -> np.ndarray:
    """Integer camera offsets ``(N, 2)`` (x, y): a clipped random walk within ``margin``."""
    steps = rng.normal(0.0, margin / 3, size=(n_frames, 2))
    return np.clip(np.round(np.cumsum(steps, axis=0)), -margin, margin).astype(int)


@dataclass(frozen=True)
class _Frame:
    rgb: np.ndarray
    mask: np.ndarray
    flow_x: np.ndarray
    flow_y: np.ndarray


class _Film:
    """Draws the frames of one video from its scene, table, camera path and lighting."""

    def __init__(self, spec: VideoSpec) -> None:
        width, height = spec.size
        geometry = np.random.default_rng(list(spec.draw))
        scene = build_scene(spec.class_name, spec.n_frames, spec.size, spec.style, geometry)
        self.margin = max(1, round(spec.style.shake * height))
        self.camera = _camera(spec.n_frames, self.margin, geometry)
        self.table = _table(
            (width + 2 * self.margin, height + 2 * self.margin), spec.style, geometry
        )
        if spec.backwards:
            scene, self.camera = play_backwards(scene), self.camera[::-1]
        self.scene, self.spec = scene, spec
        self.gain = _FLOW_GAIN * 256 / height
        self.light = np.asarray(spec.style.light)

    def frame(self, k: int) -> _Frame:
        """Frame ``k`` (0-based) of the video."""
        width, height = self.spec.size
        ox, oy = (int(v) for v in self.camera[k])
        top, left = self.margin + oy, self.margin + ox
        canvas = _Canvas(
            rgb=self.table[top : top + height, left : left + width].copy(),
            flow=np.zeros((2, height, width)),
            mask=np.zeros((height, width), dtype=bool),
            offset=(ox, oy),
        )
        for part in self.scene.parts:
            _draw_part(canvas, part, k)
        # Sensor noise is drawn per frame of the forward video: a backwards video holds the
        # very same RGB frames in reverse order.
        forward = self.spec.n_frames - 1 - k if self.spec.backwards else k
        noise = np.random.default_rng([*self.spec.draw, 2, forward])
        rgb = canvas.rgb * self.light + noise.normal(0.0, _NOISE, size=canvas.rgb.shape)
        flow = self._flow(canvas, noise)
        return _Frame(
            np.clip(np.round(rgb), 0, 255).astype(np.uint8),
            canvas.mask.astype(np.uint8) * 255,
            flow[0],
            flow[1],
        )

    def _flow(self, canvas: _Canvas, noise: np.random.Generator) -> np.ndarray:
        # Mild noise on still pixels: 127 or 129 on a quarter of them, 128 elsewhere.
        draws = noise.integers(0, 8, size=canvas.flow.shape, dtype=np.uint8)
        still = 128 + (draws == 7).astype(np.int16) - (draws == 0)
        moving = np.round(128 + self.gain * canvas.flow).clip(0, 255)
        flow = np.where(canvas.mask[None], moving, still)
        return flow.astype(np.uint8)


def render_video(spec: VideoSpec) -> int:
    """Write every file of one video; return its frame count."""
    film = _Film(spec)
    for folder in (spec.rgb_dir, spec.map_dir, spec.flow_x_dir, spec.flow_y_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for k in range(spec.n_frames):
        frame = film.frame(k)
        number = k + 1
        _save(frame.rgb, spec.rgb_dir / f"rgb{number:04d}.png")
        if not (number == 1 and spec.skip_first_map):
            _save(frame.mask, spec.map_dir / f"map{number:04d}.png")
        _save(frame.flow_x, spec.flow_x_dir / f"flow_x_{number:05d}.png")
        _save(frame.flow_y, spec.flow_y_dir / f"flow_y_{number:05d}.png")
    return spec.n_frames


def _save(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels).save(path, compress_level=_COMPRESS_LEVEL)
