"""Tests of fastwarp's ops (``warp``, ``warp_blend`` and their backward ops) against the
contract in docs/design.md, "The ops": every backend (C++ CPU, CUDA, Triton: see
``op_helpers.backends``) passes the same tests and matches :mod:`fastwarp.reference`
(``F.grid_sample``, ``align_corners=True``) computed in float64 on the CPU.

Flows come from ``make_inputs``, whose values keep their fractional parts in [0.1, 0.9]:
bilinear sampling is not differentiable at integer sample coordinates or on the image
bounds, so gradients are compared only where both sides are well defined.
"""

from __future__ import annotations

import itertools
import re

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import fastwarp
from fastwarp import reference


from op_helpers import (LAYOUTS, Backend, away_from_integers, backends, make_inputs,  # noqa: E402
                        outputs_with_and_without_simd, with_layout)

MODES = ("border", "zeros")
OPS = ("warp", "warp_blend")
CPU = Backend("cpu", "cpu")
REF = {"warp": reference.warp, "warp_blend": reference.warp_blend}
ARITY = {"warp": 2, "warp_blend": 4}
INPUT_NAMES = ("image", "flow", "texture", "mask")

# Absolute tolerance per unit of magnitude (see assert_matches) against the float64 reference.
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}

SHAPES = [
    (2, 3, 1, 1),     # 1x1 image: every finite sample lands on the only pixel
    (3, 1, 1, 17),    # 1xW
    (2, 4, 13, 1),    # Hx1
    (1, 3, 17, 19),   # N=1: the CPU backward splits one image's rows over threads
    (4, 1, 9, 10),
    (5, 3, 123, 77),  # odd sizes, N=5: the CPU backward gives whole images to threads
]
# Triton's interpreter (no GPU) is slow: it leaves out the large shape.
INTERPRETER_SHAPES = SHAPES[:-1]


def shape_id(shape) -> str:
    return "x".join(map(str, shape))


def per_backend(argnames: str, values, ids=str, interpreter_values=None):
    """``parametrize("backend," + argnames)`` over every backend x ``values`` (``ids`` names a
    value); a Triton backend running in the interpreter gets ``interpreter_values`` instead,
    where given. Keeps each backend's skip marks."""
    params = []
    for p in backends():
        backend = p.values[0]
        vals = interpreter_values if backend.interpreted and interpreter_values is not None else values
        for v in vals:
            params.append(pytest.param(backend, *(v if "," in argnames else (v,)), marks=p.marks,
                                       id=f"{p.id}-{ids(v)}"))
    return pytest.mark.parametrize(f"backend,{argnames}", params)


def args_of(op: str, inputs) -> tuple:
    return tuple(inputs[:ARITY[op]])


def cpu64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(device="cpu", dtype=torch.float64)


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, tol: float, equal_nan: bool = False,
                   name: str = "") -> None:
    """``actual`` (any device/dtype) equals the float64 ``expected`` within ``tol`` relative
    and ``tol`` times the largest finite magnitude (at least 1) absolute: a sum of many
    terms (the image-gradient scatter) has an absolute error that scales with its terms."""
    assert actual.shape == expected.shape
    finite = expected[torch.isfinite(expected)]
    scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
    torch.testing.assert_close(cpu64(actual), expected, rtol=tol, atol=tol * scale, equal_nan=equal_nan,
                               msg=(lambda m: f"{name}: {m}") if name else None)


def reference_forward(op: str, args, mode: str) -> torch.Tensor:
    with torch.no_grad():
        return REF[op](*(cpu64(t) for t in args), padding_mode=mode)


def reference_grads(op: str, args, grad_output: torch.Tensor, mode: str, need=None) -> list:
    """Gradients by autograd through the reference, float64 on the CPU; None where not needed."""
    need = need or [True] * len(args)
    leaves = [cpu64(t).requires_grad_(n) for t, n in zip(args, need)]
    out = REF[op](*leaves, padding_mode=mode)
    wanted = [t for t in leaves if t.requires_grad]
    grads = iter(torch.autograd.grad(out, wanted, cpu64(grad_output)))
    return [next(grads) if n else None for n in need]


def op_grads(backend: Backend, op: str, args, grad_output: torch.Tensor, mode: str,
             need=None) -> tuple[torch.Tensor, list]:
    """The op's output on ``backend`` and ``.grad`` of each input (None where it did not require grad)."""
    need = need or [True] * len(args)
    leaves = [t.detach().requires_grad_(n) for t, n in zip(args, need)]
    out = backend.fn(op)(*leaves, padding_mode=mode)
    if any(need):
        out.backward(grad_output)
    return out, [t.grad for t in leaves]


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(t.shape, dtype=torch.float64, generator=gen) * 2 - 1).to(dtype=t.dtype, device=t.device)


# --- forward and backward against the reference --------------------------------------------

def reference_cases(test):
    """Every backend x shape x dtype x layout x padding mode x flow size x op."""
    for mark in (pytest.mark.parametrize("op", OPS),
                 pytest.mark.parametrize("flow_kind", ["inside", "outside"]),
                 pytest.mark.parametrize("mode", MODES),
                 pytest.mark.parametrize("layout", LAYOUTS),
                 pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str),
                 per_backend("shape", SHAPES, shape_id, INTERPRETER_SHAPES)):
        test = mark(test)
    return test


def flow_scale_of(kind: str, shape) -> float:
    # "inside": a few pixels, most samples stay in the image; "outside": twice the image
    # size, most samples leave it (clamped in border mode, zero taps in zeros mode).
    return 3.0 if kind == "inside" else 2.0 * max(shape[2], shape[3])


@reference_cases
def test_forward_matches_reference(backend, dtype, layout, mode, flow_kind, shape, op):
    inputs = make_inputs(shape, dtype, backend.device, layout, flow_scale_of(flow_kind, shape), seed=1)
    args = args_of(op, inputs)
    out = backend.fn(op)(*args, padding_mode=mode)
    assert out.dtype == dtype and out.device.type == backend.device
    assert_matches(out, reference_forward(op, args, mode), TOL[dtype])
    # The output takes the image's memory format.
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)


@reference_cases
def test_backward_matches_reference(backend, dtype, layout, mode, flow_kind, shape, op):
    inputs = make_inputs(shape, dtype, backend.device, layout, flow_scale_of(flow_kind, shape), seed=2)
    args = args_of(op, inputs)
    grad_output = with_layout(random_like(inputs.image, seed=3), layout)  # the kernels read it by strides
    _, grads = op_grads(backend, op, args, grad_output, mode)
    expected = reference_grads(op, args, grad_output, mode)
    for name, g, e in zip(INPUT_NAMES, grads, expected):
        assert g is not None and g.dtype == dtype, name
        assert_matches(g, e, TOL[dtype], name=name)


# --- resolution independence: flow, texture and mask on a smaller grid -------------------

# (image shape, grid (h, w)): integer and fractional scale factors, one axis at full size,
# a 1 x 1 grid, and the networks' 4x case.
LOWRES_CASES = [
    ((2, 3, 16, 20), (8, 5)),
    ((1, 3, 17, 19), (4, 7)),
    ((2, 2, 12, 9), (12, 4)),
    ((2, 3, 9, 11), (1, 1)),
    ((2, 3, 32, 32), (8, 8)),
]


def lowres_cases(test):
    for mark in (pytest.mark.parametrize("op", OPS),
                 pytest.mark.parametrize("mode", MODES),
                 pytest.mark.parametrize("layout", LAYOUTS),
                 pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str),
                 per_backend("shape,grid", LOWRES_CASES, lambda v: f"{shape_id(v[0])}-{shape_id(v[1])}")):
        test = mark(test)
    return test


@lowres_cases
def test_lowres_forward_matches_reference(backend, dtype, layout, mode, shape, grid, op):
    inputs = make_inputs(shape, dtype, backend.device, layout, flow_scale=2.0, seed=31, grid=grid)
    args = args_of(op, inputs)
    out = backend.fn(op)(*args, padding_mode=mode)
    assert out.shape == shape
    assert_matches(out, reference_forward(op, args, mode), TOL[dtype])


@lowres_cases
def test_lowres_backward_matches_reference(backend, dtype, layout, mode, shape, grid, op):
    # Gradients reach the h x w tensors through the adjoint of the upsampling.
    inputs = make_inputs(shape, dtype, backend.device, layout, flow_scale=2.0, seed=32, grid=grid)
    args = args_of(op, inputs)
    grad_output = with_layout(random_like(inputs.image, seed=33), layout)
    _, grads = op_grads(backend, op, args, grad_output, mode)
    expected = reference_grads(op, args, grad_output, mode)
    for name, g, e in zip(INPUT_NAMES, grads, expected):
        assert g is not None and g.shape == e.shape, name
        assert_matches(g, e, TOL[dtype], name=name)


@pytest.mark.parametrize("backend", backends())
def test_lowres_upsampling_is_interpolate(backend):
    # Independent of fastwarp.reference: a constant flow on a 4x smaller grid is the same
    # constant flow in image pixels times 4, and a zero flow with mask 0 returns the
    # texture upsampled by F.interpolate.
    opts = dict(dtype=torch.float64, device=backend.device)
    image = torch.rand(1, 3, 32, 32, **opts)
    flow = torch.zeros(1, 2, 8, 8, **opts)
    flow[:, 0] = 0.5  # 0.5 px of the 8 x 8 grid = 2 px of the image
    out = backend.fn("warp")(image, flow)
    torch.testing.assert_close(out[..., :30], image[..., 2:], rtol=0, atol=1e-12)
    texture = torch.rand(1, 3, 8, 8, **opts)
    mask = torch.zeros(1, 1, 8, 8, **opts)
    out = backend.fn("warp_blend")(image, flow, texture, mask)
    expected = torch.nn.functional.interpolate(texture, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (2, 3, 1, 9), (2, 1, 8, 1), (3, 4, 9, 11)], ids=shape_id)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", backends())
def test_integer_flow_forward(backend, dtype, mode, shape, op):
    """Integer flows sample pixel centres exactly (also exactly on the image bounds):
    the forward is continuous there and must match the reference; zero flow is the
    identity, bit for bit."""
    inputs = make_inputs(shape, dtype, backend.device, seed=31)
    gen = torch.Generator().manual_seed(32)
    flow = torch.randint(-12, 13, inputs.flow.shape, generator=gen).to(device=backend.device, dtype=dtype)
    args = args_of(op, (inputs.image, flow) + tuple(inputs[2:]))
    assert_matches(backend.fn(op)(*args, padding_mode=mode), reference_forward(op, args, mode), TOL[dtype])
    identity = backend.fn("warp")(inputs.image, torch.zeros_like(inputs.flow), padding_mode=mode)
    assert torch.equal(identity, inputs.image)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", backends())
def test_empty_batch(backend, mode, op):
    inputs = make_inputs((0, 3, 5, 7), torch.float32, backend.device)
    args = args_of(op, inputs)
    out, grads = op_grads(backend, op, args, torch.empty(0, 3, 5, 7, device=backend.device), mode)
    assert out.shape == (0, 3, 5, 7)
    for t, g in zip(args, grads):
        assert g is not None and g.shape == t.shape


# --- non-finite and huge flows --------------------------------------------------------------

SPECIAL = (float("nan"), float("inf"), float("-inf"), 1e30, -1e30)


def special_flow(flow: torch.Tensor, seed: int) -> torch.Tensor:
    """``flow`` with about half its entries replaced by NaN, +-Inf or +-1e30 (in dx, dy or both)."""
    gen = torch.Generator().manual_seed(seed)
    flow = flow.clone()
    pick = torch.randint(0, 2 * len(SPECIAL), flow.shape, generator=gen)
    for i, v in enumerate(SPECIAL):
        flow[(pick == i).to(flow.device)] = v
    return flow


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(2, 3, 6, 7), (2, 3, 1, 7), (2, 3, 6, 1), (2, 2, 1, 1)], ids=shape_id)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", backends())
def test_non_finite_flow_matches_reference(backend, dtype, layout, mode, shape, op):
    """border: NaN samples the first pixel, +-Inf the last/first; zeros: NaN or +-Inf gives
    NaN, a huge finite coordinate 0 (grid_sample on the CPU, docs/design.md)."""
    image, flow, texture, mask = make_inputs(shape, dtype, backend.device, layout, seed=4)
    flow = with_layout(special_flow(flow, seed=5), layout)
    args = args_of(op, (image, flow, texture, mask))
    out = backend.fn(op)(*args, padding_mode=mode)
    assert_matches(out, reference_forward(op, args, mode), TOL[dtype], equal_nan=True)
    if mode == "border":
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", backends())
def test_huge_finite_flow_backward_matches_reference(backend, dtype, mode, op):
    inputs = make_inputs((2, 3, 6, 7), dtype, backend.device, seed=6)
    gen = torch.Generator().manual_seed(7)
    huge = torch.tensor([1e30, -1e30, 1e6 + 0.5, -1e6 - 0.5], dtype=torch.float64)
    pick = torch.randint(0, 2 * len(huge), inputs.flow.shape, generator=gen)
    flow = cpu64(inputs.flow)
    flow[pick < len(huge)] = huge[pick[pick < len(huge)]]
    args = args_of(op, (inputs.image, flow.to(device=backend.device, dtype=dtype), inputs.texture, inputs.mask))
    grad_output = random_like(inputs.image, seed=8)
    _, grads = op_grads(backend, op, args, grad_output, mode)
    for g, e in zip(grads, reference_grads(op, args, grad_output, mode)):
        assert_matches(g, e, TOL[dtype])


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("sentinel", [float("nan"), 1e30], ids=["nan", "1e30"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", backends())
def test_reads_nothing_outside_image(backend, dtype, mode, sentinel, op):
    """The image is a view into a buffer whose 2-pixel frame holds a sentinel; no flow,
    however large or non-finite, may let the sentinel reach the output or the gradients."""
    N, C, H, W = 3, 3, 6, 7
    _, flow, texture, mask = make_inputs((N, C, H, W), dtype, backend.device, seed=9)
    big = torch.full((N, C, H + 4, W + 4), sentinel, dtype=dtype, device=backend.device)
    image = big[:, :, 2:-2, 2:-2]
    image.copy_(random_like(image, seed=10))
    values = torch.tensor([float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 1e6 + 0.5, -1e6 - 0.5,
                           W + 0.3, -W - 0.3, H + 0.6, -H - 0.6, 2.6, -2.6, 0.4, -0.4], dtype=torch.float64)
    gen = torch.Generator().manual_seed(11)
    flow = values[torch.randint(0, len(values), flow.shape, generator=gen)].to(device=backend.device, dtype=dtype)
    args = args_of(op, (image, flow, texture, mask))
    grad_output = random_like(image, seed=12)
    out, grads = op_grads(backend, op, args, grad_output, mode, need=[True, True, False, True][:ARITY[op]])

    bound = image.abs().max().item() * (1 + 1e-6)  # |texture| <= |image| max and mask in [0, 1]
    if mode == "border":
        assert torch.isfinite(out).all()
    ok = ~torch.isnan(out)
    assert (out[ok].abs() <= bound).all()
    assert_matches(out, reference_forward(op, (image.contiguous(),) + args[1:], mode), TOL[dtype],
                   equal_nan=True)
    # Taps outside the image never scatter, and the flow and mask gradients read only
    # taps inside it: all finite wherever the flow is (everywhere in border mode).
    assert torch.isfinite(grads[0]).all()
    flow_ok = torch.isfinite(flow).all(dim=1, keepdim=True) | (mode == "border")
    assert torch.isfinite(grads[1][flow_ok.expand_as(flow)]).all()
    if op == "warp_blend":
        assert torch.isfinite(grads[3][flow_ok]).all()


# --- gradients: gradcheck, partial requires_grad, determinism -------------------------------

@pytest.mark.parametrize("op,wrt", [(op, w) for op in OPS for w in ("all",) + INPUT_NAMES[:ARITY[op]]])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("backend", backends())
def test_gradcheck(backend, layout, mode, op, wrt):
    inputs = make_inputs((2, 2, 4, 5), torch.float64, backend.device, layout, flow_scale=2.0, seed=13)
    args = [t.detach().requires_grad_(wrt in ("all", name))
            for t, name in zip(args_of(op, inputs), INPUT_NAMES)]
    assert torch.autograd.gradcheck(lambda *ts: backend.fn(op)(*ts, padding_mode=mode), args, fast_mode=True)


def _nonempty_subsets(n: int):
    return [s for k in range(1, n + 1) for s in itertools.combinations(range(n), k)]


@pytest.mark.parametrize("op,wanted", [(op, s) for op in OPS for s in _nonempty_subsets(ARITY[op])],
                         ids=lambda v: v if isinstance(v, str) else "+".join(INPUT_NAMES[i] for i in v))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", backends())
def test_only_some_inputs_require_grad(backend, mode, op, wanted):
    inputs = make_inputs((2, 3, 7, 8), torch.float64, backend.device, flow_scale=3.0, seed=14)
    args = args_of(op, inputs)
    need = [i in wanted for i in range(len(args))]
    grad_output = random_like(inputs.image, seed=15)
    out, grads = op_grads(backend, op, args, grad_output, mode, need)
    assert out.requires_grad
    for name, n, g, e in zip(INPUT_NAMES, need, grads, reference_grads(op, args, grad_output, mode, need)):
        if n:
            assert_matches(g, e, TOL[torch.float64], name=name)
        else:
            assert g is None, name


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_no_input_requires_grad(backend, op):
    out = backend.fn(op)(*args_of(op, make_inputs((1, 3, 4, 4), device=backend.device)))
    assert not out.requires_grad and out.grad_fn is None


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("threads", [1, 3])
def test_cpu_backward_any_thread_count(threads, op):
    # The CPU backward gives whole images to threads when N >= threads, else splits rows
    # over per-thread buffers: with 1 and 3 threads both N=1 and N=2 take both paths.
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for shape in [(1, 3, 21, 9), (2, 3, 21, 9)]:
            inputs = make_inputs(shape, torch.float64, "cpu", flow_scale=8.0, seed=29)
            args = args_of(op, inputs)
            grad_output = random_like(inputs.image, seed=30)
            _, grads = op_grads(CPU, op, args, grad_output, "border")
            for name, g, e in zip(INPUT_NAMES, grads, reference_grads(op, args, grad_output, "border")):
                assert_matches(g, e, TOL[torch.float64], name=f"{shape_id(shape)} {name}")
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("shape", [(1, 3, 40, 33), (4, 3, 40, 33)], ids=shape_id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_cpu_backward_is_deterministic(dtype, shape, op):
    # Flows that pile many samples onto the same pixels (clamped to the border), so the
    # scatter has many colliding taps whose summation order would show.
    inputs = make_inputs(shape, dtype, "cpu", flow_scale=30.0, seed=16)
    args = args_of(op, inputs)
    grad_output = random_like(inputs.image, seed=17)
    first = op_grads(CPU, op, args, grad_output, "border")[1]
    for _ in range(3):
        again = op_grads(CPU, op, args, grad_output, "border")[1]
        for a, b in zip(first, again):
            assert torch.equal(a, b)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("backend", [p for p in backends() if p.id != "cpu"])  # the atomic scatters
def test_deterministic_backward(backend, dtype, op):
    """torch.use_deterministic_algorithms(True) switches the image gradient from atomics
    to a fixed-order reduction: bitwise repeatable, equal to the atomic result within
    rounding, and to the reference."""
    inputs = make_inputs((3, 3, 64, 48), dtype, backend.device, flow_scale=20.0, seed=18)
    args = args_of(op, inputs)
    grad_output = random_like(inputs.image, seed=19)
    atomic = op_grads(backend, op, args, grad_output, "border")[1]
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        first = op_grads(backend, op, args, grad_output, "border")[1]
        again = op_grads(backend, op, args, grad_output, "border")[1]
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    tol = 1e-5 if dtype == torch.float32 else 2 * torch.finfo(dtype).eps
    for a, f, g in zip(atomic, first, again):
        assert torch.equal(f, g)
        assert_matches(a, cpu64(f), tol)
    if dtype == torch.float32:
        for f, e in zip(first, reference_grads(op, args, grad_output, "border")):
            assert_matches(f, e, TOL[dtype])


# --- reduced precision ------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("backend", backends())
def test_half_precision_error_at_most_twice_pytorchs(backend, dtype, mode, op):
    """Numerics rule for half precision (STYLE.md): on the same inputs, the op's error
    against the float64 result is at most twice the error of PyTorch's own reference run
    at that precision, plus one rounding of the largest value (eps * max|exact|) — for
    the output and for every gradient. (The kernels compute in float32, so the op's
    error is about one final rounding.)"""
    inputs = make_inputs((2, 3, 32, 29), dtype, backend.device, flow_scale=3.0, seed=20)
    args = args_of(op, inputs)
    grad_output = random_like(inputs.image, seed=21)

    exact_out = reference_forward(op, args, mode)
    exact_grads = reference_grads(op, args, grad_output, mode)
    op_out, op_g = op_grads(backend, op, args, grad_output, mode)
    leaves = [t.detach().requires_grad_() for t in args]
    ref_out = REF[op](*leaves, padding_mode=mode)
    ref_g = torch.autograd.grad(ref_out, leaves, grad_output)

    eps = torch.finfo(dtype).eps
    for name, exact, mine, theirs in zip(("output",) + INPUT_NAMES, [exact_out, *exact_grads],
                                         [op_out, *op_g], [ref_out, *ref_g]):
        assert mine.dtype == dtype, name
        op_err = (cpu64(mine) - exact).abs().max().item()
        ref_err = (cpu64(theirs) - exact).abs().max().item()
        slack = eps * max(1.0, exact.abs().max().item())
        assert op_err <= 2 * ref_err + slack, f"{name}: op error {op_err:.3g}, PyTorch's {ref_err:.3g}"


# --- registration: opcheck and torch.compile --------------------------------------------------

@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("backend", backends())
def test_opcheck_forward(backend, layout, mode, op):
    inputs = make_inputs((2, 3, 5, 6), torch.float32, backend.device, layout, seed=22)
    args = [t.detach().requires_grad_() for t in args_of(op, inputs)]
    torch.library.opcheck(backend.op(op), (*args, mode))


BACKWARD_MASKS = {
    "warp": [[True, True], [True, False], [False, True]],
    "warp_blend": [[True, True, True, True], [True, False, False, True], [False, True, True, False]],
}


@pytest.mark.parametrize("op,output_mask", [(op, m) for op in OPS for m in BACKWARD_MASKS[op]],
                         ids=lambda v: v if isinstance(v, str) else "".join("1" if b else "0" for b in v))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("backend", backends())
def test_opcheck_backward(backend, layout, op, output_mask):
    """Includes output masks that skip two gradients: the op's schema promises distinct
    (non-aliasing) outputs, so the skipped gradients must be distinct empty tensors."""
    inputs = make_inputs((2, 3, 5, 6), torch.float32, backend.device, layout, seed=23)
    grad_output = with_layout(random_like(inputs.image, seed=24), layout)
    torch.library.opcheck(backend.op(f"{op}_backward"), (grad_output, *args_of(op, inputs), "zeros", "bilinear", output_mask))


class _TinyEditor(nn.Module):
    """A conv head predicting flow, texture and mask from the image, then warp_blend:
    the shape of TextureNet/MotionNet's use of the op, in miniature."""

    def __init__(self, channels: int, padding_mode: str, backend: str = "auto") -> None:
        super().__init__()
        self.channels = channels
        self.head = nn.Conv2d(channels, 2 + channels + 1, 3, padding=1)
        self.warp_blend = fastwarp.WarpBlend(padding_mode, backend)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = self.head(image)
        flow = 4.0 * torch.tanh(h[:, :2])
        texture = torch.tanh(h[:, 2:2 + self.channels])
        mask = torch.sigmoid(h[:, 2 + self.channels:])
        return self.warp_blend(image, flow, texture, mask)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", backends())
def test_compile_fullgraph_matches_eager(backend, mode):
    torch.manual_seed(25)
    model = _TinyEditor(3, mode, backend.name).to(device=backend.device, dtype=torch.float64)
    image = make_inputs((2, 3, 12, 10), torch.float64, backend.device, seed=26).image.requires_grad_()
    weight = random_like(image, seed=27)

    def run(fn):
        model.zero_grad()
        image.grad = None
        out = fn(image)
        (out * weight).sum().backward()
        return [out.detach(), image.grad.clone()] + [p.grad.clone() for p in model.parameters()]

    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    for e, c in zip(run(model), run(compiled)):
        torch.testing.assert_close(c, e, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", backends())
def test_export_keeps_one_op(backend):
    """torch.export records the backend's op as one node (its kernels stay behind it) and
    the exported program computes what the module does."""
    torch.manual_seed(34)
    model = _TinyEditor(3, "zeros", backend.name).to(device=backend.device, dtype=torch.float64)
    image = make_inputs((2, 3, 12, 10), torch.float64, backend.device, seed=35).image
    exported = torch.export.export(model, (image,))
    targets = [str(node.target) for node in exported.graph.nodes if node.op == "call_function"]
    assert targets.count(str(backend.op("warp_blend"))) == 1, targets
    assert not any("triton_kernel_wrapper" in t for t in targets), targets
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(image), model(image), rtol=1e-12, atol=1e-12)


# --- bad input ----------------------------------------------------------------------------------

def _base(op: str, device="cpu") -> dict:
    image, flow, texture, mask = make_inputs((2, 3, 5, 6), torch.float32, device, seed=28)
    args = dict(image=image, flow=flow, texture=texture, mask=mask, padding_mode="border")
    if op == "warp":
        del args["texture"], args["mask"]
    return args


def _f(*shape, dtype=torch.float32):
    return torch.rand(*shape).to(dtype)


# (id, replacements, exception, message after "fastwarp.<op>: ")
BAD_INPUTS = [
    ("image_rank", dict(image=_f(3, 5, 6)), ValueError,
     r"image must be a 4-D tensor \[N, C, H, W\], got 3-D with shape \[3, 5, 6\]"),
    ("flow_rank", dict(flow=_f(2, 5, 6)), ValueError, r"flow must be a 4-D tensor, got 3-D with shape \[2, 5, 6\]"),
    ("texture_rank", dict(texture=_f(2, 3, 5, 6, 1)), ValueError, r"texture must be a 4-D tensor, got 5-D"),
    ("mask_rank", dict(mask=_f(2, 5, 6)), ValueError, r"mask must be a 4-D tensor, got 3-D"),
    ("flow_channels", dict(flow=_f(2, 3, 5, 6)), ValueError, r"flow\.shape\[1\] must be 2 \(dx, dy\), got 3"),
    ("mask_channels", dict(mask=_f(2, 3, 5, 6)), ValueError, r"mask\.shape\[1\] must be 1, got 3"),
    ("texture_channels", dict(texture=_f(2, 4, 5, 6)), ValueError,
     r"texture\.shape\[1\] must equal image channels C=3, got 4"),
    ("flow_batch", dict(flow=_f(3, 2, 5, 6)), ValueError, r"batch mismatch: image has N=2 but flow has N=3"),
    ("texture_batch", dict(texture=_f(1, 3, 5, 6)), ValueError, r"batch mismatch: image has N=2 but texture has N=1"),
    ("mask_batch", dict(mask=_f(3, 1, 5, 6)), ValueError, r"batch mismatch: image has N=2 but mask has N=3"),
    # The flow may be smaller than the image (upsampled), never larger; texture and mask
    # share the flow's grid.
    ("flow_size", dict(flow=_f(2, 2, 6, 6)), ValueError,
     r"flow's spatial size \[h, w\] must be at least \[1, 1\] and at most the image's \[H, W\] = \[5, 6\], "
     r"got \[6, 6\]"),
    ("flow_size_empty", dict(flow=_f(2, 2, 0, 6)), ValueError,
     r"flow's spatial size \[h, w\] must be at least \[1, 1\] and at most the image's \[H, W\] = \[5, 6\], "
     r"got \[0, 6\]"),
    ("texture_size", dict(texture=_f(2, 3, 5, 7)), ValueError,
     r"texture must have the flow's spatial size \[h, w\] = \[5, 6\], got \[5, 7\]"),
    ("mask_size", dict(mask=_f(2, 1, 3, 3)), ValueError,
     r"mask must have the flow's spatial size \[h, w\] = \[5, 6\], got \[3, 3\]"),
    ("flow_dtype", dict(flow=_f(2, 2, 5, 6, dtype=torch.float64)), TypeError,
     r"flow\.dtype must match image\.dtype \(Float\), got Double"),
    ("texture_dtype", dict(texture=_f(2, 3, 5, 6, dtype=torch.float16)), TypeError,
     r"texture\.dtype must match image\.dtype \(Float\), got Half"),
    ("mask_dtype", dict(mask=_f(2, 1, 5, 6, dtype=torch.bfloat16)), TypeError,
     r"mask\.dtype must match image\.dtype \(Float\), got BFloat16"),
    ("image_integer", dict(image=torch.randint(0, 255, (2, 3, 5, 6), dtype=torch.uint8)), TypeError,
     r"image must be a floating-point tensor \(float16, bfloat16, float32 or float64\), got Byte"),
    ("flow_integer", dict(flow=torch.randint(-3, 3, (2, 2, 5, 6), dtype=torch.int64)), TypeError,
     r"flow must be a floating-point tensor \(float16, bfloat16, float32 or float64\), got Long"),
    ("empty_image", dict(image=_f(2, 3, 0, 6), flow=_f(2, 2, 0, 6), texture=_f(2, 3, 0, 6), mask=_f(2, 1, 0, 6)),
     ValueError, r"image height and width must be at least 1, got shape \[2, 3, 0, 6\]"),
    ("padding_mode", dict(padding_mode="reflection"), ValueError,
     r"padding_mode must be 'border' or 'zeros', got 'reflection'"),
]


def _call(backend: Backend, op: str, how: str, args: dict):
    """Calls the backend's op eagerly, on fake tensors (FakeTensorMode) or on the meta device."""
    tensors = {k: v for k, v in args.items() if isinstance(v, torch.Tensor)}
    mode = args["padding_mode"]
    fn = backend.op(op)
    if how == "eager":
        return fn(*tensors.values(), mode)
    if how == "meta":
        return fn(*(t.to("meta") for t in tensors.values()), mode)
    with FakeTensorMode() as fake_mode:
        return fn(*(fake_mode.from_tensor(t) for t in tensors.values()), mode)


def _applicable_bad_inputs():
    # Cases about texture or mask apply to warp_blend only (warp has neither), except
    # empty_image, which replaces them alongside the image.
    for case in BAD_INPUTS:
        for op in OPS:
            if op == "warp" and case[0] != "empty_image" and any(k in ("texture", "mask") for k in case[1]):
                continue
            yield pytest.param(*case, op, id=f"{case[0]}-{op}")


@pytest.mark.parametrize("how", ["eager", "fake", "meta"])
@pytest.mark.parametrize("case,replace,exc,message,op", list(_applicable_bad_inputs()))
@pytest.mark.parametrize("backend", backends())
def test_bad_input_raises(backend, case, replace, exc, message, op, how):
    args = _base(op, backend.device)
    replace = {k: v.to(backend.device) if isinstance(v, torch.Tensor) else v for k, v in replace.items()}
    replace = {k: v for k, v in replace.items() if k in args}
    args.update(replace)
    with pytest.raises(exc, match=re.escape(f"fastwarp.{op}: ") + message):
        _call(backend, op, how, args)


@pytest.mark.parametrize("how", ["eager", "fake", "meta"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_bad_input_raises_from_wrapper(backend, op, how):
    # The public wrappers pass arguments through unchanged: same checks, same messages.
    args = _base(op, backend.device)
    args["flow"] = _f(2, 3, 5, 6).to(backend.device)
    tensors = [v for v in args.values() if isinstance(v, torch.Tensor)]
    if how == "meta":
        tensors = [t.to("meta") for t in tensors]
    with pytest.raises(ValueError, match=re.escape(f"fastwarp.{op}: flow.shape[1] must be 2 (dx, dy), got 3")):
        if how == "fake":
            with FakeTensorMode() as fake_mode:
                backend.fn(op)(*(fake_mode.from_tensor(t) for t in tensors))
        else:
            backend.fn(op)(*tensors)


@pytest.mark.parametrize("how", ["eager", "fake", "meta"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("bad", ["shape", "dtype"])
@pytest.mark.parametrize("backend", backends())
def test_backward_op_checks_grad_output(backend, bad, op, how):
    args = _base(op, backend.device)
    image = args["image"]
    grad_output = _f(2, 3, 5, 5).to(backend.device) if bad == "shape" else image.double()
    exc, message = ((ValueError, r"grad_output must have the output's shape \[2, 3, 5, 6\], got \[2, 3, 5, 5\]")
                    if bad == "shape" else
                    (TypeError, r"grad_output\.dtype must match image\.dtype \(Float\), got Double"))
    tensors = [grad_output] + [v for v in args.values() if isinstance(v, torch.Tensor)]
    backward = backend.op(f"{op}_backward")
    call_args = lambda ts: (*ts, "border", "bilinear", [True] * ARITY[op])  # noqa: E731
    with pytest.raises(exc, match=re.escape(f"fastwarp.{op}_backward: ") + message):
        if how == "eager":
            backward(*call_args(tensors))
        elif how == "meta":
            backward(*call_args([t.to("meta") for t in tensors]))
        else:
            with FakeTensorMode() as fake_mode:
                backward(*call_args([fake_mode.from_tensor(t) for t in tensors]))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("backend", backends())
def test_device_mismatch_raises(backend, op):
    # An image with a meta flow dispatches to the fake kernel, which checks devices.
    args = _base(op, backend.device)
    args["flow"] = args["flow"].to("meta")
    with pytest.raises(ValueError, match=re.escape(f"fastwarp.{op}: flow must be on the image's device "
                                                   f"({args['image'].device}), got meta")):
        _call(backend, op, "eager", args)


@pytest.mark.needs_cuda
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("which", ["flow", "texture", "mask"])
@pytest.mark.parametrize("backend", [p for p in backends() if p.id != "cpu"])  # the GPU backends
def test_cuda_device_mismatch_raises(backend, which, op):
    if which not in _base(op):
        pytest.skip("warp has no texture or mask")
    args = {k: (v.cuda() if isinstance(v, torch.Tensor) and k != which else v) for k, v in _base(op).items()}
    with pytest.raises(ValueError, match=re.escape(f"fastwarp.{op}: {which} must be on the image's device (cuda")):
        _call(backend, op, "eager", args)


def test_away_from_integers_helper():
    # The gradient tests rely on it: no sample coordinate within 0.1 px of an integer.
    flow = away_from_integers(torch.randn(1000, dtype=torch.float64) * 50)
    frac = flow - torch.floor(flow)
    assert ((frac >= 0.1 - 1e-12) & (frac <= 0.9 + 1e-12)).all()


def test_modules():
    inputs = make_inputs((1, 3, 6, 5), torch.float64)
    assert repr(fastwarp.WarpBlend("zeros")) == "WarpBlend(padding_mode='zeros')"
    assert torch.equal(fastwarp.Warp("zeros")(inputs.image, inputs.flow),
                       fastwarp.warp(inputs.image, inputs.flow, padding_mode="zeros"))
    assert torch.equal(fastwarp.WarpBlend()(*inputs), fastwarp.warp_blend(*inputs))
    with pytest.raises(ValueError, match="padding_mode must be 'border' or 'zeros', got 'reflect'"):
        fastwarp.Warp("reflect")
    module = fastwarp.WarpBlend(backend="reference")
    assert repr(module) == "WarpBlend(padding_mode='border', backend='reference')"
    assert torch.equal(module(*inputs), reference.warp_blend(*inputs))
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'cpu', 'cuda', 'triton', 'reference', "
                                         "got 'gpu'"):
        fastwarp.Warp(backend="gpu")


# --- choosing a backend ---------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
def test_unknown_backend_raises(op):
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'cpu', 'cuda', 'triton', 'reference', "
                                         "got 'Triton'"):
        getattr(fastwarp, op)(*args_of(op, make_inputs((1, 3, 4, 4))), backend="Triton")


@pytest.mark.parametrize("available,expected", [
    (dict(cuda=True, triton=True), "cuda"),
    (dict(cuda=False, triton=True), "triton"),
    (dict(cuda=False, triton=False), "reference"),
])
def test_auto_backend_rule(monkeypatch, available, expected):
    # CPU (and meta) tensors always get the C++ kernels; CUDA tensors the first available
    # of cuda, triton, reference.
    monkeypatch.setattr(fastwarp.ops.registry, "backends", lambda: dict(cpu=True, reference=True, **available))
    assert fastwarp.resolve_backend("auto", "cpu") == "cpu"
    assert fastwarp.resolve_backend("auto", torch.device("meta")) == "cpu"
    assert fastwarp.resolve_backend("auto", "cuda") == expected
    assert fastwarp.resolve_backend("triton", "cpu") == "triton"  # explicit names stay


@pytest.mark.parametrize("op", OPS)
def test_backend_on_wrong_device_raises(op, monkeypatch):
    args = args_of(op, make_inputs((1, 3, 4, 4)))
    with pytest.raises(ValueError, match=re.escape(f"fastwarp.{op}: backend='cuda' needs CUDA tensors, got cpu")):
        getattr(fastwarp, op)(*args, backend="cuda")
    # Triton on CPU tensors only in the interpreter.
    if fastwarp.ops.registry._has_triton():
        triton_ops = fastwarp.ops.registry._TRITON["module"]
        monkeypatch.setattr(triton_ops, "INTERPRET", False)
        with pytest.raises(ValueError, match=re.escape(f"fastwarp.{op}: backend='triton' needs CUDA tensors (or CPU "
                                                       "tensors with TRITON_INTERPRET=1")):
            getattr(fastwarp, op)(*args, backend="triton")
    # Without triton: a clear error, and "auto" never picks it.
    monkeypatch.setattr(fastwarp.ops.registry, "_TRITON", dict(module=None, error="No module named 'triton'"))
    assert fastwarp.backends()["triton"] is False
    with pytest.raises(RuntimeError, match=re.escape(f"fastwarp.{op}: backend='triton' needs the triton package, "
                                                     "which does not import: No module named 'triton'")):
        getattr(fastwarp, op)(*args, backend="triton")


def test_backend_choice_traces_without_graph_breaks():
    # The wrappers' backend choice (also the CUDA branch of "auto", probed here without a
    # GPU) must not break torch.compile(fullgraph=True) graphs on any machine.
    def f(x):
        names = [fastwarp.resolve_backend(b, torch.device(d)) for b in ("auto", "cuda") for d in ("cpu", "cuda")]
        return x + len(names) + sum(fastwarp.backends().values())

    torch._dynamo.reset()
    x = torch.zeros(2)
    assert torch.equal(torch.compile(f, fullgraph=True)(x), f(x))


@pytest.mark.parametrize("op", OPS)
def test_reference_backend_is_the_reference(op):
    inputs = make_inputs((2, 3, 6, 7), torch.float64, seed=36)
    args = args_of(op, inputs)
    grad_output = random_like(inputs.image, seed=37)
    out, grads = op_grads(Backend("reference", "cpu"), op, args, grad_output, "zeros")
    assert torch.equal(out, reference_forward(op, args, "zeros"))
    for g, e in zip(grads, reference_grads(op, args, grad_output, "zeros")):
        assert torch.equal(g, e)


def test_package_imports_without_triton():
    # triton is optional: with it unimportable fastwarp imports, runs its C++ kernels and
    # reports no Triton backend.
    import subprocess
    import sys
    script = ("import sys; sys.modules['triton'] = None\n"
              "import torch, fastwarp\n"
              "assert fastwarp.backends()['triton'] is False, fastwarp.backends()\n"
              "image = torch.rand(1, 3, 4, 4); flow = torch.zeros(1, 2, 4, 4)\n"
              "assert torch.equal(fastwarp.warp(image, flow), image)\n")
    subprocess.run([sys.executable, "-c", script], check=True)


# --- the CPU backend's two row implementations ---------------------------------------------

_SIMD_SCRIPT = r"""
import sys, torch, fastwarp
from op_helpers import make_inputs
torch.manual_seed(0)
results = []
for shape, grid, layout, mode, scale in [
        ((2, 3, 17, 23), None, "contiguous", "border", 3.0),
        ((2, 3, 17, 23), None, "channels_last", "zeros", 3.0),
        ((1, 4, 9, 13), None, "strided", "border", 40.0),
        ((2, 3, 32, 40), (8, 10), "contiguous", "zeros", 2.0),
        ((2, 3, 31, 29), (7, 11), "channels_last", "border", 2.0)]:
    image, flow, texture, mask = make_inputs(shape, torch.float32, "cpu", layout, scale, seed=41, grid=grid)
    flow = flow.masked_fill(torch.arange(flow.numel()).view(flow.shape) % 37 == 0, float("nan"))
    leaves = [t.detach().clone().requires_grad_() for t in (image, flow, texture, mask)]
    out = fastwarp.warp_blend(*leaves, padding_mode=mode)
    out.backward(torch.linspace(-1, 1, out.numel()).view(out.shape))
    results.append([out.detach()] + [t.grad for t in leaves])
torch.save(results, sys.argv[1])
"""


def test_cpu_vectorised_and_scalar_paths_agree(tmp_path):
    # The float32 CPU kernel has an AVX2 row implementation (where the CPU has AVX2) and
    # the scalar per-pixel one (FASTWARP_CPU_SIMD=0, or any other CPU); both must give
    # the same results, NaN flow and edges included.
    for case_simd, case_scalar in zip(*outputs_with_and_without_simd(_SIMD_SCRIPT, tmp_path)):
        for a, b in zip(case_simd, case_scalar):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, equal_nan=True)
