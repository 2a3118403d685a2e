"""Shared fixtures: offscreen Qt, a private user-data folder, and the location of ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DATASETS = SHARED / "datasets"
MOBILENET_WEIGHTS = SHARED / "weights" / "mobilenet_v2_imagenet_coral_tflite_quant.pth"


@pytest.fixture(autouse=True)
def _private_user_data(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("glass-home")
    monkeypatch.setenv("GLASS_STUDIO_HOME", str(home))
    # Keep torchvision's cache away from the user's real one so that tests see an offline machine.
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    yield home


def shared_dataset(name: str) -> Path:
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} is not available")
    return path


def mobilenet_weights() -> Path:
    if not MOBILENET_WEIGHTS.is_file():
        pytest.skip(f"shared weights {MOBILENET_WEIGHTS} are not available")
    return MOBILENET_WEIGHTS


TINY_RUN = {
    "data.image_size": 96,
    "data.batch_size": 4,
    "method.meta_epochs": 2,
    "method.eval_epochs": 1,
    "method.limit": 8,
    "method.step": 5,
    "method.dsc_hidden": 64,
    "run.device": "cpu",
}


def tiny_run_config(changes: dict | None = None):
    """MobileNetV2 preset with the shared weights, shrunk so that a training takes seconds on a CPU."""
    from glass_engine.config import preset

    settings = {"backbone.weights": str(mobilenet_weights()), **TINY_RUN, **(changes or {})}
    return preset("mobilenet").updated(settings)
