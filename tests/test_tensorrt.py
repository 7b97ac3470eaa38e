"""TensorRT engines (fastwarp.export.tensorrt, ``fastwarp export --format tensorrt``).

Building and running an engine needs NVIDIA TensorRT 10 and a CUDA GPU. fastwarp's
development and CI machines cannot install TensorRT, so the tests of the real build and
run skip there, saying so; they are written for a machine that has both and have not run
yet. What runs everywhere: the error path (one clear message naming what is missing,
exit status 1, nothing written, nothing exported first), argument checks, and that
fastwarp imports without TensorRT.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fastwarp import cli
from fastwarp.export import tensorrt as fw_trt
from fastwarp.export import INPUT_NAMES, OUTPUT_NAMES
from fastwarp.export.tensorrt import TensorRTUnavailableError

_REASON = fw_trt.unavailable_reason()
needs_tensorrt = pytest.mark.skipif(
    _REASON is not None,
    reason=f"builds and runs a TensorRT engine: {(_REASON or '').split(' Export ONNX')[0]}")


@pytest.fixture
def no_tensorrt(monkeypatch):
    """As on a machine without the tensorrt package (whatever this one has)."""
    monkeypatch.setattr(fw_trt, "_has_tensorrt_package", lambda: False)


def _onnx_stub(path, opset: int, inputs=INPUT_NAMES, outputs=OUTPUT_NAMES):
    """A small ONNX file with the editor graph's names (outputs are identities), enough for
    the checks that read opset and names."""
    onnx = pytest.importorskip("onnx", reason="writing an ONNX file needs onnx (requirements.txt)")
    from onnx import TensorProto, helper

    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 17]) for n in inputs]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 17]) for n in outputs]
    nodes = [helper.make_node("Identity", [inputs[i % len(inputs)]], [o]) for i, o in enumerate(outputs)]
    graph = helper.make_graph(nodes, "stub", ins, outs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


# --- everywhere --------------------------------------------------------------------------

def test_fastwarp_imports_without_tensorrt():
    code = ("import sys, fastwarp, fastwarp.export.tensorrt, fastwarp.export, fastwarp.cli; "
            "assert 'tensorrt' not in sys.modules, 'tensorrt imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("package, gpu", [(False, False), (False, True), (True, False)])
def test_unavailable_reason_names_what_is_missing(monkeypatch, package, gpu):
    monkeypatch.setattr(fw_trt, "_has_tensorrt_package", lambda: package)
    monkeypatch.setattr(fw_trt, "_has_cuda_gpu", lambda: gpu)
    reason = fw_trt.unavailable_reason()
    assert ("the tensorrt Python package" in reason) == (not package)
    assert ("a CUDA GPU (torch sees none" in reason) == (not gpu)
    assert "cannot install TensorRT" in reason
    assert "trtexec --onnx=fastwarp.onnx --fp16" in reason
    assert "\n" not in reason


def test_unavailable_reason_is_none_with_both(monkeypatch):
    monkeypatch.setattr(fw_trt, "_has_tensorrt_package", lambda: True)
    monkeypatch.setattr(fw_trt, "_has_cuda_gpu", lambda: True)
    assert fw_trt.unavailable_reason() is None


def test_trtexec_command_gives_the_dynamic_batch_profile():
    cmd = fw_trt.trtexec_command("m.onnx", "m.engine", max_batch=8, opt_batch=2)
    assert cmd.startswith("trtexec --onnx=m.onnx --fp16 ")
    assert "--minShapes=image:1x3x128x128,aus:1x17,source_aus:1x17" in cmd
    assert "--optShapes=image:2x3x128x128,aus:2x17,source_aus:2x17" in cmd
    assert "--maxShapes=image:8x3x128x128,aus:8x17,source_aus:8x17" in cmd
    assert cmd.endswith("--saveEngine=m.engine")


def test_cli_tensorrt_error_is_one_line_and_writes_nothing(tmp_path, capsys, no_tensorrt):
    out = tmp_path / "fastwarp.engine"
    assert cli.main(["export", "--format", "tensorrt", "-o", str(out)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastwarp: error: TensorRT engines need NVIDIA TensorRT 10")
    assert "missing here: the tensorrt Python package" in err
    assert "cannot install TensorRT" in err and "trtexec --onnx=" in err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(_REASON is None, reason="TensorRT and a CUDA GPU are present here: no error path to see")
def test_cli_tensorrt_error_on_this_machine(tmp_path, capsys):
    # Unpatched: what a user of this machine sees.
    assert cli.main(["export", "--format", "tensorrt", "-o", str(tmp_path / "m.engine")]) == cli.EXIT_ERROR
    assert capsys.readouterr().err == f"fastwarp: error: {_REASON}\n"
    assert not any(tmp_path.iterdir())


def test_export_tensorrt_fails_before_exporting(tmp_path, monkeypatch, no_tensorrt):
    def no_export(*args, **kwargs):
        raise AssertionError("exported ONNX although TensorRT is missing")

    monkeypatch.setattr(fw_trt, "export_onnx", no_export)
    with pytest.raises(TensorRTUnavailableError, match="missing here: the tensorrt Python package"):
        fw_trt.export_tensorrt(tmp_path / "m.engine")
    assert not any(tmp_path.iterdir())


def test_runner_build_and_parity_raise_without_tensorrt(tmp_path, no_tensorrt):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"")
    with pytest.raises(TensorRTUnavailableError, match="tensorrt Python package"):
        fw_trt.TensorRTRunner(engine)
    with pytest.raises(TensorRTUnavailableError, match="tensorrt Python package"):
        fw_trt.build_engine(tmp_path / "m.onnx", tmp_path / "other.engine")
    with pytest.raises(TensorRTUnavailableError, match="tensorrt Python package"):
        fw_trt.engine_parity(engine)
    assert [p.name for p in tmp_path.iterdir()] == ["m.engine"]


@pytest.mark.parametrize("args, message", [
    (["-o", "{tmp}/m.onnx"], "must end in .engine or .plan"),
    (["-o", "{tmp}/m.engine", "--onnx", "{tmp}/in.onnx", "--weights", "base"], "--onnx builds that file as it is"),
    (["-o", "{tmp}/m.engine", "--onnx", "{tmp}/in.onnx", "--opset", "17"], "--onnx builds that file as it is"),
    (["-o", "{tmp}/m.engine", "--onnx", "{tmp}/in.onnx", "--check"], "--check compares"),
    (["-o", "{tmp}/m.engine", "--max-batch", "0"], "--max-batch must be at least 1, got 0"),
    (["-o", "{tmp}/m.engine", "--max-batch", "4", "--opt-batch", "8"], r"--opt-batch must be in 1..--max-batch \(4\)"),
    (["-o", "{tmp}/m.engine", "--onnx", "{tmp}/missing.onnx"], "ONNX file not found"),
])
def test_cli_tensorrt_argument_errors(tmp_path, capsys, args, message):
    import re

    (tmp_path / "in.onnx").write_bytes(b"")
    argv = ["export", "--format", "tensorrt"] + [a.format(tmp=tmp_path) for a in args]
    assert cli.main(argv) == cli.EXIT_ERROR
    assert re.search(message, capsys.readouterr().err)
    assert [p.name for p in tmp_path.iterdir()] == ["in.onnx"]


@pytest.mark.parametrize("opset", [15, 20])
def test_onnx_at_an_opset_tensorrt_misreads_is_refused(tmp_path, capsys, opset):
    # Checked before TensorRT is looked for, so this runs everywhere.
    stub = _onnx_stub(tmp_path / "in.onnx", opset)
    assert cli.main(["export", "--format", "tensorrt", "-o", str(tmp_path / "m.engine"),
                     "--onnx", str(stub)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"uses ONNX opset {opset}; TensorRT needs opset 16..19" in err
    assert "re-export it with fastwarp export --format onnx --opset 18" in err
    assert [p.name for p in tmp_path.iterdir()] == ["in.onnx"]


def test_onnx_that_is_not_the_editor_graph_is_refused(tmp_path):
    from fastwarp.export import check_onnx_graph

    stub = _onnx_stub(tmp_path / "in.onnx", 18, inputs=("x",), outputs=("y",))
    with pytest.raises(ValueError, match=r"not a fastwarp editor graph: inputs \['x'\], outputs \['y'\]"):
        check_onnx_graph(stub)
    check_onnx_graph(_onnx_stub(tmp_path / "ok.onnx", 19))  # the names and opset are all it checks


def test_export_tensorrt_argument_errors(tmp_path):
    from fastwarp.export import export_tensorrt
    from fastwarp.models import EditorNet

    with pytest.raises(ValueError, match=r"opset must be in 16\.\.19"):
        export_tensorrt(tmp_path / "m.engine", opset=20)
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        export_tensorrt(tmp_path / "m.engine", max_batch=0)
    with pytest.raises(ValueError, match=r"opt_batch must be in 1\.\.max_batch \(4\)"):
        export_tensorrt(tmp_path / "m.engine", max_batch=4, opt_batch=5)
    stub = _onnx_stub(tmp_path / "in.onnx", 18)
    with pytest.raises(ValueError, match="either model or onnx_path"):
        export_tensorrt(tmp_path / "m.engine", EditorNet.load(), onnx_path=stub)
    assert [p.name for p in tmp_path.iterdir()] == ["in.onnx"]


# --- with TensorRT and a CUDA GPU (skipped where either is missing) -----------------------

MAX_BATCH = 4


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    pytest.importorskip("tensorrt", reason="needs NVIDIA TensorRT 10 (not installable on fastwarp's dev/CI machines)")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from fastwarp.export import export_tensorrt

    return export_tensorrt(tmp_path_factory.mktemp("trt") / "editor.engine", max_batch=MAX_BATCH, opt_batch=2)


@needs_tensorrt
def test_engine_matches_pytorch_float32(engine):
    # fp16 inside the engine against float32 PyTorch: about fp16's precision over a few
    # dozen layers. These tolerances are estimates, not yet calibrated on a TensorRT machine.
    worst = fw_trt.engine_parity(engine, batch_sizes=(1, 3, MAX_BATCH))
    assert set(worst) == set(OUTPUT_NAMES)
    assert worst["output"] <= 3e-2 and worst["texture"] <= 3e-2 and worst["mask"] <= 2e-2, worst
    assert worst["flow"] <= 0.1, worst  # pixels


@needs_tensorrt
def test_runner_io(engine):
    runner = fw_trt.TensorRTRunner(engine)
    assert (runner.min_batch, runner.max_batch, runner.image_size) == (1, MAX_BATCH, 128)
    assert "TensorRTRunner(" in repr(runner) and f"batch=1..{MAX_BATCH}" in repr(runner)
    gen = torch.Generator().manual_seed(0)
    image = (torch.rand(2, 3, 128, 128, generator=gen) * 2 - 1).cuda()
    aus, source = (torch.rand(2, 17, generator=gen) * 5).cuda(), torch.zeros(2, 17).cuda()
    out = runner(image, aus, source)
    assert out._fields == OUTPUT_NAMES
    assert [tuple(t.shape) for t in out] == [(2, 3, 128, 128), (2, 2, 128, 128), (2, 3, 128, 128), (2, 1, 128, 128)]
    assert all(t.is_cuda and t.dtype == torch.float32 and t.isfinite().all() for t in out)
    # CPU inputs are copied to the GPU; a batch view at an unaligned offset still works.
    torch.testing.assert_close(runner(image.cpu(), aus.cpu(), source.cpu()).output, out.output)
    one = runner(image[1:], aus[1:], source[1:]).output
    torch.testing.assert_close(one, out.output[1:], atol=1e-2, rtol=0)  # batch 1 may take other kernels
    empty = runner(image[:0], aus[:0], source[:0])
    assert [tuple(t.shape) for t in empty] == [(0, 3, 128, 128), (0, 2, 128, 128), (0, 3, 128, 128), (0, 1, 128, 128)]
    big = MAX_BATCH + 1
    with pytest.raises(ValueError, match=rf"batch {big} is outside the engine's range 1\.\.{MAX_BATCH}"):
        runner(image[:1].expand(big, -1, -1, -1), aus[:1].expand(big, -1), source[:1].expand(big, -1))
    with pytest.raises(ValueError, match=r"aus must have shape \[2, 17\]"):
        runner(image, aus[:, :16], source)
    with pytest.raises(TypeError, match="source_aus must be a floating tensor"):
        runner(image, aus, source.long())


@needs_tensorrt
def test_runner_uses_the_current_stream(engine):
    runner = fw_trt.TensorRTRunner(engine)
    image = torch.rand(3, 3, 128, 128, device="cuda") * 2 - 1
    aus, source = torch.rand(3, 17, device="cuda") * 5, torch.rand(3, 17, device="cuda") * 5
    expected = runner(image, aus, source).output
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = runner(image, aus, source).output
        got = got.clone()  # queued on the side stream, after the engine
    torch.cuda.current_stream().wait_stream(side)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@needs_tensorrt
def test_cli_builds_from_an_onnx_file(tmp_path, capsys):
    from fastwarp.export import export_onnx

    onnx_file = export_onnx(tmp_path / "editor.onnx", opset=17)
    out = tmp_path / "editor.plan"
    assert cli.main(["export", "--format", "tensorrt", "-o", str(out), "--onnx", str(onnx_file),
                     "--max-batch", "2"]) == 0
    assert "TensorRT fp16 engine, batch 1..2" in capsys.readouterr().out
    assert fw_trt.TensorRTRunner(out).max_batch == 2


@needs_tensorrt
def test_failed_build_keeps_the_existing_engine(tmp_path):
    junk, out = tmp_path / "junk.onnx", tmp_path / "m.engine"
    junk.write_bytes(b"not an onnx file")
    out.write_bytes(b"previous")
    with pytest.raises(ValueError, match="TensorRT's ONNX parser rejected"):
        fw_trt.build_engine(junk, out)
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.onnx", "m.engine"]
