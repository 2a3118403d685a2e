"""The GLASS training loop as an object that emits typed progress events and honours a cancel flag.

One run validates the data, judges the distribution (manifold or hypersphere) and embeds the clean training
and test images once. It then trains for `meta_epochs` epochs, in which LAS images are the only backbone
passes, evaluates every `eval_epochs`, keeps the checkpoint chosen by `run.selection_rule` and writes the
run folder (see glass_engine.runs). Checkpoints are written atomically every epoch, and a run folder with
an unfinished run resumes from its last completed epoch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from glass_engine import analysis, evaluation
from glass_engine.cache import CacheBudget, EmbeddingCache
from glass_engine.config import GlassConfig
from glass_engine.data import DatasetIndex, ImageDataset, Preprocessor, Sample, split_validation
from glass_engine.device import resolve_device, resolve_precision
from glass_engine.errors import CancelledError, ConfigError, DatasetError, GlassError, OutputError
from glass_engine.fileio import atomic_write, atomic_write_json, ensure_writable_dir
from glass_engine.model import HYPERSPHERE, MANIFOLD
from glass_engine.pipeline import GlassModel, eta_seconds
from glass_engine.runs import RunFolder, load_checkpoint, save_checkpoint
from glass_engine.synthesis import LASDataset, TextureSource

logger = logging.getLogger(__name__)


@dataclass
class TrainingEvent:
    """Progress report of a run. `kind`: stage, batch, epoch, evaluation, checkpoint, finished, warning."""

    kind: str
    message: str = ""
    epoch: int = 0
    total_epochs: int = 0
    batch: int = 0
    samples: int = 0
    sample_limit: int = 0
    progress: float = 0.0
    """Fraction of the whole run done, 0 to 1."""
    eta_seconds: float | None = None
    stats: dict[str, float] = field(default_factory=dict)
    """Running means of the epoch: loss, p_true, p_fake, r_t, r_g, r_f."""
    metrics: dict[str, Any] = field(default_factory=dict)


EventCallback = Callable[[TrainingEvent], None]


class Trainer:
    def __init__(
        self,
        config: GlassConfig,
        index: DatasetIndex,
        run_dir: Path,
        on_event: EventCallback | None = None,
        cancel: threading.Event | None = None,
        use_cache: bool | None = None,
    ):
        self.config = config.validate()
        self.index = index
        self.run = RunFolder(Path(run_dir))
        self.on_event = on_event or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.use_cache = config.run.cache_features if use_cache is None else use_cache
        self.device = resolve_device(config.run.device)
        self.autocast_dtype = resolve_precision(config.run.precision, self.device)
        self.preprocessor = Preprocessor(config.data.image_size, config.data.resize_policy, config.data.crop_ratio)
        self.history: list[dict[str, Any]] = []
        self._started = time.monotonic()

    # ----------------------------------------------------------------------------------------------
    def run_training(self) -> dict[str, Any]:
        """Train, select, evaluate and write the run folder; return the final metrics."""
        self._prepare_folder()
        try:
            metrics = self._run()
        except CancelledError:
            self.run.update_info(status="cancelled", finished=_now())
            logger.info("Run %s cancelled", self.run.root)
            raise
        except GlassError as exc:
            self.run.update_info(status="failed", error=str(exc), finished=_now())
            logger.warning("Run %s failed: %s", self.run.root, exc)
            raise
        except Exception as exc:
            self.run.update_info(status="failed", error=f"{exc.__class__.__name__}: {exc}", finished=_now())
            logger.exception("Run %s failed", self.run.root)
            raise
        return metrics

    def _prepare_folder(self) -> None:
        ensure_writable_dir(self.run.root)
        if self.run.info_path.is_file():
            info = self.run.read_info()
            if info.get("status") == "done":
                raise OutputError(
                    f"Run folder {self.run.root} already contains a finished run. Choose a new output folder, or "
                    f"use `glass-engine test --run {self.run.root}` to evaluate it."
                )
            previous = self.run.read_config() if self.run.config_path.is_file() else None
            trained = self.run.last_checkpoint.is_file()
            if previous is not None and previous.to_dict() != self.config.to_dict() and trained:
                raise OutputError(
                    f"Run folder {self.run.root} contains an unfinished run with another configuration. Choose a new "
                    f"output folder to start over, or run again with the same settings to resume it."
                )
        atomic_write(self.run.config_path, lambda tmp: tmp.write_text(self.config.to_yaml(), encoding="utf-8"))

    def _emit(self, kind: str, **values: Any) -> None:
        event = TrainingEvent(kind=kind, **values)
        if kind in ("stage", "warning", "finished"):
            logger.info("%s", event.message)
        self.on_event(event)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise CancelledError("Training cancelled by the user.")

    # ----------------------------------------------------------------------------------------------
    def _run(self) -> dict[str, Any]:
        config = self.config
        torch.manual_seed(config.run.seed)
        np.random.seed(config.run.seed)

        train_samples = list(self.index.train)
        test_samples = list(self.index.test)
        if not train_samples:
            raise DatasetError(f"No training images found for {self.index.category} in {self.index.root}.")
        validation_samples: list[Sample] = []
        if config.run.selection_rule == "validation":
            train_samples, validation_samples = split_validation(
                train_samples, config.data.validation_fraction, config.run.seed
            )
            if not validation_samples:
                raise ConfigError(
                    "The validation checkpoint rule needs held-out good images: data.validation_fraction "
                    f"{config.data.validation_fraction} leaves none of {len(self.index.train)}. Raise it."
                )
        if config.run.selection_rule == "test_auroc_sum" and not test_samples:
            raise DatasetError("The test_auroc_sum checkpoint rule needs test images; none were found. Use `last`.")

        self.run.update_info(
            status="running",
            started=_now(),
            dataset_root=str(self.index.root),
            category=self.index.category,
            layout=self.index.layout,
            train_images=len(train_samples),
            validation_images=len(validation_samples),
            test_images=len(test_samples),
            skipped_files=[[str(path), reason] for path, reason in self.index.skipped],
            selection_rule=config.run.selection_rule,
            device=str(self.device),
            precision=str(self.autocast_dtype).replace("torch.", ""),
        )

        textures = (
            TextureSource.from_folder(Path(config.method.textures)) if config.method.textures else TextureSource.builtin()
        )
        self.run.update_info(textures=textures.describe())

        self._emit("stage", message=f"Building model ({config.backbone.name}) on {self.device}")
        model = GlassModel(config, self.device)
        weights = model.weights_info
        self.run.update_info(pretrained=weights.pretrained, weights_source=weights.source)
        if not weights.pretrained:
            self._emit("warning", message="Backbone weights are RANDOM (random_init): results are not meaningful.")

        mode = self._distribution_mode(train_samples)
        self.run.update_info(distribution_mode=mode)

        budget = CacheBudget(config.run.cache_limit_mb * 1024 * 1024)
        spill_dir = self.run.root / "cache"
        train_cache = self._embed_all("train", train_samples, model, budget, spill_dir) if self.use_cache else None
        mean_embedding = self._mean_embedding(train_samples, model, train_cache)
        test_cache = (
            self._embed_all("test", test_samples, model, budget, spill_dir)
            if self.use_cache and config.run.selection_rule == "test_auroc_sum"
            else None
        )
        validation_set = self._validation_set(validation_samples, model, textures) if validation_samples else None

        las = LASDataset(
            train_samples,
            self.preprocessor,
            textures,
            model.feature_shape,
            config.method,
            config.run.seed,
            foreground=config.method.foreground,
        )

        head = model.head
        optimizers = head.make_optimizers()
        start_epoch, best = self._resume(head, optimizers)
        total = config.method.meta_epochs
        epoch_times: list[float] = []

        try:
            for epoch in range(start_epoch, total):
                epoch_start = time.monotonic()
                if not self.use_cache:
                    mean_embedding = self._mean_embedding(train_samples, model, None)
                center = head.center(mean_embedding.to(self.device))
                stats = self._train_epoch(epoch, las, model, train_cache, center, mode, optimizers)
                row: dict[str, Any] = {"epoch": epoch, **stats}

                if (epoch + 1) % config.method.eval_epochs == 0 or epoch + 1 == total:
                    selection_metrics = self._selection_metrics(model, test_samples, test_cache, validation_set)
                    row.update({f"eval_{key}": value for key, value in selection_metrics.items() if _is_number(value)})
                    best = self._consider_best(epoch, selection_metrics, head, mode, best)
                    self._emit(
                        "evaluation",
                        message=f"Epoch {epoch + 1}: " + _format_metrics(selection_metrics),
                        epoch=epoch + 1,
                        total_epochs=total,
                        metrics=selection_metrics,
                    )

                epoch_times.append(time.monotonic() - epoch_start)
                row["seconds"] = round(epoch_times[-1], 3)
                self.history.append(row)
                self.run.write_history(self.history)
                self._save_last(epoch, head, optimizers, best, mode)
                done = epoch + 1 - start_epoch
                eta = eta_seconds(sum(epoch_times), done, total - start_epoch)
                self._emit(
                    "epoch",
                    message=f"Epoch {epoch + 1}/{total} " + _format_stats(stats),
                    epoch=epoch + 1,
                    total_epochs=total,
                    progress=(epoch + 1) / total,
                    eta_seconds=eta,
                    stats=stats,
                )
        finally:
            if train_cache is not None:
                train_cache.close()

        if config.run.selection_rule == "last" or best is None:
            best = {"epoch": total - 1, "score": None}
            save_checkpoint(self.run.best_checkpoint, {"head": _cpu_state(head), "epoch": total - 1, "mode": mode})

        self._emit("stage", message=f"Evaluating the selected checkpoint (epoch {best['epoch'] + 1}) on the test set")
        state = load_checkpoint(self.run.best_checkpoint)
        head.load_state_dict(state["head"])
        metrics = self._final_evaluation(model, test_samples, test_cache, best["epoch"])
        if test_cache is not None:
            test_cache.close()
        self.run.update_info(status="done", finished=_now(), best_epoch=best["epoch"])
        self._emit("finished", message="Finished: " + _format_metrics(metrics), progress=1.0, metrics=metrics)
        return metrics

    # ----------------------------------------------------------------------------------------------
    def _distribution_mode(self, train_samples: list[Sample]) -> str:
        method = self.config.method
        if method.distribution in (MANIFOLD, HYPERSPHERE):
            atomic_write_json(self.run.distribution_path, {"mode": method.distribution, "source": "forced"})
            return method.distribution
        if method.distribution == "from_table":
            table = analysis.read_distribution_table(Path(method.distribution_table))
            if self.index.category in table:
                mode = table[self.index.category]
                atomic_write_json(
                    self.run.distribution_path, {"mode": mode, "source": f"table:{method.distribution_table}"}
                )
                return mode
            self._emit(
                "warning",
                message=f"Category {self.index.category} is not in {method.distribution_table}; judging it instead.",
            )

        self._emit("stage", message="Judging the distribution (FFT of the mean training image)")
        images = (self.preprocessor.resize_rgb(_read_rgb(sample.path)) for sample in train_samples)
        mean_image = analysis.mean_training_image(images)
        judgement = analysis.judge_distribution(mean_image)
        atomic_write_json(self.run.distribution_path, {**judgement.to_dict(), "source": "fft"})
        ok, encoded = cv2.imencode(".png", judgement.spectrum)
        if ok:
            atomic_write(self.run.spectrum_path, lambda tmp: tmp.write_bytes(encoded.tobytes()))
        self._emit("stage", message=f"Distribution judged {judgement.mode} ({_format_metrics(judgement.to_dict())})")
        return judgement.mode

    def _loader(self, samples: list[Sample]) -> torch.utils.data.DataLoader:
        dataset = ImageDataset(samples, self.preprocessor)
        return torch.utils.data.DataLoader(dataset, batch_size=self.config.data.batch_size, shuffle=False, num_workers=0)

    def _embed_all(self, name: str, samples: list[Sample], model: GlassModel, budget: CacheBudget, spill: Path):
        cache = EmbeddingCache(
            name, len(samples), model.positions, self.config.backbone.target_embed_dimension, budget, spill
        )
        done = 0
        for batch in self._loader(samples):
            self._check_cancel()
            cache.put(batch["index"].tolist(), model.embed(batch["image"]))
            done += len(batch["index"])
            self._emit("stage", message=f"Embedding {name} images {done}/{len(samples)}", samples=done)
        return cache

    def _mean_embedding(self, samples: list[Sample], model: GlassModel, cache: EmbeddingCache | None) -> torch.Tensor:
        total = torch.zeros(model.positions, self.config.backbone.target_embed_dimension, dtype=torch.float64)
        if cache is not None:
            for start in range(0, len(samples), 64):
                indices = list(range(start, min(start + 64, len(samples))))
                total += cache.get(indices).reshape(len(indices), model.positions, -1).double().sum(dim=0)
        else:
            for batch in self._loader(samples):
                self._check_cancel()
                embeddings = model.embed(batch["image"]).cpu()
                total += embeddings.reshape(len(batch["index"]), model.positions, -1).double().sum(dim=0)
        return (total / len(samples)).float()

    # ----------------------------------------------------------------------------------------------
    def _train_epoch(self, epoch, las, model, cache, center, mode, optimizers) -> dict[str, float]:
        config = self.config
        las.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.run.seed * 100_003 + epoch)
        loader = torch.utils.data.DataLoader(
            las,
            batch_size=config.data.batch_size,
            shuffle=True,
            generator=generator,
            num_workers=config.data.workers,
            persistent_workers=False,
        )
        sums: dict[str, float] = {}
        batches = 0
        samples = 0
        limit = config.method.limit
        for batch in _prefetch(loader, enabled=config.data.workers == 0):
            self._check_cancel()
            indices = batch["index"]
            true_embeddings = cache.get(indices.tolist()) if cache is not None else model.embed(batch["image"])
            fake_embeddings = model.embed(batch["aug"])
            step = model.head.train_step(
                true_embeddings.to(self.device),
                fake_embeddings.to(self.device),
                batch["mask_s"].reshape(-1).to(self.device),
                center,
                mode,
                optimizers,
                self.autocast_dtype,
            )
            batches += 1
            samples += len(indices)
            for key, value in asdict(step).items():
                sums[key] = sums.get(key, 0.0) + value
            means = {key: value / batches for key, value in sums.items()}
            total = config.method.meta_epochs
            fraction = min(samples / min(limit + 1, len(las)), 1.0)
            self._emit(
                "batch",
                epoch=epoch + 1,
                total_epochs=total,
                batch=batches,
                samples=samples,
                sample_limit=min(limit, len(las)),
                progress=(epoch + fraction) / total,
                stats=means,
            )
            # The official loop ends the epoch at the first batch that passes `limit` samples.
            if samples > limit:
                break
        return {key: value / max(batches, 1) for key, value in sums.items()}

    # ----------------------------------------------------------------------------------------------
    def _score_samples(
        self,
        model: GlassModel,
        samples: list[Sample],
        cache: EmbeddingCache | None,
        on_batch: Callable[[list[int], torch.Tensor, torch.Tensor, torch.Tensor], None],
    ) -> None:
        """Score images batch by batch (from the cache when given) and hand each batch to `on_batch`."""
        for batch in self._loader(samples):
            self._check_cancel()
            indices = batch["index"].tolist()
            embeddings = cache.get(indices) if cache is not None else model.embed(batch["image"])
            scores, maps = model.score_embeddings(embeddings, len(indices))
            on_batch(indices, scores.cpu(), maps.cpu(), batch["mask"][:, 0] > 0.5)

    def _evaluate_samples(self, model, samples, cache, full: bool, keep=None) -> dict[str, Any]:
        image_scores = np.zeros(len(samples), dtype=np.float64)
        labels = np.array([sample.label for sample in samples])
        pixels = evaluation.PixelAccumulator()
        has_mask = [sample.mask_path is not None or sample.label == 0 for sample in samples]

        def collect(indices, scores, maps, masks):
            for position, index in enumerate(indices):
                image_scores[index] = float(scores[position])
                map_array = maps[position].numpy()
                # A defective image without ground truth cannot take part in pixel metrics.
                if has_mask[index]:
                    pixels.add(map_array, masks[position].numpy())
                if keep is not None:
                    keep(index, map_array)

        self._score_samples(model, samples, cache, collect)
        metrics: dict[str, Any] = dict(evaluation.image_metrics(image_scores, labels))
        metrics.update(pixels.compute(with_official_pro=full))
        metrics["_scores"] = image_scores
        metrics["_pixels"] = pixels
        return metrics

    def _selection_metrics(self, model, test_samples, test_cache, validation_set) -> dict[str, Any]:
        if self.config.run.selection_rule == "validation":
            return self._evaluate_validation(model, validation_set)
        if self.config.run.selection_rule == "last":
            return {}
        metrics = self._evaluate_samples(model, test_samples, test_cache, full=False)
        return {key: value for key, value in metrics.items() if not key.startswith("_")}

    def _consider_best(self, epoch, metrics, head, mode, best):
        rule = self.config.run.selection_rule
        if rule == "last":
            return best
        image = metrics.get("image_auroc")
        pixel = metrics.get("pixel_auroc")
        if image is None and pixel is None:
            self._emit("warning", message="No AUROC is defined on the selection set; keeping the latest epoch.")
            score = float("-inf")
        else:
            score = (image or 0.0) + (pixel or 0.0)
        if best is None or score > best["score"]:
            best = {"epoch": epoch, "score": score, "metrics": _plain(metrics)}
            save_checkpoint(
                self.run.best_checkpoint,
                {"head": _cpu_state(head), "epoch": epoch, "mode": mode, "selection": best},
            )
            self._emit("checkpoint", message=f"New best checkpoint at epoch {epoch + 1} ({rule}: {score:.4f})", epoch=epoch + 1)
        return best

    def _validation_set(self, samples: list[Sample], model: GlassModel, textures: TextureSource) -> dict[str, Any]:
        """Held-out good images plus one LAS-defected copy of each: selection data that never reads the test set."""
        self._emit("stage", message=f"Preparing {len(samples)} held-out good images and their synthetic defects")
        las = LASDataset(
            samples,
            self.preprocessor,
            textures,
            model.feature_shape,
            self.config.method,
            self.config.run.seed + 7919,
            foreground=self.config.method.foreground,
        )
        las.set_epoch(0)
        clean, defective, masks = [], [], []
        for index in range(len(las)):
            item = las[index]
            clean.append(model.embed(item["image"].unsqueeze(0)))
            defective.append(model.embed(item["aug"].unsqueeze(0)))
            masks.append(item["mask_l"].reshape(item["image"].shape[-2:]).numpy() > 0.5)
        return {"clean": clean, "defective": defective, "masks": masks}

    def _evaluate_validation(self, model: GlassModel, validation: dict[str, Any]) -> dict[str, Any]:
        pixels = evaluation.PixelAccumulator()
        scores, labels = [], []
        size = self.config.data.image_size
        for label, embeddings_list in ((0, validation["clean"]), (1, validation["defective"])):
            for position, embeddings in enumerate(embeddings_list):
                score, maps = model.score_embeddings(embeddings, 1)
                scores.append(float(score[0]))
                labels.append(label)
                mask = validation["masks"][position] if label else np.zeros((size, size), dtype=bool)
                pixels.add(maps[0].cpu().numpy(), mask)
        metrics = dict(evaluation.image_metrics(np.array(scores), np.array(labels)))
        metrics.update(pixels.compute(with_official_pro=False))
        return {f"{key}": value for key, value in metrics.items()}

    def _final_evaluation(self, model, samples, cache, best_epoch) -> dict[str, Any]:
        maps_file = None
        if samples and self.config.run.save_maps:
            size = self.config.data.image_size
            maps_file = np.lib.format.open_memmap(
                self.run.root / ".maps.npy.tmp", mode="w+", dtype=np.float16, shape=(len(samples), size, size)
            )

        def keep(index, map_array):
            if maps_file is not None:
                maps_file[index] = map_array.astype(np.float16)

        metrics = self._evaluate_samples(model, samples, cache, full=True, keep=keep) if samples else {}
        scores = metrics.pop("_scores", np.zeros(0))
        pixels = metrics.pop("_pixels", None)
        if maps_file is not None:
            maps_file.flush()
            del maps_file
            (self.run.root / ".maps.npy.tmp").replace(self.run.maps_path)

        labels = np.array([sample.label for sample in samples])
        threshold = evaluation.f1_optimal_threshold(scores, labels) if len(set(labels.tolist())) == 2 else None
        metrics["threshold"] = None if threshold is None else threshold["threshold"]
        metrics["threshold_f1"] = None if threshold is None else threshold["f1"]
        metrics["selection_rule"] = self.config.run.selection_rule
        metrics["best_epoch"] = int(best_epoch)
        info = self.run.read_info()
        metrics["pretrained_backbone"] = info.get("pretrained")
        metrics["distribution_mode"] = info.get("distribution_mode")
        atomic_write_json(self.run.metrics_path, _plain(metrics))

        rows = [
            {
                "path": str(sample.path),
                "label": sample.label,
                "defect_type": sample.defect_type,
                "score": float(scores[i]),
                "map_index": i if self.config.run.save_maps else "",
            }
            for i, sample in enumerate(samples)
        ]
        self.run.write_scores(rows)
        curves: dict[str, Any] = {}
        if len(set(labels.tolist())) == 2:
            curves["image"] = evaluation.image_curves(scores, labels)
        if pixels is not None and pixels.has_masks:
            curves["pixel"] = pixels.curves()
        atomic_write_json(self.run.curves_path, _plain(curves))
        return _plain(metrics)

    # ----------------------------------------------------------------------------------------------
    def _save_last(self, epoch, head, optimizers, best, mode) -> None:
        save_checkpoint(
            self.run.last_checkpoint,
            {
                "head": _cpu_state(head),
                "optimizers": [optimizer.state_dict() for optimizer in optimizers],
                "epoch": epoch,
                "best": best,
                "mode": mode,
                "history": self.history,
                "torch_rng": torch.get_rng_state(),
            },
        )

    def _resume(self, head, optimizers) -> tuple[int, dict | None]:
        if not self.run.last_checkpoint.is_file():
            return 0, None
        state = load_checkpoint(self.run.last_checkpoint, self.device)
        head.load_state_dict(state["head"])
        for optimizer, optimizer_state in zip(optimizers, state["optimizers"]):
            optimizer.load_state_dict(optimizer_state)
        self.history = list(state.get("history", []))
        torch.set_rng_state(state["torch_rng"].cpu())
        epoch = int(state["epoch"]) + 1
        self._emit("stage", message=f"Resuming from the checkpoint of epoch {epoch}")
        return epoch, state.get("best")


def _prefetch(loader: torch.utils.data.DataLoader, enabled: bool, depth: int = 2) -> Iterator[dict]:
    """Iterate `loader` in a background thread so that LAS images are built while the model trains."""
    if not enabled:
        yield from loader
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    sentinel = object()

    def produce() -> None:
        try:
            for item in loader:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(sentinel)
        except Exception as exc:  # handed to the consumer, which re-raises it
            items.put(exc)

    thread = threading.Thread(target=produce, name="las-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is sentinel:
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                items.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _read_rgb(path: Path) -> np.ndarray:
    from glass_engine.data import read_image

    return read_image(path)


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if not str(key).startswith("_")}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _format_metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4f}")
        elif value is None and not key.startswith("_"):
            parts.append(f"{key}=n/a")
        elif isinstance(value, (int, str)):
            parts.append(f"{key}={value}")
    return " ".join(parts)


def _format_stats(stats: dict[str, float]) -> str:
    return " ".join(f"{key}={value:.4f}" for key, value in stats.items())


def evaluate_run(run_path: Path, on_event: EventCallback | None = None, device: str | None = None) -> dict[str, Any]:
    """Re-evaluate a finished run's selected checkpoint on its test set and rewrite its result files."""
    from glass_engine.data import discover
    from glass_engine.inference import resolve_run

    run, checkpoint = resolve_run(Path(run_path))
    config = run.read_config()
    if device:
        config.run.device = device
    info = run.read_info()
    index = discover(Path(info["dataset_root"]), info["category"], info.get("layout", "auto"))
    trainer = Trainer(config, index, run.root, on_event=on_event, use_cache=False)
    model = GlassModel(config, trainer.device)
    state = load_checkpoint(checkpoint, trainer.device)
    model.head.load_state_dict(state["head"])
    return trainer._final_evaluation(model, list(index.test), None, int(state.get("epoch", -1)))
