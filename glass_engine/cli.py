"""Command line: `glass-engine train / test / predict / analyze / report / export / bench`.

Progress goes to the terminal and the log file; bad input ends with a non-zero exit code and a one-line
reason naming the value and the fix.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from pathlib import Path
from typing import Any

from glass_engine.config import PRESETS, GlassConfig, preset
from glass_engine.errors import GlassError
from glass_engine.logsetup import configure_logging

logger = logging.getLogger("glass_engine.cli")

EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glass-engine", description="Train and use GLASS anomaly detectors headless.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model on one category and evaluate it")
    train.add_argument("--data", required=True, type=Path, help="dataset root folder")
    train.add_argument("--category", help="category (sub-folder) to train; optional for the folder layout")
    train.add_argument("--layout", default="auto", choices=["auto", "mvtec", "visa", "folder"])
    train.add_argument("--config", type=Path, help="YAML configuration file (applied over the preset)")
    train.add_argument("--preset", default="official", choices=PRESETS, help="starting configuration")
    train.add_argument("--backbone", help="backbone name, e.g. wide_resnet50_2 or mobilenet_v2")
    train.add_argument("--layers", help="comma-separated backbone module names to extract")
    weights = train.add_mutually_exclusive_group()
    weights.add_argument("--weights", type=Path, help="local torchvision state dict of the backbone")
    weights.add_argument("--random-init", action="store_true", help="untrained backbone (tests only)")
    train.add_argument("--epochs", type=int, help="meta epochs")
    train.add_argument("--eval-every", type=int, help="evaluate every N epochs")
    train.add_argument("--limit", type=int, help="training samples per epoch")
    train.add_argument("--image-size", type=int, help="network input side in pixels")
    train.add_argument("--batch-size", type=int, help="images per batch")
    train.add_argument("--textures", type=Path, help="texture folder for LAS (default: built-in textures)")
    train.add_argument("--distribution", choices=["auto", "manifold", "hypersphere", "from_table"])
    train.add_argument("--distribution-table", type=Path, help=".xlsx of per-category judgements")
    train.add_argument("--selection-rule", choices=["test_auroc_sum", "validation", "last"])
    train.add_argument("--precision", choices=["auto", "float32", "bfloat16", "float16"])
    train.add_argument("--seed", type=int)
    train.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    train.add_argument("--no-cache", action="store_true", help="recompute clean embeddings every epoch")
    train.add_argument("--out", required=True, type=Path, help="run folder to write (resumes an unfinished run)")

    test = commands.add_parser("test", help="re-evaluate a trained run on its test set")
    test.add_argument("--run", required=True, type=Path, help="run folder or checkpoint file")
    test.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])

    predict = commands.add_parser("predict", help="score images or folders with a trained run")
    predict.add_argument("--run", required=True, type=Path, help="run folder or checkpoint file")
    predict.add_argument("paths", nargs="+", type=Path, help="image files or folders")
    predict.add_argument("--out", required=True, type=Path, help="folder for heatmaps and scores.csv")
    predict.add_argument("--threshold", type=float, help="OK/NG threshold (default: the run's)")
    predict.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    analyze = commands.add_parser("analyze", help="distribution judgement (manifold/hypersphere) per category")
    analyze.add_argument("--data", required=True, type=Path, help="dataset root folder")
    analyze.add_argument("--layout", default="auto", choices=["auto", "mvtec", "visa", "folder"])
    analyze.add_argument("--image-size", type=int, default=288)
    analyze.add_argument("--out", required=True, type=Path, help=".xlsx file to write")

    _add_optional_commands(commands)
    return parser


def _add_optional_commands(commands: Any) -> None:
    """Commands whose modules register themselves: report, export and bench."""
    for module_name in ("glass_engine.reports", "glass_engine.onnx_export", "glass_engine.bench"):
        try:
            module = __import__(module_name, fromlist=["register_cli"])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register_cli(commands)


def config_from_args(args: argparse.Namespace) -> GlassConfig:
    config = preset(args.preset)
    if args.config:
        overrides = GlassConfig.load(args.config).to_dict()
        base = config.to_dict()
        raw = _load_yaml_keys(args.config)
        for section, values in raw.items():
            for key in values or {}:
                base[section][key] = overrides[section][key]
        config = GlassConfig.from_dict(base)
    changes: dict[str, Any] = {}
    if args.backbone:
        from glass_engine.features import DEFAULT_LAYERS

        changes["backbone.name"] = args.backbone
        if not args.layers and args.backbone in DEFAULT_LAYERS and args.backbone != config.backbone.name:
            changes["backbone.layers"] = DEFAULT_LAYERS[args.backbone]
    for attribute, key in (
        ("layers", "backbone.layers"),
        ("epochs", "method.meta_epochs"),
        ("eval_every", "method.eval_epochs"),
        ("limit", "method.limit"),
        ("image_size", "data.image_size"),
        ("batch_size", "data.batch_size"),
        ("distribution", "method.distribution"),
        ("selection_rule", "run.selection_rule"),
        ("precision", "run.precision"),
        ("seed", "run.seed"),
        ("device", "run.device"),
    ):
        value = getattr(args, attribute)
        if value is not None:
            changes[key] = value
    if args.weights:
        changes["backbone.weights"] = str(args.weights.expanduser().resolve())
    if args.random_init:
        changes["backbone.random_init"] = True
    if args.textures:
        changes["method.textures"] = str(args.textures.expanduser().resolve())
    if args.distribution_table:
        changes["method.distribution_table"] = str(args.distribution_table.expanduser().resolve())
    if args.no_cache:
        changes["run.cache_features"] = False
    return config.updated(changes)


def _load_yaml_keys(path: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


class TerminalProgress:
    """Turns training events into log lines, at most one batch line every few seconds."""

    def __init__(self, interval: float = 5.0):
        self.interval = interval
        self._last = 0.0

    def __call__(self, event: Any) -> None:
        if event.kind == "batch":
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            stats = " ".join(f"{key}={value:.3f}" for key, value in event.stats.items())
            logger.info(
                "epoch %d/%d batch %d samples %d/%d %s", event.epoch, event.total_epochs, event.batch, event.samples, event.sample_limit, stats
            )
        elif event.kind == "epoch":
            eta = f" ETA {event.eta_seconds / 60:.1f} min" if event.eta_seconds else ""
            logger.info("%s%s", event.message, eta)
        elif event.kind in ("evaluation", "checkpoint"):
            logger.info("%s", event.message)
        elif event.kind == "warning":
            logger.warning("%s", event.message)


def command_train(args: argparse.Namespace) -> int:
    from glass_engine.data import discover
    from glass_engine.training import Trainer

    config = config_from_args(args)
    index = discover(args.data, args.category, args.layout)
    for path, reason in index.skipped:
        logger.warning("Skipped %s: %s", path, reason)
    started = time.monotonic()
    metrics = Trainer(config, index, args.out, on_event=TerminalProgress()).run_training()
    logger.info("Run written to %s in %.1f min", args.out, (time.monotonic() - started) / 60)
    _log_metrics(metrics)
    return 0


def command_test(args: argparse.Namespace) -> int:
    from glass_engine.training import evaluate_run

    metrics = evaluate_run(args.run, device=args.device)
    _log_metrics(metrics)
    return 0


def command_predict(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from glass_engine.fileio import atomic_write_text, ensure_writable_dir
    from glass_engine.inference import Predictor, collect_image_paths

    predictor = Predictor(args.run, device=args.device, threshold=args.threshold)
    paths, skipped = collect_image_paths(args.paths)
    for path, reason in skipped:
        logger.warning("Skipped %s: %s", path, reason)
    out = ensure_writable_dir(args.out)
    heatmap_dir = ensure_writable_dir(out / "heatmaps")
    rows = []
    for number, prediction in enumerate(predictor.predict_paths(paths), start=1):
        name = f"{number:05d}_{Path(prediction.path).stem}.png"
        heat = np.clip(prediction.original_map * 255.0, 0, 255).astype(np.uint8)
        ok, encoded = cv2.imencode(".png", cv2.applyColorMap(heat, cv2.COLORMAP_JET))
        if ok:
            encoded.tofile(heatmap_dir / name)
        decision = ""
        if prediction.is_defective is not None:
            decision = "NG" if prediction.is_defective else "OK"
        rows.append([prediction.path, f"{prediction.score:.6f}", decision, f"heatmaps/{name}"])
        logger.info("%s score=%.4f %s", prediction.path, prediction.score, decision)
    lines = ["path,score,decision,heatmap"] + [",".join(_csv_field(v) for v in row) for row in rows]
    atomic_write_text(out / "scores.csv", "\n".join(lines) + "\n")
    logger.info("Scored %d images (%d skipped); results in %s", len(rows), len(skipped), out)
    return 0


def _csv_field(value: str) -> str:
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def command_analyze(args: argparse.Namespace) -> int:
    from glass_engine import analysis
    from glass_engine.data import Preprocessor, discover, list_categories, read_image

    preprocessor = Preprocessor(args.image_size)
    rows = []
    for category in list_categories(args.data, args.layout):
        index = discover(args.data, category, args.layout)
        mean_image = analysis.mean_training_image(preprocessor.resize_rgb(read_image(s.path)) for s in index.train)
        judgement = analysis.judge_distribution(mean_image)
        logger.info("%s: %s (points %d, radius %.1f)", category, judgement.mode, judgement.points, judgement.radius)
        rows.append({"category": category, **judgement.to_dict(), "spectrum": judgement.spectrum})
    analysis.write_distribution_table(rows, args.out)
    logger.info("Distribution table written to %s", args.out)
    return 0


def _log_metrics(metrics: dict[str, Any]) -> None:
    for key, value in metrics.items():
        if isinstance(value, float):
            logger.info("%-20s %.4f", key, value)
        else:
            logger.info("%-20s %s", key, "not available" if value is None else value)


COMMANDS = {"train": command_train, "test": command_test, "predict": command_predict, "analyze": command_analyze}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("glass-engine", level=logging.DEBUG if args.verbose else logging.INFO)
    handler = COMMANDS.get(args.command) or getattr(args, "handler", None)
    try:
        return handler(args)
    except GlassError as exc:
        logger.error("%s", exc)
        return EXIT_CANCELLED if exc.__class__.__name__ == "CancelledError" else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        logger.error("Interrupted; the last completed epoch is saved and the run resumes when started again.")
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
