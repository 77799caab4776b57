import numpy as np
import pytest
import torch

from data_pipeline import (
    FLOW_MEAN,
    FLOW_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipDataset,
    ClipTransform,
    CropParams,
    discover,
    downsample_mmaps,
    normalize_flow,
    normalize_rgb,
)
from tests.gtea_trees import make_tree

# A 48x32 scene, black with a white 8x8 marker at rows 4..11, columns 6..13.
WIDTH, HEIGHT = 48, 32


def _marker() -> np.ndarray:
    image = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    image[4:12, 6:14] = 255
    return image


def _paint_marker(modality, k, rng):
    image = _marker()
    return np.stack([image] * 3, axis=-1) if modality == "rgb" else image


@pytest.fixture
def marker_videos(tmp_path):
    tree = make_tree(
        tmp_path,
        users=("S1",),
        classes=("take_jam",),
        frames=6,
        size=(WIDTH, HEIGHT),
        painter=_paint_marker,
    )
    index = discover(tree.root)
    return index.videos, index.classes


def _to_unit(rgb, flow):
    """Undo the normalisations: rgb channel 0 and flow back to [0, 1]."""
    red = rgb[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return red, flow * FLOW_STD + FLOW_MEAN


def test_crop_and_flip_stay_aligned_across_rgb_flow_and_mmaps(marker_videos):
    videos, classes = marker_videos
    dataset = ClipDataset(
        videos,
        classes,
        modalities=("rgb", "flow", "mmaps"),
        frames=3,
        crop_size=24,
        flow_stack=2,
        mmap_size=24,
        mmap_downsample="grid",
        mmap_target="gray",
    )
    flips, positions = set(), set()
    for epoch in range(12):
        dataset.set_epoch(epoch)
        item = dataset[0]
        red, flow = _to_unit(item["rgb"], item["flow"])
        flow_x, flow_y = flow[0::2], flow[1::2]
        torch.testing.assert_close(flow_y, red[:2], atol=1e-5, rtol=0)
        torch.testing.assert_close(item["mmaps"], red, atol=1e-5, rtol=0)
        flipped = bool((flow_x - (1 - flow_y)).abs().max() <= 1 / 255 + 1e-5)
        if not flipped:
            torch.testing.assert_close(flow_x, flow_y, atol=1e-5, rtol=0)
        flips.add(flipped)
        marker = np.argwhere(red[0].numpy() > 0.5)
        if len(marker):
            positions.add(tuple(marker.mean(axis=0).round()))
    assert flips == {True, False}
    assert len(positions) > 3  # the crops really differ between epochs


def test_flip_mirrors_the_marker_and_inverts_only_x_flow():
    image = torch.from_numpy(_marker()).view(1, 1, HEIGHT, WIDTH)
    transform = ClipTransform(train=True, crop_size=32, scale_size=32)
    params = CropParams(flip=True, scale=1.0, corner="tl")
    flipped = transform.apply(image, params)
    inverted = transform.apply(image, params, invert_on_flip=True)
    expected = torch.from_numpy(np.ascontiguousarray(_marker()[:, ::-1][:, :32])).view(1, 1, 32, 32)
    assert torch.equal(flipped, expected)
    assert torch.equal(inverted, 255 - expected)


@pytest.mark.parametrize(
    ("corner", "top", "left"),
    [("tl", 0, 0), ("tr", 0, 24), ("bl", 8, 0), ("br", 8, 24), ("c", 4, 12)],
)
def test_corner_crop_takes_the_named_square(corner, top, left):
    image = (
        torch.arange(HEIGHT * WIDTH, dtype=torch.int32).view(1, 1, HEIGHT, WIDTH).to(torch.uint8)
    )
    transform = ClipTransform(train=True, crop_size=24, scale_size=32)
    out = transform.apply(image, CropParams(flip=False, scale=0.75, corner=corner))
    assert torch.equal(out, image[..., top : top + 24, left : left + 24])


def test_evaluation_scales_the_smaller_edge_then_crops_the_centre():
    image = torch.from_numpy(_marker()).view(1, 1, HEIGHT, WIDTH)
    transform = ClipTransform(train=False, crop_size=16, scale_size=16)
    out = transform.apply(image, transform.draw(np.random.default_rng(0)))
    assert out.shape == (1, 1, 16, 16)
    half = torch.nn.functional.interpolate(
        image.float(), size=(16, 24), mode="bilinear", antialias=True
    )
    torch.testing.assert_close(out.float(), half[..., 4:20].round(), atol=1, rtol=0)


def test_default_scale_size_follows_the_crop_size():
    assert ClipTransform(train=True).scale_size == 256
    assert ClipTransform(train=True, crop_size=112).scale_size == 128


def test_point_sampling_reads_the_cell_centres():
    maps = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    maps[0, 0, 0:4, 4:8] = 255  # the top-right cell is white except its centre
    maps[0, 0, 2, 2], maps[0, 0, 2, 6], maps[0, 0, 6, 2], maps[0, 0, 6, 6] = 255, 0, 200, 100
    gray = downsample_mmaps(maps, 2, "point", "gray")
    torch.testing.assert_close(gray, torch.tensor([[[1.0, 0.0], [200 / 255, 100 / 255]]]))
    binary = downsample_mmaps(maps, 2, "point", "binary")
    assert torch.equal(binary, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))


def test_grid_technique_averages_each_cell():
    maps = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    maps[0, 0, 0:4, 0:4] = 255  # top-left cell: all
    maps[0, 0, 0:2, 4:8] = 255  # top-right cell: half
    maps[0, 0, 4, 0:4] = 255  # bottom-left cell: 7 of 16
    maps[0, 0, 5, 0:3] = 255
    maps[0, 0, 6, 6] = 255  # bottom-right cell: only its centre
    gray = downsample_mmaps(maps, 2, "grid", "gray")
    torch.testing.assert_close(gray, torch.tensor([[[1.0, 0.5], [7 / 16, 1 / 16]]]))
    binary = downsample_mmaps(maps, 2, "grid", "binary")
    assert torch.equal(binary, torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]))


def test_point_sampling_of_224_to_7_reads_pixels_16_plus_32k():
    maps = torch.zeros(1, 1, 224, 224, dtype=torch.uint8)
    maps[0, 0, 16, 48] = 255
    maps[0, 0, 208, 208] = 255
    target = downsample_mmaps(maps, 7, "point", "binary")
    assert target.sum() == 2
    assert target[0, 0, 1] == 1 and target[0, 6, 6] == 1


def test_grid_technique_handles_crops_that_are_not_multiples():
    target = downsample_mmaps(torch.full((3, 1, 50, 50), 255, dtype=torch.uint8), 7, "grid", "gray")
    assert target.shape == (3, 7, 7)
    assert torch.all(target == 1)


def test_normalisations_use_imagenet_statistics_and_the_flow_scalars():
    white = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    rgb = normalize_rgb(white)
    torch.testing.assert_close(
        rgb[0, :, 0, 0], (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    )
    flow = normalize_flow(torch.zeros(2, 2, dtype=torch.uint8))
    torch.testing.assert_close(flow, torch.full((2, 2), -0.449 / 0.226))


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.875, 0.75, 0.65625])
@pytest.mark.parametrize("corner", ["c", "tl", "tr", "bl", "br"])
def test_transform_computes_torchvision_flip_then_resized_crop(flip, scale, corner):
    """The cut-then-flip order and the direct resize give torchvision's pixels exactly."""
    from torchvision.transforms.v2 import functional as tvf

    from data_pipeline import corner_box

    rng = np.random.default_rng(7)
    frames = torch.from_numpy(rng.integers(0, 256, (3, 40, 72, 3), dtype=np.uint8))
    frames = frames.permute(0, 3, 1, 2)  # channels-last, as decoded
    transform = ClipTransform(train=True, crop_size=24, scale_size=36)
    params = CropParams(flip=flip, scale=scale, corner=corner)
    scaled = tvf.resize(frames.contiguous(), [36], antialias=True)
    if flip:
        scaled = 255 - tvf.horizontal_flip(scaled)
    top, left, side = corner_box(*scaled.shape[-2:], params)
    expected = tvf.resized_crop(scaled, top, left, side, side, [24, 24], antialias=True)
    assert torch.equal(transform.apply(frames, params, invert_on_flip=True), expected)
