"""What a synthetic GTEA61 video shows: objects, hands, props, distractors and their motion.

A class ``verb_object[,prop...]`` becomes a scene on a user's table seen from the head: the
primary object (shape by family, colour by object: jars of jam, peanut butter, honey and
chocolate look alike, as do the red, yellow and white sauces), the props named after it (a cup,
bread, a spoon), one to three unrelated objects lying further out, and a hand whose arm enters
from the bottom edge. The verb sets what moves and how: a lid lifts off (open; close is open
played backwards), the object is lifted towards the camera (take; put lowers it onto a prop), it
tilts over a prop (pour), a spoon dips (scoop), circles (stir) or sweeps (spread), the object
bobs (shake) or flattens (fold). Users differ in table, lighting, skin, camera shake and tempo;
each video draws its own sizes, placement, colour shade, amplitudes and timing, so S2 is a new
user seen through a new camera, not a copy of the training users.

Everything is in scene pixels of a ``size`` frame (y down). A part's state per frame is
``(cx, cy, sx, sy, angle)``: centre, scale of its half sizes, rotation in radians. This module
draws no pixels (:mod:`data_pipeline._synth_render` does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from data_pipeline._classes import GTEA61_CLASSES, object_of, verb_of

__all__ = [
    "OBJECTS",
    "Look",
    "Part",
    "Scene",
    "UserStyle",
    "build_scene",
    "class_group",
    "play_backwards",
    "user_style",
]

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    """How an object is drawn: outline, body colour, surface pattern and its colour."""

    shape: str
    colour: Colour
    pattern: str = "plain"
    accent: Colour = (235, 228, 210)
    aspect: float = 0.8
    """Half width / half height."""
    height: float = 1.0
    """Height relative to a jar's."""


# Families share a shape; members differ in colour and label, some only slightly (real GTEA61
# confuses jam with ketchup and honey with mustard more than anything else).
OBJECTS: dict[str, Look] = {
    "jam": Look("jar", (148, 30, 50), "label", (232, 222, 196)),
    "peanut": Look("jar", (176, 122, 64), "label", (232, 222, 196)),
    "honey": Look("jar", (214, 150, 40), "plain"),
    "chocolate": Look("jar", (92, 56, 38), "label", (196, 48, 44)),
    "ketchup": Look("bottle", (196, 38, 32), "label", (246, 244, 236), 0.55, 1.15),
    "mustard": Look("bottle", (222, 186, 44), "label", (44, 96, 48), 0.55, 1.15),
    "mayonnaise": Look("bottle", (232, 224, 192), "label", (46, 76, 150), 0.55, 1.15),
    "water": Look("bottle", (128, 172, 214), "stripes", (220, 236, 246), 0.5, 1.25),
    "coffee": Look("can", (74, 48, 38), "label", (198, 158, 62), 0.7),
    "sugar": Look("box", (230, 228, 220), "label", (46, 84, 168), 0.75),
    "tea": Look("box", (66, 120, 74), "label", (228, 206, 120), 0.75),
    "bread": Look("loaf", (208, 168, 110), "crust", (150, 98, 52), 1.45, 0.75),
    "cheese": Look("wedge", (238, 198, 86), "dots", (214, 168, 60), 1.1, 0.8),
    "hotdog": Look("sausage", (176, 84, 58), "plain", (150, 64, 44), 1.9, 0.42),
    "cup": Look("cup", (232, 232, 232), "plain", (200, 200, 204), 0.8),
    "spoon": Look("spoon", (170, 170, 178), "plain", (140, 140, 150), 2.6, 0.32),
}
_LID = {"jar": 0.95, "bottle": 0.35, "can": 1.0, "box": 1.0}
_SKINS: tuple[Colour, ...] = ((224, 172, 140), (198, 140, 104), (150, 100, 72), (236, 192, 162))
_TABLES: tuple[Colour, ...] = ((146, 136, 120), (118, 122, 116), (160, 148, 134), (112, 104, 96))


@dataclass(frozen=True)
class UserStyle:
    """What stays the same across one user's videos."""

    table: Colour
    grain: str
    """``blotches`` (cloth) or ``planks`` (wood)."""
    light: tuple[float, float, float]
    """Per-channel gain of the whole image (the room's light)."""
    skin: Colour
    shake: float
    """Camera shake amplitude, in fractions of the frame height."""
    tempo: float
    """Fraction of the video the action takes."""


def user_style(seed: int, user_number: int) -> UserStyle:
    rng = np.random.default_rng([seed, user_number, 101])
    gain = rng.uniform(0.86, 1.12)
    cast = rng.uniform(-0.06, 0.06, size=3)
    return UserStyle(
        table=_TABLES[(user_number - 1) % len(_TABLES)],
        grain="planks" if user_number % 2 == 0 else "blotches",
        light=tuple(float(gain + c) for c in cast),  # type: ignore[arg-type]
        skin=_SKINS[(user_number - 1) % len(_SKINS)],
        shake=float(rng.uniform(0.008, 0.02)),
        tempo=float(rng.uniform(0.6, 0.8)),
    )


@dataclass(frozen=True)
class Part:
    """One drawn thing: its look, its half sizes in pixels and its state per frame."""

    look: Look
    half: tuple[float, float]
    states: np.ndarray
    """``(N + 1, 5)``: cx, cy, sx, sy, angle per frame, plus one frame past the end (its flow)."""
    moving: bool
    tint: float = 1.0
    """Brightness of this instance of the object."""
    anchor: tuple[float, float] | None = None
    """For an arm: the scene point (elbow, below the frame) the part stretches to."""


@dataclass(frozen=True)
class Scene:
    parts: tuple[Part, ...]
    """In drawing order: distractors, props, the object, what moves, the hand and arm."""


# ---------------------------------------------------------------------------------------------
# Motion. A track maps the action's progress p in [0, 1] (eased, per frame) to the mover's
# offset from its rest state: dx, dy (fractions of the frame height), scale factors, angle.

_Track = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _offsets(dx: object, dy: object, sx: object, sy: object, angle: object, n: int) -> np.ndarray:
    columns = [np.broadcast_to(np.asarray(v, dtype=float), (n,)) for v in (dx, dy, sx, sy, angle)]
    return np.stack(columns, axis=1)


def _lift_lid(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side, rise = rng.choice((-1.0, 1.0)), rng.uniform(0.12, 0.16)
    twist = np.sin(np.pi * np.clip(p * 3, 0, 1)) * 0.25  # unscrewing first, lifting after
    lift = np.clip(p * 1.5 - 0.3, 0, 1)
    return _offsets(
        side * 0.14 * lift, -rise * lift, 1, 1, side * (0.5 * lift + 0.1 * twist), len(p)
    )


def _lift(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = rng.choice((-1.0, 1.0))
    start, rise = rng.uniform(0.2, 0.28), rng.uniform(0.12, 0.18)
    grow = 1 + rng.uniform(0.25, 0.4) * p
    return _offsets(side * start * (1 - p), -rise * np.sin(0.5 * np.pi * p), grow, grow, 0, len(p))


def _tilt(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    move, hold = np.clip(p * 3, 0, 1), np.clip(np.minimum(p * 3 - 1, 3 - p * 3), 0, 1)
    angle = -rng.uniform(1.6, 2.0) * np.sin(0.5 * np.pi * hold)
    return _offsets(-0.16 * (1 - move), -0.1 * move, 1, 1, angle, len(p))


def _dip(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    depth = rng.uniform(0.12, 0.16)
    return _offsets(
        0.18 * np.cos(np.pi * p), depth * np.sin(np.pi * p), 1, 1, -0.5 - 0.4 * p, len(p)
    )


def _bob(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cycles, amplitude = rng.uniform(2.5, 3.5), rng.uniform(0.06, 0.09)
    return _offsets(0, amplitude * np.sin(2 * np.pi * cycles * p), 1, 1, 0, len(p))


def _circle(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    turns, radius = rng.uniform(1.5, 2.5), rng.uniform(0.06, 0.08)
    angle = 2 * np.pi * turns * p + rng.uniform(0, 2 * np.pi)
    return _offsets(radius * np.cos(angle), 0.5 * radius * np.sin(angle), 1, 1, -1.0, len(p))


def _sweep(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    strokes, reach = rng.uniform(2.0, 3.0), rng.uniform(0.12, 0.16)
    return _offsets(reach * np.sin(np.pi * strokes * p), 0.02 * p, 1, 1, -0.3, len(p))


def _flatten(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    squash = rng.uniform(0.45, 0.6)
    return _offsets(0, 0.05 * p, 1 + 0.15 * p, 1 - squash * p, 0.15 * p, len(p))


_TRACKS: dict[str, _Track] = {
    "open": _lift_lid,
    "take": _lift,
    "put": _lift,  # played backwards: lowered onto its prop
    "pour": _tilt,
    "scoop": _dip,
    "shake": _bob,
    "stir": _circle,
    "spread": _sweep,
    "fold": _flatten,
}
_UTENSIL_VERBS = ("scoop", "stir", "spread")


def _progress(n: int, style: UserStyle, rng: np.random.Generator) -> np.ndarray:
    """Eased action progress per frame: still, then the action, then still again.

    The action fills ``style.tempo`` of the video (give or take) and ends before the last fifth,
    which the report's frame sampling never reads.
    """
    length = float(np.clip(style.tempo + rng.uniform(-0.1, 0.1), 0.45, 0.85))
    start = rng.uniform(0.0, 0.85 - length)
    t = np.linspace(0.0, 1.0, n)
    p = np.clip((t - start) / length, 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * p)


# ---------------------------------------------------------------------------------------------
# Building a scene.

_DEFAULT_SLOTS = ((0.42, 0.16), (-0.44, 0.18), (0.5, -0.04))


@dataclass(frozen=True)
class _Verb:
    """Where things sit for one verb, in fractions of the frame height from the action's anchor."""

    mover: str
    """``object``, ``lid`` (of the object) or ``spoon``."""
    rest: tuple[float, float]
    """Rest position of the mover (for a lid: of the object it closes)."""
    object_at: tuple[float, float] = (0.0, 0.0)
    """Where the object stands when something else moves."""
    slots: tuple[tuple[float, float], ...] = _DEFAULT_SLOTS
    """Where the props of the class name stand, in order."""


_VERBS = {
    "open": _Verb("lid", (0.0, 0.0)),
    "take": _Verb("object", (0.0, 0.0)),
    "put": _Verb("object", (0.0, 0.0)),  # slot 0 follows the landing place
    "pour": _Verb("object", (0.12, -0.02), slots=((-0.3, 0.16), *_DEFAULT_SLOTS[1:])),
    "scoop": _Verb("spoon", (0.04, -0.12), object_at=(-0.02, 0.02)),
    "stir": _Verb("spoon", (0.0, -0.1), slots=((0.0, 0.08), *_DEFAULT_SLOTS[1:])),
    "spread": _Verb(
        "spoon", (0.08, 0.0), object_at=(-0.44, -0.02), slots=((0.08, 0.12), *_DEFAULT_SLOTS[1:])
    ),
    "shake": _Verb("object", (0.0, -0.14), slots=((0.0, 0.18), *_DEFAULT_SLOTS[1:])),
    "fold": _Verb("object", (0.0, 0.02)),
}


@dataclass(frozen=True)
class _Layout:
    n: int
    width: int
    height: int
    unit: float
    """Half height of a jar, in pixels."""
    anchor: tuple[float, float]
    """Where the action happens."""

    def at(self, offset: tuple[float, float]) -> tuple[float, float]:
        return (self.anchor[0] + offset[0] * self.height, self.anchor[1] + offset[1] * self.height)

    def still(self, point: tuple[float, float]) -> np.ndarray:
        row = np.array([point[0], point[1], 1.0, 1.0, 0.0])
        return np.repeat(row[None, :], self.n + 1, axis=0)

    def half(self, look: Look, scale: float = 1.0) -> tuple[float, float]:
        return (self.unit * scale * look.height * look.aspect, self.unit * scale * look.height)


def build_scene(
    class_name: str,
    n_frames: int,
    size: tuple[int, int],
    style: UserStyle,
    rng: np.random.Generator,
) -> Scene:
    """The parts of one video of ``class_name``, drawn from ``rng`` only, in a fixed order.

    ``close_X`` is built as ``open_X``; :func:`play_backwards` turns it into the close video.
    """
    verb = "open" if verb_of(class_name) == "close" else verb_of(class_name)
    names = tuple(object_of(class_name).split(","))
    width, height = size
    layout = _Layout(
        n_frames,
        width,
        height,
        unit=height * rng.uniform(0.26, 0.3),
        anchor=(width / 2 + height * rng.uniform(-0.04, 0.04), height * rng.uniform(0.47, 0.53)),
    )
    spec = _VERBS[verb]
    primary = OBJECTS[names[0]]
    props = [name for name in names[1:] if not (spec.mover == "spoon" and name == "spoon")]
    tint = float(rng.uniform(0.88, 1.12))
    offsets = _TRACKS[verb](_progress(n_frames, style, rng), rng)
    background = _distractors(names, layout, rng)
    body: list[Part] = []
    if spec.mover == "lid":
        obj = Part(primary, layout.half(primary), layout.still(layout.at(spec.rest)), False, tint)
        lid = Look("lid", _shade(primary.colour, 0.72), "plain", primary.accent, 1.0)
        lid_half = (obj.half[0] * _LID.get(primary.shape, 0.9), 0.22 * layout.unit)
        top = (obj.states[0, 0], obj.states[0, 1] - 0.92 * obj.half[1])
        body.append(obj)
        mover = _moving(lid, lid_half, top, offsets, height, tint)
    elif spec.mover == "spoon":
        if names[0] != "spoon":
            at = layout.still(layout.at(spec.object_at))
            body.append(Part(primary, layout.half(primary), at, False, tint))
        spoon = OBJECTS["spoon"]
        mover = _moving(spoon, layout.half(spoon), layout.at(spec.rest), offsets, height, tint)
    else:
        mover = _moving(primary, layout.half(primary), layout.at(spec.rest), offsets, height, tint)
        if verb == "put":  # lowered onto its prop: lifting played backwards
            mover = Part(mover.look, mover.half, _reverse(mover.states), True, tint)
    slots = list(spec.slots)
    if verb == "put":
        end = mover.states[-2]
        slots[0] = (
            (end[0] - layout.anchor[0]) / height,
            (end[1] - layout.anchor[1]) / height + 0.12,
        )
    static = _props(props, slots, layout, rng)
    holds_prop = verb in ("pour", "stir", "spread") and static
    held = static[0] if holds_prop else body[0] if body else mover
    side = -1.0 if rng.random() < 0.3 else 1.0  # some videos act with the left hand
    return Scene((*background, *static, *body, mover, *_hands(mover, held, style, layout, side)))


def _distractors(names: tuple[str, ...], layout: _Layout, rng: np.random.Generator) -> list[Part]:
    """Unrelated objects lying further out on the table."""
    others = [name for name in OBJECTS if name not in names and name != "spoon"]
    count = int(rng.integers(1, 4))
    sides = rng.permutation(np.array([-1.0, 1.0, -1.0, 1.0]))[:count]
    parts = []
    for k, side in enumerate(sides):
        look = OBJECTS[others[int(rng.integers(len(others)))]]
        x = layout.width / 2 + side * layout.height * rng.uniform(0.62, 0.8)
        y = layout.height * (rng.uniform(0.3, 0.65) + 0.08 * k)
        half = layout.half(look, rng.uniform(0.7, 0.9))
        parts.append(Part(look, half, layout.still((x, y)), False, float(rng.uniform(0.85, 1.1))))
    return parts


def _props(
    names: list[str],
    slots: list[tuple[float, float]],
    layout: _Layout,
    rng: np.random.Generator,
) -> list[Part]:
    """The other objects of the class name, where the action uses them."""
    parts = []
    for name, slot in zip(names, slots, strict=False):
        look = OBJECTS[name]
        scale = 1.25 if look.shape in ("loaf", "cup") else 1.0
        tint = float(rng.uniform(0.9, 1.1))
        parts.append(
            Part(look, layout.half(look, scale), layout.still(layout.at(slot)), False, tint)
        )
    return parts


def _hands(mover: Part, held: Part, style: UserStyle, layout: _Layout, side: float) -> list[Part]:
    """Two hands with their arms reaching in from below the sides of the frame: one moves the
    mover, the other holds ``held`` on the opposite side (the mover itself when the whole object
    moves) and sways a little, so both are in the motion maps, as real hands are."""
    actor = _grip(mover, side, layout)
    helper = _grip(held, -side, layout)
    if not held.moving:
        t = np.linspace(0.0, 1.0, len(helper))
        helper[:, 1] += 0.012 * layout.height * np.sin(2 * np.pi * 1.3 * t + side)
    parts = []
    for states, hand_side in ((helper, -side), (actor, side)):
        elbow = (layout.width / 2 + hand_side * 0.95 * layout.height, 1.05 * layout.height)
        arm = Look("arm", style.skin)
        parts.append(Part(arm, (0.2 * layout.unit, 0.0), states, True, 0.92, elbow))
        hand = Look("hand", style.skin)
        parts.append(Part(hand, (0.4 * layout.unit, 0.3 * layout.unit), states, True))
    return parts


def _grip(part: Part, side: float, layout: _Layout) -> np.ndarray:
    """States of a hand holding ``part`` at its ``side`` (-1 left, 1 right)."""
    half_w, half_h = part.half
    s = part.states
    grip_x = side * (half_w * s[:, 2] + 0.25 * layout.unit)
    grip_y = 0.3 * half_h * s[:, 3]
    cos, sin = np.cos(s[:, 4]), np.sin(s[:, 4])
    centre_x = s[:, 0] + cos * grip_x - sin * grip_y
    centre_y = s[:, 1] + sin * grip_x + cos * grip_y
    ones = np.ones_like(centre_x)
    return np.stack([centre_x, centre_y, ones, ones, s[:, 4]], axis=1)


def _moving(
    look: Look,
    half: tuple[float, float],
    rest: tuple[float, float],
    offsets: np.ndarray,
    height: int,
    tint: float,
) -> Part:
    states = np.empty((len(offsets), 5))
    states[:, 0] = rest[0] + offsets[:, 0] * height
    states[:, 1] = rest[1] + offsets[:, 1] * height
    states[:, 2:] = offsets[:, 2:]
    return Part(look, half, _extrapolate(states), True, tint)


def _extrapolate(states: np.ndarray) -> np.ndarray:
    """One more row continuing the last step, so the last frame has a flow too."""
    step = states[-1:] - states[-2:-1] if len(states) > 1 else np.zeros_like(states[-1:])
    return np.concatenate([states, states[-1:] + step])


def _reverse(states: np.ndarray) -> np.ndarray:
    """The frames of ``states`` (without its extra row) backwards, extended by one row."""
    return _extrapolate(states[-2::-1])


def _shade(colour: Colour, factor: float) -> Colour:
    red, green, blue = (min(255, round(c * factor)) for c in colour)
    return (red, green, blue)


def play_backwards(scene: Scene) -> Scene:
    """The scene in reverse frame order (close from open); every flow is recomputed forward."""
    return Scene(
        tuple(
            Part(p.look, p.half, _reverse(p.states), p.moving, p.tint, p.anchor)
            for p in scene.parts
        )
    )


def class_group(class_name: str) -> str:
    """``open_X`` for ``close_X``, whose videos are its twin's played backwards; else the name."""
    if verb_of(class_name) == "close":
        twin = f"open_{object_of(class_name)}"
        if twin in GTEA61_CLASSES:
            return twin
    return class_name
