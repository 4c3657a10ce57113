"""CelebA (aligned and cropped faces) at 64 x 64, with the paper's 17 binary attribute tasks.

The files are read directly (no MD5 check, so partial or re-packed copies work and tests can
write tiny folders). ``download=True`` goes through ``torchvision.datasets.CelebA``.

**Layout** (torchvision's; ``root`` is ``--data-root``)::

    root/celeba/img_align_celeba/000001.jpg ... 202599.jpg   aligned 178 x 218 JPEGs
    root/celeba/list_attr_celeba.txt                          40 attributes, -1 / 1
    root/celeba/list_eval_partition.txt                       0 train, 1 valid, 2 test

Also accepted: the same files directly in ``root`` (no ``celeba/`` level), and Kaggle's
``jessicali9530/celeba-dataset`` layout (``list_attr_celeba.csv``, ``list_eval_partition.csv``
and a nested ``img_align_celeba/img_align_celeba/`` folder). torchvision's identity, bbox and
landmark files are not needed.

**Preprocessing** (spec §5.2; the paper's own is unknown): the aligned 178 x 218 (W x H) image
is centre-cropped to 140 x 140, i.e. columns 19..158 and rows 39..178, which keeps the face
and drops most background, then resized to 64 x 64 with PIL's bilinear filter (antialiased
when shrinking), scaled to [0, 1] float32. No flips or other augmentation. Images are held as
uint8 ``(3, 64, 64)`` in memory (``preload=True``, 2 GB for the full train split) or on disk
(``cache_dir``), and converted to float on access.

**Tasks**: see :data:`CELEBA_TASKS`. Labels are the file's -1 / 1 mapped to 0 / 1. Most tasks
are imbalanced (Bald is ~2 % positive), so report the majority-class rate and the balanced
accuracy next to the accuracy (spec §5.2).
"""

import contextlib
import csv
import hashlib
import os
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from pythae.data.datasets import DatasetOutput
from torch.utils.data import Dataset

from ..fingerprints import tensors_digest
from ..validation import check_bool, check_int

#: The 40 CelebA attributes, in the order of ``list_attr_celeba.txt`` (torchvision's indices).
CELEBA_ATTRIBUTES: Tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings",
    "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip

#: The six tasks of the paper's Table 2, in its row order.
TABLE2_TASKS: Tuple[str, ...] = (
    "Bald", "Mustache", "Wearing_Necklace", "Eyeglasses", "Smiling", "Wearing_Lipstick",
)  # fmt: skip

#: The 17 "neutral" tasks. The paper names seven (the Table 2 six plus Wearing_Hat, §4); its
#: full list (Table 3) was not available, so the other ten are our choice (spec §5.2): visually
#: concrete, objective attributes (hair colour, bangs, facial hair, open mouth, accessories).
#: Left out, as the paper says it left out sensitive or subjective ones: Attractive, Male,
#: Young, Pale_Skin, Chubby, Double_Chin, face/feature shapes (Oval_Face, Big_Nose, Big_Lips,
#: Pointy_Nose, Narrow_Eyes, ...), Heavy_Makeup, and image-quality Blurry.
CELEBA_TASKS: Tuple[str, ...] = TABLE2_TASKS + (
    "Wearing_Hat",
    # ours:
    "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Goatee", "Sideburns",
    "Mouth_Slightly_Open", "Wearing_Earrings", "Wearing_Necktie",
)  # fmt: skip

SPLITS = {"train": 0, "valid": 1, "test": 2, "all": None}
ALIGNED_SIZE = (178, 218)  # (W, H) of img_align_celeba
CROP_SIZE = 140
IMAGE_SIZE = 64

IMAGE_DIR = "img_align_celeba"
ATTR_FILES = ("list_attr_celeba.txt", "list_attr_celeba.csv")
PARTITION_FILES = ("list_eval_partition.txt", "list_eval_partition.csv")


# --------------------------------------------------------------------------- finding the files


def layout_help(root: str) -> str:
    """What to download and where to put it, for error messages and ``--help``."""
    return (
        f"Expected layout under the data root {root!r} (torchvision's):\n"
        f"  {os.path.join(root, 'celeba', IMAGE_DIR, '000001.jpg')} ... 202599.jpg"
        "   (aligned & cropped 178x218 JPEGs)\n"
        f"  {os.path.join(root, 'celeba', ATTR_FILES[0])}      (40 attributes, -1/1)\n"
        f"  {os.path.join(root, 'celeba', PARTITION_FILES[0])}   (0=train, 1=valid, 2=test)\n"
        "The same files directly in the data root, or Kaggle's layout (list_attr_celeba.csv, "
        "list_eval_partition.csv, img_align_celeba/img_align_celeba/), also work.\n"
        "How to get them:\n"
        "  * online: pass download=True (command line: --download); torchvision fetches them "
        "from Google Drive (needs the gdown package; Drive's daily quota often blocks it, "
        "then download by hand).\n"
        "  * by hand: from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive: "
        "'Img/img_align_celeba.zip', 'Anno/list_attr_celeba.txt', "
        "'Eval/list_eval_partition.txt') or Kaggle's 'jessicali9530/celeba-dataset'; unzip "
        f"img_align_celeba.zip inside {os.path.join(root, 'celeba')}."
    )


def _find_file(folder: str, names: Sequence[str]) -> Optional[str]:
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    return None


def find_celeba_folder(root: str) -> str:
    """The folder holding the CelebA files: ``root/celeba`` or ``root`` itself.

    Raises:
        FileNotFoundError: neither holds the attribute file, with download instructions.
    """
    root = os.path.expanduser(str(root))
    for folder in (os.path.join(root, "celeba"), root):
        if _find_file(folder, ATTR_FILES) is not None:
            return folder
    where = root if os.path.isdir(root) else f"{root} (the folder does not exist)"
    raise FileNotFoundError(f"CelebA not found: no {ATTR_FILES[0]} in {where}.\n" + layout_help(root))


def _image_dir(folder: str, root: str) -> str:
    image_dir = os.path.join(folder, IMAGE_DIR)
    nested = os.path.join(image_dir, IMAGE_DIR)  # Kaggle's zip unpacks one level deeper
    if os.path.isdir(nested):
        return nested
    if os.path.isdir(image_dir):
        return image_dir
    raise FileNotFoundError(f"CelebA images not found: no folder {image_dir}.\n" + layout_help(root))


# --------------------------------------------------------------------------- parsing


def _read_rows(path: str) -> Tuple[List[str], List[List[str]]]:
    """``(header names, rows)`` of the official whitespace format or Kaggle's CSV format."""
    with open(path, newline="") as f:
        if path.endswith(".csv"):
            rows = [row for row in csv.reader(f) if row]
            return rows[0][1:], rows[1:]  # header starts with "image_id"
        lines = [line.split() for line in f if line.strip()]
    return [], lines


def _first_repeat(names) -> str:
    seen = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    raise AssertionError("no name is repeated")


def parse_attributes(path: str) -> Tuple[List[str], List[str], np.ndarray]:
    """Reads ``list_attr_celeba.txt`` (or Kaggle's ``.csv``).

    The official format is: a line with the image count, a line with the 40 attribute names,
    then one line per image, ``000001.jpg  -1  1 ...``.

    Returns:
        ``(attribute names, file names, (N, 40) int64 labels in {0, 1})``; -1 becomes 0.

    Raises:
        ValueError: a malformed file (wrong number of fields, values other than -1 / 1, an
            image listed twice).
    """
    header, rows = _read_rows(path)
    if not path.endswith(".csv"):
        if len(rows) < 2 or len(rows[0]) != 1 or not rows[0][0].isdigit():
            raise ValueError(f"{path}: the first line must be the image count, got {rows[:1]}")
        declared, header, rows = int(rows[0][0]), rows[1], rows[2:]
        if declared != len(rows):
            warnings.warn(f"{path} declares {declared} images but lists {len(rows)}")
    width = len(header) + 1
    bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
    if bad is not None:
        raise ValueError(
            f"{path}: row {bad + 1} has {len(rows[bad])} fields, expected {width} "
            f"(a file name and {len(header)} attributes): {rows[bad][:3]}..."
        )
    names = [row[0] for row in rows]
    if len(set(names)) != len(names):  # images are joined to their labels by name: one of two would be dropped
        raise ValueError(f"{path}: {_first_repeat(names)} is listed more than once")
    values = np.array([row[1:] for row in rows], dtype=np.int64).reshape(len(rows), len(header))
    if not np.isin(values, (-1, 1)).all():
        raise ValueError(f"{path}: attribute values must be -1 or 1, found {np.unique(values)}")
    return list(header), names, (values + 1) // 2


def parse_partition(path: str) -> Dict[str, int]:
    """Reads ``list_eval_partition.txt`` (``000001.jpg 0`` lines) -> ``{file name: 0|1|2}``."""
    header, rows = _read_rows(path)
    try:
        partition = {row[0]: int(row[1]) for row in rows}
    except (IndexError, ValueError) as err:
        raise ValueError(f"{path}: lines must be '<file name> <0|1|2>'") from err
    if len(partition) != len(rows):  # the dict kept one of them: which split holds it would be a guess
        raise ValueError(f"{path}: {_first_repeat(row[0] for row in rows)} is listed more than once")
    if not set(partition.values()) <= {0, 1, 2}:
        raise ValueError(f"{path}: partitions must be 0, 1 or 2, found {sorted(set(partition.values()))}")
    return partition


# --------------------------------------------------------------------------- images


#: names load_image's preprocessing in the cache key: change it with the crop rule or filter
PREPROCESSING = "centre-crop, PIL bilinear resize, uint8"


def _unreadable(path: str, err: OSError) -> ValueError:
    return ValueError(f"{path} is not a readable image ({err}); extract img_align_celeba.zip again")


def load_image(path: str, crop_size: int = CROP_SIZE, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """One image, centre-cropped to ``crop_size`` and resized: ``(3, S, S)`` uint8.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is no readable image (a truncated or half-extracted JPEG), or the
            image is smaller than ``crop_size``.
    """
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")  # decodes the whole file: a truncated one fails here
    except FileNotFoundError as err:
        raise FileNotFoundError(f"CelebA image not found: {path}, listed in the partition file; "
                                "extract img_align_celeba.zip again") from err
    except OSError as err:  # PIL's UnidentifiedImageError and "image file is truncated"
        raise _unreadable(path, err) from err
    width, height = img.size
    if width < crop_size or height < crop_size:
        raise ValueError(f"{path} is {width}x{height}, smaller than crop_size={crop_size}")
    left, top = (width - crop_size) // 2, (height - crop_size) // 2
    img = img.crop((left, top, left + crop_size, top + crop_size))
    img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_images(
    paths: Sequence[str],
    crop_size: int = CROP_SIZE,
    image_size: int = IMAGE_SIZE,
    num_threads: Optional[int] = None,
    progress: bool = False,
) -> np.ndarray:
    """Many images as ``(N, 3, S, S)`` uint8, decoded in threads (PIL releases the GIL)."""
    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)
    threads = num_threads or min(8, os.cpu_count() or 1)

    def work(i):
        out[i] = load_image(paths[i], crop_size, image_size)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        jobs = pool.map(work, range(len(paths)))
        if progress:
            from tqdm.auto import tqdm

            jobs = tqdm(jobs, total=len(paths), desc="decoding CelebA", unit="img")
        for _ in jobs:
            pass
    return out


def download_celeba(root: str) -> None:
    """Downloads CelebA into ``root/celeba`` through torchvision (needs internet and gdown)."""
    from torchvision.datasets import CelebA as TorchvisionCelebA

    try:
        TorchvisionCelebA(str(root), split="all", target_type=[], download=True)
    except Exception as err:  # gdown missing, Drive quota, no network, ...
        raise FileNotFoundError(
            f"torchvision could not download CelebA into {root!r}: {type(err).__name__}: {err}\n"
            + layout_help(str(root))
        ) from err


# --------------------------------------------------------------------------- dataset


class CelebA(Dataset):
    """CelebA 64 x 64 as a Pythae-compatible dataset (items are ``DatasetOutput``).

    Args:
        root: the data root (holds ``celeba/``; see the module docstring for the layout).
        split: ``"train"``, ``"valid"``, ``"test"`` (official partition) or ``"all"``.
        tasks: attributes returned as ``labels`` and by :meth:`arrays` (default the 17 of
            :data:`CELEBA_TASKS`).
        limit: keep only the first ``limit`` images of the split (quick runs).
        download: download through torchvision first if the files are missing.
        preload: decode every image once at construction and keep them in memory (uint8).
        cache_dir: keep the decoded uint8 images in a ``.npy`` file here, read back (memory
            mapped) on the next run; implies decoding once.
        crop_size: side of the centre crop of the aligned image (140).
        image_size: side of the output image (64).
        num_threads: threads that decode JPEGs when preloading (default: up to 8).
        progress: show a progress bar while decoding.

    Each item is ``DatasetOutput(data=(3, 64, 64) float32 in [0, 1], labels=(len(tasks),)
    int64 in {0, 1})``. The attributes of all 40 are in :attr:`attributes`.

    Raises:
        FileNotFoundError: missing folder or files; the message says what to download and
            where to put it.
        ValueError: bad ``split``, ``tasks`` or ``limit``, or malformed files.
    """

    def __init__(
        self,
        root: str,
        split: str = "train",
        tasks: Sequence[str] = CELEBA_TASKS,
        limit: Optional[int] = None,
        download: bool = False,
        preload: bool = False,
        cache_dir: Optional[str] = None,
        crop_size: int = CROP_SIZE,
        image_size: int = IMAGE_SIZE,
        num_threads: Optional[int] = None,
        progress: bool = False,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if limit is not None:
            check_int(limit, "limit", why="images, or None for all")
        check_int(crop_size, "crop_size", why="pixels of the centre square")
        check_int(image_size, "image_size", why="pixels of the resized side")
        if num_threads is not None:
            check_int(num_threads, "num_threads", why="decoding threads, or None for the CPU count")
        check_bool(download, "download"), check_bool(preload, "preload"), check_bool(progress, "progress")
        if crop_size < image_size:
            raise ValueError(f"crop_size ({crop_size}) must be >= image_size ({image_size})")
        self.root, self.split = str(root), split
        self.crop_size, self.image_size = crop_size, image_size
        try:
            self._locate(limit)
        except FileNotFoundError:
            if not download:
                raise
            # whatever is missing (lists, images or both): torchvision fetches what it lacks
            download_celeba(self.root)
            self._locate(limit)
        self.tasks = self._check_tasks(tasks)
        self.images: Optional[np.ndarray] = None
        if preload or cache_dir is not None:
            self.load(cache_dir, num_threads, progress)

    def load(self, cache_dir: Optional[str] = None, num_threads: Optional[int] = None, progress: bool = False):
        """Decodes the split's images into memory (uint8; from or into ``cache_dir``'s ``.npy``
        when given): ``preload=True`` at construction, or later, e.g. once every split's lists
        have been checked (decoding the training split takes minutes). Returns ``self``."""
        if num_threads is not None:
            check_int(num_threads, "num_threads", why="decoding threads, or None for the CPU count")
        check_bool(progress, "progress")
        if cache_dir is not None:
            self.images = self._cached_images(cache_dir, num_threads, progress)
        else:
            self.images = load_images(self.paths(), self.crop_size, self.image_size, num_threads, progress)
        return self

    def _locate(self, limit: Optional[int]):
        self.folder = find_celeba_folder(self.root)
        self.image_dir = _image_dir(self.folder, self.root)
        self._load_labels(limit)

    def _load_labels(self, limit: Optional[int]):
        attr_path = _find_file(self.folder, ATTR_FILES)
        part_path = _find_file(self.folder, PARTITION_FILES)
        if part_path is None:
            raise FileNotFoundError(
                f"CelebA split file not found: no {PARTITION_FILES[0]} in {self.folder}.\n"
                + layout_help(self.root)
            )
        self.attribute_names, names, attributes = parse_attributes(attr_path)
        partition = parse_partition(part_path)
        wanted = SPLITS[self.split]
        # the partition file fixes the order; attributes are joined by file name
        files = [f for f, p in partition.items() if wanted is None or p == wanted][:limit]
        if not files:
            raise ValueError(f"{part_path} lists no images of split {self.split!r}")
        row_of = {name: i for i, name in enumerate(names)}
        missing = [f for f in files if f not in row_of]
        if missing:
            raise ValueError(f"{len(missing)} images of {part_path} are not in {attr_path}, e.g. {missing[0]}")
        self.filenames: List[str] = files
        self.attributes: np.ndarray = attributes[[row_of[f] for f in files]]
        first = os.path.join(self.image_dir, files[0])
        if not os.path.isfile(first):  # fail now rather than in the first batch
            raise FileNotFoundError(f"CelebA image not found: {first}.\n" + layout_help(self.root))
        self._warn_unless_aligned_size(first)

    def _warn_unless_aligned_size(self, path: str):
        """The crop is defined on the aligned 178 x 218 images: on a re-packed copy of another
        size the same centre square frames another part of the face (more background or less)."""
        try:
            with Image.open(path) as img:  # reads the header only
                size = img.size
        except OSError as err:
            raise _unreadable(path, err) from err
        if size != ALIGNED_SIZE:
            warnings.warn(f"{path} is {size[0]}x{size[1]}, not the aligned CelebA's "
                          f"{ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]}: its centre crop_size={self.crop_size} square "
                          "frames the face differently from the documented crop")

    def _check_tasks(self, tasks: Sequence[str]) -> Tuple[str, ...]:
        if isinstance(tasks, str):
            tasks = [tasks]
        unknown = [t for t in tasks if t not in self.attribute_names]
        if unknown or not tasks:
            raise ValueError(f"tasks must be CelebA attributes ({self.attribute_names}), got {unknown or tasks}")
        return tuple(tasks)

    def _cache_key(self) -> str:
        """What the cached images depend on: the image folder, the file list, the
        preprocessing, and the size and time stamp of three of the files (a cheap sign of
        files replaced in place; changing files otherwise unnoticed needs a new cache_dir)."""
        paths = self.paths()
        stats = [(os.path.getsize(p), os.stat(p).st_mtime_ns) for p in (paths[0], paths[len(paths) // 2], paths[-1])]
        text = "\n".join([os.path.realpath(self.image_dir), PREPROCESSING, repr(stats), *self.filenames])
        return hashlib.md5(text.encode()).hexdigest()[:10]

    def _cached_images(self, cache_dir: str, num_threads, progress) -> np.ndarray:
        name = f"celeba_{self.split}_{len(self)}_c{self.crop_size}_s{self.image_size}_{self._cache_key()}.npy"
        path = os.path.join(os.path.expanduser(cache_dir), name)
        if not os.path.isfile(path):
            images = load_images(self.paths(), self.crop_size, self.image_size, num_threads, progress)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # a temporary file of this process's own, then an atomic rename: processes
            # building the same cache at once (torchrun ranks) neither collide nor read half a file
            tmp = f"{path}.{os.getpid()}.{uuid.uuid4().hex}.tmp.npy"
            try:
                np.save(tmp, images)
                os.replace(tmp, path)
            except BaseException:  # an interrupted save must not leave gigabytes behind
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)
                raise
        images = np.load(path, mmap_mode="r")
        expected = (len(self), 3, self.image_size, self.image_size)
        if images.shape != expected or images.dtype != np.uint8:
            raise ValueError(f"cached images {path} hold {images.shape} {images.dtype}, expected {expected} uint8; "
                             "delete the file to rebuild it")
        return images

    def fingerprint(self) -> str:
        """A digest of the split's file names, their 40 attributes and the preprocessing (not the
        pixels: reading every image would take minutes; not ``tasks``, which training does not
        read), checked by a resumed training run."""
        text = "\n".join([PREPROCESSING, f"crop={self.crop_size}/size={self.image_size}", *self.filenames])
        return tensors_digest([("files", np.frombuffer(text.encode(), dtype=np.uint8).copy()),
                               ("attributes", self.attributes)])

    def paths(self) -> List[str]:
        """Full paths of this split's images, in dataset order."""
        return [os.path.join(self.image_dir, f) for f in self.filenames]

    def __len__(self) -> int:
        return len(self.filenames)

    def image_uint8(self, index: int) -> np.ndarray:
        """Image ``index`` as ``(3, S, S)`` uint8 (from the cache if there is one)."""
        if self.images is not None:
            return np.asarray(self.images[index])
        return load_image(os.path.join(self.image_dir, self.filenames[index]), self.crop_size, self.image_size)

    def __getitem__(self, index: int) -> DatasetOutput:
        image = torch.from_numpy(self.image_uint8(index).astype(np.float32) / 255.0)
        labels = torch.from_numpy(self.attributes[index, self.task_columns(self.tasks)])
        return DatasetOutput(data=image, labels=labels)

    def task_columns(self, tasks: Sequence[str]) -> List[int]:
        """Column indices of ``tasks`` in :attr:`attributes`."""
        return [self.attribute_names.index(t) for t in self._check_tasks(tasks)]

    def labels(self, tasks: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
        """``{task: (N,) int64 labels in {0, 1}}`` (default: this dataset's tasks)."""
        tasks = self.tasks if tasks is None else self._check_tasks(tasks)
        return {t: self.attributes[:, c].copy() for t, c in zip(tasks, self.task_columns(tasks))}

    def positive_rates(self, tasks: Optional[Sequence[str]] = None) -> Dict[str, float]:
        """Fraction of positive labels per task (class imbalance, spec §5.2)."""
        return {t: float(y.mean()) for t, y in self.labels(tasks).items()}

    def images_uint8(self, num_threads: Optional[int] = None, progress: bool = False) -> np.ndarray:
        """All images as ``(N, 3, S, S)`` uint8 (decoded now unless preloaded or cached)."""
        if self.images is not None:
            return np.asarray(self.images)
        return load_images(self.paths(), self.crop_size, self.image_size, num_threads, progress)

    def arrays(self, tasks: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """All images ``(N, 3, S, S)`` float32 in [0, 1] and ``{task: labels}``.

        Memory: 48 KB per image as float32; use ``limit`` or slice for large splits.
        """
        labels = self.labels(tasks)
        return self.images_uint8().astype(np.float32) / 255.0, labels
