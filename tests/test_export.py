"""ONNX export of the editor network (fastwarp.export, ``fastwarp export``): a graph of
standard ONNX ops only, dynamic batch, and ONNX Runtime's outputs within 1e-4 of PyTorch
running fastwarp's own kernels."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="the ONNX export tests need onnx (pinned in requirements.txt)")
ort = pytest.importorskip("onnxruntime", reason="the ONNX export tests need onnxruntime (requirements.txt)")

from fastwarp import AU_NAMES, cli  # noqa: E402
from fastwarp.export import INPUT_NAMES, OUTPUT_NAMES, export_onnx, onnx_parity  # noqa: E402
from fastwarp.models import EditorNet  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_onnx(tmp_path_factory.mktemp("onnx") / "editor.onnx")


def test_graph_is_standard_onnx(exported):
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert [(o.domain, o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")] == [("", 18)]
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    assert all(domain in ("", "ai.onnx") for domain, _ in ops), ops  # no custom (fastwarp::) ops
    grid_samples = [n for n in model.graph.node if n.op_type == "GridSample"]
    # warp (the texture net's input) and warp_blend sample the same image with the same
    # flow: the exporter keeps one GridSample for both.
    assert len(grid_samples) >= 1
    for node in grid_samples:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs.get("align_corners") == 1 and attrs.get("mode") in (b"bilinear", b"linear")
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)


def test_onnxruntime_matches_pytorch_within_1e_4(exported):
    # Batch sizes other than the one traced: the batch dimension is dynamic.
    worst = onnx_parity(exported, batch_sizes=(1, 3, 5))
    assert set(worst) == set(OUTPUT_NAMES)
    assert max(worst.values()) <= 1e-4, worst


def test_onnx_edits_a_face_like_pytorch(exported):
    # A real edit (bundled weights, target differs from source): the output moves away
    # from the input in both runtimes, and by the same amount.
    model = EditorNet.load().float().eval()
    gen = torch.Generator().manual_seed(5)
    image = torch.rand(2, 3, 128, 128, generator=gen) * 2 - 1
    source = torch.zeros(2, 17)
    target = source.clone()
    target[:, AU_NAMES.index("AU12")] = 3.0
    with torch.no_grad():
        expected = model(image, target, source).output
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"image": image.numpy(), "aus": target.numpy(), "source_aus": source.numpy()})[0]
    change = (expected - image).abs().mean().item()
    assert change > 1e-3
    np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("opset", [15, 20])
def test_opset_outside_16_to_19_is_refused(tmp_path, opset):
    with pytest.raises(ValueError, match=r"opset must be in 16\.\.19"):
        export_onnx(tmp_path / "x.onnx", opset=opset)
    assert not (tmp_path / "x.onnx").exists()


def test_failed_export_keeps_the_existing_file(tmp_path, monkeypatch):
    path = tmp_path / "editor.onnx"
    path.write_bytes(b"previous")

    def broken(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx(path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["editor.onnx"]


def test_cli_export_opset_16(tmp_path, capsys):
    # Opsets 16 and 17 take the TorchScript exporter (18 and 19 the torch.export one).
    out = tmp_path / "m.onnx"
    assert cli.main(["export", "--format", "onnx", "-o", str(out), "--opset", "16", "--check"]) == 0
    printed = capsys.readouterr().out
    assert "opset 16" in printed and "max |onnxruntime - pytorch|" in printed
    assert [o.version for o in onnx.load(str(out)).opset_import if o.domain in ("", "ai.onnx")] == [16]
    assert onnx_parity(out, batch_sizes=(2,))["output"] <= 1e-4


def test_cli_export_errors(tmp_path, capsys):
    assert cli.main(["export", "-o", str(tmp_path / "m.bin")]) == cli.EXIT_ERROR
    assert "must end in .onnx" in capsys.readouterr().err
    assert cli.main(["export", "-o", str(tmp_path / "m.onnx"), "--onnx", str(tmp_path / "x.onnx")]) == cli.EXIT_ERROR
    assert "--onnx is the input of --format tensorrt" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        # The TensorRT error paths are tested in test_tensorrt.py.
        assert cli.main(["export", "--format", "tensorrt", "-o", str(tmp_path / "m.engine")]) == cli.EXIT_ERROR
        assert "the tensorrt Python package" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_onnx_graph_check(exported, tmp_path):
    from fastwarp.export import check_onnx_graph, onnx_opset

    assert onnx_opset(exported) == 18
    check_onnx_graph(exported)  # an export passes
    with pytest.raises(FileNotFoundError, match="ONNX file not found"):
        check_onnx_graph(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ValueError, match="not an ONNX model"):
        check_onnx_graph(junk)
