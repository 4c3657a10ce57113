"""CelebA loader and example, on tiny folders written in the real CelebA file formats."""

import csv
import json
import logging
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from example_scripts import load_example
from pythae_avae.data import CELEBA_ATTRIBUTES, CELEBA_TASKS, TABLE2_TASKS, CelebA
from pythae_avae.data.celeba import find_celeba_folder, load_image, parse_attributes, parse_partition

N_IMAGES = 24
#: official partition of the tiny folder: 14 train, 4 valid, 6 test
PARTITION = [0] * 14 + [1] * 4 + [2] * 6
W, H, CROP = 178, 218, 140
CROP_BOX = (19, 39, 159, 179)  # (left, top, right, bottom) of the centre 140 x 140


def file_name(i: int) -> str:
    return f"{i + 1:06d}.jpg"


def attribute_value(i: int, j: int) -> int:
    """-1 / 1 label of attribute ``j`` for image ``i``: every third image is positive."""
    return 1 if (i + j) % 3 == 0 else -1


def draw_face(i: int) -> Image.Image:
    """178 x 218: a uniform colour inside the centre crop, blue outside it."""
    img = Image.new("RGB", (W, H), (0, 0, 255))
    inside = Image.new("RGB", (CROP, CROP), (255, 10 * (i % 20), 0))
    img.paste(inside, CROP_BOX[:2])
    return img


def write_celeba(root, kaggle: bool = False, n: int = N_IMAGES, shuffle_attr: bool = False):
    """Writes a CelebA folder under ``root`` in torchvision's (or Kaggle's) layout."""
    base = os.path.join(root, "celeba") if not kaggle else str(root)
    image_dir = os.path.join(base, "img_align_celeba")
    if kaggle:
        image_dir = os.path.join(image_dir, "img_align_celeba")
    os.makedirs(image_dir, exist_ok=True)
    for i in range(n):
        # quality 100 without chroma subsampling keeps the colours exact away from edges
        draw_face(i).save(os.path.join(image_dir, file_name(i)), quality=100, subsampling=0)
    order = list(range(n))
    if shuffle_attr:
        order = order[::-1]
    rows = [[file_name(i)] + [attribute_value(i, j) for j in range(40)] for i in order]
    if kaggle:
        with open(os.path.join(base, "list_attr_celeba.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_id", *CELEBA_ATTRIBUTES])
            writer.writerows(rows)
        with open(os.path.join(base, "list_eval_partition.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_id", "partition"])
            writer.writerows([file_name(i), PARTITION[i]] for i in range(n))
        return base
    with open(os.path.join(base, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{n}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n")
        for row in rows:  # the official file pads "-1" and " 1" to two characters
            f.write(row[0] + " " + " ".join(f"{v:2d}" for v in row[1:]) + "\n")
    with open(os.path.join(base, "list_eval_partition.txt"), "w") as f:
        f.writelines(f"{file_name(i)} {PARTITION[i]}\n" for i in range(n))
    return base


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_celeba(root)
    return str(root)


class Test_Tasks:
    def test_seventeen_distinct_attributes_including_the_papers_seven(self):
        assert len(CELEBA_TASKS) == 17 == len(set(CELEBA_TASKS))
        assert set(CELEBA_TASKS) <= set(CELEBA_ATTRIBUTES)
        assert set(TABLE2_TASKS) | {"Wearing_Hat"} <= set(CELEBA_TASKS)
        assert CELEBA_TASKS[:6] == TABLE2_TASKS

    def test_torchvision_indices(self):
        idx = {a: i for i, a in enumerate(CELEBA_ATTRIBUTES)}
        assert len(CELEBA_ATTRIBUTES) == 40
        assert [idx[t] for t in ("Bald", "Eyeglasses", "Mustache", "Smiling")] == [4, 15, 22, 31]
        assert [idx["Wearing_Lipstick"], idx["Wearing_Necklace"]] == [36, 37]


class Test_Parsing:
    def test_attribute_file(self, celeba_root):
        names, files, values = parse_attributes(os.path.join(celeba_root, "celeba", "list_attr_celeba.txt"))
        assert names == list(CELEBA_ATTRIBUTES)
        assert files == [file_name(i) for i in range(N_IMAGES)]
        expected = np.array([[attribute_value(i, j) for j in range(40)] for i in range(N_IMAGES)])
        np.testing.assert_array_equal(values, (expected + 1) // 2)
        assert values.dtype == np.int64 and set(np.unique(values)) == {0, 1}

    def test_malformed_attribute_file(self, tmp_path):
        path = tmp_path / "list_attr_celeba.txt"
        path.write_text("1\nA B\n000001.jpg 1 0\n")
        with pytest.raises(ValueError, match="-1 or 1"):
            parse_attributes(str(path))
        path.write_text("1\nA B\n000001.jpg 1\n")
        with pytest.raises(ValueError, match="expected 3"):
            parse_attributes(str(path))

    def test_an_image_listed_twice_is_refused(self, tmp_path):
        # labels and splits are joined by file name: one of the two lines would win, unsaid
        attr = tmp_path / "list_attr_celeba.txt"
        attr.write_text("2\nA B\n000001.jpg 1 -1\n000001.jpg -1 1\n")
        with pytest.raises(ValueError, match="000001.jpg is listed more than once"):
            parse_attributes(str(attr))
        part = tmp_path / "list_eval_partition.txt"
        part.write_text("000001.jpg 0\n000002.jpg 0\n000001.jpg 2\n")
        with pytest.raises(ValueError, match="000001.jpg is listed more than once"):
            parse_partition(str(part))

    @pytest.mark.parametrize("split,n,first", [("train", 14, 0), ("valid", 4, 14), ("test", 6, 18), ("all", 24, 0)])
    def test_splits(self, celeba_root, split, n, first):
        ds = CelebA(celeba_root, split)
        assert len(ds) == n
        assert ds.filenames == [file_name(i) for i in range(first, first + n)]

    def test_limit_and_bad_arguments(self, celeba_root):
        assert CelebA(celeba_root, "train", limit=5).filenames == [file_name(i) for i in range(5)]
        with pytest.raises(ValueError, match="split must be one of"):
            CelebA(celeba_root, "val")
        with pytest.raises(ValueError, match="tasks must be CelebA attributes"):
            CelebA(celeba_root, tasks=["Smiling", "Happy"])
        with pytest.raises(ValueError, match="limit must be"):
            CelebA(celeba_root, limit=0)
        for kwargs, message in ((dict(crop_size=0, image_size=0), "crop_size must be an int >= 1"),
                                (dict(crop_size=100.7), "crop_size must be an int >= 1"),
                                (dict(image_size=0), "image_size must be an int >= 1"),
                                (dict(num_threads=-1), "num_threads must be an int >= 1"),
                                (dict(preload="no"), "preload must be True or False"),
                                (dict(download="False"), "download must be True or False")):
            with pytest.raises(ValueError, match=message):
                CelebA(celeba_root, "test", **kwargs)

    def test_labels_are_joined_by_file_name(self, tmp_path):
        write_celeba(tmp_path, shuffle_attr=True)  # attribute rows in reverse order
        ds = CelebA(str(tmp_path), "test", tasks=["Bald", "Smiling"])
        j_bald, j_smile = CELEBA_ATTRIBUTES.index("Bald"), CELEBA_ATTRIBUTES.index("Smiling")
        labels = ds.labels()
        expected_bald = [(attribute_value(i, j_bald) + 1) // 2 for i in range(18, 24)]
        assert labels["Bald"].tolist() == expected_bald
        assert ds[0].labels.tolist() == [expected_bald[0], (attribute_value(18, j_smile) + 1) // 2]

    def test_kaggle_layout(self, tmp_path):
        write_celeba(tmp_path, kaggle=True)
        ds = CelebA(str(tmp_path), "valid", tasks=["Eyeglasses"])
        assert len(ds) == 4 and ds.image_dir.endswith(os.path.join("img_align_celeba", "img_align_celeba"))
        j = CELEBA_ATTRIBUTES.index("Eyeglasses")
        assert ds.labels()["Eyeglasses"].tolist() == [(attribute_value(i, j) + 1) // 2 for i in range(14, 18)]
        assert ds[0].data.shape == (3, 64, 64)


class Test_Images:
    def test_crop_is_the_centre_140_and_resize_is_bilinear(self, celeba_root):
        path = os.path.join(celeba_root, "celeba", "img_align_celeba", file_name(3))
        image = load_image(path)
        assert image.shape == (3, 64, 64) and image.dtype == np.uint8
        with Image.open(path) as img:
            reference = img.convert("RGB").crop(CROP_BOX).resize((64, 64), Image.Resampling.BILINEAR)
        np.testing.assert_array_equal(image, np.asarray(reference).transpose(2, 0, 1))
        # the crop holds only the inside colour: no blue border survives
        assert image[2].max() <= 8 and image[0].min() >= 245

    def test_item_shape_range_and_labels(self, celeba_root):
        ds = CelebA(celeba_root, "train", tasks=["Smiling", "Eyeglasses"])
        item = ds[4]
        assert item.data.shape == (3, 64, 64) and item.data.dtype == torch.float32
        assert 0.0 <= item.data.min() and item.data.max() <= 1.0
        assert item.labels.dtype == torch.int64 and item.labels.shape == (2,)
        batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
        assert batch["data"].shape == (5, 3, 64, 64) and batch["labels"].shape == (5, 2)

    def test_arrays_preload_and_disk_cache_agree(self, celeba_root, tmp_path):
        lazy = CelebA(celeba_root, "test")
        x, y = lazy.arrays(["Bald", "Smiling"])
        assert x.shape == (6, 3, 64, 64) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert set(y) == {"Bald", "Smiling"} and all(v.shape == (6,) for v in y.values())
        assert set(lazy.labels()) == set(CELEBA_TASKS)
        np.testing.assert_array_equal(x[2], lazy[2].data.numpy())
        preloaded = CelebA(celeba_root, "test", preload=True)
        np.testing.assert_array_equal(preloaded.arrays()[0], x)
        cached = CelebA(celeba_root, "test", cache_dir=str(tmp_path))
        assert len(list(tmp_path.glob("*.npy"))) == 1
        again = CelebA(celeba_root, "test", cache_dir=str(tmp_path))  # read back
        np.testing.assert_array_equal(cached.arrays()[0], x)
        np.testing.assert_array_equal(again[5].data.numpy(), x[5])
        later = CelebA(celeba_root, "test")  # decoded after construction, e.g. once every split is checked
        assert later.images is None and later.load() is later
        np.testing.assert_array_equal(later.arrays()[0], x)
        np.testing.assert_array_equal(CelebA(celeba_root, "test").load(str(tmp_path)).arrays()[0], x)
        assert len(list(tmp_path.glob("*.npy"))) == 1  # the cache made above, read back

    def test_positive_rates(self, celeba_root):
        rates = CelebA(celeba_root, "all").positive_rates(["Bald"])
        assert rates["Bald"] == pytest.approx(8 / 24)


class Test_Missing:
    def test_missing_folder_explains_what_to_download(self, tmp_path):
        with pytest.raises(FileNotFoundError) as err:
            CelebA(str(tmp_path / "nowhere"))
        message = str(err.value)
        for needed in ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt", "--download"):
            assert needed in message
        assert os.path.join(str(tmp_path / "nowhere"), "celeba", "img_align_celeba") in message

    def test_missing_images_or_partition(self, tmp_path):
        base = write_celeba(tmp_path, n=3)
        os.remove(os.path.join(base, "list_eval_partition.txt"))
        with pytest.raises(FileNotFoundError, match="list_eval_partition.txt"):
            CelebA(str(tmp_path))
        write_celeba(tmp_path, n=3)
        os.remove(os.path.join(base, "img_align_celeba", file_name(0)))
        with pytest.raises(FileNotFoundError, match="000001.jpg"):
            CelebA(str(tmp_path))

    def test_download_fetches_images_missing_beside_the_lists(self, tmp_path, monkeypatch):
        import pythae_avae.data.celeba as celeba_module

        base = write_celeba(tmp_path, n=N_IMAGES)
        shutil.rmtree(os.path.join(base, "img_align_celeba"))  # the zip not unpacked
        calls = []
        monkeypatch.setattr(celeba_module, "download_celeba",
                            lambda root: calls.append(root) or write_celeba(root))  # what torchvision would fetch
        assert len(CelebA(str(tmp_path), "test", download=True)) == 6 and calls == [str(tmp_path)]
        with pytest.raises(FileNotFoundError, match="000001.jpg"):  # no download asked: explained
            shutil.rmtree(os.path.join(base, "img_align_celeba"))
            CelebA(str(tmp_path))
        assert len(calls) == 1

    def test_a_broken_or_missing_image_inside_a_split_is_named(self, tmp_path):
        # only the split's first image is looked at before decoding: the others fail in the decode
        base = write_celeba(tmp_path, n=N_IMAGES)
        broken = os.path.join(base, "img_align_celeba", file_name(3))
        with open(broken, "rb") as f:
            head = f.read(600)
        with open(broken, "wb") as f:  # a half-extracted JPEG
            f.write(head)
        with pytest.raises(ValueError, match=f"{file_name(3)} is not a readable image .*extract img_align_celeba.zip"):
            CelebA(str(tmp_path), "train", preload=True)
        os.remove(broken)
        with pytest.raises(FileNotFoundError, match=f"CelebA image not found: .*{file_name(3)}"):
            CelebA(str(tmp_path), "train", preload=True)

    def test_images_of_another_size_than_the_aligned_set_are_warned_about(self, tmp_path):
        base = write_celeba(tmp_path, n=N_IMAGES)
        Image.new("RGB", (218, 218)).save(os.path.join(base, "img_align_celeba", file_name(0)))
        with pytest.warns(UserWarning, match="is 218x218, not the aligned CelebA's 178x218: its centre crop_size=140"):
            CelebA(str(tmp_path), "train")

    def test_root_may_be_the_celeba_folder_itself(self, celeba_root):
        folder = os.path.join(celeba_root, "celeba")
        assert find_celeba_folder(folder) == folder
        assert len(CelebA(folder, "valid")) == 4


# ---- examples/celeba.py end to end -------------------------------------------------------------
def load_celeba_example():
    return load_example("celeba")


def test_cache_of_another_folder_with_the_same_file_names_is_not_reused(tmp_path):
    cache = str(tmp_path / "cache")
    write_celeba(tmp_path / "a")
    write_celeba(tmp_path / "b")
    Image.new("RGB", (W, H), (0, 200, 0)).save(tmp_path / "b" / "celeba" / "img_align_celeba" / file_name(18))
    a, b = (CelebA(str(tmp_path / r), "test", cache_dir=cache) for r in ("a", "b"))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    np.testing.assert_array_equal(b.arrays()[0], CelebA(str(tmp_path / "b"), "test").arrays()[0])
    assert not np.array_equal(a.arrays()[0][0], b.arrays()[0][0])  # image 18 is the first test image


def test_fingerprint_names_the_split_files_and_labels(celeba_root, tmp_path):
    # what a resumed training run checks (the size alone let another split of that size through);
    # the tasks only choose the probes' labels: a rerun evaluating other tasks resumes
    test = CelebA(celeba_root, "test").fingerprint()
    assert test == CelebA(celeba_root, "test").fingerprint()
    assert test == CelebA(celeba_root, "test", tasks=["Smiling"]).fingerprint()
    assert test != CelebA(celeba_root, "valid").fingerprint()
    assert test != CelebA(celeba_root, "test", limit=3).fingerprint()
    shutil.copytree(celeba_root, tmp_path / "copy")  # the same files elsewhere: the same set
    assert CelebA(str(tmp_path / "copy"), "test").fingerprint() == test


def test_an_interrupted_cache_build_leaves_no_temporary_file(celeba_root, tmp_path, monkeypatch):
    def save_half_then_interrupt(file, array):
        with open(file, "wb") as f:
            f.write(b"\x93NUMPY half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", save_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        CelebA(celeba_root, "test", cache_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # a full split's cache is ~2 GB a try


def test_processes_building_one_cache_at_once_do_not_collide(celeba_root, tmp_path, monkeypatch):
    # both writers finish their temporary file before either renames it (torchrun ranks
    # sharing --cache-dir): with one temporary name the second rename finds nothing
    import threading
    from concurrent.futures import ThreadPoolExecutor

    both_saved, real_save = threading.Barrier(2, timeout=30), np.save

    def save_then_wait(*args, **kwargs):
        real_save(*args, **kwargs)
        both_saved.wait()

    monkeypatch.setattr(np, "save", save_then_wait)
    with ThreadPoolExecutor(2) as pool:
        builds = [pool.submit(CelebA, celeba_root, "test", cache_dir=str(tmp_path)) for _ in range(2)]
        datasets = [b.result() for b in builds]
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [p.name for p in tmp_path.glob("celeba_test_6_*.npy")]
    np.testing.assert_array_equal(datasets[0].arrays()[0], CelebA(celeba_root, "test").arrays()[0])


@pytest.fixture
def pythae_logs_at_info():
    """Pythae's loggers at the INFO it sets on import (an earlier command in this process may have
    quieted them), restored afterwards."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict) if name.startswith("pythae")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


def test_example_runs_end_to_end_on_a_tiny_folder(celeba_root, tmp_path, caplog, pythae_logs_at_info):
    example = load_celeba_example()
    out = tmp_path / "out"
    results = example.main([
        "--data-root", celeba_root, "--models", "VAE", "AVAE", "--iterations", "4",
        "--batch-size", "4", "--latent-dim", "8", "--tasks", "Smiling", "Eyeglasses",
        "--eval-n", "6", "--pgd-steps", "2", "--valid-n", "4", "--probe-n", "100",
        "--device", "cpu", "--output-dir", str(out), "--no-progress", "--lr", "1e-3",
    ])
    assert set(results) == {"VAE", "AVAE"}
    # without --verbose Pythae logs no INFO ("Checking train dataset...", per-epoch losses): warnings only
    assert not [r for r in caplog.records if r.name.startswith("pythae.") and r.levelno < logging.WARNING]
    written = {p.name for p in out.rglob("*") if p.is_file()}
    assert any(name.endswith(".md") for name in written) and any(name.endswith(".json") for name in written)
    # table.md shows the rows' percentages as they are, the majority rate in the same unit
    saved = json.loads((out / "results.json").read_text())
    table = (out / "table.md").read_text()
    for task in ("Smiling", "Eyeglasses"):
        line = next(l for l in table.splitlines() if l.startswith(f"| {task} |"))
        cells = [c.strip() for c in line.strip("|").split("|")][1:]
        y = saved["majority_rate"][task]
        assert 50.0 <= y <= 100.0 and cells[0] == f"{y:.1f}"
        expected = [f"{example.worst_case(saved['rows'][m])[(task, e)]['accuracy']:.1f}"
                    for m in ("VAE", "AVAE") for e in (0.0, 0.1)]
        assert cells[1:] == expected and all(0.0 <= float(c) <= 100.0 for c in cells)


def test_table2_cells_are_the_rows_percentages():
    example = load_celeba_example()
    rows = [dict(task="Bald", eps=0.0, attack="pgd", accuracy=75.0, balanced_accuracy=62.5)]
    table = example.format_table2({"VAE": rows}, ["Bald"], [0.0], "accuracy", {"Bald": 97.8})
    assert table.splitlines()[-1] == "| Bald | 97.8 | 75.0 |"
    assert example.format_table2({"VAE": rows}, ["Bald"], [0.0], "balanced_accuracy").splitlines()[-1] == "| Bald | 62.5 |"


@pytest.mark.parametrize("argv, message", [
    (["--train-limit", "0"], "--train-limit must be >= 1, got 0"),
    (["--pgd-restarts", "0"], "--pgd-restarts must be >= 1, got 0"),
    (["--valid-n", "-1"], "--valid-n must be >= 0 (0: no validation set), got -1"),
    # model settings: checked before any image is decoded
    (["--model-config", "rho=0.9"], "--model-config rho=...: rho is set by --rho"),  # was overwritten by --rho
    (["--model-config", "obs_var=0.3"], "--model-config obs_var=...: obs_var is set by --obs-var"),  # crashed
    (["--model-config", "rh0=0.9"], "--model-config: ['rh0'] are fields of none of the models ['VAE', 'AVAE']"),
    (["--models", "VAE", "SE", "--model-config", "se_steps=0"], "--rho, --obs-var or --model-config of SE:"),
    (["--rho", "1"], "--rho, --obs-var or --model-config of AVAE:"),
    (["--seed", "-1"], "argument --seed: must be an int >= 0, got '-1'"),
])
def test_bad_counts_and_model_settings_are_refused_when_parsing_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit):
        load_celeba_example().parse_args(argv)
    assert message in capsys.readouterr().err


def test_model_config_fields_reach_the_models_that_have_them():
    example = load_celeba_example()
    args = example.parse_args(["--models", "VAE", "SE", "AVAE", "--rho", "0.9", "--model-config", "se_steps=3"])
    assert {name: example.model_config(name, args) for name in args.models} == {
        "VAE": {"obs_var": 0.5}, "SE": {"obs_var": 0.5, "se_steps": 3}, "AVAE": {"obs_var": 0.5, "rho": 0.9}}


def test_a_task_with_one_class_among_the_probe_images_stops_before_training(celeba_root, tmp_path, capsys):
    # the probe could not be fitted: found after every model had trained
    with pytest.raises(SystemExit) as exit_info:
        load_celeba_example().main(["--data-root", celeba_root, "--tasks", "Smiling", "--probe-n", "1",
                                    "--iterations", "2", "--batch-size", "2", "--latent-dim", "4",  # bounded if it trains
                                    "--output-dir", str(tmp_path / "o"), "--no-progress"])
    assert exit_info.value.code == 2
    assert "the 1 training images the probes are fitted on (--probe-n, --train-limit) hold one class only of " \
           "['Smiling']" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_attacked_test_images_of_one_class_are_warned_about(celeba_root, capsys):
    example = load_celeba_example()
    example.load_data(example.parse_args(["--data-root", celeba_root, "--tasks", "Smiling", "Bald",
                                          "--eval-n", "1", "--no-progress"]))
    err = capsys.readouterr().err
    assert "the 1 attacked test images (--eval-n) are all" in err and "for Smiling: its balanced accuracy is" in err


def test_download_is_refused_under_torchrun(monkeypatch, capsys):
    example = load_celeba_example()
    assert example.parse_args(["--download"]).download
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        example.parse_args(["--download"])
    assert "--download under torchrun" in capsys.readouterr().err


def test_table2_takes_the_per_example_worst_case_where_several_attacks_ran():
    example = load_celeba_example()

    def row(attack, accuracy, task="Smiling"):
        return dict(task=task, eps=0.1, attack=attack, accuracy=accuracy)

    several = example.worst_case([row("pgd", 60.0), row("worst", 70.0), row("autoattack", 75.0)])
    assert several[("Smiling", 0.1)]["attack"] == "worst"  # not the lower row of another image set
    alone = example.worst_case([row("pgd", 80.0), row("autoattack", 75.0, "Bald"), row("pgd", 90.0, "Bald")])
    assert alone[("Smiling", 0.1)]["accuracy"] == 80.0 and alone[("Bald", 0.1)]["accuracy"] == 75.0


def test_example_explains_a_missing_folder(tmp_path, capsys):
    example = load_celeba_example()
    with pytest.raises(SystemExit) as exit_info:
        example.main(["--data-root", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "o")])
    assert exit_info.value.code != 0
    captured = capsys.readouterr()
    assert "list_attr_celeba" in captured.out + captured.err
    assert not (tmp_path / "o").exists()  # no empty output folder left behind


def test_example_explains_a_malformed_partition_file(tmp_path, capsys, monkeypatch):
    from pythae_avae.data import celeba

    decoded = []  # the training split takes minutes to decode: the lists are checked first
    real_load_images = celeba.load_images
    monkeypatch.setattr(celeba, "load_images", lambda paths, *a, **k: (decoded.append(len(paths)),
                                                                        real_load_images(paths, *a, **k))[1])
    base = write_celeba(tmp_path, n=4)
    with open(os.path.join(base, "list_eval_partition.txt"), "w") as f:  # training images only
        f.writelines(f"{file_name(i)} 0\n" for i in range(4))
    with pytest.raises(SystemExit) as exit_info:  # exit status 2 and the reason, not a traceback
        load_celeba_example().main(["--data-root", str(tmp_path), "--output-dir", str(tmp_path / "o")])
    assert exit_info.value.code == 2
    assert "list_eval_partition.txt lists no images of split 'valid'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert decoded == []


def test_evaluation_command_reads_celeba(celeba_root, tmp_path, capsys):
    from pythae_avae.evaluation.__main__ import main
    from pythae_avae.recipes import build_model

    build_model("VAE", "celeba-conv", 8, seed=0).save(str(tmp_path / "vae"))
    results = main([str(tmp_path / "vae"), "--names", "VAE", "--data", "celeba", "--data-root", celeba_root,
                    "--probe-n", "14", "--eval-n", "6", "--pgd-steps", "2", "--eps", "0", "0.1",
                    "--tasks", "Bald", "Smiling", "--device", "cpu", "--no-progress",
                    "--output-dir", str(tmp_path / "out")])
    table = results["VAE"]
    assert {(r["task"], r["eps"], r["n"]) for r in table} == {
        (t, e, 6) for t in ("Bald", "Smiling") for e in (0.0, 0.1)}
    assert "| model | Bald 0 | Bald 0.1 | Smiling 0 | Smiling 0.1 | majority Bald/Smiling |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "vae"), "--data", "celeba", "--data-root", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2 and "list_attr_celeba" in capsys.readouterr().err
