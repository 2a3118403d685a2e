"""Local anomaly synthesis (LAS) of GLASS: Perlin-noise masks, texture sources and the training dataset.

The behaviour follows the official code (cqylunlun/GLASS, perlin.py and datasets/mvtec.py). Two Perlin
noises with scales 2**randint(min, max) per axis are each rotated by a random angle in [-90, 90] degrees and
thresholded at 0.5. They are combined by union, intersection or the first alone, with probability 1/3 each,
multiplied by an optional foreground mask and max-pooled onto the feature grid. A texture image, resized
and changed by 3 of 9 random augmentations, is blended into the masked region. Its weight beta is drawn
from N(beta_mean, beta_std) and clipped to [0.2, 0.8]. Unlike the official Perlin code, `perlin_noise`
works for any image size, not only multiples of the noise resolution.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from glass_engine.config import FOREGROUND_MODES, MethodConfig
from glass_engine.data import IMAGE_EXTENSIONS, Preprocessor, Sample, read_image, read_mask
from glass_engine.errors import ConfigError, DatasetError, GlassError, TextureError

logger = logging.getLogger(__name__)

PERLIN_THRESHOLD = 0.5
BETA_RANGE = (0.2, 0.8)
AUGMENTATIONS = (
    "contrast",
    "brightness",
    "saturation_hue",
    "hflip",
    "vflip",
    "grayscale",
    "autocontrast",
    "equalize",
    "rotate",
)
BUILTIN_TEXTURE_SIZE = 256
BUILTIN_TEXTURES_PER_KIND = 5

# With a foreground mask, an empty feature mask is retried this often before the mask is dropped.
_FG_ATTEMPTS = 50
# Without a foreground mask about 9% of attempts are empty (measured over 200 draws at 288 x 288 pixels), so
# this bound only guarantees that the loop ends.
_MAX_ATTEMPTS = 1000


# --------------------------------------------------------------------------------------------------------
# Perlin noise and masks


def _fade(t: np.ndarray) -> np.ndarray:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Return 2-D gradient Perlin noise of `shape` with `res` lattice cells per axis, as float32.

    Pixel (i, j) sits at lattice coordinates (i * res[0] / H, j * res[1] / W), as in the official code, and
    the four corner gradients are unit vectors at random angles. The quintic fade 6t^5 - 15t^4 + 10t^3
    interpolates the dot products, and the result is multiplied by sqrt(2), which bounds it to [-1, 1].
    Sampling by coordinates makes any shape work, including sizes that are not multiples of `res`.
    """
    height, width = int(shape[0]), int(shape[1])
    res_y, res_x = int(res[0]), int(res[1])
    if height < 1 or width < 1 or res_y < 1 or res_x < 1:
        raise ValueError(f"Perlin noise needs a positive shape and resolution, got {shape} and {res}.")

    angles = 2.0 * math.pi * rng.random((res_y + 1, res_x + 1))
    grad_y, grad_x = np.cos(angles), np.sin(angles)

    y = np.arange(height) * (res_y / height)
    x = np.arange(width) * (res_x / width)
    cell_y, cell_x = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
    frac_y, frac_x = (y - cell_y)[:, None], (x - cell_x)[None, :]
    rows, cols = cell_y[:, None], cell_x[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        # Dot product of the corner's gradient with the offset from that corner to the pixel.
        return grad_y[rows + dy, cols + dx] * (frac_y - dy) + grad_x[rows + dy, cols + dx] * (frac_x - dx)

    fade_y, fade_x = _fade(frac_y), _fade(frac_x)
    left = corner(0, 0) + fade_y * (corner(1, 0) - corner(0, 0))
    right = corner(0, 1) + fade_y * (corner(1, 1) - corner(0, 1))
    noise = math.sqrt(2.0) * (left + fade_x * (right - left))
    return noise.astype(np.float32)


def rotate(image: np.ndarray, angle: float, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Rotate an image by `angle` degrees (counter-clockwise) around its centre, filling with 0."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), float(angle), 1.0)
    return cv2.warpAffine(
        image, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def perlin_threshold(
    image_shape: tuple[int, int], rng: np.random.Generator, min_scale: int = 0, max_scale: int = 6
) -> np.ndarray:
    """Return one thresholded, rotated Perlin noise (H, W) as float32 0/1.

    The scales are 2**k per axis with k drawn from [min_scale, max_scale), the upper bound excluded as in
    numpy's randint that the official code uses.
    """
    if not 0 <= min_scale < max_scale:
        raise ValueError(f"Perlin scales need 0 <= min_scale < max_scale, got {min_scale} and {max_scale}.")
    scale_y = 2 ** int(rng.integers(min_scale, max_scale))
    scale_x = 2 ** int(rng.integers(min_scale, max_scale))
    noise = perlin_noise(image_shape, (scale_y, scale_x), rng)
    noise = rotate(noise, rng.uniform(-90.0, 90.0))
    return (noise > PERLIN_THRESHOLD).astype(np.float32)


def combine_thresholds(first: np.ndarray, second: np.ndarray, draw: float) -> np.ndarray:
    """Combine two 0/1 masks by union (draw > 2/3), intersection (draw > 1/3) or the first alone."""
    if draw > 2.0 / 3.0:
        return np.maximum(first, second)
    if draw > 1.0 / 3.0:
        return first * second
    return first.copy()


def pool_to_features(mask_l: np.ndarray, feature_shape: tuple[int, int]) -> np.ndarray:
    """Max-pool a (H, W) mask onto the feature grid (fh, fw) with adaptive bins, so any H / fh works."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask_l, dtype=np.float32))[None, None]
    pooled = F.adaptive_max_pool2d(tensor, (int(feature_shape[0]), int(feature_shape[1])))
    return pooled[0, 0].numpy()


def perlin_mask(
    image_shape: tuple[int, int],
    feature_shape: tuple[int, int],
    rng: np.random.Generator,
    fg_mask: np.ndarray | None = None,
    min_scale: int = 0,
    max_scale: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a synthetic defect region; return (mask_s (fh, fw), mask_l (H, W)), both float32 0/1.

    Each attempt draws two `perlin_threshold` masks and then one uniform number for `combine_thresholds`,
    multiplies by `fg_mask` (H, W) when given, and repeats until the pooled mask_s is non-empty. An empty
    foreground mask, or 50 empty attempts inside a foreground mask, drops the foreground mask with a warning.
    """
    image_shape = (int(image_shape[0]), int(image_shape[1]))
    foreground = None
    if fg_mask is not None:
        if tuple(fg_mask.shape) != image_shape:
            raise ValueError(f"Foreground mask shape {fg_mask.shape} differs from the image shape {image_shape}.")
        foreground = (np.asarray(fg_mask) > 0).astype(np.float32)
        if not foreground.any():
            logger.warning("The foreground mask is empty; synthesising defects anywhere in the image.")
            foreground = None

    for attempt in range(_MAX_ATTEMPTS):
        if foreground is not None and attempt == _FG_ATTEMPTS:
            logger.warning(
                "No synthetic defect hit the foreground mask in %d attempts (foreground covers %.2f%% of the "
                "image); synthesising defects anywhere in the image.",
                _FG_ATTEMPTS, 100.0 * foreground.mean(),
            )
            foreground = None

        first = perlin_threshold(image_shape, rng, min_scale, max_scale)
        second = perlin_threshold(image_shape, rng, min_scale, max_scale)
        mask_l = combine_thresholds(first, second, float(rng.random()))
        if foreground is not None:
            mask_l = mask_l * foreground

        mask_s = pool_to_features(mask_l, feature_shape)
        if mask_s.max() > 0:
            return mask_s, mask_l.astype(np.float32)
    raise GlassError(f"No non-empty Perlin mask in {_MAX_ATTEMPTS} attempts for image shape {image_shape}.")


# --------------------------------------------------------------------------------------------------------
# Texture sources


class TextureSource:
    """Texture images that LAS blends into the synthetic defect regions.

    Build one with `from_folder` (files, read at each `sample`) or `builtin` (procedural images in memory).
    """

    def __init__(
        self,
        paths: list[Path] | None = None,
        images: list[np.ndarray] | None = None,
        description: str = "",
        folder: Path | None = None,
    ) -> None:
        if (paths is None) == (images is None):
            raise ValueError("Give either texture paths or texture images.")
        self._paths = list(paths) if paths is not None else None
        self._images = list(images) if images is not None else None
        self._description = description
        self._folder = folder

    @classmethod
    def from_folder(cls, path: Path) -> "TextureSource":
        """Collect every non-empty image file below `path`, in any subfolder depth and extension case.

        This covers DTD (images/<class>/*.jpg) and any folder of images. Raises TextureError naming the folder
        when it is missing or contains no images.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise TextureError(
                f"Texture folder {folder} not found. Choose an existing folder of texture images "
                "(for example DTD's images folder), or leave the setting empty to use the built-in textures."
            )
        paths = sorted(
            file for file in folder.rglob("*")
            if file.suffix.lower() in IMAGE_EXTENSIONS and not file.name.startswith(".") and _non_empty_file(file)
        )
        if not paths:
            raise TextureError(
                f"Texture folder {folder} contains no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}). "
                "Choose a folder with texture images, or leave the setting empty to use the built-in textures."
            )
        return cls(paths=paths, description=f"{len(paths)} texture images from {folder}", folder=folder)

    @classmethod
    def builtin(cls) -> "TextureSource":
        """Return the built-in procedural textures (generated once per process, from a fixed seed)."""
        images = list(builtin_textures())
        kinds = ", ".join(kind for kind, _ in _TEXTURE_KINDS)
        return cls(images=images, description=f"{len(images)} built-in procedural textures ({kinds})")

    def describe(self) -> str:
        return self._description

    def __len__(self) -> int:
        return len(self._paths) if self._paths is not None else len(self._images or [])

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Return one texture chosen uniformly by `rng`, as RGB uint8.

        A texture file that fails to decode is logged, dropped from this source and replaced by another draw.
        Raises TextureError when no file is left.
        """
        if self._images is not None:
            return self._images[int(rng.integers(len(self._images)))].copy()

        while self._paths:
            index = int(rng.integers(len(self._paths)))
            try:
                return read_image(self._paths[index])
            except DatasetError as exc:
                logger.warning("Dropping texture %s: %s", self._paths[index], exc)
                del self._paths[index]
        raise TextureError(
            f"No texture image in {self._folder} could be decoded. Replace the files or choose another folder."
        )


def _non_empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def _fractal(rng: np.random.Generator, size: int, base: int, octaves: int) -> np.ndarray:
    """Return a sum of Perlin octaves, rescaled to [0, 1]."""
    total = np.zeros((size, size), dtype=np.float32)
    for octave in range(octaves):
        res = base * 2**octave
        total += perlin_noise((size, size), (res, res), rng) / 2**octave
    return (total - total.min()) / max(float(total.max() - total.min()), 1e-6)


def _colourise(field: np.ndarray, rng: np.random.Generator, stops: int = 2) -> np.ndarray:
    """Map a [0, 1] field to RGB with a random colour ramp of `stops` colours."""
    colours = rng.integers(0, 256, size=(stops, 3)).astype(np.float32)
    positions = np.linspace(0.0, 1.0, stops)
    channels = [np.interp(field, positions, colours[:, channel]) for channel in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def _texture_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    field = _fractal(rng, size, int(rng.choice([2, 4, 8])), octaves=4)
    return _colourise(field, rng, stops=3)


def _texture_stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0.0, math.pi)
    frequency = rng.uniform(4.0, 24.0)
    warp = _fractal(rng, size, 2, octaves=3) * rng.uniform(0.5, 3.0)
    field = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)) + warp)
    return _colourise(field, rng)


def _texture_marble(rng: np.random.Generator, size: int) -> np.ndarray:
    x = np.mgrid[0:size, 0:size][1].astype(np.float32) / size
    turbulence = _fractal(rng, size, 4, octaves=5)
    field = 0.5 + 0.5 * np.sin(2 * math.pi * rng.uniform(2.0, 6.0) * x + rng.uniform(4.0, 10.0) * turbulence)
    return _colourise(field**rng.uniform(0.5, 2.0), rng, stops=3)


def _texture_cells(rng: np.random.Generator, size: int) -> np.ndarray:
    count = int(rng.integers(12, 48))
    points = rng.random((count, 2)).astype(np.float32) * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    distances = np.sqrt((y[..., None] - points[:, 0]) ** 2 + (x[..., None] - points[:, 1]) ** 2)
    nearest = np.sort(distances, axis=-1)[..., :2]
    edges = np.clip((nearest[..., 1] - nearest[..., 0]) / rng.uniform(2.0, 6.0), 0.0, 1.0)
    cell_colours = rng.integers(0, 256, size=(count, 3)).astype(np.float32)
    colours = cell_colours[np.argmin(distances, axis=-1)]
    return np.clip(colours * edges[..., None], 0, 255).astype(np.uint8)


def _texture_scratches(rng: np.random.Generator, size: int) -> np.ndarray:
    image = np.ascontiguousarray(_texture_noise(rng, size))
    for _ in range(int(rng.integers(10, 40))):
        start = tuple(int(value) for value in rng.integers(0, size, 2))
        end = tuple(int(value) for value in rng.integers(0, size, 2))
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        cv2.line(image, start, end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return image


def _texture_spots(rng: np.random.Generator, size: int) -> np.ndarray:
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[...] = rng.integers(0, 256, 3).astype(np.uint8)
    for _ in range(int(rng.integers(15, 60))):
        centre = tuple(int(value) for value in rng.integers(0, size, 2))
        axes = tuple(int(value) for value in rng.integers(2, size // 6, 2))
        colour = tuple(int(value) for value in rng.integers(0, 256, 3))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 2.5))


_TEXTURE_KINDS = (
    ("noise", _texture_noise),
    ("stripes", _texture_stripes),
    ("marble", _texture_marble),
    ("cells", _texture_cells),
    ("scratches", _texture_scratches),
    ("spots", _texture_spots),
)


@lru_cache(maxsize=1)
def builtin_textures(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Generate the built-in textures: 5 of each kind, 256 x 256 RGB uint8, the same for the same seed."""
    rng = np.random.default_rng(seed)
    textures = []
    for _ in range(BUILTIN_TEXTURES_PER_KIND):
        for _, generate in _TEXTURE_KINDS:
            texture = generate(rng, BUILTIN_TEXTURE_SIZE)
            texture.setflags(write=False)
            textures.append(texture)
    return tuple(textures)


# --------------------------------------------------------------------------------------------------------
# Texture augmentation


def _luma(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2 luma, the grayscale that PIL and torchvision use.
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _blend(rgb: np.ndarray, other: np.ndarray | float, factor: float) -> np.ndarray:
    mixed = factor * rgb.astype(np.float32) + (1.0 - factor) * np.asarray(other, dtype=np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _adjust_hue(rgb: np.ndarray, shift: float) -> np.ndarray:
    # Hue in [0, 255] for the full circle, shifted with wrap-around as PIL does.
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(shift * 255))) % 256
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def _saturation_hue(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    saturation = rng.uniform(0.8, 1.2)
    hue = rng.uniform(-0.2, 0.2)
    gray = np.repeat(_luma(rgb)[..., None], 3, axis=2)
    # torchvision's ColorJitter applies its adjustments in a random order.
    if rng.random() < 0.5:
        return _adjust_hue(_blend(rgb, gray, saturation), hue)
    shifted = _adjust_hue(rgb, hue)
    return _blend(shifted, np.repeat(_luma(shifted)[..., None], 3, axis=2), saturation)


def _autocontrast(rgb: np.ndarray) -> np.ndarray:
    low = rgb.min(axis=(0, 1)).astype(np.float32)
    high = rgb.max(axis=(0, 1)).astype(np.float32)
    span = np.where(high > low, high - low, 1.0)
    stretched = (rgb.astype(np.float32) - low) * (255.0 / span)
    stretched = np.where(high > low, stretched, rgb.astype(np.float32))
    return np.clip(np.rint(stretched), 0, 255).astype(np.uint8)


def _equalize(rgb: np.ndarray) -> np.ndarray:
    channels = [cv2.equalizeHist(np.ascontiguousarray(rgb[..., channel])) for channel in range(3)]
    return np.stack(channels, axis=-1)


def apply_augmentation(rgb: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """Apply one augmentation of `AUGMENTATIONS` to an RGB uint8 image and return the new image.

    Factors follow the official list: contrast, brightness and saturation in [0.8, 1.2], hue shift in
    [-0.2, 0.2] of the colour circle, flips, grayscale, per-channel autocontrast and histogram
    equalisation, and rotation by [-45, 45] degrees with nearest-neighbour sampling and black corners.
    """
    if name == "contrast":
        return _blend(rgb, float(_luma(rgb).mean()), rng.uniform(0.8, 1.2))
    if name == "brightness":
        return _blend(rgb, 0.0, rng.uniform(0.8, 1.2))
    if name == "saturation_hue":
        return _saturation_hue(rgb, rng)
    if name == "hflip":
        return np.ascontiguousarray(rgb[:, ::-1])
    if name == "vflip":
        return np.ascontiguousarray(rgb[::-1])
    if name == "grayscale":
        return np.repeat(_luma(rgb)[..., None], 3, axis=2)
    if name == "autocontrast":
        return _autocontrast(rgb)
    if name == "equalize":
        return _equalize(rgb)
    if name == "rotate":
        return rotate(rgb, rng.uniform(-45.0, 45.0), cv2.INTER_NEAREST)
    raise ValueError(f"Unknown augmentation {name!r}; choose one of: {', '.join(AUGMENTATIONS)}.")


def augment_texture(rgb: np.ndarray, rng: np.random.Generator, count: int = 3) -> np.ndarray:
    """Apply `count` distinct augmentations, drawn at random from `AUGMENTATIONS`, in the drawn order."""
    if not 0 <= count <= len(AUGMENTATIONS):
        raise ValueError(f"Augmentation count {count} must be between 0 and {len(AUGMENTATIONS)}.")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"Expected an RGB uint8 image of shape (H, W, 3), got {rgb.dtype} {rgb.shape}.")
    result = rgb
    for choice in rng.choice(len(AUGMENTATIONS), size=count, replace=False):
        result = apply_augmentation(result, AUGMENTATIONS[int(choice)], rng)
    return np.ascontiguousarray(result)


# --------------------------------------------------------------------------------------------------------
# Foreground masks


def foreground_mask(rgb: np.ndarray, method: str = "otsu") -> np.ndarray:
    """Return a bool foreground mask (H, W) of an RGB uint8 image by Otsu binarisation.

    The grayscale image is smoothed with a 5x5 Gaussian and split by Otsu's threshold. The foreground is the
    class that covers less of the one-pixel image border, because an object usually lies inside the frame.
    A morphological close, with an elliptic kernel of about 2% of the short side, fills small gaps. When one
    class is empty (a flat image) the whole image is foreground. Textured categories such as carpet fill the
    whole frame and should use no foreground mask, because Otsu splits their texture instead.
    """
    if method != "otsu":
        raise ConfigError(f"Unknown foreground method {method!r}; the only method is `otsu`.")
    gray = cv2.GaussianBlur(_luma(rgb), (5, 5), 0)
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    above = binary > 0

    border = np.concatenate([above[0], above[-1], above[1:-1, 0], above[1:-1, -1]])
    foreground = above if border.mean() <= 0.5 else ~above
    if not foreground.any() or foreground.all():
        return np.ones(gray.shape, dtype=bool)

    side = max(3, round(0.02 * min(gray.shape)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    closed = cv2.morphologyEx(foreground.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    return closed > 0


# --------------------------------------------------------------------------------------------------------
# Training dataset


def blend_anomaly(image: torch.Tensor, texture: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Return image * (1 - m) + (1 - beta) * texture * m + beta * image * m for a 0/1 mask m."""
    return image * (1 - mask) + (1 - beta) * texture * mask + beta * image * mask


class LASDataset(torch.utils.data.Dataset):
    """Training images paired with their locally synthesised anomalous versions.

    Each item is a dict: `image` (3, S, S) normalised, `aug` (3, S, S) the LAS image, `mask_s` (fh, fw)
    0/1 on the feature grid, `mask_l` (1, S, S) 0/1 on the image, `beta`, `index` and `path`. Every item
    draws its randomness from a generator seeded by (seed, epoch, index), so results do not depend on the
    number of DataLoader workers. Call `set_epoch` before each epoch. DataLoader workers copy the dataset
    when an iteration starts, so the epoch must be set before that, or persistent workers keep the old one.
    """

    def __init__(
        self,
        samples: list[Sample],
        preprocessor: Preprocessor,
        textures: TextureSource,
        feature_shape: tuple[int, int],
        method: MethodConfig,
        seed: int,
        foreground: str = "none",
    ) -> None:
        if foreground not in FOREGROUND_MODES:
            raise ConfigError(
                f"Foreground mode {foreground!r} is unknown; choose one of: {', '.join(FOREGROUND_MODES)}."
            )
        if len(textures) == 0:
            raise TextureError("The texture source is empty. Choose a texture folder or use the built-in textures.")
        self.samples = list(samples)
        self.preprocessor = preprocessor
        self.textures = textures
        self.feature_shape = (int(feature_shape[0]), int(feature_shape[1]))
        self.method = method
        self.seed = int(seed)
        self.foreground = foreground
        self.epoch = 0
        self._warned_missing_fg = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def item_rng(self, index: int) -> np.random.Generator:
        """Return the generator of item `index` in the current epoch."""
        # SeedSequence needs non-negative entropy, and the 64-bit mask maps negative seeds to distinct values.
        entropy = [self.seed & 0xFFFFFFFFFFFFFFFF, self.epoch & 0xFFFFFFFFFFFFFFFF, int(index)]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        rng = self.item_rng(index)
        size = self.preprocessor.image_size

        original = read_image(sample.path)
        rgb = self.preprocessor.resize_rgb(original)
        image = self.preprocessor.tensor_from_resized(rgb)
        texture = self._texture(rng)
        fg_mask = self._foreground_mask(sample, original, rgb)

        mask_s, mask_l = perlin_mask(
            (size, size), self.feature_shape, rng, fg_mask, self.method.perlin_min_scale, self.method.perlin_max_scale
        )
        beta = float(np.clip(rng.normal(self.method.beta_mean, self.method.beta_std), *BETA_RANGE))
        mask_l_tensor = torch.from_numpy(mask_l)[None]

        return {
            "image": image,
            "aug": blend_anomaly(image, texture, mask_l_tensor, beta),
            "mask_s": torch.from_numpy(mask_s),
            "mask_l": mask_l_tensor,
            "beta": beta,
            "index": int(index),
            "path": str(sample.path),
        }

    def _texture(self, rng: np.random.Generator) -> torch.Tensor:
        texture = self.preprocessor.resize_rgb(self.textures.sample(rng))
        if self.method.rand_aug:
            texture = augment_texture(texture, rng, count=3)
        return self.preprocessor.tensor_from_resized(texture)

    def _foreground_mask(self, sample: Sample, original: np.ndarray, rgb: np.ndarray) -> np.ndarray | None:
        if self.foreground == "binarize":
            return foreground_mask(rgb).astype(np.float32)
        if self.foreground != "files":
            return None

        path = sample.fg_mask_path
        if path is None or not Path(path).is_file():
            if not self._warned_missing_fg:
                logger.warning(
                    "No foreground mask file for %s (and maybe other images); synthesising defects anywhere "
                    "in those images.", sample.path,
                )
                self._warned_missing_fg = True
            return None
        mask = read_mask(path, original.shape[:2])
        return self.preprocessor.mask_to_tensor(mask, rule="any")[0].numpy()
