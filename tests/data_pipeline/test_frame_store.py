"""The decoded-frame store: the clips of the PNG files, one build per node, bad stores rebuilt."""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from data_pipeline import (
    FLOW_STD,
    IMAGENET_STD,
    ClipDataset,
    DatasetError,
    FrameStore,
    FrameStoreError,
    FrameStoreWarning,
    PILFrameDecoder,
    dataset_fingerprint,
    default_scale_size,
    discover,
)
from tests.gtea_trees import make_tree

MODALITIES = ("rgb", "flow", "mmaps")
CROP = 16  # scale_size 18: frames of 40x30 are resized when stored


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """2 users x 3 classes, videos of 5, 9 and 14 random frames of 40x30 pixels (read-only)."""
    root = tmp_path_factory.mktemp("store-data")
    make_tree(root, users=("S1", "S2"), frames=(5, 9, 14), size=(40, 30))
    return discover(root)


def _open(index, cache: Path, crop_size: int = CROP, modalities=MODALITIES) -> FrameStore:
    scale = default_scale_size(crop_size)
    return FrameStore.open(index, cache, scale_size=scale, modalities=modalities, workers=2)


def _dataset(index, **kwargs) -> ClipDataset:
    options = {"frames": 4, "crop_size": CROP, "modalities": MODALITIES, "flow_stack": 3}
    options |= {"mmap_size": 4, "mmap_downsample": "grid", "mmap_target": "gray"}
    return ClipDataset(index.videos, index.classes, **(options | kwargs))


def _items(dataset: ClipDataset, epochs=(0, 1, 2)) -> list[dict[str, torch.Tensor]]:
    items = []
    for epoch in epochs:
        dataset.set_epoch(epoch)
        items += [dataset[i] for i in range(len(dataset))]
    return items


def _assert_same_items(first, second) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def _build_signature(cache: Path, kind: str = "rgb") -> tuple[int, int]:
    (data,) = cache.glob(f"*/{kind}.u8")
    return data.stat().st_ino, data.stat().st_mtime_ns


@pytest.mark.parametrize("crop_size", [CROP, 26], ids=["resized-when-stored", "stored-as-decoded"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_store_yields_exactly_the_clips_of_the_png_files(index, tmp_path, crop_size, train):
    store = _open(index, tmp_path, crop_size)
    options = {"train": train, "static": train, "crop_size": crop_size}
    options["flow_segments"] = 1 if train else 2
    png = _items(_dataset(index, **options))
    stored = _items(_dataset(index, decoder=store, **options))
    _assert_same_items(png, stored)


def _deferred_batches(index, store, train: bool) -> tuple[dict, dict, set[int]]:
    options = {"train": train, "static": train, "decoder": store}
    finished = default_collate(_items(_dataset(index, **options)))
    deferred_set = _dataset(index, deferred=True, **options)
    deferred = default_collate(_items(deferred_set))
    return deferred, finished, set(deferred["crop_side"].tolist())


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_deferred_batch_finishes_to_the_batch_of_finished_items(index, tmp_path, train):
    store = _open(index, tmp_path)
    deferred, expected, sides = _deferred_batches(index, store, train)
    assert deferred["rgb"].dtype == torch.uint8
    assert len(sides) >= (3 if train else 1)  # several crop scales in one batch
    finished = _dataset(index, train=train).finisher()(deferred)
    assert finished.keys() == expected.keys()
    for key in expected:
        assert torch.equal(finished[key], expected[key]), key


def test_float_finishing_as_on_cuda_stays_within_one_grey_level(index, tmp_path):
    deferred, expected, _ = _deferred_batches(index, _open(index, tmp_path), train=True)
    as_float = {k: v.float() if v.dtype == torch.uint8 else v for k, v in deferred.items()}
    finished = _dataset(index).finisher()(as_float)
    rgb_level, flow_level = 1 / 255 / min(IMAGENET_STD), 1 / 255 / FLOW_STD
    torch.testing.assert_close(finished["rgb"], expected["rgb"], atol=rgb_level + 1e-5, rtol=0)
    torch.testing.assert_close(finished["flow"], expected["flow"], atol=flow_level + 1e-5, rtol=0)


def test_second_open_reuses_the_store_and_adds_only_missing_kinds(index, tmp_path):
    _open(index, tmp_path, modalities=("rgb",))
    built = _build_signature(tmp_path)
    assert not list(tmp_path.glob("*/flow_x.u8"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _open(index, tmp_path, modalities=("rgb", "flow"))
    assert _build_signature(tmp_path) == built
    assert len(list(tmp_path.glob("*/flow_[xy].json"))) == 2


def test_concurrent_openers_build_once_and_share_it(index, tmp_path, monkeypatch):
    decoded, lock = [], threading.Lock()
    real_read = PILFrameDecoder.read

    def counting_read(self, paths, mode):
        with lock:
            decoded.append(paths[0])
        return real_read(self, paths, mode)

    monkeypatch.setattr(PILFrameDecoder, "read", counting_read)
    stores: list[FrameStore] = []
    threads = [
        threading.Thread(target=lambda: stores.append(_open(index, tmp_path, modalities=("rgb",))))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(stores) == 3
    assert sorted(decoded) == sorted(v.rgb[0] for v in index.videos)  # each video decoded once
    paths = [index.videos[3].rgb[k] for k in (0, 4)]
    assert all(torch.equal(s.read(paths, "RGB"), stores[0].read(paths, "RGB")) for s in stores)


def _flip_a_byte(data: Path, manifest: Path) -> None:
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def _truncate(data: Path, manifest: Path) -> None:
    data.write_bytes(data.read_bytes()[:100])


def _garble_manifest(data: Path, manifest: Path) -> None:
    manifest.write_text('{"format": 1, "videos": [')


def _other_dataset(data: Path, manifest: Path) -> None:
    manifest.write_text(manifest.read_text().replace('"fingerprint": "', '"fingerprint": "0'))


def _crashed_build(data: Path, manifest: Path) -> None:
    manifest.unlink()  # a build dies after the data, before its manifest
    data.with_suffix(".u8.partial").write_bytes(b"half a frame")


CORRUPTIONS = {
    "flipped-byte": (_flip_a_byte, "checksum"),
    "truncated": (_truncate, "bytes"),
    "garbled-manifest": (_garble_manifest, "unreadable manifest"),
    "other-dataset": (_other_dataset, "fingerprint"),
    "crashed-build": (_crashed_build, None),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_bad_store_is_detected_and_rebuilt(index, tmp_path, case):
    corrupt, reason = CORRUPTIONS[case]
    _open(index, tmp_path, modalities=("rgb",))
    (data,) = tmp_path.glob("*/rgb.u8")
    corrupt(data, data.with_suffix(".json"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = _open(index, tmp_path, modalities=("rgb",))
    messages = [str(w.message) for w in caught if issubclass(w.category, FrameStoreWarning)]
    if reason is None:
        assert messages == []  # an unfinished build counts as no store
    else:
        assert len(messages) == 1 and reason in messages[0] and "rebuilding" in messages[0]
    assert not list(tmp_path.glob("*/*.partial"))
    options = {"modalities": ("rgb",)}
    _assert_same_items(
        _items(_dataset(index, **options), (0,)),
        _items(_dataset(index, decoder=store, **options), (0,)),
    )


def test_failed_build_leaves_nothing_that_a_later_open_would_use(index, tmp_path, monkeypatch):
    real_read = PILFrameDecoder.read
    calls = []

    def failing_read(self, paths, mode):
        calls.append(paths)
        if len(calls) == 3:
            raise DatasetError(f"{paths[0]}: cannot decode image (simulated)")
        return real_read(self, paths, mode)

    monkeypatch.setattr(PILFrameDecoder, "read", failing_read)
    with pytest.raises(DatasetError, match="simulated"):
        _open(index, tmp_path, modalities=("rgb",))
    assert not list(tmp_path.glob("*/rgb.*"))
    monkeypatch.setattr(PILFrameDecoder, "read", real_read)
    _open(index, tmp_path, modalities=("rgb",))
    assert list(tmp_path.glob("*/rgb.json"))


def test_unusable_cache_folder_is_a_frame_store_error(index, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.raises(FrameStoreError, match=r"not-a-folder.*frame_store"):
        _open(index, blocker / "frames")


def test_dataset_refuses_a_store_of_another_scale(index, tmp_path):
    store = _open(index, tmp_path, crop_size=26, modalities=("rgb",))
    with pytest.raises(ValueError, match=r"decoder: .*scale_size 30"):
        _dataset(index, decoder=store, modalities=("rgb",))


def test_a_process_checks_a_store_once_while_its_files_stay_the_same(index, tmp_path, monkeypatch):
    """A reused trial worker opens its node's store again for every trial: the check reads the
    whole store, so it is done again only when a file changed since."""
    first = _open(index, tmp_path, modalities=("rgb",))
    checks = []
    monkeypatch.setattr(FrameStore, "_mapped", _counting(FrameStore._mapped, checks))
    assert _open(index, tmp_path, modalities=("rgb",)) is first
    assert checks == []
    data = first.directory / "rgb.u8"
    data.write_bytes(data.read_bytes())  # rewritten in place: another modification time
    again = _open(index, tmp_path, modalities=("rgb",))
    assert again is not first and len(checks) == 1


def _counting(method, calls: list):
    def counted(*args, **kwargs):
        calls.append(args)
        return method(*args, **kwargs)

    return classmethod(lambda cls, *args, **kwargs: counted(*args, **kwargs))


def test_a_frame_rewritten_at_its_old_size_rebuilds_the_store(index, tmp_path):
    """Another picture in a PNG of the same byte length (stored uncompressed): the store notices
    it by the file's new modification time and checksum, and serves the new pixels."""
    root = tmp_path / "data"
    shutil.copytree(index.root, root)
    frame = discover(root).videos[0].rgb[2]
    picture = Image.open(frame).convert("RGB")
    picture.save(frame, compress_level=0)
    copied = discover(root)
    before = _open(copied, tmp_path / "cache", modalities=("rgb",)).read([frame], "RGB")
    inverted = Image.fromarray(255 - np.asarray(picture))
    size = frame.stat().st_size
    inverted.save(frame, compress_level=0)
    assert frame.stat().st_size == size and dataset_fingerprint(discover(root)) == (
        dataset_fingerprint(copied)
    )
    with pytest.warns(FrameStoreWarning, match="changed since the store was built"):
        store = _open(discover(root), tmp_path / "cache", modalities=("rgb",))
    after = store.read([frame], "RGB")
    fresh = _open(discover(root), tmp_path / "fresh", modalities=("rgb",))
    assert torch.equal(after, fresh.read([frame], "RGB")) and not torch.equal(after, before)


def test_a_copied_dataset_updates_the_record_without_decoding_again(index, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(index.root, root, copy_function=shutil.copy)  # new modification times
    _open(discover(root), tmp_path / "cache", modalities=("rgb",))
    built = _build_signature(tmp_path / "cache")
    for path in root.rglob("*.png"):
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _open(discover(root), tmp_path / "cache", modalities=("rgb",))
    assert _build_signature(tmp_path / "cache") == built
