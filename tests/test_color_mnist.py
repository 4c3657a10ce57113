import numpy as np
import pytest
import torch

from pythae_avae.data import ColorMNIST, RecolorCallback, color_masks, colorize, decode_color
from pythae_avae.data.color_mnist import load_mnist_digits

from mnist_files import write_mnist


@pytest.fixture(scope="module")
def test_set():
    return ColorMNIST("test")


class Test_Colors:
    def test_masks_are_the_seven_nonblack_rgb_corners(self):
        masks = color_masks()
        assert masks[0].tolist() == [0, 0, 0]
        assert {tuple(m) for m in masks[1:]} == {
            (r, g, b) for r in (0, 1) for g in (0, 1) for b in (0, 1)
        } - {(0, 0, 0)}
        assert masks[1].tolist() == [1, 0, 0]  # bit 0 = red
        assert masks[2].tolist() == [0, 1, 0]  # bit 1 = green
        assert masks[4].tolist() == [0, 0, 1]  # bit 2 = blue

    def test_colorize_rejects_bad_ids(self):
        with pytest.raises(ValueError, match="color ids"):
            colorize(np.ones((1, 28, 28)), np.array([0]))

    @pytest.mark.parametrize("gray,ids,match", [
        (np.full((2, 28, 28), 255, np.uint8), [1, 2], "gray must be"),  # 0..255 digits: 255 times too bright
        (np.full((2, 28, 28), 2.0), [1, 2], r"gray must hold pixels in \[0, 1\]"),
        (np.full((2, 28, 28), np.nan), [1, 2], r"gray must hold pixels in \[0, 1\]"),
        (np.ones((2, 3, 28, 28)), [1, 2], "gray must be"),
        (np.ones((2, 28, 28)), [3], "color_ids must be 2 integers"),  # one id painted every image
        (np.ones((2, 28, 28)), [1.0, 2.0], "color_ids must be 2 integers"),
    ])
    def test_colorize_names_bad_images_and_ids(self, gray, ids, match):
        with pytest.raises(ValueError, match=match):
            colorize(gray, np.array(ids))
        assert colorize(np.ones((2, 28, 28)), np.array([1, 4])).shape == (2, 3, 28, 28)


class Test_ColorMNIST:
    def test_shapes_range_and_labels(self, test_set):
        x, labels = test_set.arrays()
        assert x.shape == (1000, 3, 28, 28) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(labels) == {"digit", "color"}
        assert np.bincount(labels["digit"]).tolist() == [100] * 10
        assert labels["color"].min() >= 0 and labels["color"].max() <= 6

    def test_each_image_has_exactly_one_mask_and_labels_decode_back(self, test_set):
        x, labels = test_set.arrays()
        masks = color_masks()
        lit = (x.reshape(len(x), 3, -1).max(axis=2) > 0).astype(np.float32)
        matches = (lit[:, None, :] == masks[None, 1:, :]).all(axis=2)
        assert (matches.sum(axis=1) == 1).all()
        assert (decode_color(x) - 1 == labels["color"]).all()
        # the lit channels hold the grey digit itself
        gray = test_set.gray / 255.0
        for i in range(5):
            for c in range(3):
                expected = gray[i] * masks[labels["color"][i] + 1][c]
                np.testing.assert_allclose(x[i, c], expected, atol=1e-6)

    def test_evaluation_colours_identical_across_runs(self, test_set):
        again = ColorMNIST("test")
        x1, l1 = test_set.arrays()
        x2, l2 = again.arrays()
        assert np.array_equal(x1, x2) and np.array_equal(l1["color"], l2["color"])
        again.set_epoch(5)  # the test split never recolours
        assert np.array_equal(again.arrays()[1]["color"], l1["color"])

    def test_fingerprint_names_the_digits_not_the_epochs_colours(self):
        # what a resumed training run checks: recolouring must not change it, other digits must
        train = ColorMNIST("train", limit=200)
        first = train.fingerprint()
        train.set_epoch(7)
        assert train.fingerprint() == first == ColorMNIST("train", limit=200).fingerprint()
        others = [ColorMNIST("train", limit=199), ColorMNIST("train", limit=200, seed=1), ColorMNIST("test", limit=200)]
        assert len({first, *(o.fingerprint() for o in others)}) == 4

    def test_training_colours_redrawn_per_epoch_deterministically(self):
        a, b = ColorMNIST("train", limit=300), ColorMNIST("train", limit=300)
        c0 = a.color_ids.copy()
        a.set_epoch(1)
        b.set_epoch(1)
        assert not np.array_equal(c0, a.color_ids)
        assert np.array_equal(a.color_ids, b.color_ids)
        fixed = ColorMNIST("train", limit=300, recolor_each_epoch=False)
        fixed.set_epoch(3)
        assert np.array_equal(fixed.color_ids, c0)

    def test_recolor_callback_calls_set_epoch(self):
        ds = ColorMNIST("train", limit=50)
        before = ds.color_ids.copy()
        loader = torch.utils.data.DataLoader(ds, batch_size=10)
        RecolorCallback().on_epoch_begin(None, train_loader=loader, epoch=2)
        assert not np.array_equal(before, ds.color_ids)
        subset = torch.utils.data.Subset(ds, range(20))  # wrapped: its dataset is recoloured
        RecolorCallback().on_epoch_begin(None, train_loader=torch.utils.data.DataLoader(subset), epoch=5)
        epoch5 = ColorMNIST("train", limit=50)
        epoch5.set_epoch(5)
        assert np.array_equal(ds.color_ids, epoch5.color_ids)
        RecolorCallback().on_epoch_begin(None, train_loader=torch.utils.data.DataLoader(range(4)), epoch=1)

    def test_train_and_test_are_disjoint_real_digits(self):
        train, _ = load_mnist_digits("train")
        test, _ = load_mnist_digits("test")
        assert len(train) == 4000 and len(test) == 1000
        train_rows = {row.tobytes() for row in train}
        assert not any(row.tobytes() in train_rows for row in test)

    def test_items_are_pythae_dataset_outputs(self):
        item = ColorMNIST("train", limit=3)[1]
        assert item["data"].shape == (3, 28, 28) and item["data"].dtype == torch.float32
        assert 0 <= int(item["labels"]) <= 9 and 0 <= int(item["color"]) <= 6

    def test_batched_fetch_equals_item_by_item_and_is_what_loaders_use(self, monkeypatch):
        from pythae.data.datasets import collate_dataset_output
        from torch.utils.data import DataLoader

        data = ColorMNIST("train", limit=200)
        indices = [5, 0, 199, 42, 5]
        batched = collate_dataset_output(data.__getitems__(indices))
        single = collate_dataset_output([data[i] for i in indices])
        images, labels = data.arrays()  # colours the whole set at once: an independent path
        expected = {"data": torch.from_numpy(images[indices]), "labels": torch.tensor(data.digits[indices]),
                    "color": torch.tensor(labels["color"][indices])}
        for got in (batched, single):
            assert got.keys() == expected.keys()
            for key, value in expected.items():
                assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
        with pytest.raises(IndexError):
            data[200]
        calls = []
        monkeypatch.setattr(ColorMNIST, "__getitem__", lambda self, i: calls.append(i))
        batch = next(iter(DataLoader(data, batch_size=7, collate_fn=collate_dataset_output)))
        assert batch["data"].shape == (7, 3, 28, 28) and calls == []


class Test_Errors:
    def test_bad_split_and_source(self):
        with pytest.raises(ValueError, match="split"):
            ColorMNIST("validation")
        with pytest.raises(ValueError, match="source"):
            ColorMNIST("train", source="imagenet")

    def test_full_mnist_arguments_without_its_source_are_refused(self, tmp_path):
        # not ignored: forgetting source="torchvision" would train on the 4,000 embedded digits
        for kwargs in (dict(root=str(tmp_path)), dict(download=True)):
            with pytest.raises(ValueError, match="root and download are for source='torchvision'"):
                ColorMNIST("train", **kwargs)

    @pytest.mark.parametrize("kwargs, message", [
        (dict(seed=-1), "seed must be an int >= 0"),
        (dict(seed="3"), "seed must be an int >= 0"),
        (dict(seed=None), "seed must be an int >= 0"),
        (dict(recolor_each_epoch="False"), "recolor_each_epoch must be True or False"),
        (dict(source="torchvision", root="x", download="no"), "download must be True or False"),
    ])
    def test_bad_seed_and_flags_are_named(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            ColorMNIST("test", **kwargs)

    def test_missing_torchvision_mnist_explains_how_to_get_it(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="download=True"):
            ColorMNIST("train", source="torchvision", root=str(tmp_path))
        with pytest.raises(ValueError, match="root"):
            ColorMNIST("train", source="torchvision")

    def test_torchvision_source_reads_idx_files(self, tmp_path):
        written = write_mnist(tmp_path)  # 12 training and 6 test images
        ds = ColorMNIST("train", source="torchvision", root=str(tmp_path))
        x, labels = ds.arrays()
        assert x.shape == (12, 3, 28, 28)
        assert (decode_color(x) - 1 == labels["color"]).all()
        assert labels["digit"].tolist() == written["train"].tolist()
        assert len(ColorMNIST("test", source="torchvision", root=str(tmp_path))) == 6
