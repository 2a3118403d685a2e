"""`glass-engine bench`: the reference GLASS loop and the optimised loop, side by side in one process.

Figures, each printed with both values and their ratio:
- seconds per epoch with evaluation every epoch. The reference loop does what the official code does each
  epoch: a backbone pass over all training images for the centre, clean and LAS backbone passes per batch
  with the unfold embedding, the full discriminator in every ascent move, and a backbone pass over all test
  images for the evaluation with every map kept in memory. The optimised loop uses the embedding cache,
  the folded embedding, the first-layer reuse and streaming evaluation;
- inference images per second, end to end (image file to map), against the bare backbone forward;
- AUPRO seconds: exact single-sort AUPRO against the official 200-threshold computation;
- peak RSS of evaluating N and 4N test images (child processes), streaming against keeping lists;
- metrics after the same short training in float32 and in bfloat16 autocast, and their difference.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glass_engine import evaluation
from glass_engine.config import GlassConfig, preset
from glass_engine.data import DatasetIndex, ImageDataset, Preprocessor, discover, read_image
from glass_engine.device import resolve_device
from glass_engine.errors import ConfigError, DatasetError
from glass_engine.fileio import atomic_write_json
from glass_engine.inference import prefetch_batches
from glass_engine.model import MANIFOLD
from glass_engine.pipeline import GlassModel
from glass_engine.synthesis import LASDataset, TextureSource

logger = logging.getLogger(__name__)

FIGURES = ("epoch", "inference", "aupro", "memory", "precision")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"


def register_cli(commands: Any) -> None:
    bench = commands.add_parser("bench", help="time the reference and the optimised loops side by side")
    bench.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset root (default: shared magnetic_tile)")
    bench.add_argument("--category", default=None)
    bench.add_argument("--quick", action="store_true", help="small subset and image size, under 3 minutes")
    bench.add_argument("--preset", default="official", choices=["official", "fast", "mobilenet"])
    bench.add_argument("--weights", type=Path, help="local backbone state dict (speed does not depend on it)")
    bench.add_argument("--image-size", type=int, help="default 288 (quick: 160)")
    bench.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    bench.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    bench.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help=f"comma-separated subset of {','.join(FIGURES)} (default: all); the summary needs all",
    )
    bench.add_argument("--memory-probe", help=argparse.SUPPRESS)
    bench.set_defaults(handler=command_bench)


def command_bench(args: argparse.Namespace) -> int:
    if args.memory_probe:
        sys.stdout.write(json.dumps(_memory_probe(json.loads(args.memory_probe))) + "\n")
        return 0
    results = run_benchmark(args)
    if args.out:
        atomic_write_json(args.out, results)
    return 0


def _bench_config(args: argparse.Namespace) -> GlassConfig:
    config = preset(args.preset)
    changes: dict[str, Any] = {"run.device": args.device, "method.eval_epochs": 1, "run.seed": 0}
    changes["data.image_size"] = args.image_size or (160 if args.quick else 288)
    if args.weights:
        changes["backbone.weights"] = str(args.weights.resolve())
    else:
        changes["backbone.random_init"] = True
    return config.updated(changes)


def _subset(index: DatasetIndex, train: int, test: int) -> DatasetIndex:
    """Deterministic subset keeping the share of good and defective test images."""
    good = [s for s in index.test if s.label == 0]
    bad = [s for s in index.test if s.label == 1]
    bad_count = round(test * len(bad) / max(len(index.test), 1))
    picked = good[:: max(len(good) // max(test - bad_count, 1), 1)][: test - bad_count]
    picked += bad[:: max(len(bad) // max(bad_count, 1), 1)][:bad_count]
    return DatasetIndex(index.root, index.category, index.layout, index.train[:train], picked, [], [])


def _line(name: str, reference: float, optimised: float, unit: str, ratio: float) -> str:
    return f"{name:<28} reference {reference:10.3f} {unit:<8} optimised {optimised:10.3f} {unit:<8} ratio {ratio:7.2f}"


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    if not args.data.is_dir():
        raise DatasetError(f"Benchmark data {args.data} not found. Pass --data with an MVTec-layout dataset root.")
    config = _bench_config(args)
    torch.manual_seed(0)
    full = discover(args.data, args.category)
    # Test ~ 1.2 x train as in magnetic tile; `limit` is cut further because GAS dominates an epoch on a CPU.
    train_count, test_count, limit = (16, 16, 8) if args.quick else (40, 48, 16)
    index = _subset(full, train_count, test_count)
    config = config.updated({"method.limit": limit})
    device = resolve_device(config.run.device)
    model = GlassModel(config, device)
    preprocessor = Preprocessor(config.data.image_size, config.data.resize_policy)
    textures = TextureSource.builtin()
    las = LASDataset(index.train, preprocessor, textures, model.feature_shape, config.method, 0)
    logger.info(
        f"bench: {config.backbone.name} {config.data.image_size}px device={device} train={len(index.train)} "
        f"test={len(index.test)} limit={limit} step={config.method.step} threads={torch.get_num_threads()} "
        f"weights={'file' if config.backbone.weights else 'random (speed only)'}"
    )
    results: dict[str, Any] = {"config": config.to_dict(), "train": len(index.train), "test": len(index.test)}

    selected = [name.strip() for name in args.figures.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(FIGURES))
    if unknown:
        raise ConfigError(f"Unknown benchmark figure(s) {', '.join(unknown)}. Choose from {', '.join(FIGURES)}.")
    figures: dict[str, float] = {}

    if "epoch" in selected:
        reference_epoch = _time_epoch(model, config, index, las, preprocessor, optimised=False)
        optimised_epoch = _time_epoch(model, config, index, las, preprocessor, optimised=True)
        results["epoch_seconds"] = {"reference": reference_epoch, "optimised": optimised_epoch}
        figures["epoch_speedup"] = reference_epoch / optimised_epoch
        logger.info(_line("epoch (eval every epoch)", reference_epoch, optimised_epoch, "s", figures["epoch_speedup"]))

    if "inference" in selected:
        end_to_end, backbone_only = _time_inference(model, index, preprocessor)
        figures["inference_over_backbone"] = backbone_only / end_to_end
        results["inference_images_per_second"] = {"end_to_end": end_to_end, "backbone": backbone_only}
        logger.info(
            f"{'inference images/s':<28} backbone   {backbone_only:10.2f} img/s    end-to-end {end_to_end:10.2f} img/s"
            f"    time ratio {figures['inference_over_backbone']:6.2f}"
        )

    if "aupro" in selected:
        aupro_maps = 20 if args.quick else 100
        aupro = evaluation.benchmark_aupro(n_maps=aupro_maps, size=288, seed=0)
        figures["aupro_speedup"] = aupro["pro_official_s"] / aupro["aupro_exact_s"]
        results["aupro"] = aupro
        label = f"AUPRO ({aupro_maps} maps 288px)"
        logger.info(_line(label, aupro["pro_official_s"], aupro["aupro_exact_s"], "s", figures["aupro_speedup"]))

    if "memory" in selected:
        memory = _memory_growth(args, config, index, small=8 if args.quick else 24)
        results["memory"] = memory
        figures["memory_growth"] = memory["optimised_growth"]
        logger.info(
            f"{'peak RSS eval N -> 4N':<28} reference {memory['reference'][0]:8.0f} -> {memory['reference'][1]:8.0f} MB   "
            f"optimised {memory['optimised'][0]:8.0f} -> {memory['optimised'][1]:8.0f} MB   "
            f"growth {memory['reference_growth']:.3f} vs {memory['optimised_growth']:.3f}"
        )

    if "precision" in selected:
        precision = _precision_check(config, index)
        results["precision"] = precision
        logger.info(
            f"{'bfloat16 vs float32':<28} image_auroc {precision['float32']['image_auroc']:.4f} vs "
            f"{precision['bfloat16']['image_auroc']:.4f}  pixel_auroc {precision['float32']['pixel_auroc']:.4f} vs "
            f"{precision['bfloat16']['pixel_auroc']:.4f}  max diff {precision['max_points_difference']:.2f} points  "
            f"time ratio {precision['seconds']['float32'] / precision['seconds']['bfloat16']:.2f}"
        )

    if all(name in figures for name in ("epoch_speedup", "inference_over_backbone", "aupro_speedup", "memory_growth")):
        summary = (
            f"summary: epoch_speedup={figures['epoch_speedup']:.2f} "
            f"inference_over_backbone={figures['inference_over_backbone']:.2f} "
            f"aupro_speedup={figures['aupro_speedup']:.2f} memory_growth={figures['memory_growth']:.3f}"
        )
        results["summary"] = summary
        logger.info(summary)
    return results


def _time_epoch(model, config, index, las, preprocessor, optimised: bool) -> float:
    """Time one epoch with evaluation. The optimised loop's embedding cache is built once per run, so its
    cost is logged separately and not counted in the epoch."""
    head_state = {k: v.clone() for k, v in model.head.state_dict().items()}
    head = model.head
    optimizers = head.make_optimizers()
    batch_size = config.data.batch_size
    torch.manual_seed(0)
    started = time.perf_counter()

    def loader(samples):
        return torch.utils.data.DataLoader(ImageDataset(samples, preprocessor), batch_size=batch_size)

    if optimised:
        train_cache = [model.embed(batch["image"]) for batch in loader(index.train)]
        train_embeddings = torch.cat(train_cache).reshape(len(index.train), model.positions, -1)
        test_embeddings = torch.cat([model.embed(batch["image"]) for batch in loader(index.test)]).reshape(
            len(index.test), model.positions, -1
        )
        cache_seconds = time.perf_counter() - started
        started = time.perf_counter()
        center = head.center(train_embeddings.mean(dim=0))
    else:
        total = None
        for batch in loader(index.train):
            projected = head.center(model.embed(batch["image"], reference=True).reshape(len(batch["index"]), model.positions, -1).mean(0))
            total = projected if total is None else total + projected
        center = total / len(loader(index.train))

    las.set_epoch(0)
    train_loader = torch.utils.data.DataLoader(las, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    samples = 0
    for batch in train_loader:
        if optimised:
            true = train_embeddings[batch["index"]].reshape(-1, train_embeddings.shape[-1])
            fake = model.embed(batch["aug"])
        else:
            true = model.embed(batch["image"], reference=True)
            fake = model.embed(batch["aug"], reference=True)
        head.train_step(true, fake, batch["mask_s"].reshape(-1), center, MANIFOLD, optimizers, reuse_first_layer=optimised)
        samples += len(batch["index"])
        if samples > config.method.limit:
            break

    if optimised:
        pixels = evaluation.PixelAccumulator()
        scores = []
        for start in range(0, len(index.test), batch_size):
            chunk = test_embeddings[start : start + batch_size]
            image_scores, maps = model.score_embeddings(chunk.reshape(-1, chunk.shape[-1]), len(chunk))
            scores.extend(image_scores.tolist())
            for i, sample in enumerate(index.test[start : start + batch_size]):
                mask = _mask_for(sample, preprocessor)
                if mask is not None:
                    pixels.add(maps[i].numpy(), mask)
        pixels.compute(with_official_pro=False)
    else:
        kept_maps, kept_masks, scores = [], [], []
        for batch in loader(index.test):
            embeddings = model.embed(batch["image"], reference=True)
            image_scores, maps = model.score_embeddings(embeddings, len(batch["index"]))
            scores.extend(image_scores.tolist())
            kept_maps.extend(list(maps.numpy()))
            kept_masks.extend(list(batch["mask"][:, 0].numpy() > 0.5))
        stacked = np.stack(kept_maps)
        masks = np.stack(kept_masks)
        from sklearn.metrics import average_precision_score, roc_auc_score

        if masks.any():
            roc_auc_score(masks.ravel(), stacked.ravel())
            average_precision_score(masks.ravel(), stacked.ravel())
    elapsed = time.perf_counter() - started
    model.head.load_state_dict(head_state)
    if optimised:
        # The caching happens once per run; spread over the run's epochs it is small. Report the epoch alone
        # and log the one-off cost so that the figure can be checked.
        logger.info("%-28s %.2f s once per run (not counted in the epoch)", "embedding cache", cache_seconds)
    return elapsed


def _mask_for(sample, preprocessor) -> np.ndarray:
    size = preprocessor.image_size
    if sample.mask_path is None:
        return np.zeros((size, size), dtype=bool) if sample.label == 0 else None
    from glass_engine.data import read_mask

    mask = read_mask(sample.mask_path)
    return preprocessor.mask_to_tensor(mask)[0].numpy() > 0.5


def _time_inference(model, index, preprocessor) -> tuple[float, float]:
    paths = [sample.path for sample in index.test][:32]
    batch = 8
    tensors = torch.stack([preprocessor.image_to_tensor(read_image(p)) for p in paths[:batch]])
    with torch.inference_mode():
        model.extractor(tensors.to(model.device))
        started = time.perf_counter()
        rounds = max(len(paths) // batch, 1)
        for _ in range(rounds):
            model.extractor(tensors.to(model.device).contiguous(memory_format=torch.channels_last))
        backbone_rate = rounds * batch / (time.perf_counter() - started)

    started = time.perf_counter()
    for _, images, tensor in prefetch_batches(paths, batch, preprocessor):
        _, maps = model(tensor)
        for image, map_array in zip(images, maps.cpu().numpy()):
            preprocessor.map_to_original(map_array, image.shape[:2])
    end_to_end_rate = len(paths) / (time.perf_counter() - started)
    return end_to_end_rate, backbone_rate


def _memory_growth(args, config, index, small: int) -> dict[str, Any]:
    figures: dict[str, list[float]] = {"reference": [], "optimised": []}
    for kind in ("reference", "optimised"):
        for count in (small, 4 * small):
            payload = {
                "config": config.to_dict(),
                "data": str(index.root),
                "category": index.category,
                "count": count,
                "kind": kind,
            }
            command = [sys.executable, "-m", "glass_engine.cli", "bench", "--memory-probe", json.dumps(payload)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            figures[kind].append(json.loads(output)["peak_rss_mb"])
    return {
        **figures,
        "reference_growth": figures["reference"][1] / figures["reference"][0] - 1,
        "optimised_growth": figures["optimised"][1] / figures["optimised"][0] - 1,
    }


class _RssSampler:
    """Highest resident set size seen while active, sampled from /proc every few milliseconds.

    ru_maxrss cannot be reset and is dominated by start-up spikes, so the evaluation phase is sampled alone.
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = resource.getpagesize()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _current(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * self._page

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._current())
            time.sleep(self.interval)

    def __enter__(self) -> "_RssSampler":
        self.peak = self._current()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._current())


def _memory_probe(payload: dict[str, Any]) -> dict[str, Any]:
    """Child process: evaluate `count` test images (cycled) and report the peak RSS of the evaluation."""
    logging.disable(logging.WARNING)
    config = GlassConfig.from_dict(payload["config"])
    index = discover(Path(payload["data"]), payload["category"])
    samples = [index.test[i % len(index.test)] for i in range(payload["count"])]
    model = GlassModel(config, resolve_device(config.run.device))
    preprocessor = Preprocessor(config.data.image_size, config.data.resize_policy)
    loader = torch.utils.data.DataLoader(ImageDataset(samples, preprocessor), batch_size=config.data.batch_size)
    with _RssSampler() as sampler:
        if payload["kind"] == "optimised":
            pixels = evaluation.PixelAccumulator()
            for batch in loader:
                _, maps = model(batch["image"])
                for i in range(len(maps)):
                    pixels.add(maps[i].numpy(), batch["mask"][i, 0].numpy() > 0.5)
            pixels.compute(with_official_pro=False)
        else:
            # What the official predict() keeps: every image and mask as nested Python lists, every map.
            images, maps_kept, masks_kept = [], [], []
            for batch in loader:
                _, maps = model(batch["image"])
                images.extend(batch["image"].numpy().tolist())
                masks_kept.extend(batch["mask"].numpy().tolist())
                maps_kept.extend(list(maps.numpy()))
            stacked = np.array(maps_kept)
            evaluation.aupro_exact(stacked, np.array(masks_kept)[:, 0] > 0.5)
    return {"peak_rss_mb": sampler.peak / 2**20}


def _precision_check(config: GlassConfig, index: DatasetIndex) -> dict[str, Any]:
    """Train the same short run (2 epochs of 16 samples) in float32 and bfloat16 autocast; compare the metrics.

    NOTE: two short epochs show little about agreement after a full training; the CPU default stays float32.
    """
    from glass_engine.training import Trainer
    import tempfile

    epochs = 2
    outcome: dict[str, Any] = {"epochs": epochs, "seconds": {}}
    for precision in ("float32", "bfloat16"):
        run_config = config.updated(
            {
                "run.precision": precision,
                "method.meta_epochs": epochs,
                "method.limit": 8,
                "run.selection_rule": "last",
                "run.save_maps": False,
            }
        )
        with tempfile.TemporaryDirectory(prefix="glass-bench-") as folder:
            started = time.perf_counter()
            metrics = Trainer(run_config, index, Path(folder) / "run").run_training()
            outcome["seconds"][precision] = time.perf_counter() - started
        outcome[precision] = {key: metrics.get(key) for key in ("image_auroc", "pixel_auroc", "pixel_aupro")}
    differences = [
        abs(outcome["float32"][key] - outcome["bfloat16"][key]) * 100
        for key in ("image_auroc", "pixel_auroc", "pixel_aupro")
        if outcome["float32"][key] is not None and outcome["bfloat16"][key] is not None
    ]
    outcome["max_points_difference"] = max(differences) if differences else float("nan")
    return outcome


