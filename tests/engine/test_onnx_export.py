"""ONNX export of a tiny trained run: graph equality with PyTorch, metadata, OnnxPredictor and the CLI."""

import json
import logging

import numpy as np
import onnx
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from glass_engine.cli import main
from glass_engine.data import IMAGENET_MEAN, IMAGENET_STD, discover, read_image
from glass_engine.errors import CheckpointError, ConfigError
from glass_engine.inference import Predictor
from glass_engine.onnx_export import (
    DEFAULT_OPSET,
    ExportableGlass,
    OnnxPredictor,
    export_onnx,
)
from glass_engine.runs import RunFolder
from glass_engine.training import Trainer
from tests.conftest import shared_dataset, tiny_run_config
from tests.engine.subsets import copy_mvtec_subset

IMAGE_SIZE = 96
TOLERANCE = 1e-4


def tiny_config():
    return tiny_run_config({"data.image_size": IMAGE_SIZE})


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    source = shared_dataset("magnetic_tile") / "magnetic_tile"
    data_root = copy_mvtec_subset(
        source, tmp_path_factory.mktemp("data"), train=8, good=2, per_type=2, types=["blowhole", "crack"]
    )
    run_dir = tmp_path_factory.mktemp("runs") / "tile run"
    Trainer(tiny_config(), discover(data_root, "magnetic_tile"), run_dir).run_training()
    return run_dir


@pytest.fixture(scope="module")
def onnx_file(trained_run, tmp_path_factory):
    return export_onnx(trained_run, tmp_path_factory.mktemp("export") / "tile model.onnx")


@pytest.fixture(scope="module")
def sample_paths(trained_run):
    return [row["path"] for row in RunFolder(trained_run).read_scores()]


@pytest.fixture(scope="module")
def torch_predictor(trained_run):
    return Predictor(trained_run, device="cpu")


def image_batch(predictor, paths):
    return torch.stack([predictor.preprocessor.image_to_tensor(read_image(path)) for path in paths])


def test_wrapper_equals_glass_model(torch_predictor, sample_paths):
    batch = image_batch(torch_predictor, sample_paths[:3])
    expected_scores, expected_maps = torch_predictor.model(batch)
    wrapper = ExportableGlass(torch_predictor.model).eval()
    with torch.no_grad():
        scores, maps = wrapper(batch)

    assert scores.shape == (3,)
    assert maps.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.allclose(scores, expected_scores, rtol=0, atol=1e-6)
    assert torch.allclose(maps, expected_maps, rtol=0, atol=1e-6)


def test_wrapper_blur_equals_scipy(torch_predictor):
    wrapper = ExportableGlass(torch_predictor.model)
    rng = np.random.default_rng(3)
    maps = rng.random((2, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)

    blurred = wrapper.blur(torch.from_numpy(maps).unsqueeze(1)).squeeze(1).numpy()

    for i in range(2):
        expected = scipy.ndimage.gaussian_filter(maps[i].astype(np.float64), sigma=4.0, mode="reflect", truncate=4.0)
        assert np.abs(blurred[i] - expected).max() < 1e-5


def test_wrapper_scores_from_head_by_hand(torch_predictor, sample_paths):
    # Independent of the wrapper: score every patch with the head, take the max, upsample and blur with scipy.
    model = torch_predictor.model
    batch = image_batch(torch_predictor, sample_paths[:2])
    with torch.no_grad():
        embeddings = model.embed(batch)
        patches = model.head.score(embeddings).reshape(2, *model.feature_shape)
        upsampled = F.interpolate(patches.unsqueeze(1), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        scores, maps = ExportableGlass(model).eval()(batch)

    for i in range(2):
        assert float(scores[i]) == pytest.approx(float(patches[i].max()), abs=1e-6)
        expected = scipy.ndimage.gaussian_filter(upsampled[i, 0].double().numpy(), sigma=4.0, mode="reflect", truncate=4.0)
        assert np.abs(maps[i].numpy() - expected).max() < 1e-5


@pytest.mark.parametrize("batch_size", [1, 3])
def test_onnx_matches_torch(onnx_file, torch_predictor, sample_paths, batch_size):
    batch = image_batch(torch_predictor, sample_paths[:batch_size])
    expected_scores, expected_maps = torch_predictor.model(batch)
    onnx_predictor = OnnxPredictor(onnx_file, providers=["CPUExecutionProvider"])

    scores, maps = onnx_predictor.run_tensor(batch.numpy())

    assert scores.shape == (batch_size,)
    assert maps.shape == (batch_size, IMAGE_SIZE, IMAGE_SIZE)
    assert np.abs(scores - expected_scores.numpy()).max() < TOLERANCE
    assert np.abs(maps - expected_maps.numpy()).max() < TOLERANCE


def test_onnx_graph_valid_with_dynamic_batch(onnx_file):
    model = onnx.load(str(onnx_file))
    onnx.checker.check_model(model, full_check=True)

    assert [opset.version for opset in model.opset_import if opset.domain in ("", "ai.onnx")] == [DEFAULT_OPSET]
    image_dims = model.graph.input[0].type.tensor_type.shape.dim
    assert model.graph.input[0].name == "images"
    assert image_dims[0].dim_param != ""
    assert [dim.dim_value for dim in image_dims[1:]] == [3, IMAGE_SIZE, IMAGE_SIZE]
    assert [output.name for output in model.graph.output] == ["scores", "maps"]
    for output in model.graph.output:
        assert output.type.tensor_type.shape.dim[0].dim_param != ""


def test_onnx_metadata(onnx_file, trained_run):
    metadata = {prop.key: prop.value for prop in onnx.load(str(onnx_file)).metadata_props}
    run = RunFolder(trained_run)
    config = run.read_config()

    assert metadata["image_size"] == str(IMAGE_SIZE)
    assert metadata["resize_policy"] == config.data.resize_policy
    assert metadata["backbone"] == "mobilenet_v2"
    assert json.loads(metadata["layers"]) == list(config.backbone.layers)
    assert json.loads(metadata["mean"]) == pytest.approx(list(IMAGENET_MEAN))
    assert json.loads(metadata["std"]) == pytest.approx(list(IMAGENET_STD))
    assert float(metadata["threshold"]) == pytest.approx(run.threshold(), abs=1e-12)
    assert "max patch score" in metadata["outputs"]
    assert "maps" in metadata["outputs"]


def test_onnx_predictor_equals_predictor(onnx_file, torch_predictor, sample_paths):
    paths = sample_paths[:5]
    expected = list(torch_predictor.predict_paths(paths, batch_size=2))
    onnx_predictor = OnnxPredictor(onnx_file)

    predictions = list(onnx_predictor.predict_paths(paths, batch_size=2))

    assert onnx_predictor.threshold == pytest.approx(torch_predictor.threshold, abs=1e-12)
    assert [p.path for p in predictions] == [p.path for p in expected]
    for got, want in zip(predictions, expected):
        assert got.score == pytest.approx(want.score, abs=TOLERANCE)
        assert got.original_map.shape == want.original_map.shape == read_image(got.path).shape[:2]
        assert np.abs(got.map - want.map).max() < TOLERANCE
        assert np.abs(got.original_map - want.original_map).max() < TOLERANCE
        if abs(want.score - torch_predictor.threshold) > TOLERANCE:
            assert got.is_defective == want.is_defective


def test_onnx_predictor_threshold_override(onnx_file, sample_paths):
    predictor = OnnxPredictor(onnx_file, threshold=2.0)

    predictions = predictor.predict_arrays([read_image(sample_paths[0])], ["first"])

    assert predictor.threshold == 2.0
    assert predictions[0].path == "first"
    assert predictions[0].is_defective is False


def test_onnx_predictor_empty_input(onnx_file):
    assert OnnxPredictor(onnx_file).predict_arrays([]) == []


def test_onnx_predictor_missing_file(tmp_path):
    missing = tmp_path / "absent.onnx"
    with pytest.raises(CheckpointError, match="absent.onnx"):
        OnnxPredictor(missing)


def test_onnx_predictor_rejects_foreign_model(tmp_path):
    # A valid ONNX graph (identity) without the export's metadata.
    tensor = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    output = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "identity", [tensor], [output])
    path = tmp_path / "identity.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))

    with pytest.raises(CheckpointError, match="missing the metadata"):
        OnnxPredictor(path)


def test_onnx_predictor_rejects_corrupt_file(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match="broken.onnx"):
        OnnxPredictor(path)


@pytest.mark.parametrize("opset", [10, 21])
def test_export_rejects_unsupported_opset(trained_run, tmp_path, opset):
    with pytest.raises(ConfigError, match=f"opset {opset}"):
        export_onnx(trained_run, tmp_path / "model.onnx", opset=opset)
    assert not (tmp_path / "model.onnx").exists()


def test_cli_export_writes_model(trained_run, tmp_path, torch_predictor, sample_paths):
    out = tmp_path / "cli.onnx"
    code = main(["export", "--run", str(trained_run), "--format", "onnx", "--out", str(out), "--opset", "18"])

    assert code == 0
    model = onnx.load(str(out))
    assert [opset.version for opset in model.opset_import if opset.domain in ("", "ai.onnx")] == [18]
    expected = torch_predictor.predict_paths(sample_paths[:1])
    got = OnnxPredictor(out).predict_paths(sample_paths[:1])
    assert next(got).score == pytest.approx(next(expected).score, abs=TOLERANCE)


def test_cli_export_missing_run(tmp_path, caplog):
    missing = tmp_path / "no such run"
    out = tmp_path / "model.onnx"
    with caplog.at_level(logging.ERROR):
        code = main(["export", "--run", str(missing), "--format", "onnx", "--out", str(out)])

    assert code != 0
    assert str(missing) in caplog.text
    assert not out.exists()


def test_export_missing_run_raises(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(CheckpointError, match="gone"):
        export_onnx(missing, tmp_path / "model.onnx")
