"""Load a trained run and score images, folders and video or camera frames."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from glass_engine.config import GlassConfig
from glass_engine.data import IMAGE_EXTENSIONS, Preprocessor, read_image
from glass_engine.device import resolve_device
from glass_engine.errors import CheckpointError, DatasetError
from glass_engine.pipeline import GlassModel
from glass_engine.runs import RunFolder, load_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """Result for one image: score in [0, 1], maps at the network size and at the original size."""

    path: str
    score: float
    map: np.ndarray
    """(S, S) float32 anomaly map at the network input size."""
    original_map: np.ndarray
    """(H, W) float32 anomaly map mapped back onto the original image."""
    is_defective: bool | None
    """score >= threshold, or None when the run has no threshold."""


def resolve_run(path: Path) -> tuple[RunFolder, Path]:
    """Accept a run folder or a checkpoint file inside one; return the run and the checkpoint to load."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Run folder or checkpoint {path} does not exist. Check the path given to --run.")
    if path.is_file():
        run_root = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return RunFolder(run_root), path
    run = RunFolder(path)
    for candidate in (run.best_checkpoint, run.last_checkpoint):
        if candidate.is_file():
            return run, candidate
    raise CheckpointError(f"Run folder {path} has no checkpoint (checkpoints/best.pt). Train it first.")


class Predictor:
    """Scores images with a trained run, on the CUDA GPU when present."""

    def __init__(self, run_path: Path, device: str = "auto", threshold: float | None = None):
        self.run, checkpoint = resolve_run(run_path)
        config = self.run.read_config()
        self.config: GlassConfig = config
        self.device = resolve_device(device)
        self.model = GlassModel(config, self.device)
        state = load_checkpoint(checkpoint, self.device)
        self.model.head.load_state_dict(state["head"])
        self.model.eval()
        self.mode = state.get("mode")
        self.preprocessor = Preprocessor(config.data.image_size, config.data.resize_policy, config.data.crop_ratio)
        self.threshold = threshold if threshold is not None else self.run.threshold()
        logger.info("Loaded run %s (checkpoint %s, threshold %s)", self.run.root, checkpoint, self.threshold)

    def predict_arrays(self, images: list[np.ndarray], names: list[str] | None = None) -> list[Prediction]:
        """Score RGB uint8 images of any size."""
        if not images:
            return []
        tensor = torch.stack([self.preprocessor.image_to_tensor(image) for image in images])
        return self._predict_tensor(tensor, images, names)

    def predict_paths(self, paths: Iterable[Path], batch_size: int | None = None) -> Iterator[Prediction]:
        """Score image files batch by batch; unreadable files raise DatasetError naming the file.

        The next batch is decoded and resized in a background thread while the model scores the current one.
        """
        batch_size = batch_size or self.config.data.batch_size
        for paths_batch, images, tensor in prefetch_batches(paths, batch_size, self.preprocessor):
            yield from self._predict_tensor(tensor, images, [str(path) for path in paths_batch])

    def _predict_tensor(self, tensor: torch.Tensor, images: list[np.ndarray], names: list[str] | None) -> list[Prediction]:
        scores, maps = self.model(tensor)
        return build_predictions(images, names, scores.cpu().numpy(), maps.cpu().numpy(), self.preprocessor, self.threshold)


def build_predictions(
    images: list[np.ndarray],
    names: list[str] | None,
    scores: np.ndarray,
    maps: np.ndarray,
    preprocessor: Preprocessor,
    threshold: float | None,
) -> list[Prediction]:
    """Turn a batch's image scores and (B, S, S) maps into Predictions with maps on the original images."""
    results = []
    for i, image in enumerate(images):
        map_array = maps[i].astype(np.float32)
        score = float(scores[i])
        results.append(
            Prediction(
                path=names[i] if names else "",
                score=score,
                map=map_array,
                original_map=preprocessor.map_to_original(map_array, image.shape[:2]),
                is_defective=None if threshold is None else score >= threshold,
            )
        )
    return results


def load_batch(paths: list[Path], preprocessor: Preprocessor) -> tuple[list[np.ndarray], torch.Tensor]:
    """Read image files and build the normalised input batch."""
    images = [read_image(path) for path in paths]
    return images, torch.stack([preprocessor.image_to_tensor(image) for image in images])


def prefetch_batches(
    paths: Iterable[Path], batch_size: int, preprocessor: Preprocessor
) -> Iterator[tuple[list[Path], list[np.ndarray], torch.Tensor]]:
    """Yield (paths, images, tensor) per batch, loading batch k + 1 in a thread while batch k is used."""
    batches: list[list[Path]] = []
    pending: list[Path] = []
    for path in paths:
        pending.append(Path(path))
        if len(pending) == batch_size:
            batches.append(pending)
            pending = []
    if pending:
        batches.append(pending)
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-prefetch") as executor:
        future = executor.submit(load_batch, batches[0], preprocessor)
        for number, batch in enumerate(batches):
            images, tensor = future.result()
            if number + 1 < len(batches):
                future = executor.submit(load_batch, batches[number + 1], preprocessor)
            yield batch, images, tensor


def collect_image_paths(inputs: Iterable[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders (recursively) into image paths; return (images, skipped with reasons)."""
    images: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                if path.is_file():
                    if path.suffix.lower() in IMAGE_EXTENSIONS:
                        images.append(path)
                    else:
                        skipped.append((path, "not an image file"))
        elif item.is_file():
            images.append(item)
        else:
            raise DatasetError(f"Input {item} does not exist. Give image files or folders.")
    return images, skipped
