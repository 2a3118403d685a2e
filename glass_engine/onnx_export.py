"""Export a trained run to ONNX and score images with ONNX Runtime.

The exported graph is the whole scoring path of `glass_engine.pipeline.GlassModel`: backbone layers,
patch embedding, projection, discriminator, bilinear upsampling of the patch scores to the input size and
the Gaussian blur (sigma 4, reflect border, truncate 4).

Graph interface:

- input `images`: float32 (B, 3, S, S), RGB scaled to [0, 1] and normalised with the ImageNet mean and
  standard deviation, exactly what `glass_engine.data.Preprocessor.image_to_tensor` returns.
- output `scores`: float32 (B,), the image anomaly score in [0, 1], which is the maximum patch score.
- output `maps`: float32 (B, S, S), the anomaly map at the input size after upsampling and blurring.

The batch dimension B is dynamic, and the side S is fixed at the run's training size. The model's
`metadata_props` store what a consumer needs to prepare inputs and read outputs: format, inputs, outputs,
image_size, resize_policy, crop_ratio, mean and std (JSON lists), threshold (empty when the run has
none), backbone, layers (JSON list), feature_shape, map_blur_sigma, batch_size, run, category and
distribution_mode.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn.functional as F
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from glass_engine.data import IMAGENET_MEAN, IMAGENET_STD, Preprocessor, read_image
from glass_engine.errors import CheckpointError, ConfigError
from glass_engine.features import layer_channels
from glass_engine.fileio import atomic_write_bytes
from glass_engine.inference import Prediction, Predictor, build_predictions, prefetch_batches
from glass_engine.pipeline import MAP_BLUR_SIGMA, GlassModel, gaussian_kernel1d

logger = logging.getLogger(__name__)

# Opset 17 is the default. ONNX Runtime's kernel table (docs/OperatorKernels.md in microsoft/onnxruntime)
# lists CPU and CUDA kernels at opset 17 for the operators of this graph (Conv, Gemm, MatMul, Gather, Pad,
# Resize, ReduceMax, BatchNormalization, LeakyRelu, Sigmoid), and older ORT releases read it too. Opset 11 is the first whose Resize matches PyTorch's bilinear interpolation, and 20 is the
# highest that torch 2.14's TorchScript exporter writes. Opsets 11, 13, 17, 18 and 20 were run on the
# CPU with onnxruntime 1.32 and agreed with PyTorch within 1e-6.
DEFAULT_OPSET = 17
MIN_OPSET = 11
MAX_OPSET = 20

INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "maps")
FORMATS = ("onnx",)

OUTPUTS_DESCRIPTION = (
    "scores: float32 (B,) image anomaly score in [0, 1] = max patch score; "
    "maps: float32 (B, S, S) anomaly map, patch scores bilinearly upsampled to S x S and Gaussian-blurred "
    f"(sigma {MAP_BLUR_SIGMA:g} px, reflect border)"
)
INPUTS_DESCRIPTION = "images: float32 (B, 3, S, S) RGB in [0, 1] normalised with ImageNet mean and std"


class ExportableGlass(torch.nn.Module):
    """The scoring forward of a GlassModel, computed with operators that export cleanly to ONNX.

    Results equal GlassModel.forward, which runs under torch.inference_mode and derives sizes and blur
    indices from tensor shapes on every call. The TorchScript exporter writes the embedding's `index_add_`
    as a scatter and warns that a scatter with repeated indices exports wrongly. Here each layer's rows are
    instead picked with a `Gather` from its convolution output plus one zero channel, and the blur's
    reflect-padding indices are constant buffers. All other sizes are Python integers, so the batch
    dimension is the only dynamic size in the graph.
    """

    def __init__(self, model: GlassModel):
        super().__init__()
        config = model.config
        self.extractor = model.extractor
        self.head = model.head
        self.image_size = int(config.data.image_size)
        self.feature_shape = tuple(int(side) for side in model.feature_shape)
        self.target_dim = int(config.backbone.target_embed_dimension)
        self.padding = int(config.backbone.patchsize) // 2

        _, grids = layer_channels(model.extractor, self.image_size)
        self.resize_layer = [tuple(grid) != self.feature_shape for grid in grids]
        self.groups = [layer_map.groups for layer_map in model.embedder._maps]
        for index, layer_map in enumerate(model.embedder._maps):
            weight = getattr(model.embedder, f"weight_{index}")
            self.register_buffer(f"weight_{index}", weight.detach().clone())
            self.register_buffer(f"gather_{index}", _row_gather_index(layer_map.rows, self.target_dim))

        kernel = gaussian_kernel1d(MAP_BLUR_SIGMA)
        radius = (len(kernel) - 1) // 2
        self.register_buffer("blur_row", kernel.reshape(1, 1, 1, -1).clone())
        self.register_buffer("blur_column", kernel.reshape(1, 1, -1, 1).clone())
        self.register_buffer("pad_index", _symmetric_index(self.image_size, radius))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B*h*w, target_dim) patch embeddings in row-major position order."""
        features = self.extractor(images)
        embedded = None
        for index, feature in enumerate(features):
            weight = getattr(self, f"weight_{index}")
            mapped = F.conv2d(feature, weight, padding=self.padding, groups=self.groups[index])
            if self.resize_layer[index]:
                mapped = F.interpolate(mapped, size=self.feature_shape, mode="bilinear", align_corners=False)
            # The appended channel R is zero. Target rows that this layer does not feed read it.
            mapped = F.pad(mapped, (0, 0, 0, 0, 0, 1))
            part = mapped.index_select(1, getattr(self, f"gather_{index}"))
            embedded = part if embedded is None else embedded + part
        return embedded.permute(0, 2, 3, 1).reshape(-1, self.target_dim)

    def blur(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) -> (B, 1, S, S), the separable Gaussian blur of pipeline.blur_maps."""
        x = maps.index_select(3, self.pad_index)
        x = F.conv2d(x, self.blur_row)
        x = x.index_select(2, self.pad_index)
        return F.conv2d(x, self.blur_column)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patch_scores = self.head.score(self.embed(images)).float()
        patch_scores = patch_scores.reshape(-1, 1, *self.feature_shape)
        scores = patch_scores.flatten(1).max(dim=1).values
        size = (self.image_size, self.image_size)
        maps = F.interpolate(patch_scores, size=size, mode="bilinear", align_corners=False)
        return scores, self.blur(maps).squeeze(1)


def _row_gather_index(rows: torch.Tensor, target_dim: int) -> torch.Tensor:
    """Index over a layer's R output channels plus one zero channel (index R) for every target row."""
    index = torch.full((target_dim,), len(rows), dtype=torch.long)
    index[rows.cpu()] = torch.arange(len(rows))
    return index


def _symmetric_index(size: int, radius: int) -> torch.Tensor:
    """Indices of scipy's `reflect` padding (edge sample repeated) of `radius` on both sides."""
    index = torch.arange(-radius, size + radius) % (2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


# --------------------------------------------------------------------------------------------------------
# Export


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ConfigError(f"ONNX opset {opset} is not supported. Choose {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET}).")
    return int(opset)


def export_onnx(run_path: Path, out: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Export the run folder or checkpoint `run_path` to the ONNX file `out` and return `out`.

    Raises CheckpointError when the run is missing, ConfigError for an unsupported opset and OutputError
    when `out` cannot be written.
    """
    opset = check_opset(opset)
    out = Path(out)
    predictor = Predictor(Path(run_path), device="cpu")
    module = ExportableGlass(predictor.model).eval()

    proto = _trace_to_onnx(module, opset)
    _set_metadata(proto, predictor)
    onnx.checker.check_model(proto, full_check=True)

    atomic_write_bytes(out, proto.SerializeToString())
    logger.info("Exported run %s to %s (opset %d, %.1f MB)", predictor.run.root, out, opset, out.stat().st_size / 1e6)
    return out


def _trace_to_onnx(module: ExportableGlass, opset: int) -> onnx.ModelProto:
    # The TorchScript exporter (dynamo=False) needs no onnxscript, which is not a dependency here. A batch
    # of 2 keeps the tracer from specialising shapes to a batch of 1.
    example = torch.zeros(2, 3, module.image_size, module.image_size)
    buffer = io.BytesIO()
    batch_axis = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # Both are notices, not faults: the TorchScript exporter is marked legacy, and constant folding
        # skips strided Slice nodes, which ONNX Runtime executes as they are.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: batch_axis, OUTPUT_NAMES[0]: batch_axis, OUTPUT_NAMES[1]: batch_axis},
            opset_version=opset,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buffer.getvalue())


def export_metadata(predictor: Predictor) -> dict[str, str]:
    """Return the metadata_props written into an exported model, all values as strings."""
    config = predictor.config
    info = predictor.run.read_info() if predictor.run.info_path.is_file() else {}
    threshold = predictor.threshold
    return {
        "format": "glass-studio-onnx/1",
        "inputs": INPUTS_DESCRIPTION,
        "outputs": OUTPUTS_DESCRIPTION,
        "image_size": str(config.data.image_size),
        "resize_policy": config.data.resize_policy,
        "crop_ratio": repr(float(config.data.crop_ratio)),
        "mean": json.dumps(list(IMAGENET_MEAN)),
        "std": json.dumps(list(IMAGENET_STD)),
        "threshold": "" if threshold is None else repr(float(threshold)),
        "backbone": config.backbone.name,
        "layers": json.dumps(list(config.backbone.layers)),
        "feature_shape": json.dumps(list(predictor.model.feature_shape)),
        "map_blur_sigma": repr(MAP_BLUR_SIGMA),
        "batch_size": str(config.data.batch_size),
        "run": str(predictor.run.root),
        "category": str(info.get("category") or ""),
        "distribution_mode": str(predictor.mode or ""),
    }


def _set_metadata(proto: onnx.ModelProto, predictor: Predictor) -> None:
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, export_metadata(predictor))
    proto.doc_string = f"GLASS anomaly detector. Input {INPUTS_DESCRIPTION}. Outputs {OUTPUTS_DESCRIPTION}."
    proto.producer_name = "glass-studio"


# --------------------------------------------------------------------------------------------------------
# Inference with ONNX Runtime


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build offers it, with the CPU as fallback."""
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(onnx_path: Path, providers: Sequence[str] | None = None) -> onnxruntime.InferenceSession:
    """Open an ONNX file. A missing or unreadable file raises CheckpointError naming it."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise CheckpointError(f"ONNX model {onnx_path} does not exist. Export one with `glass-engine export`.")
    try:
        return onnxruntime.InferenceSession(str(onnx_path), providers=list(providers or default_providers()))
    except (ort_state.Fail, ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.NoSuchFile) as exc:
        raise CheckpointError(f"ONNX model {onnx_path} cannot be loaded ({exc}). Export the run again.") from exc


class OnnxPredictor:
    """Scores images with an exported model; the same API and results as glass_engine.inference.Predictor."""

    def __init__(self, onnx_path: Path, providers: Sequence[str] | None = None, threshold: float | None = None):
        self.path = Path(onnx_path)
        self.session = open_session(self.path, providers)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.preprocessor = self._preprocessor()
        stored = self.metadata.get("threshold", "")
        self.threshold = threshold
        if threshold is None and stored:
            self.threshold = float(stored)
        self.batch_size = int(self.metadata.get("batch_size") or 8)
        logger.info(
            "Loaded ONNX model %s (providers %s, threshold %s)", self.path, self.session.get_providers(), self.threshold
        )

    def _preprocessor(self) -> Preprocessor:
        missing = [key for key in ("image_size", "resize_policy", "mean", "std") if key not in self.metadata]
        if missing:
            raise CheckpointError(
                f"ONNX model {self.path} is missing the metadata {', '.join(missing)}, so it was not written "
                "by `glass-engine export`. Export the run again."
            )
        mean = json.loads(self.metadata["mean"])
        std = json.loads(self.metadata["std"])
        if not (np.allclose(mean, IMAGENET_MEAN) and np.allclose(std, IMAGENET_STD)):
            raise CheckpointError(
                f"ONNX model {self.path} expects normalisation mean {mean} and std {std}, but this version "
                f"normalises with the ImageNet values {list(IMAGENET_MEAN)} and {list(IMAGENET_STD)}."
            )
        crop_ratio = float(self.metadata.get("crop_ratio") or 1.0)
        return Preprocessor(int(self.metadata["image_size"]), self.metadata["resize_policy"], crop_ratio)

    def run_tensor(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the graph on a normalised float32 batch (B, 3, S, S) and return scores (B,) and maps (B, S, S)."""
        scores, maps = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        return scores, maps

    def predict_arrays(self, images: list[np.ndarray], names: list[str] | None = None) -> list[Prediction]:
        """Score RGB uint8 images of any size."""
        if not images:
            return []
        batch = np.stack([self.preprocessor.image_to_tensor(image).numpy() for image in images])
        scores, maps = self.run_tensor(batch)
        return build_predictions(images, names, scores, maps, self.preprocessor, self.threshold)

    def predict_paths(self, paths: Iterable[Path], batch_size: int | None = None) -> Iterator[Prediction]:
        """Score image files batch by batch. An unreadable file raises DatasetError naming the file."""
        batch_size = batch_size or self.batch_size
        for paths_batch, images, tensor in prefetch_batches(paths, batch_size, self.preprocessor):
            scores, maps = self.run_tensor(tensor.numpy())
            names = [str(path) for path in paths_batch]
            yield from build_predictions(images, names, scores, maps, self.preprocessor, self.threshold)


# --------------------------------------------------------------------------------------------------------
# CPU latency comparison


def benchmark_onnx(run_dir: Path, images: Sequence[Path | np.ndarray], repeats: int = 10) -> dict[str, Any]:
    """Time the PyTorch model and ONNX Runtime on the CPU, per image, at batch 1 and with all images in one batch.

    Preprocessing is excluded because both use the same Preprocessor. Each figure is the median of
    `repeats` timed runs after one warm-up run. The run is exported to a temporary file first.
    """
    if not images:
        raise ConfigError("benchmark_onnx needs at least one image.")
    if repeats < 1:
        raise ConfigError(f"Repeats {repeats} must be at least 1.")
    predictor = Predictor(Path(run_dir), device="cpu")
    arrays = [read_image(Path(item)) if not isinstance(item, np.ndarray) else item for item in images]
    batch = torch.stack([predictor.preprocessor.image_to_tensor(array) for array in arrays])

    with tempfile.TemporaryDirectory(prefix="glass-onnx-bench-") as folder:
        onnx_path = export_onnx(Path(run_dir), Path(folder) / "model.onnx")
        onnx_predictor = OnnxPredictor(onnx_path, providers=["CPUExecutionProvider"])
        numpy_batch = batch.numpy()
        results = {
            "images": len(arrays),
            "repeats": int(repeats),
            "image_size": predictor.config.data.image_size,
            "backbone": predictor.config.backbone.name,
            "torch_threads": torch.get_num_threads(),
            "torch_ms_batch1": _per_image_ms(lambda x: predictor.model(x), list(batch.split(1)), repeats),
            "onnx_ms_batch1": _per_image_ms(onnx_predictor.run_tensor, list(np.split(numpy_batch, len(arrays))), repeats),
            "torch_ms_batched": _per_image_ms(lambda x: predictor.model(x), [batch], repeats),
            "onnx_ms_batched": _per_image_ms(onnx_predictor.run_tensor, [numpy_batch], repeats),
        }
    logger.info(
        "CPU latency per image (%s, %d px, %d images, median of %d): batch 1 PyTorch %.1f ms, ONNX Runtime %.1f ms; "
        "one batch PyTorch %.1f ms, ONNX Runtime %.1f ms",
        results["backbone"],
        results["image_size"],
        results["images"],
        repeats,
        results["torch_ms_batch1"],
        results["onnx_ms_batch1"],
        results["torch_ms_batched"],
        results["onnx_ms_batched"],
    )
    return results


def _per_image_ms(run: Any, batches: list[Any], repeats: int) -> float:
    """Median over `repeats` of the time to run all `batches`, divided by the number of images, in ms."""
    images = sum(len(batch) for batch in batches)
    for batch in batches:
        run(batch)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            run(batch)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) / images * 1000.0


# --------------------------------------------------------------------------------------------------------
# Command line


def register_cli(commands: Any) -> None:
    export = commands.add_parser("export", help="export a trained run to a deployable model file")
    export.add_argument("--run", required=True, type=Path, help="run folder or checkpoint file")
    export.add_argument("--format", default="onnx", choices=FORMATS, help="model file format (default: onnx)")
    export.add_argument("--out", required=True, type=Path, help="model file to write, e.g. model.onnx")
    export.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset version, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})"
    )
    export.set_defaults(handler=command_export)


def command_export(args: argparse.Namespace) -> int:
    export_onnx(args.run, args.out, args.opset)
    return 0
