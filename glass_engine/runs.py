"""Layout of a run folder and reading and writing its files.

RUN_DIR/
  config.yaml        the full configuration (GlassConfig)
  run.json           dataset, category, status, weights source, distribution mode, selection rule, timings
  metrics.json       final metrics of the selected checkpoint on the test set (keys: METRIC_KEYS)
  history.csv        one row per epoch: losses, p_true, p_fake, radii and the metrics of evaluated epochs
  scores.csv         one row per test image: path, label, defect_type, score, map_index
  curves.json        image ROC and PR points, pixel ROC, PR and PRO points
  distribution.json  the manifold / hypersphere judgement and its quantities; spectrum.png beside it
  maps.npy           float16 (N, S, S) anomaly maps of the test images at the network input size
  checkpoints/       last.pt (resume state, every epoch) and best.pt (selected weights)
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from glass_engine.config import GlassConfig
from glass_engine.errors import CheckpointError
from glass_engine.fileio import atomic_write, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

METRIC_KEYS = (
    "image_auroc",
    "image_ap",
    "pixel_auroc",
    "pixel_ap",
    "pixel_aupro",
    "pixel_pro_official",
    "threshold",
    "selection_rule",
    "best_epoch",
)
SCORE_COLUMNS = ("path", "label", "defect_type", "score", "map_index")


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def info_path(self) -> Path:
        return self.root / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    @property
    def history_path(self) -> Path:
        return self.root / "history.csv"

    @property
    def scores_path(self) -> Path:
        return self.root / "scores.csv"

    @property
    def curves_path(self) -> Path:
        return self.root / "curves.json"

    @property
    def distribution_path(self) -> Path:
        return self.root / "distribution.json"

    @property
    def spectrum_path(self) -> Path:
        return self.root / "spectrum.png"

    @property
    def maps_path(self) -> Path:
        return self.root / "maps.npy"

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / "best.pt"

    def read_config(self) -> GlassConfig:
        if not self.config_path.is_file():
            raise CheckpointError(
                f"Run folder {self.root} has no config.yaml. Give the folder that `glass-engine train --out` wrote."
            )
        return GlassConfig.load(self.config_path)

    def read_info(self) -> dict[str, Any]:
        return _read_json(self.info_path)

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.info_path, info)

    def update_info(self, **changes: Any) -> dict[str, Any]:
        info = self.read_info() if self.info_path.is_file() else {}
        info.update(changes)
        self.write_info(info)
        return info

    def read_metrics(self) -> dict[str, Any]:
        return _read_json(self.metrics_path)

    def read_scores(self) -> list[dict[str, Any]]:
        if not self.scores_path.is_file():
            raise CheckpointError(f"Run folder {self.root} has no scores.csv; the run did not finish evaluation.")
        with open(self.scores_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            row["label"] = int(row["label"])
            row["score"] = float(row["score"])
            row["map_index"] = int(row["map_index"]) if row.get("map_index") not in (None, "") else None
        return rows

    def write_scores(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=SCORE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "score": repr(float(row["score"]))})
        atomic_write_text(self.scores_path, buffer.getvalue())

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for row in rows:
            columns.extend(key for key in row if key not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.history_path, buffer.getvalue())

    def read_history(self) -> list[dict[str, Any]]:
        if not self.history_path.is_file():
            return []
        with open(self.history_path, newline="", encoding="utf-8") as handle:
            return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]

    def read_curves(self) -> dict[str, Any]:
        return _read_json(self.curves_path) if self.curves_path.is_file() else {}

    def read_distribution(self) -> dict[str, Any]:
        return _read_json(self.distribution_path) if self.distribution_path.is_file() else {}

    def set_user_threshold(self, threshold: float) -> None:
        """Store the operator's OK/NG threshold; inspection and reports use it instead of the F1 one."""
        self.update_info(user_threshold=float(threshold))

    def threshold(self) -> float | None:
        """Return the threshold in force: the operator's if set, else the F1-optimal one from metrics.json."""
        info = self.read_info() if self.info_path.is_file() else {}
        if info.get("user_threshold") is not None:
            return float(info["user_threshold"])
        if self.metrics_path.is_file():
            value = self.read_metrics().get("threshold")
            return None if value is None else float(value)
        return None


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash while saving keeps the previous file intact."""
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    if not Path(path).is_file():
        raise CheckpointError(f"Checkpoint {path} not found. Check the run folder or train the model first.")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(f"Checkpoint {path} is unreadable ({exc}). Train again or use another run.") from exc


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path} not found. Give a run folder written by `glass-engine train`.")
    return json.loads(path.read_text(encoding="utf-8"))


def _number(value: str) -> Any:
    if value in ("", None):
        return None
    try:
        return float(value)
    except ValueError:
        return value
