import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data_pipeline import ClipDataset, FrameDecoder, PILFrameDecoder, discover
from tests.gtea_trees import make_tree


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """2 users x 3 classes, videos of 5, 9 and 14 frames of 40x30 pixels (read-only)."""
    root = tmp_path_factory.mktemp("clips")
    make_tree(root, users=("S1", "S2"), frames=(5, 9, 14), size=(40, 30))
    return discover(root)


def _dataset(index, **kwargs):
    options = {"frames": 4, "crop_size": 16, "modalities": ("rgb", "flow", "mmaps")} | kwargs
    return ClipDataset(index.videos, index.classes, **options)


def test_item_holds_every_requested_tensor_with_its_shape(index):
    item = _dataset(index, static=True, flow_stack=3, mmap_size=4)[1]
    assert set(item) == {"label", "index", "rgb", "flow", "mmaps", "static"}
    assert item["rgb"].shape == (4, 3, 16, 16)
    assert item["flow"].shape == (6, 16, 16)
    assert item["mmaps"].shape == (4, 4, 4)
    assert item["static"].shape == (4, 3, 16, 16)
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
    assert item["index"].item() == 1
    assert all(item[k].dtype == torch.float32 for k in ("rgb", "flow", "mmaps", "static"))


def test_labels_are_global_class_indices(index):
    dataset = _dataset(index, modalities=("rgb",))
    labels = [dataset[i]["label"].item() for i in range(len(dataset))]
    assert labels == [index.label(v) for v in index.videos]
    assert set(labels) == {0, 1, 2}


def test_rgb_clip_holds_the_sampled_frames(index):
    dataset = _dataset(index, modalities=("rgb",), train=False, crop_size=30, scale_size=30)
    video = index.videos[2]  # 14 frames: frames 1, 4, 7, 10
    decoded = PILFrameDecoder().read([video.rgb[k - 1] for k in (1, 4, 7, 10)], "RGB")
    expected = decoded[..., 5:35].float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(dataset[2]["rgb"] * std + mean, expected, atol=1e-5, rtol=0)


def test_static_clip_repeats_one_frame_of_the_transformed_clip(index):
    item = _dataset(index, modalities=("rgb",), static=True, frames=5)[2]
    static = item["static"]
    assert all(torch.equal(static[0], static[t]) for t in range(5))
    assert any(torch.equal(static[0], item["rgb"][t]) for t in range(5))


def test_evaluation_can_return_several_flow_segments(index):
    item = _dataset(index, modalities=("flow",), train=False, flow_segments=3)[1]
    assert item["flow"].shape == (3, 10, 16, 16)
    assert not torch.equal(item["flow"][0], item["flow"][2])


def test_mmap_targets_are_binary_or_gray(index):
    binary = _dataset(index, modalities=("mmaps",), mmap_downsample="grid")[0]["mmaps"]
    gray = _dataset(index, modalities=("mmaps",), mmap_downsample="grid", mmap_target="gray")[0][
        "mmaps"
    ]
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(binary, (gray >= 0.5).float())
    assert 0 < gray.min() < gray.max() < 1  # random 30 % maps average to gray cells


def test_same_seed_epoch_and_index_give_the_same_item_and_epochs_differ(index):
    dataset = _dataset(index, static=True)
    first = dataset[2]
    again = _dataset(index, static=True)[2]
    assert all(torch.equal(first[k], again[k]) for k in first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["rgb"], first["rgb"])
    dataset.set_epoch(0)
    assert torch.equal(dataset[2]["rgb"], first["rgb"])


def _batches(dataset, workers):
    loader = DataLoader(dataset, batch_size=2, num_workers=workers, shuffle=False)
    return list(loader)


def test_items_do_not_depend_on_the_number_of_workers(index):
    dataset = _dataset(index, static=True)
    dataset.set_epoch(3)
    torch.manual_seed(0)
    np.random.seed(0)
    single = _batches(dataset, 0)
    torch.manual_seed(1)
    np.random.seed(1)
    parallel = _batches(dataset, 2)
    assert len(single) == len(parallel) == 3
    for a, b in zip(single, parallel, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_rgb_and_flow_share_one_crop_in_a_two_stream_item(index):
    rgb_only = _dataset(index, modalities=("rgb",))[4]
    both = _dataset(index, modalities=("rgb", "flow", "mmaps"))[4]
    assert torch.equal(rgb_only["rgb"], both["rgb"])


class _CountingDecoder:
    def __init__(self):
        self.inner = PILFrameDecoder()
        self.files = 0

    def read(self, paths, mode):
        self.files += len(paths)
        return self.inner.read(paths, mode)


def test_any_frame_decoder_can_replace_the_default(index):
    decoder = _CountingDecoder()
    assert isinstance(decoder, FrameDecoder)
    dataset = _dataset(index, modalities=("rgb",), frames=7, decoder=decoder)
    dataset[0]  # 5 frames: linspace gives 1, 1, 2, 2, 3, 3, 4
    assert decoder.files == 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"modalities": ("depth",)}, "modalities"),
        ({"modalities": ()}, "modalities"),
        ({"frames": 0}, "frames"),
        ({"flow_segments": 2}, "flow_segments"),
        ({"mmap_downsample": "nearest"}, "mmap_downsample"),
        ({"mmap_target": "soft"}, "mmap_target"),
        ({"modalities": ("flow",), "static": True}, "static"),
        ({"crop_size": 32, "scale_size": 16}, "scale_size"),
    ],
)
def test_bad_options_name_the_field(index, kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        _dataset(index, **kwargs)


def test_mmaps_need_the_course_layout(tmp_path):
    make_tree(tmp_path, layout="original", users=("S1",), frames=5)
    original = discover(tmp_path)
    with pytest.raises(ValueError, match=r"^modalities"):
        ClipDataset(original.videos, original.classes, modalities=("mmaps",))
