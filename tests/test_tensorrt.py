"""TensorRT engines (fastwarp.export.tensorrt, ``fastwarp export --format tensorrt``).

Building and running an engine needs NVIDIA TensorRT 10 or 11 and a CUDA GPU. fastwarp's
development and CI machines have no GPU, and TensorRT's libraries (the ``-libs`` wheels)
come only from pypi.nvidia.com, so the tests of the real build and run skip there, saying
so; they are written for a machine that has both and have not run yet. What runs
everywhere: the error path (one clear message naming what is missing, exit status 1,
nothing written, nothing exported first), argument checks, that fastwarp imports without
TensorRT, the builder's two precision modes against fake TensorRT modules, the float16
graph of TensorRT 11 (in ONNX Runtime), and, where the PyPI ``tensorrt-cu*-bindings``
wheel is installed (requirements-tensorrt-api.txt), every TensorRT name the builder and
runner use, checked against the real bindings imported over stub libraries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastwarp import cli
from fastwarp.export import INPUT_NAMES, OUTPUT_NAMES
from fastwarp.export import tensorrt as fw_trt
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
    assert "TensorRT 10 or 11" in reason and "tensorrt-cu12 or tensorrt-cu13" in reason
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
    strong = fw_trt.trtexec_command("m.onnx", "m.engine", strongly_typed=True)
    assert strong.startswith("trtexec --onnx=m.onnx --stronglyTyped ") and "--fp16" not in strong


def test_cli_tensorrt_error_is_one_line_and_writes_nothing(tmp_path, capsys, no_tensorrt):
    out = tmp_path / "fastwarp.engine"
    assert cli.main(["export", "--format", "tensorrt", "-o", str(out)]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastwarp: error: TensorRT engines need NVIDIA TensorRT 10")
    assert "missing here: the tensorrt Python package" in err
    assert "tensorrt-cu12 or tensorrt-cu13" in err and "trtexec --onnx=" in err
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


# --- the builder's two precision modes, against fake TensorRT modules --------------------

class _Flags:
    """A TensorRT enum: members as attributes, int() as TensorRT's pybind11 enums."""

    def __init__(self, **members: int) -> None:
        for name, value in members.items():
            setattr(self, name, value)


def _fake_tensorrt(*, fp16_flag: bool, built: bytes | None = b"serialized engine"):
    """A module with the TensorRT names build_engine uses (tests/test_tensorrt.py's API
    check holds the real bindings to the same names), recording the calls. TensorRT 10
    has BuilderFlag.FP16; 11 only NetworkDefinitionCreationFlag.STRONGLY_TYPED."""
    import types

    calls: list[tuple] = []

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Network:
        num_inputs = 3

        def get_input(self, i):
            return [Tensor("image", (-1, 3, 128, 128)), Tensor("aus", (-1, 17)), Tensor("source_aus", (-1, 17))][i]

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls.append(("parse_from_file", path))
            return True

        def get_error(self, i):
            raise AssertionError("no errors")

    class Profile:
        def set_shape(self, name, low, opt, high):
            calls.append(("set_shape", name, low, opt, high))

    class Config:
        def set_flag(self, flag):
            calls.append(("set_flag", flag))

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile",))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return built

    class ILogger:
        Severity = _Flags(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    builder_flags = _Flags(FP16=0, TF32=1) if fp16_flag else _Flags(TF32=1, DEBUG=2)
    trt = types.SimpleNamespace(
        __version__="10.16.1.11" if fp16_flag else "11.4.0.106", Builder=Builder, OnnxParser=Parser,
        ILogger=ILogger, BuilderFlag=builder_flags, MemoryPoolType=_Flags(WORKSPACE=0),
        NetworkDefinitionCreationFlag=_Flags(EXPLICIT_BATCH=0, STRONGLY_TYPED=1) if fp16_flag
        else _Flags(STRONGLY_TYPED=0))
    return trt, calls


def _onnx_with_weights(path, dtype: str):
    """An ONNX file with one initializer of ``dtype`` ("float16" or "float32")."""
    onnx = pytest.importorskip("onnx", reason="writing an ONNX file needs onnx (requirements.txt)")
    import numpy as np
    from onnx import numpy_helper

    _onnx_stub(path, 18)
    model = onnx.load(str(path))
    model.graph.initializer.append(numpy_helper.from_array(np.ones(3, dtype), "w"))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("version", [10, 11])
def test_build_engine_precision_mode_by_feature(tmp_path, monkeypatch, version):
    trt, calls = _fake_tensorrt(fp16_flag=version == 10)
    monkeypatch.setattr(fw_trt, "_import_tensorrt", lambda: trt)
    graph = _onnx_with_weights(tmp_path / "in.onnx", "float32" if version == 10 else "float16")
    out = fw_trt.build_engine(graph, tmp_path / "m.engine", max_batch=4, opt_batch=2, workspace_bytes=1 << 20)
    assert out.read_bytes() == b"serialized engine"
    if version == 10:  # weakly typed, the FP16 flag
        assert fw_trt.precision_mode(trt) == fw_trt.FP16_FLAG
        assert ("create_network", 0) in calls and ("set_flag", trt.BuilderFlag.FP16) in calls
    else:  # no FP16 flag: strongly typed, the float16 graph's own types
        assert fw_trt.precision_mode(trt) == fw_trt.STRONGLY_TYPED
        assert ("create_network", 1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) in calls
        assert not [c for c in calls if c[0] == "set_flag"]
    assert ("set_shape", "image", (1, 3, 128, 128), (2, 3, 128, 128), (4, 3, 128, 128)) in calls
    assert ("set_shape", "aus", (1, 17), (2, 17), (4, 17)) in calls
    assert ("set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 1 << 20) in calls
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "m.engine"]


def test_strongly_typed_build_refuses_a_float32_graph(tmp_path, monkeypatch):
    trt, calls = _fake_tensorrt(fp16_flag=False)
    monkeypatch.setattr(fw_trt, "_import_tensorrt", lambda: trt)
    graph = _onnx_with_weights(tmp_path / "in.onnx", "float32")
    with pytest.raises(ValueError, match=r"TensorRT 11\.4\.0\.106 builds strongly typed .* is a float32 graph: "
                                         r"export a float16 one"):
        fw_trt.build_engine(graph, tmp_path / "m.engine")
    assert calls == [] and [p.name for p in tmp_path.iterdir()] == ["in.onnx"]


def test_precision_mode_needs_one_of_the_features():
    trt, _ = _fake_tensorrt(fp16_flag=False)
    del trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    with pytest.raises(TensorRTUnavailableError, match="neither BuilderFlag.FP16 nor .*STRONGLY_TYPED"):
        fw_trt.precision_mode(trt)


def test_failed_build_writes_nothing(tmp_path, monkeypatch):
    trt, _ = _fake_tensorrt(fp16_flag=True, built=None)
    monkeypatch.setattr(fw_trt, "_import_tensorrt", lambda: trt)
    graph = _onnx_with_weights(tmp_path / "in.onnx", "float32")
    (tmp_path / "m.engine").write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="TensorRT could not build the engine"):
        fw_trt.build_engine(graph, tmp_path / "m.engine")
    assert (tmp_path / "m.engine").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "m.engine"]


@pytest.mark.parametrize("version", [10, 11])
def test_export_tensorrt_exports_the_graph_the_builder_needs(tmp_path, monkeypatch, version):
    trt, _ = _fake_tensorrt(fp16_flag=version == 10)
    monkeypatch.setattr(fw_trt, "_import_tensorrt", lambda: trt)
    monkeypatch.setattr(fw_trt, "unavailable_reason", lambda: None)
    exported = []

    def fake_export(kind):
        def export(path, model=None, *, opset):
            exported.append((kind, opset))
            return _onnx_with_weights(path, "float32" if kind == "float32" else "float16")
        return export

    monkeypatch.setattr(fw_trt, "export_onnx", fake_export("float32"))
    monkeypatch.setattr(fw_trt, "export_onnx_fp16", fake_export("float16"))
    fw_trt.export_tensorrt(tmp_path / "m.engine", max_batch=2)
    assert exported == [("float32" if version == 10 else "float16", 18)]
    assert [p.name for p in tmp_path.iterdir()] == ["m.engine"]


# --- TensorRT 11's float16 graph (runs on the CPU in ONNX Runtime) -----------------------

@pytest.fixture(scope="module")
def fp16_graph(tmp_path_factory):
    pytest.importorskip("onnxscript", reason="the export needs onnxscript (requirements.txt)")
    return fw_trt.export_onnx_fp16(tmp_path_factory.mktemp("fp16") / "editor.onnx")


def test_float16_graph_is_typed_for_a_strongly_typed_build(fp16_graph):
    import onnx

    from fastwarp.export import check_onnx_graph

    check_onnx_graph(fp16_graph)  # opset, names: what TensorRT's parser needs
    model = onnx.load(str(fp16_graph))
    onnx.checker.check_model(model, full_check=True)  # types consistent through the graph
    assert fw_trt.onnx_is_float16(fp16_graph)
    io = [*model.graph.input, *model.graph.output]
    assert [(v.name, v.type.tensor_type.elem_type) for v in io] == [
        (n, onnx.TensorProto.FLOAT) for n in (*INPUT_NAMES, *OUTPUT_NAMES)]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    floats = {}
    for t in model.graph.initializer:
        floats.setdefault(t.data_type, []).append(t.name)
    # Every weight float16 except InstanceNorm's scale and shift (kept float32, as norms).
    norm_inputs = {i for n in model.graph.node if n.op_type == "InstanceNormalization" for i in n.input[1:]}
    assert norm_inputs and set(floats[onnx.TensorProto.FLOAT]) == norm_inputs
    assert len(floats[onnx.TensorProto.FLOAT16]) > 50
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    fp16 = set(floats[onnx.TensorProto.FLOAT16])
    assert convs and all(n.input[1] in fp16 for n in convs)


def test_float16_graph_matches_pytorch_float32(fp16_graph):
    # ONNX Runtime on the CPU runs the float16 weights (upcasting ops it has no float16
    # kernel for); the bundled weights in float32 differ by float16's rounding. Measured
    # here: mean |diff| output 0.008, texture 0.014, flow 4e-4 px; max texture 0.24.
    import onnxruntime as ort

    from fastwarp.export.graph import ExportGraph, example_inputs, float_cpu_copy
    from fastwarp.models import EditorNet

    session = ort.InferenceSession(str(fp16_graph), providers=["CPUExecutionProvider"])
    model = float_cpu_copy(EditorNet.load()).eval()
    inputs = example_inputs(model, 3, seed=1)
    got = session.run(list(OUTPUT_NAMES), {k: v.numpy() for k, v in zip(INPUT_NAMES, inputs)})
    with torch.no_grad():
        want = ExportGraph(model)(*inputs)
    diff = {n: (torch.from_numpy(g) - w).abs() for n, g, w in zip(OUTPUT_NAMES, got, want)}
    assert all(g.dtype == "float32" for g in got)
    assert diff["output"].mean() < 0.02 and diff["texture"].mean() < 0.03, {k: float(v.mean()) for k, v in diff.items()}
    assert diff["flow"].max() < 0.05 and diff["mask"].max() < 0.01, {k: float(v.max()) for k, v in diff.items()}
    assert diff["output"].max() < 0.15 and diff["texture"].max() < 0.4
    # ... and it is float16: not the float32 graph's agreement (about 1e-5).
    assert diff["texture"].mean() > 1e-4


def test_float16_graph_needs_opset_18():
    with pytest.raises(ValueError, match="float16 graph needs opset 18 or 19"):
        fw_trt.export_onnx_fp16("unused.onnx", opset=17)
    with pytest.raises(ValueError, match=r"opset must be in 16\.\.19"):
        fw_trt.export_onnx_fp16("unused.onnx", opset=20)


# --- the API surface: every TensorRT name fastwarp uses, in the real bindings -------------

# The objects fastwarp's TensorRT code calls methods on, by the variable names it gives them.
_OBJECTS = {"builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser", "config": "IBuilderConfig",
            "profile": "IOptimizationProfile", "tensor": "ITensor", "self._runtime": "Runtime",
            "self.engine": "ICudaEngine", "self.context": "IExecutionContext"}
# Names the code reaches only where the feature exists (precision_mode decides).
_OPTIONAL = {"BuilderFlag.FP16"}

_DESCRIBE = r"""
import importlib, json, sys
try:
    trt = importlib.import_module("tensorrt")
except ImportError:
    trt = importlib.import_module("tensorrt_bindings")
from fastwarp.export.tensorrt import precision_mode
out = {"version": trt.__version__, "precision_mode": precision_mode(trt), "names": {}}
for name in dir(trt):
    obj = getattr(trt, name)
    members = getattr(obj, "__members__", None)
    out["names"][name] = sorted(members) if members is not None else sorted(dir(obj)) if isinstance(obj, type) else []
out["names"]["ILogger.Severity"] = sorted(trt.ILogger.Severity.__members__)
print(json.dumps(out))
"""


def _stub_libraries(folder, so_path) -> dict[str, str]:
    """Stub libnvinfer/libnvinfer_plugin/libnvonnxparser for the bindings' ``tensorrt.so``
    (their C entry points returning NULL), so the bindings import on a machine without
    TensorRT's libraries. Returns the environment to import them with."""
    import os
    import re
    import shutil

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("building stub TensorRT libraries needs a C compiler (cc)")
    ldd = subprocess.run(["ldd", str(so_path)], capture_output=True, text=True, check=False).stdout
    needed = re.findall(r"^\s*(lib(?:nvinfer|nvinfer_plugin|nvonnxparser)\.so\.\d+) => not found", ldd,
                        re.MULTILINE)
    symbols = {"createInferBuilder_INTERNAL", "createInferRefitter_INTERNAL", "createInferRuntime_INTERNAL",
               "getPluginRegistry", "getBuilderPluginRegistry", "initLibNvInferPlugins",
               "createNvOnnxParser_INTERNAL", "createNvOnnxParserRefitter_INTERNAL", "getNvOnnxParserVersion"}
    nm = shutil.which("nm")
    if nm:  # the entry points this version of the bindings imports
        undefined = subprocess.run([nm, "-D", "--undefined-only", str(so_path)], capture_output=True, text=True,
                                   check=False).stdout
        symbols |= {m for m in re.findall(r"\bU (\w+)$", undefined, re.MULTILINE)
                    if m.startswith(("create", "get", "init")) and "Py" not in m}
    source = folder / "stub.c"
    source.write_text("".join(f"void *{s}(void) {{ return 0; }}\n" for s in sorted(symbols)))
    for lib in needed:
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(folder / lib), f"-Wl,-soname,{lib}", str(source)],
                       check=True, capture_output=True)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(folder), env.get("LD_LIBRARY_PATH")) if p)
    return env


@pytest.fixture(scope="module")
def tensorrt_api(tmp_path_factory):
    """Every name the installed TensorRT bindings export (JSON from a subprocess): the
    ``tensorrt`` package where it imports, else the PyPI ``tensorrt-cu*-bindings`` wheel
    imported over stub libraries (requirements-tensorrt-api.txt)."""
    import importlib.util
    import json
    import os

    env = dict(os.environ)
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is None and importlib.util.find_spec("tensorrt") is None:
        pytest.skip("neither tensorrt nor its PyPI bindings wheel is installed "
                    "(pip install --no-deps -r requirements-tensorrt-api.txt)")
    if spec is not None:
        so = next(iter(Path(spec.origin).parent.glob("tensorrt*.so")), None)
        if so is None:
            pytest.skip(f"no tensorrt*.so in {Path(spec.origin).parent}")
        if "not found" in subprocess.run(["ldd", str(so)], capture_output=True, text=True, check=False).stdout:
            env = _stub_libraries(tmp_path_factory.mktemp("trt-stubs"), so)
    result = subprocess.run([sys.executable, "-c", _DESCRIBE], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


def _names_used() -> tuple[set[str], set[tuple[str, str]]]:
    """From fastwarp's TensorRT code (its tokens: not docstrings, strings or comments): the
    dotted ``trt.X.Y`` names, and the ``(class, attribute)`` pairs of the methods and
    properties called on TensorRT objects."""
    import io
    import re
    import tokenize

    tokens = tokenize.generate_tokens(io.StringIO(Path(fw_trt.__file__).read_text()).readline)
    code = " ".join(t.string for t in tokens if t.type in (tokenize.NAME, tokenize.OP))
    dotted = {m.replace(" . ", ".") for m in re.findall(r"(?<!\. )\btrt \. ([A-Za-z_]\w*(?: \. [A-Za-z_]\w*)*)", code)}
    attrs = set()
    for var, cls in _OBJECTS.items():
        pattern = r"(?<!\. )\b" + re.escape(var).replace(r"\.", r" \. ") + r" \. ([A-Za-z_]\w*)"
        attrs |= {(cls, attr) for attr in re.findall(pattern, code)}
    return dotted, attrs


def test_the_source_scan_finds_the_calls():
    # The scan itself: what it must see in build_engine and TensorRTRunner.
    dotted, attrs = _names_used()
    assert {"Builder", "OnnxParser", "Runtime", "BuilderFlag.FP16", "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
            "MemoryPoolType.WORKSPACE", "TensorIOMode.INPUT", "ILogger.Severity.ERROR"} <= dotted
    assert {("Builder", "create_network"), ("Builder", "build_serialized_network"),
            ("OnnxParser", "parse_from_file"), ("IBuilderConfig", "set_flag"), ("IOptimizationProfile", "set_shape"),
            ("Runtime", "deserialize_cuda_engine"), ("ICudaEngine", "get_tensor_profile_shape"),
            ("IExecutionContext", "set_tensor_address"), ("IExecutionContext", "execute_async_v3"),
            ("IExecutionContext", "set_input_shape")} <= attrs


def test_tensorrt_api_surface(tensorrt_api):
    names = tensorrt_api["names"]
    dotted, attrs = _names_used()
    missing = []
    for path in sorted(dotted):
        head, *rest = path.split(".")
        scopes = [names.get(head)] + [names.get(".".join([head, *rest[:i]])) for i in range(1, len(rest))]
        if any(scope is None or part not in scope for scope, part in zip(scopes, [head, *rest][1:])) or (
                head not in names):
            missing.append(path)
    for cls, attr in sorted(attrs):
        if cls not in names or attr not in names[cls]:
            missing.append(f"{cls}.{attr}")
    mode = tensorrt_api["precision_mode"]
    optional = {p for p in missing if p in _OPTIONAL}
    assert sorted(set(missing) - optional) == [], f"TensorRT {tensorrt_api['version']} lacks these names fastwarp uses"
    # The feature detection matches the bindings: TensorRT 11 has no FP16 flag.
    assert (mode == fw_trt.FP16_FLAG) == ("FP16" in names["BuilderFlag"])
    if mode == fw_trt.STRONGLY_TYPED:
        assert "STRONGLY_TYPED" in names["NetworkDefinitionCreationFlag"]
    if int(tensorrt_api["version"].split(".")[0]) >= 11:
        assert mode == fw_trt.STRONGLY_TYPED and optional == {"BuilderFlag.FP16"}
    # DataTypes the runner maps to torch dtypes.
    assert {"FLOAT", "HALF", "INT32", "INT8", "BOOL"} <= set(names["DataType"])
    assert "LINEAR" in names["TensorFormat"] and {"INPUT", "OUTPUT"} <= set(names["TensorIOMode"])


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
    # dozen layers. Not yet calibrated on a TensorRT machine: the bounds are about 1.5x the
    # float16 graph's error in ONNX Runtime (test_float16_graph_matches_pytorch_float32:
    # max output 0.08, texture 0.24 on random inputs).
    worst = fw_trt.engine_parity(engine, batch_sizes=(1, 3, MAX_BATCH))
    assert set(worst) == set(OUTPUT_NAMES)
    assert worst["output"] <= 0.15 and worst["texture"] <= 0.4 and worst["mask"] <= 2e-2, worst
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


@needs_tensorrt
def test_realtime_tensorrt_runtime_builds_once_and_matches_pytorch(tmp_path):
    # The real-time engine's runner: auto takes TensorRT here, builds the cached engine once,
    # and its maps match float32 PyTorch within fp16's error.
    from fastwarp.export.graph import example_inputs
    from fastwarp.models import EditorNet
    from fastwarp.realtime.runners import TensorRTNetwork, make_network

    model = EditorNet.load(map_location="cuda")
    net, choice = make_network(model, "auto", engine_cache=tmp_path)
    assert isinstance(net, TensorRTNetwork) and choice.runtime == choice.runner == "tensorrt", choice.reason
    assert [p.suffix for p in tmp_path.iterdir()] == [".engine"]
    assert make_network(model, "tensorrt", engine_cache=tmp_path)[0].path == net.path  # reused
    image, aus, source = (t.cuda() for t in example_inputs(model, 1, seed=2))
    with torch.no_grad():
        want = model.float()(image, aus, source)
    got = net(image, aus, source)
    assert got.flow.is_cuda and got.flow.dtype == torch.float32
    for name, tol in (("flow", 0.1), ("texture", 0.4), ("mask", 2e-2)):
        assert float((getattr(got, name) - getattr(want, name)).abs().max()) <= tol, name
