"""The two on-disk layouts of GTEA61 and how to tell them apart.

The course archive (``processed_frames2/``, ``flow_x_processed/``, ``flow_y_processed/``, PNG,
motion maps beside the RGB frames) is the one the report used; the original Ego-RNN release
(``frames/``, ``flow_x/``, ``flow_y/``, JPEG, no motion maps) is read too. Both put videos at
``<tree>/<user>/<class>/<instance>/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COURSE", "LAYOUTS", "ORIGINAL", "Layout", "detect_layout"]

_EXTENSIONS = r"(?:png|jpe?g)"


def _frame_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"{prefix}(\d+)\.{_EXTENSIONS}", re.IGNORECASE)


def _duplicate_pattern(prefix: str) -> re.Pattern[str]:
    # A frame name with something inserted before the extension: "rgb0001 (1).png".
    return re.compile(rf"{prefix}\d+.+\.{_EXTENSIONS}", re.IGNORECASE)


@dataclass(frozen=True)
class Modality:
    """Where one modality's frames of a video live and how they are named."""

    name: str
    """``rgb``, ``mmaps``, ``flow_x`` or ``flow_y``."""
    tree: str
    """Top folder of the modality inside the dataset folder."""
    subfolder: str | None
    """Folder inside ``<tree>/<user>/<class>/<instance>`` holding the frames, or None."""
    prefix: str
    """File-name prefix before the frame number."""

    @property
    def frame_pattern(self) -> re.Pattern[str]:
        return _frame_pattern(self.prefix)

    @property
    def duplicate_pattern(self) -> re.Pattern[str]:
        return _duplicate_pattern(self.prefix)

    def frame_dir(self, dataset_dir: Path, user: str, class_name: str, instance: str) -> Path:
        """Folder holding this modality's frames of one video."""
        folder = dataset_dir / self.tree / user / class_name / instance
        return folder / self.subfolder if self.subfolder else folder


@dataclass(frozen=True)
class Layout:
    """One of the GTEA61 layouts: its name and its modalities (RGB first)."""

    name: str
    """``course`` or ``original``."""
    modalities: tuple[Modality, ...]

    @property
    def trees(self) -> tuple[str, ...]:
        """Distinct top folders, RGB tree first."""
        return tuple(dict.fromkeys(m.tree for m in self.modalities))

    def modality(self, name: str) -> Modality | None:
        return next((m for m in self.modalities if m.name == name), None)

    def modalities_in(self, tree: str) -> tuple[Modality, ...]:
        return tuple(m for m in self.modalities if m.tree == tree)


COURSE = Layout(
    name="course",
    modalities=(
        Modality("rgb", "processed_frames2", "rgb", "rgb"),
        Modality("mmaps", "processed_frames2", "mmaps", "map"),
        Modality("flow_x", "flow_x_processed", None, "flow_x_"),
        Modality("flow_y", "flow_y_processed", None, "flow_y_"),
    ),
)
ORIGINAL = Layout(
    name="original",
    modalities=(
        Modality("rgb", "frames", None, "image_"),
        Modality("flow_x", "flow_x", None, "flow_x_"),
        Modality("flow_y", "flow_y", None, "flow_y_"),
    ),
)
LAYOUTS = (COURSE, ORIGINAL)


def detect_layout(root: Path) -> tuple[Layout, Path] | None:
    """Find the layout at ``root`` or ``root/GTEA61``; return it with the dataset folder.

    A folder belongs to a layout when any of the layout's top folders exists in it; the course
    layout wins when both are present.
    """
    for folder in (root, root / "GTEA61"):
        for layout in LAYOUTS:
            if any((folder / tree).is_dir() for tree in layout.trees):
                return layout, folder
    return None
