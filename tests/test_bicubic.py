"""Bicubic image taps (the ops' ``mode="bicubic"``) on every backend, against the reference:
``F.grid_sample(mode="bicubic", align_corners=True)`` itself (Keys' cubic convolution,
a = -0.75; ``border`` clamps each tap's index into the image, ``zeros`` reads 0 outside),
in float64 on the CPU. Forward and backward of warp and warp_blend, with and without theta
(the frame-space composite, uint8 frames included); the maps' own upsampling stays bilinear.

Flows from ``make_inputs`` keep their fractional parts in [0.1, 0.9]: the cubic weights are
smooth in the fraction, but a tap crossing the image border (clamped, or reading 0) is not,
so gradients are compared away from integer coordinates, as for bilinear (tests/test_ops.py).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import fastwarp
from fastwarp import reference

from op_helpers import LAYOUTS, backends, make_inputs, outputs_with_and_without_simd, with_layout  # noqa: E402
from test_ops import (ARITY, INPUT_NAMES, OPS, TOL, args_of, assert_matches, cpu64, per_backend,  # noqa: E402
                      random_like)

PADDINGS = ("border", "zeros")
REF = {"warp": reference.warp, "warp_blend": reference.warp_blend}
SHAPES = [
    (2, 3, 1, 1),    # 1x1: every tap is the only pixel (border) or all but one read 0 (zeros)
    (1, 2, 1, 9),    # 1xW
    (2, 3, 9, 11),
    (3, 3, 41, 37),  # N=3, odd sizes: the CPU backward gives whole images to threads
]
# Triton's interpreter (no GPU) is slow: the 1x1 image and one ordinary shape.
INTERPRETER_SHAPES = [SHAPES[0], SHAPES[2]]
GRIDS = {"full": None, "small": "half"}  # flow/texture/mask on the image's grid, or about half of it


def grid_of(kind: str, shape):
    if GRIDS[kind] is None:
        return None
    return max(1, (shape[2] + 1) // 2), max(1, (shape[3] + 1) // 2)


def ref_forward(op, args, padding, **kw):
    with torch.no_grad():
        return REF[op](*(cpu64(t) for t in args), padding_mode=padding, mode="bicubic", **kw)


def ref_grads(op, args, grad_output, padding, **kw):
    leaves = [cpu64(t).requires_grad_() for t in args]
    out = REF[op](*leaves, padding_mode=padding, mode="bicubic", **kw)
    return torch.autograd.grad(out, leaves, cpu64(grad_output))


def cases(test):
    for mark in (pytest.mark.parametrize("op", OPS),
                 pytest.mark.parametrize("grid", list(GRIDS)),
                 pytest.mark.parametrize("flow_scale", [2.5, 40.0], ids=["inside", "outside"]),
                 pytest.mark.parametrize("padding", PADDINGS),
                 pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str),
                 per_backend("shape", SHAPES, lambda s: "x".join(map(str, s)), INTERPRETER_SHAPES)):
        test = mark(test)
    return test


@cases
def test_forward_matches_grid_sample_bicubic(backend, dtype, padding, flow_scale, grid, shape, op):
    inputs = make_inputs(shape, dtype, backend.device, flow_scale=flow_scale, seed=41, grid=grid_of(grid, shape))
    args = args_of(op, inputs)
    out = backend.fn(op)(*args, padding_mode=padding, mode="bicubic")
    assert out.dtype == dtype and out.shape == inputs.image.shape
    expected = ref_forward(op, args, padding)
    if dtype == torch.float32 and grid_of(grid, shape) is not None:
        with torch.no_grad():
            own = REF[op](*(t.detach().cpu() for t in args), padding_mode=padding, mode="bicubic")
        assert_within_float32_rounding(out, expected, own)
        return
    assert_matches(out, expected, TOL[dtype])


def assert_within_float32_rounding(actual, expected, own, name=""):
    """A flow upsampled in float32 puts each sample within float32 rounding of its exact
    position, times the image's slope there (tens of pixels; more for a far flow): the
    reference itself run in float32 (``own``: grid_sample's float32 bicubic and autograd)
    errs as much. Bound: 1e-5 (times the magnitude) beyond 1.5 x that error. (bilinear's
    lowres tests avoid it with small images and flows.)"""
    scale = max(1.0, expected.abs().max().item())
    bound = 1e-5 * scale + 1.5 * (own.double() - expected).abs().max().item()
    error = (cpu64(actual) - expected).abs().max().item()
    assert error <= bound, f"{name}: error {error:.3g} > {bound:.3g}"


@cases
def test_backward_matches_grid_sample_bicubic(backend, dtype, padding, flow_scale, grid, shape, op):
    inputs = make_inputs(shape, dtype, backend.device, flow_scale=flow_scale, seed=42, grid=grid_of(grid, shape))
    args = args_of(op, inputs)
    grad_output = random_like(inputs.image, seed=43)
    leaves = [t.detach().requires_grad_() for t in args]
    backend.fn(op)(*leaves, padding_mode=padding, mode="bicubic").backward(grad_output)
    small32 = dtype == torch.float32 and grid_of(grid, shape) is not None
    if small32:
        own_leaves = [t.detach().cpu().requires_grad_() for t in args]
        own_out = REF[op](*own_leaves, padding_mode=padding, mode="bicubic")
        own = torch.autograd.grad(own_out, own_leaves, grad_output.cpu())
    for i, (name, leaf, e) in enumerate(zip(INPUT_NAMES, leaves, ref_grads(op, args, grad_output, padding))):
        assert leaf.grad is not None and leaf.grad.dtype == dtype, name
        if small32:
            assert_within_float32_rounding(leaf.grad, e, own[i], name)
        else:
            assert_matches(leaf.grad, e, TOL[dtype], name=name)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_any_layout(backend, op, layout):
    inputs = make_inputs((2, 3, 9, 11), torch.float64, backend.device, layout, seed=44)
    args = args_of(op, inputs)
    out = backend.fn(op)(*args, padding_mode="border", mode="bicubic")
    assert_matches(out, ref_forward(op, args, "border"), TOL[torch.float64])


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_gradcheck(backend, op, padding):
    inputs = make_inputs((1, 2, 6, 7), torch.float64, backend.device, flow_scale=1.5, seed=45, grid=(4, 5))
    args = [t.detach().requires_grad_() for t in args_of(op, inputs)]
    fn = backend.fn(op)
    # Triton's interpreter runs a kernel per perturbed element: fast mode (a random projection
    # of the Jacobian) keeps it to seconds; the element-wise comparison is test_backward_*.
    assert torch.autograd.gradcheck(lambda *a: fn(*a, padding_mode=padding, mode="bicubic"), args,
                                    fast_mode=backend.interpreted)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("backend", backends())
def test_non_finite_and_huge_coordinates(backend, padding):
    """grid_sample's bicubic: a NaN or infinite coordinate gives NaN (border does not clamp it
    to a pixel, unlike bilinear); a huge finite one reads the edge pixel (border) or 0."""
    inputs = make_inputs((1, 2, 5, 6), torch.float64, backend.device, seed=46)
    flow = inputs.flow.clone()
    flow[0, 0, 0, 0], flow[0, 1, 1, 1], flow[0, 0, 2, 2] = float("nan"), float("inf"), 1e30
    flow[0, 1, 3, 3] = -1e30
    out = backend.fn("warp")(inputs.image, flow, padding_mode=padding, mode="bicubic")
    expected = ref_forward("warp", (inputs.image, flow), padding)
    assert out[0, :, 0, 0].isnan().all() and out[0, :, 1, 1].isnan().all()
    assert_matches(out, expected, TOL[torch.float64], equal_nan=True)


def test_bicubic_differs_from_bilinear_and_bilinear_is_the_default():
    inputs = make_inputs((1, 3, 16, 16), torch.float64, seed=47)
    bilinear = fastwarp.warp(inputs.image, inputs.flow)
    assert torch.equal(bilinear, fastwarp.warp(inputs.image, inputs.flow, mode="bilinear"))
    bicubic = fastwarp.warp(inputs.image, inputs.flow, mode="bicubic")
    assert (bicubic - bilinear).abs().max() > 1e-3
    # An integer flow samples pixel centres: both are the image's pixels there.
    whole = torch.round(inputs.flow) * 0 + 1.0
    torch.testing.assert_close(fastwarp.warp(inputs.image, whole, mode="bicubic"),
                               fastwarp.warp(inputs.image, whole), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", backends())
def test_unknown_mode_is_refused_naming_it(backend):
    inputs = make_inputs((1, 3, 4, 4), torch.float32, backend.device, seed=48)
    with pytest.raises(ValueError, match="mode must be 'bilinear' or 'bicubic', got 'nearest'"):
        backend.fn("warp")(inputs.image, inputs.flow, mode="nearest")
    with pytest.raises(ValueError, match="mode must be 'bilinear' or 'bicubic', got 'cubic'"):
        backend.op("warp")(inputs.image, inputs.flow, "border", "cubic")
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=backend.device)
    with pytest.raises(ValueError, match="mode must be 'bilinear' or 'bicubic'"):
        backend.fn("warp_blend")(*inputs, theta=theta, mode="area")
    with pytest.raises(ValueError, match="mode must be 'bilinear' or 'bicubic'"):
        fastwarp.Warp(mode="linear")


def test_module_mode():
    inputs = make_inputs((1, 3, 8, 9), torch.float64, seed=49)
    module = fastwarp.WarpBlend("zeros", mode="bicubic")
    assert "mode='bicubic'" in repr(module)
    assert torch.equal(module(*inputs), fastwarp.warp_blend(*inputs, padding_mode="zeros", mode="bicubic"))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_opcheck(backend, op):
    inputs = make_inputs((2, 3, 5, 6), torch.float32, backend.device, "channels_last", seed=50)
    args = [t.detach().requires_grad_() for t in args_of(op, inputs)]
    torch.library.opcheck(backend.op(op), (*args, "border", "bicubic"))
    grad_output = with_layout(random_like(inputs.image, seed=51), "channels_last")
    need = [True] * ARITY[op]
    torch.library.opcheck(backend.op(f"{op}_backward"),
                          (grad_output, *args_of(op, inputs), "zeros", "bicubic", need))


@pytest.mark.parametrize("backend", backends())
def test_compile_fullgraph(backend):
    inputs = make_inputs((2, 3, 9, 8), torch.float64, backend.device, seed=52)

    def fn(image, flow, texture, mask):
        return fastwarp.warp_blend(image, flow * 0.5, texture, mask, mode="bicubic", backend=backend.name)

    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True)
    torch.testing.assert_close(compiled(*inputs), fn(*inputs), rtol=1e-12, atol=1e-12)


def test_cpu_backward_is_deterministic():
    """Run to run bit for bit at a given thread count; across thread counts equal within
    rounding (one image's rows split over threads sum their buffers in another order, as for
    bilinear). 160 x 256 pixels: more than one task of rows (16384 pixels each)."""
    inputs = make_inputs((1, 3, 160, 256), torch.float32, seed=53, flow_scale=4.0)
    grad_output = random_like(inputs.image, seed=54)
    before = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2, 1, 2):
            torch.set_num_threads(threads)
            leaves = [t.detach().requires_grad_() for t in inputs]
            fastwarp.warp_blend(*leaves, mode="bicubic").backward(grad_output)
            grads = [t.grad for t in leaves]
            if threads in results:
                assert all(torch.equal(a, b) for a, b in zip(results[threads], grads)), threads
            results[threads] = grads
    finally:
        torch.set_num_threads(before)
    for a, b in zip(results[1], results[2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", [p for p in backends() if p.id != "cpu"])  # the atomic scatters
def test_deterministic_backward_records_sixteen_taps(backend, op):
    """Under torch.use_deterministic_algorithms(True) the image gradient's 16 taps per pixel
    are recorded and reduced in a fixed order: bitwise repeatable, equal to the atomic
    result within rounding and to the reference."""
    inputs = make_inputs((2, 3, 17, 15), torch.float32, backend.device, flow_scale=6.0, seed=65, grid=(9, 8))
    args = args_of(op, inputs)
    grad_output = random_like(inputs.image, seed=66)

    def grads():
        leaves = [t.detach().requires_grad_() for t in args]
        backend.fn(op)(*leaves, mode="bicubic").backward(grad_output)
        return [t.grad for t in leaves]

    atomic = grads()
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        first, again = grads(), grads()
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    expected = ref_grads(op, args, grad_output, "border")
    for name, a, f, g, e in zip(INPUT_NAMES, atomic, first, again, expected):
        assert torch.equal(f, g), name
        assert_matches(a, cpu64(f), 1e-5, name=name)
        assert_matches(f, e, 1e-4, name=name)  # small grid: float32 rounding of the coordinates


# --- the frame-space composite (theta) --------------------------------------------------------

THETA = [[0.31, 0.02, -1.2], [-0.015, 0.33, -1.6]]  # a 7 x 8 grid over part of a 20 x 24 image


def theta_inputs(dtype, device, seed):
    inputs = make_inputs((2, 3, 20, 24), dtype, device, seed=seed, grid=(7, 8), flow_scale=1.5)
    theta = torch.tensor([THETA, THETA], dtype=dtype, device=device)
    return inputs, theta


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_theta_forward_and_backward_match_reference(backend, op, dtype, padding):
    inputs, theta = theta_inputs(dtype, backend.device, seed=55)
    args = args_of(op, inputs)
    leaves = [t.detach().requires_grad_() for t in args]
    out = backend.fn(op)(*leaves, theta=theta, padding_mode=padding, mode="bicubic")
    # The composite's float32 tolerance is test_theta.py's: its reference inverts theta's
    # linear part and samples the flow in other orders of operations.
    tol = TOL[dtype] if dtype == torch.float64 else 5e-5
    assert_matches(out, ref_forward(op, args, padding, theta=cpu64(theta)), tol)
    grad_output = random_like(inputs.image, seed=56)
    out.backward(grad_output)
    for name, leaf, e in zip(INPUT_NAMES, leaves, ref_grads(op, args, grad_output, padding, theta=cpu64(theta))):
        assert_matches(leaf.grad, e, tol * 10 if dtype == torch.float32 else tol, name=name)


@pytest.mark.parametrize("backend", backends())
def test_theta_gradcheck(backend):
    inputs, theta = theta_inputs(torch.float64, backend.device, seed=57)
    args = [t[:1, :, :6, :7].detach().clone().requires_grad_() if i == 0 else t[:1].detach().clone().requires_grad_()
            for i, t in enumerate(inputs)]
    th = torch.tensor([[[0.9, 0.05, 0.3], [0.0, 0.8, 0.2]]], dtype=torch.float64, device=backend.device)
    fn = backend.fn("warp_blend")
    assert torch.autograd.gradcheck(lambda *a: fn(*a, theta=th, mode="bicubic"), args, fast_mode=backend.interpreted)


@pytest.mark.parametrize("backend", backends())
def test_uint8_frame_rounds_and_clamps_the_overshoot(backend):
    """A uint8 frame with float32 maps: the float result clamped to 0..255 and rounded (bicubic
    overshoots at a hard edge: a black/white checkerboard would read below 0 and above 255)."""
    gen = torch.Generator().manual_seed(58)
    board = ((torch.arange(24).view(1, 24) // 2 + torch.arange(20).view(20, 1) // 2) % 2 * 255).to(torch.uint8)
    frame = board.view(20, 24, 1).expand(20, 24, 3).contiguous().to(backend.device)
    image = frame.permute(2, 0, 1)[None]  # an OpenCV frame's channels_last view
    flow = (torch.rand(1, 2, 7, 8, generator=gen) * 1.6 - 0.8).to(backend.device)
    texture = (torch.rand(1, 3, 7, 8, generator=gen) * 255).to(backend.device)
    mask = torch.rand(1, 1, 7, 8, generator=gen).to(backend.device)
    theta = torch.tensor([THETA], device=backend.device)
    out = backend.fn("warp_blend")(image, flow, texture, mask, theta=theta, mode="bicubic")
    assert out.dtype == torch.uint8 and out.stride() == image.stride()
    exact = reference.warp_blend(image.cpu().double(), flow.cpu().double(), texture.cpu().double(),
                                 mask.cpu().double(), theta=theta.cpu().double(), mode="bicubic")
    assert exact.min() < -1 and exact.max() > 256  # the overshoot is there to clamp
    expected = exact.clamp(0, 255).round()
    assert (out.cpu().double() - expected).abs().max() <= 1
    zero = backend.fn("warp_blend")(image, flow * 0, texture, mask * 0 + 1, theta=theta, mode="bicubic")
    assert torch.equal(zero, image)  # no edit: the frame bit for bit


def test_cpu_vectorised_and_scalar_bicubic_agree(tmp_path):
    """The CPU's vectorised kernels (where they serve bicubic) and the scalar path compute
    the same values: float32 within 1e-5 of each other, uint8 composites within one level."""
    script = """
import sys, torch, fastwarp
from op_helpers import make_inputs
cases = []
for shape, grid in [((2, 3, 33, 47), None), ((1, 3, 40, 52), (13, 17))]:
    inp = make_inputs(shape, torch.float32, seed=60, grid=grid, flow_scale=3.0)
    for padding in ("border", "zeros"):
        leaves = [t.detach().requires_grad_() for t in inp]
        out = fastwarp.warp_blend(*leaves, padding_mode=padding, mode="bicubic")
        out.backward(torch.ones_like(out))
        cases.append([out.detach()] + [t.grad for t in leaves])
theta = torch.tensor([[[0.31, 0.02, -1.2], [-0.015, 0.33, -1.6]]])
frame = (torch.rand(40, 52, 3, generator=torch.Generator().manual_seed(61)) * 255).to(torch.uint8)
maps = make_inputs((1, 3, 13, 17), torch.float32, seed=62, flow_scale=1.5)
cases.append([fastwarp.warp_blend(frame.permute(2, 0, 1)[None], maps.flow, maps.texture * 127 + 128, maps.mask,
                                  theta=theta, mode="bicubic")])
cases.append([fastwarp.warp_blend(frame.permute(2, 0, 1)[None].float(), maps.flow, maps.texture * 127 + 128,
                                  maps.mask, theta=theta, mode="bicubic")])
cases.append([fastwarp.warp(make_inputs((8, 3, 31, 29), torch.float32, seed=63).image,
                            make_inputs((8, 3, 31, 29), torch.float32, seed=63).flow, mode="bicubic")])
torch.save(cases, sys.argv[1])
"""
    simd, scalar = outputs_with_and_without_simd(script, tmp_path)
    for case_simd, case_scalar in zip(simd, scalar):
        for a, b in zip(case_simd, case_scalar):
            if a.dtype == torch.uint8:
                assert (a.int() - b.int()).abs().max() <= 1
            else:
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * max(1.0, b.abs().max().item()))


# --- ONNX: GridSample's cubic mode ----------------------------------------------------------

@pytest.mark.parametrize("opset,name", [(18, b"bicubic"), (20, b"cubic")])
def test_onnx_export_of_the_reference_bicubic_warp(tmp_path, opset, name):
    """fastwarp's reference bicubic warp exports to standard ONNX (GridSample, ``bicubic``;
    opset 20 names it ``cubic``; align_corners=1) through torch.export, and ONNX Runtime
    computes what fastwarp's kernels compute."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    class Model(torch.nn.Module):
        def forward(self, image, flow):
            return fastwarp.warp(image, flow, mode="bicubic", backend="reference")

    inputs = make_inputs((1, 3, 24, 20), torch.float32, seed=64, flow_scale=2.0)
    path = tmp_path / "bicubic.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(Model(), (inputs.image, inputs.flow), dynamo=True, verbose=False,
                                    opset_version=opset, input_names=["image", "flow"], output_names=["out"])
    program.save(str(path))
    grid_samples = [n for n in onnx.load(str(path)).graph.node if n.op_type == "GridSample"]
    assert len(grid_samples) == 1
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in grid_samples[0].attribute}
    assert attrs["mode"] == name and attrs["align_corners"] == 1, attrs
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": inputs.image.numpy(), "flow": inputs.flow.numpy()})
    kernel = fastwarp.warp(inputs.image, inputs.flow, mode="bicubic")
    torch.testing.assert_close(torch.from_numpy(out), kernel, rtol=1e-4, atol=1e-4)
