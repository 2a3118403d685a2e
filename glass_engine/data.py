"""Dataset discovery, image and mask reading, and the geometry between an image and the network input.

Layouts that `discover` reads:

`mvtec`
    ROOT/CATEGORY/train/good/*, ROOT/CATEGORY/test/good/*, ROOT/CATEGORY/test/<type>/* and
    ROOT/CATEGORY/ground_truth/<type>/<stem>_mask.png (or <stem>.png). MVTec AD uses it, and so do MPDD, WFDD
    and VisA once converted to it. A CATEGORY folder itself may be given as ROOT. Foreground masks for local
    anomaly synthesis are looked up at ROOT/fg_mask/CATEGORY/<file name> (where the official GLASS code reads
    them) and at ROOT/CATEGORY/fg_mask/<stem>.png, for training images only.
`visa`
    VisA's original layout: ROOT/split_csv/1cls.csv with the columns object, split, label, image and mask.
    Paths in the CSV are relative to ROOT, label is `normal` or `anomaly`, and the category is the object
    name. VisA has no defect type names, so every anomalous image gets the type `anomaly`.
`folder`
    An operator's plain folders: ROOT/good (or ROOT/CATEGORY/good when a category is given) contains the
    good images and every other subfolder is one defect type used for testing. Masks are read from
    ROOT/masks/<type>/ or ROOT/<type>_masks/. Because training needs good images and testing needs some too,
    20% of the good images (at least one when there are two or more) are held out as test/good. They are
    picked by a permutation with the fixed seed `FOLDER_HOLDOUT_SEED` of the sorted file list, so every run
    holds out the same files, and the index's warnings say so.

A mask belongs to the image whose stem is the longest prefix of the mask's stem that is followed by nothing
or by one of `_ - .` or a space. So `000_mask.png`, `000.png` and `000-gt.png` all belong to `000.png`, and
`10_mask.png` belongs to `10.png`, not to `1.png`.

Files whose extension is not an image extension, empty files and files whose header cannot be read are
skipped, listed in `DatasetIndex.skipped` with the reason and logged. Discovery reads only the header, so a
file that is truncated further on fails when it is loaded, with a `DatasetError` naming it.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from glass_engine.config import RESIZE_POLICIES
from glass_engine.errors import ConfigError, DatasetError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
LAYOUTS = ("auto", "mvtec", "visa", "folder")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

FOLDER_HOLDOUT_FRACTION = 0.2
FOLDER_HOLDOUT_SEED = 0
VISA_SPLIT_CSV = Path("split_csv") / "1cls.csv"

# Folder names of the `folder` layout that are never defect types.
_FOLDER_RESERVED = {"good", "masks", "fg_mask"}
_MASK_SEPARATORS = "_-. "
_MAX_LOGGED_SKIPS = 20
_JPEG_EXTENSIONS = {".jpg", ".jpeg"}
_EXIF_ORIENTATION = 0x0112
_RESIZED_MASKS: set[Path] = set()
# Bit depths that cameras and converters use for integer images wider than 8 bits.
_BIT_DEPTHS = (8, 10, 12, 14, 16, 24, 32)


@dataclass
class Sample:
    path: Path
    split: str
    """`train` or `test`."""
    label: int
    """0 for a good image, 1 for a defective one."""
    defect_type: str
    """`good` or the defect type's folder name."""
    mask_path: Path | None
    fg_mask_path: Path | None = None
    """Foreground mask for local anomaly synthesis, training images only."""


@dataclass
class DatasetIndex:
    root: Path
    category: str
    layout: str
    train: list[Sample]
    test: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """Files left out, each with the reason."""
    warnings: list[str] = field(default_factory=list)

    @property
    def has_masks(self) -> bool:
        """Whether at least one defective test image has a ground-truth mask."""
        return any(sample.label == 1 and sample.mask_path is not None for sample in self.test)

    def counts(self) -> dict[str, Any]:
        """Count images per split, label and defect type, and the matched masks, for display."""
        defective = [sample for sample in self.test if sample.label == 1]
        return {
            "train": len(self.train),
            "train_good": sum(1 for sample in self.train if sample.label == 0),
            "test": len(self.test),
            "test_good": sum(1 for sample in self.test if sample.label == 0),
            "test_defective": len(defective),
            "masks": sum(1 for sample in defective if sample.mask_path is not None),
            "fg_masks": sum(1 for sample in self.train if sample.fg_mask_path is not None),
            "defect_types": dict(sorted(Counter(sample.defect_type for sample in defective).items())),
            "skipped": len(self.skipped),
        }


# --------------------------------------------------------------------------------------------------------
# Reading images and masks


def read_image(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 of shape (H, W, 3), upright according to its EXIF orientation.

    Grayscale and palette images are expanded to three channels. An alpha channel is dropped and the colour
    channels are kept unchanged, because compositing would alter partly transparent pixels and the opaque
    images that most cameras write do not need it. Integer images wider than 8 bits are scaled by their bit
    depth (see `_scale_to_uint8`). Pillow reads the file. OpenCV decodes 16-bit colour files, of which Pillow
    keeps only the high byte, and files that Pillow cannot open. Raises DatasetError naming the file when
    neither can decode it.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Image {path} not found. Check that the file exists and the dataset folder is complete.")

    try:
        with Image.open(path) as opened:
            if _is_wide_colour(opened):
                # Pillow keeps only the high byte of 16-bit colour, so OpenCV decodes these at full depth.
                wide = _decode_with_opencv(path)
                if wide is not None:
                    return _orient(_opencv_to_rgb(wide), opened.getexif().get(_EXIF_ORIENTATION, 1))
            return _pil_to_rgb(ImageOps.exif_transpose(opened))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        pil_error = exc

    array = _decode_with_opencv(path)
    if array is None:
        raise DatasetError(f"Cannot decode image {path}: {pil_error}. Replace the file or remove it from the dataset.")
    return _opencv_to_rgb(array)


def read_mask(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file as a bool array (H, W), True where any channel is above 0.

    JPEG masks use the threshold 127 instead of 0, because compression leaves small non-zero values around
    every edge. When `shape` (H, W) is given and differs, the mask is resized to it with nearest-neighbour
    interpolation, and a warning names the file the first time in this process.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Mask {path} not found. Check that the file exists or remove it from the dataset.")

    try:
        with Image.open(path) as opened:
            array = np.asarray(ImageOps.exif_transpose(opened))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        array = _decode_with_opencv(path)
        if array is None:
            raise DatasetError(f"Cannot decode mask {path}: {exc}. Replace the file or remove it.") from exc

    threshold = 127 if path.suffix.lower() in _JPEG_EXTENSIONS else 0
    mask = array > threshold
    if mask.ndim == 3:
        mask = mask[..., :3].any(axis=2)

    if shape is not None and mask.shape != tuple(shape):
        height, width = int(shape[0]), int(shape[1])
        # Training and evaluation read the same masks every epoch, so each file is reported once per process.
        level = logging.DEBUG if path in _RESIZED_MASKS else logging.WARNING
        _RESIZED_MASKS.add(path)
        logger.log(
            level,
            "Mask %s is %dx%d pixels but its image is %dx%d; resizing the mask (nearest neighbour).",
            path, mask.shape[1], mask.shape[0], width, height,
        )
        resized = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
        mask = resized > 0
    return np.ascontiguousarray(mask)


def _is_wide_colour(image: Image.Image) -> bool:
    """Return whether Pillow reads `image` as 8-bit colour from 16-bit samples (its raw mode contains `;16`)."""
    if image.mode not in ("RGB", "RGBA"):
        return False
    return any(";16" in str(tile.args) for tile in getattr(image, "tile", []) or [])


def _orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1 to 8) the way ImageOps.exif_transpose does."""
    transforms = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    transform = transforms.get(int(orientation))
    return np.ascontiguousarray(transform(rgb)) if transform else rgb


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = _scale_to_uint8(np.asarray(image))
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))

    # convert("RGB") drops the alpha of RGBA, LA and transparent palette images.
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _decode_with_opencv(path: Path) -> np.ndarray | None:
    # np.fromfile + imdecode, because cv2.imread cannot open non-ASCII paths on Windows.
    try:
        buffer = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    if buffer.size == 0:
        return None
    return cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)


def _opencv_to_rgb(array: np.ndarray) -> np.ndarray:
    array = _scale_to_uint8(array)
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[..., None], 3, axis=2))
    if array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if array.shape[2] == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def _scale_to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer or float pixel data to uint8.

    Unsigned integers are divided by the full range of their bit depth, guessed as the smallest of
    8, 10, 12, 14, 16, 24 or 32 bits that can store the maximum value: full-range 16-bit data is divided by 257
    and 12-bit camera data by 4095/255. A fixed scale per bit depth keeps the brightness of images from one
    camera comparable, which per-image min-max scaling would not. Floats in [0, 1] are multiplied by 255,
    and other floats and signed data are min-max scaled.
    """
    if array.dtype == np.uint8:
        return array

    values = array.astype(np.float64)
    low, high = float(values.min()), float(values.max())

    if np.issubdtype(array.dtype, np.integer) and low >= 0:
        # NOTE: the bit depth is guessed per image, so a dark 12-bit image whose maximum stays below 1024
        # is scaled as 10-bit and looks 4 times brighter than its neighbours.
        bits = next((depth for depth in _BIT_DEPTHS if high < 2**depth), 64)
        scaled = values * (255.0 / (2**bits - 1))
    elif np.issubdtype(array.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _header_problem(path: Path) -> str | None:
    """Return why `path` cannot be used as an image, or None when its header reads."""
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image file (extension {path.suffix or 'none'})"
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read file: {exc.strerror}"
    if size == 0:
        return "empty file (0 bytes)"

    try:
        with Image.open(path):
            return None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        pil_error = exc
    if _decode_with_opencv(path) is not None:
        return None
    return f"cannot decode image ({pil_error})"


# --------------------------------------------------------------------------------------------------------
# Discovery


class _Collector:
    """Lists image files of folders and records skipped files and warnings for one discovery."""

    def __init__(self) -> None:
        self.skipped: list[tuple[Path, str]] = []
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        logger.warning(message)
        self.warnings.append(message)

    def skip(self, path: Path, reason: str) -> None:
        self.skipped.append((path, reason))
        if len(self.skipped) <= _MAX_LOGGED_SKIPS:
            logger.warning("Skipping %s: %s", path, reason)
        elif len(self.skipped) == _MAX_LOGGED_SKIPS + 1:
            logger.warning("More files skipped; DatasetIndex.skipped lists them all.")

    def check(self, path: Path) -> bool:
        """Return whether `path` is a usable image, recording it as skipped when it is not."""
        problem = _header_problem(path)
        if problem is not None:
            self.skip(path, problem)
            return False
        return True

    def images(self, folder: Path) -> list[Path]:
        """Return the usable image files directly inside `folder`, sorted by name."""
        if not folder.is_dir():
            return []
        return [path for path in _files(folder) if self.check(path)]


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file())


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def _image_stems(folder: Path) -> dict[str, Path]:
    """Map the stem of every file with an image extension in `folder`, usable or not, to its path."""
    if not folder.is_dir():
        return {}
    return {path.stem: path for path in _files(folder) if path.suffix.lower() in IMAGE_EXTENSIONS}


def _owner_stem(mask_stem: str, image_stems: dict[str, Path] | set[str]) -> str | None:
    """Return the longest image stem that `mask_stem` starts with, followed by nothing or a separator."""
    if mask_stem in image_stems:
        return mask_stem
    for end in range(len(mask_stem) - 1, 0, -1):
        if mask_stem[end] in _MASK_SEPARATORS and mask_stem[:end] in image_stems:
            return mask_stem[:end]
    return None


def _mask_rank(mask: Path, image_stem: str) -> int:
    # With several candidates, prefer the MVTec name, then the bare stem, then any other suffix.
    if mask.stem == f"{image_stem}_mask":
        return 0
    if mask.stem == image_stem:
        return 1
    return 2


def _match_masks(
    images: list[Path], image_folder: Path, mask_folder: Path, defect_type: str, collector: _Collector
) -> dict[Path, Path]:
    """Pair each image with its mask file in `mask_folder`.

    Raises DatasetError for a mask whose image does not exist. A mask whose image was skipped as unusable
    is dropped quietly, because the image is already reported.
    """
    if not mask_folder.is_dir():
        if images:
            collector.warn(
                f"No masks for defect type `{defect_type}`: folder {mask_folder} not found. "
                f"Its {len(images)} images count for image scores only."
            )
        return {}

    all_stems = _image_stems(image_folder)
    usable = {path.stem: path for path in images}
    chosen: dict[str, Path] = {}
    for mask in collector.images(mask_folder):
        stem = _owner_stem(mask.stem, all_stems)
        if stem is None:
            raise DatasetError(
                f"Mask {mask} has no image: no file in {image_folder} has the stem "
                f"{mask.stem!r} or a prefix of it. Add the image or remove the mask."
            )
        if stem not in usable:
            continue
        if stem in chosen:
            kept, other = sorted((chosen[stem], mask), key=lambda path: (_mask_rank(path, stem), path.name))
            collector.warn(f"Image {usable[stem]} has two masks; using {kept.name} and ignoring {other.name}.")
            chosen[stem] = kept
        else:
            chosen[stem] = mask

    missing = len(images) - len(chosen)
    if missing:
        collector.warn(
            f"{missing} of {len(images)} images of defect type `{defect_type}` have no mask in {mask_folder}; "
            "they count for image scores only."
        )
    return {usable[stem]: mask for stem, mask in chosen.items()}


def _is_mvtec_category(folder: Path) -> bool:
    return (folder / "train" / "good").is_dir()


def detect_layout(root: Path) -> str:
    """Return `mvtec`, `visa` or `folder` for the dataset folder `root`, or raise DatasetError."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} not found. Choose an existing folder.")
    if (root / VISA_SPLIT_CSV).is_file():
        return "visa"

    subfolders = _subfolders(root)
    if _is_mvtec_category(root) or any(_is_mvtec_category(folder) for folder in subfolders):
        return "mvtec"
    if (root / "good").is_dir() or any((folder / "good").is_dir() for folder in subfolders):
        return "folder"
    raise DatasetError(
        f"{root} matches no known dataset layout. Expected ROOT/CATEGORY/train/good (MVTec AD), "
        f"ROOT/{VISA_SPLIT_CSV.as_posix()} (VisA) or ROOT/good beside one folder per defect type."
    )


def list_categories(root: Path, layout: str = "auto") -> list[str]:
    """Return the category names found in `root` for `layout`, sorted."""
    root = Path(root)
    layout = _resolve_layout(root, layout)

    if layout == "visa":
        return sorted({row["object"] for row in _read_visa_rows(root)})
    if layout == "mvtec":
        if _is_mvtec_category(root):
            return [root.name]
        return [folder.name for folder in _subfolders(root) if _is_mvtec_category(folder)]
    if (root / "good").is_dir():
        return [root.name]
    return [folder.name for folder in _subfolders(root) if (folder / "good").is_dir()]


def _resolve_layout(root: Path, layout: str) -> str:
    if layout not in LAYOUTS:
        raise ConfigError(f"Unknown dataset layout {layout!r}; choose one of: {', '.join(LAYOUTS)}.")
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} not found. Choose an existing folder.")
    return detect_layout(root) if layout == "auto" else layout


def discover(root: Path, category: str | None, layout: str = "auto") -> DatasetIndex:
    """Index the train and test images of one category.

    `category` may be None when the folder contains exactly one. Raises DatasetError for a missing folder or
    category (listing the categories found), for a mask without its image and when no training image is
    usable.
    """
    root = Path(root)
    layout = _resolve_layout(root, layout)
    categories = list_categories(root, layout)
    category = _choose_category(root, category, categories)

    collector = _Collector()
    if layout == "mvtec":
        data_root = root.parent if _is_mvtec_category(root) and root.name == category else root
        train, test = _discover_mvtec(data_root, category, collector)
        _attach_fg_masks(data_root, category, train, collector)
    elif layout == "visa":
        data_root = root
        train, test = _discover_visa(root, category, collector)
    else:
        data_root = root
        base = root if (root / "good").is_dir() and root.name == category else root / category
        train, test = _discover_folder(base, collector)

    if not train:
        raise DatasetError(
            f"No usable training image found for category {category!r} in {root}. "
            "Add good images, or check the skipped files listed in the log."
        )
    if not test:
        collector.warn(f"Category {category!r} has no test images; evaluation is not possible.")

    index = DatasetIndex(data_root, category, layout, train, test, collector.skipped, collector.warnings)
    logger.info("Dataset %s / %s (%s layout): %s", data_root, category, layout, index.counts())
    return index


def _choose_category(root: Path, category: str | None, categories: list[str]) -> str:
    found = ", ".join(categories) if categories else "none"
    if category is None:
        if len(categories) == 1:
            return categories[0]
        if not categories:
            raise DatasetError(f"No category found in {root}. Check the folder and its layout.")
        raise DatasetError(f"{root} contains several categories ({found}). Choose one of them.")
    if category not in categories:
        raise DatasetError(f"Category {category!r} not found in {root}. Categories found: {found}.")
    return category


def _discover_mvtec(root: Path, category: str, collector: _Collector) -> tuple[list[Sample], list[Sample]]:
    category_dir = root / category
    train = [Sample(path, "train", 0, "good", None) for path in collector.images(category_dir / "train" / "good")]
    for folder in _subfolders(category_dir / "train"):
        if folder.name != "good":
            collector.warn(f"Ignoring {folder}: training uses train/good only.")

    test_dir = category_dir / "test"
    ground_truth = category_dir / "ground_truth"
    if not test_dir.is_dir():
        collector.warn(f"Folder {test_dir} not found; the category has no test images.")
    elif not ground_truth.is_dir():
        collector.warn(f"Folder {ground_truth} not found; defective images have no masks and pixel scores are skipped.")

    test: list[Sample] = []
    defect_types = [folder.name for folder in _subfolders(test_dir)]
    for defect_type in defect_types:
        images = collector.images(test_dir / defect_type)
        if defect_type == "good":
            test.extend(Sample(path, "test", 0, "good", None) for path in images)
            continue
        masks = {}
        if ground_truth.is_dir():
            masks = _match_masks(images, test_dir / defect_type, ground_truth / defect_type, defect_type, collector)
        test.extend(Sample(path, "test", 1, defect_type, masks.get(path)) for path in images)

    _reject_orphan_mask_folders(
        [folder for folder in _subfolders(ground_truth) if folder.name not in defect_types],
        test_dir,
        collector,
    )
    return train, test


def _reject_orphan_mask_folders(folders: list[Path], test_dir: Path, collector: _Collector) -> None:
    """Raise DatasetError when a mask folder without a matching image folder contains masks."""
    for folder in folders:
        masks = collector.images(folder)
        if masks:
            raise DatasetError(
                f"Mask {masks[0]} has no image: folder {folder} has no matching image folder in {test_dir}. "
                "Add the defect images or remove the masks."
            )


def _attach_fg_masks(root: Path, category: str, train: list[Sample], collector: _Collector) -> None:
    """Set `fg_mask_path` of training samples from ROOT/fg_mask/CATEGORY or ROOT/CATEGORY/fg_mask."""
    folders = [folder for folder in (root / "fg_mask" / category, root / category / "fg_mask") if folder.is_dir()]
    if not folders:
        return

    by_name: dict[str, Path] = {}
    by_stem: dict[str, Path] = {}
    for folder in folders:
        for path in _files(folder):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                by_name.setdefault(path.name, path)
                by_stem.setdefault(path.stem, path)

    for sample in train:
        sample.fg_mask_path = by_name.get(sample.path.name) or by_stem.get(sample.path.stem)
    missing = sum(1 for sample in train if sample.fg_mask_path is None)
    if missing:
        collector.warn(
            f"{missing} of {len(train)} training images have no foreground mask in "
            f"{' or '.join(str(folder) for folder in folders)}; synthesis uses the whole image for them."
        )


def _read_visa_rows(root: Path) -> list[dict[str, str]]:
    csv_path = root / VISA_SPLIT_CSV
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"Cannot read VisA split file {csv_path}: {exc}. Check the file.") from exc

    required = {"object", "split", "label", "image", "mask"}
    columns = set(rows[0]) if rows else set()
    if not required <= columns:
        raise DatasetError(
            f"VisA split file {csv_path} lacks the column(s) {', '.join(sorted(required - columns))}. "
            "It needs object, split, label, image and mask."
        )
    return [{key: (value or "").strip() for key, value in row.items() if key} for row in rows]


def _discover_visa(root: Path, category: str, collector: _Collector) -> tuple[list[Sample], list[Sample]]:
    train: list[Sample] = []
    test: list[Sample] = []
    missing_masks = 0
    for row in _read_visa_rows(root):
        if row["object"] != category:
            continue
        image = root / row["image"]
        split = row["split"].lower()
        label_text = row["label"].lower()
        if split not in ("train", "test") or label_text not in ("normal", "anomaly"):
            collector.skip(image, f"split {row['split']!r} or label {row['label']!r} in {VISA_SPLIT_CSV} is unknown")
            continue
        if not image.is_file():
            collector.skip(image, f"listed in {VISA_SPLIT_CSV} but not found")
            continue
        if not collector.check(image):
            continue

        label = 1 if label_text == "anomaly" else 0
        mask = root / row["mask"] if label == 1 and row["mask"] else None
        if label == 1 and (mask is None or not mask.is_file()):
            missing_masks += 1
            mask = None
        sample = Sample(image, split, label, "anomaly" if label else "good", mask)
        (train if split == "train" else test).append(sample)

    if missing_masks:
        collector.warn(
            f"{missing_masks} anomalous images of {category!r} have no mask file; they count for image scores only."
        )
    return train, test


def _discover_folder(base: Path, collector: _Collector) -> tuple[list[Sample], list[Sample]]:
    good_dir = base / "good"
    good = collector.images(good_dir)
    held_out = _holdout_indices(len(good))
    train = [Sample(path, "train", 0, "good", None) for i, path in enumerate(good) if i not in held_out]
    test = [Sample(path, "test", 0, "good", None) for i, path in enumerate(good) if i in held_out]
    if held_out:
        collector.warn(
            f"Held out {len(held_out)} of {len(good)} good images of {good_dir} as test/good, the same files "
            f"on every run, so the test set has good images; training uses the other {len(train)}."
        )

    defect_dirs = [
        folder for folder in _subfolders(base)
        if folder.name not in _FOLDER_RESERVED and not folder.name.endswith("_masks")
    ]
    for folder in defect_dirs:
        images = collector.images(folder)
        candidates = (base / "masks" / folder.name, base / f"{folder.name}_masks")
        mask_folder = next((candidate for candidate in candidates if candidate.is_dir()), candidates[0])
        masks = _match_masks(images, folder, mask_folder, folder.name, collector)
        test.extend(Sample(path, "test", 1, folder.name, masks.get(path)) for path in images)

    defect_names = {folder.name for folder in defect_dirs}
    orphans = [folder for folder in _subfolders(base / "masks") if folder.name not in defect_names]
    orphans += [
        folder for folder in _subfolders(base)
        if folder.name.endswith("_masks") and folder.name[: -len("_masks")] not in defect_names
    ]
    _reject_orphan_mask_folders(orphans, base, collector)
    if not defect_dirs:
        collector.warn(f"{base} has no defect folders beside good/; the test set has good images only.")
    return train, test


def _holdout_indices(count: int) -> set[int]:
    if count < 2:
        return set()
    size = min(count - 1, max(1, round(count * FOLDER_HOLDOUT_FRACTION)))
    order = np.random.default_rng(FOLDER_HOLDOUT_SEED).permutation(count)
    return {int(i) for i in order[:size]}


def split_validation(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split `samples` into (train, validation), the same way for the same seed.

    The validation part has round(len * fraction) samples, at least one when the fraction is above 0 and
    there are two or more samples, and never all of them. Both parts keep the input order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"Validation fraction {fraction} must be at least 0 and below 1.")
    count = len(samples)
    size = round(count * fraction)
    if fraction > 0 and count >= 2:
        size = min(count - 1, max(1, size))
    else:
        size = 0

    order = np.random.default_rng(seed).permutation(count)
    chosen = {int(i) for i in order[:size]}
    train = [sample for i, sample in enumerate(samples) if i not in chosen]
    validation = [sample for i, sample in enumerate(samples) if i in chosen]
    return train, validation


# --------------------------------------------------------------------------------------------------------
# Geometry between an original image and the square network input


@dataclass(frozen=True)
class Placement:
    """Position and size of a resized image on the square network input."""

    resized_hw: tuple[int, int]
    """Size of the resized image before padding or cropping."""
    offset: tuple[int, int]
    """Position of the resized image's top-left corner on the output square; negative when cropped."""


class Preprocessor:
    """Maps images and masks to the square network input of side `image_size`, and anomaly maps back.

    `resize` squashes the whole image to S x S. `letterbox` keeps the aspect ratio and pads with the
    ImageNet mean colour, which normalisation maps to about 0 (within uint8 rounding). `resize_crop` is the
    official GLASS transform: the short side is resized to round(S / crop_ratio) and the centre S x S is
    cropped, which cuts the edges of non-square images. Images shrink with area interpolation and grow with
    bilinear interpolation, close to the antialiased bilinear resize of torchvision on PIL images but not
    identical to it.
    """

    def __init__(self, image_size: int, resize_policy: str = "resize", crop_ratio: float = 1.0) -> None:
        if int(image_size) < 1:
            raise ConfigError(f"Image size {image_size} must be a positive number of pixels.")
        if resize_policy not in RESIZE_POLICIES:
            raise ConfigError(
                f"Resize policy {resize_policy!r} is unknown; choose one of: {', '.join(RESIZE_POLICIES)}."
            )
        if not 0.0 < crop_ratio <= 1.0:
            raise ConfigError(f"Crop ratio {crop_ratio} must be above 0 and at most 1.")
        self.image_size = int(image_size)
        self.resize_policy = resize_policy
        self.crop_ratio = float(crop_ratio)
        self._fill = np.array([round(255 * value) for value in IMAGENET_MEAN], dtype=np.uint8)
        self._mean = np.array(IMAGENET_MEAN, dtype=np.float32)
        self._std = np.array(IMAGENET_STD, dtype=np.float32)

    def __repr__(self) -> str:
        return f"Preprocessor({self.image_size}, {self.resize_policy!r}, crop_ratio={self.crop_ratio})"

    def placement(self, height: int, width: int) -> Placement:
        """Return where an image of `height` x `width` lands on the output square."""
        size = self.image_size
        if self.resize_policy == "resize":
            return Placement((size, size), (0, 0))

        if self.resize_policy == "letterbox":
            scale = size / max(height, width)
            resized = (max(1, min(size, round(height * scale))), max(1, min(size, round(width * scale))))
            return Placement(resized, ((size - resized[0]) // 2, (size - resized[1]) // 2))

        # torchvision Resize(int) then CenterCrop: short side exact, long side truncated, crop offset rounded.
        short = max(size, round(size / self.crop_ratio))
        if height <= width:
            resized = (short, max(short, int(short * width / height)))
        else:
            resized = (max(short, int(short * height / width)), short)
        top = int(round((resized[0] - size) / 2.0))
        left = int(round((resized[1] - size) / 2.0))
        return Placement(resized, (-top, -left))

    def resize_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """Return the RGB uint8 image (S, S, 3) in the input geometry, without normalisation."""
        _check_rgb(rgb)
        placement = self.placement(rgb.shape[0], rgb.shape[1])
        resized = _resize(rgb, placement.resized_hw)
        return self._place(resized, placement, self._fill)

    def tensor_from_resized(self, rgb: np.ndarray) -> torch.Tensor:
        """Normalise an RGB uint8 image of shape (S, S, 3) into a float tensor (3, S, S)."""
        _check_rgb(rgb)
        if rgb.shape[:2] != (self.image_size, self.image_size):
            raise ValueError(f"Expected an image of {self.image_size}x{self.image_size} pixels, got {rgb.shape[:2]}.")
        normalised = (rgb.astype(np.float32) / 255.0 - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))

    def image_to_tensor(self, rgb: np.ndarray) -> torch.Tensor:
        """Return the normalised network input (3, S, S) of an RGB uint8 image of any size."""
        return self.tensor_from_resized(self.resize_rgb(rgb))

    def rgb_from_tensor(self, tensor: torch.Tensor) -> np.ndarray:
        """Undo the normalisation of a (3, S, S) tensor and return RGB uint8 (S, S, 3), for display."""
        array = tensor.detach().cpu().float().numpy().transpose(1, 2, 0)
        return np.clip(np.rint((array * self._std + self._mean) * 255.0), 0, 255).astype(np.uint8)

    def mask_to_tensor(self, mask: np.ndarray, rule: str = "nearest") -> torch.Tensor:
        """Return a 0/1 float tensor (1, S, S) of a mask (H, W) in the same geometry as its image.

        `nearest` keeps the value of the nearest source pixel. `any` marks an output pixel when any source
        pixel under it is set, so thin structures survive shrinking. Padding is 0.
        """
        if mask.ndim != 2:
            raise ValueError(f"Expected a mask of shape (H, W), got {mask.shape}.")
        if rule not in ("nearest", "any"):
            raise ValueError(f"Unknown mask resize rule {rule!r}; use `nearest` or `any`.")
        binary = (np.asarray(mask) > 0).astype(np.uint8)
        placement = self.placement(binary.shape[0], binary.shape[1])
        height, width = placement.resized_hw
        shrinking = height <= binary.shape[0] and width <= binary.shape[1]
        if rule == "any" and shrinking:
            resized = cv2.resize(binary.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0
        else:
            resized = cv2.resize(binary, (width, height), interpolation=cv2.INTER_NEAREST_EXACT) > 0
        placed = self._place(resized.astype(np.float32), placement, np.float32(0.0))
        return torch.from_numpy(placed)[None]

    def map_to_original(self, anomaly_map: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
        """Return an anomaly map (S, S) in the geometry of the original image (H, W), as float32.

        The letterbox padding is removed. With `resize_crop` the network never saw the cut-off border, so
        the border gets the value 0. The map is resized with bilinear interpolation.
        """
        size = self.image_size
        anomaly_map = np.asarray(anomaly_map, dtype=np.float32)
        if anomaly_map.shape != (size, size):
            raise ValueError(f"Expected an anomaly map of shape ({size}, {size}), got {anomaly_map.shape}.")
        height, width = int(original_hw[0]), int(original_hw[1])
        placement = self.placement(height, width)

        resized = np.zeros(placement.resized_hw, dtype=np.float32)
        target, source = _overlap(placement, size)
        resized[target] = anomaly_map[source]
        return cv2.resize(resized, (width, height), interpolation=cv2.INTER_LINEAR)

    def _place(self, resized: np.ndarray, placement: Placement, fill: Any) -> np.ndarray:
        size = self.image_size
        canvas = np.empty((size, size) + resized.shape[2:], dtype=resized.dtype)
        canvas[...] = fill
        inside, square = _overlap(placement, size)
        canvas[square] = resized[inside]
        return canvas


def _overlap(placement: Placement, size: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Return the slices (in the resized image, on the output square) of the region both share."""
    top, left = placement.offset
    height, width = placement.resized_hw
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, size), min(left + width, size)
    inside = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    square = (slice(y0, y1), slice(x0, x1))
    return inside, square


def _resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    height, width = size_hw
    if image.shape[:2] == (height, width):
        return image.copy()
    shrinking = height <= image.shape[0] and width <= image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), got {rgb.dtype} {rgb.shape}.")


# --------------------------------------------------------------------------------------------------------
# Torch dataset


class ImageDataset(torch.utils.data.Dataset):
    """Test or evaluation images with their ground-truth masks, in the network geometry.

    Each item is a dict: `image` (3, S, S) normalised, `mask` (1, S, S) 0/1 (zeros without a mask), `label`,
    `index`, `path` and `original_hw` (a tensor [H, W]). A file that cannot be decoded raises DatasetError
    naming it.
    """

    def __init__(self, samples: list[Sample], preprocessor: Preprocessor) -> None:
        self.samples = list(samples)
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        rgb = read_image(sample.path)
        height, width = rgb.shape[:2]
        size = self.preprocessor.image_size

        if sample.mask_path is not None:
            mask = self.preprocessor.mask_to_tensor(read_mask(sample.mask_path, (height, width)))
        else:
            mask = torch.zeros((1, size, size), dtype=torch.float32)

        return {
            "image": self.preprocessor.image_to_tensor(rgb),
            "mask": mask,
            "label": int(sample.label),
            "index": int(index),
            "path": str(sample.path),
            "original_hw": torch.tensor([height, width], dtype=torch.long),
        }
