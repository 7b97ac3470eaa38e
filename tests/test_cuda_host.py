"""Host-side tests of the tuned CUDA paths (csrc/cuda/warp_fast.cuh), on machines with no GPU.

tests/cuda_host/warp_fast_host.cpp is compiled here with the host C++ compiler (``$CXX`` or
g++; skipped, with the reason, only where there is none) and loaded through ctypes. It
includes csrc/cuda/warp_fast_math.h, whose host-compilable functions are the kernels' per-tile
and per-pixel work, called by the kernels unchanged:

- tiles: ``tile_shape`` (the launcher's block shape) and ``tile_position`` (a block's tile);
- tiled forward: ``tiled_forward_pixel`` (32-bit offsets, taps computed once per pixel, the
  channel loop specialised for C = 1, 3, 4 and the 4-channel vector loads of channels_last);
- window backward: ``window_params`` (the tile plus a 2-pixel halo within a 32 KiB budget),
  ``window_displacement`` and ``window_origin`` (placement on the tile's mean flow),
  ``SharedScatter`` / ``window_slot`` (a tap into the window, or the global fallback when it
  lands outside) and ``flush_window_element``;
- fixed-point deterministic backward: ``choose_fixed_point_scale``, ``FixedAccum`` /
  ``fixed_point_encode`` and ``fixed_point_decode``;
- tabled upsampling adjoint: ``UpTab`` and ``upsample_adjoint_table_at``.

The driver emulates what CUDA provides around them: the grid (blocks in any order), the
threads of a block (in a shuffled order), the warp-shuffle mean, shared memory, barriers and
atomics (global adds applied at the end in a shuffled order: any interleaving of the blocks'
atomics). Everything is compared with fastwarp.reference in float64 (or, for the fixed point,
with the exact float64 sum of the very values the kernel scatters).

What still only a GPU can check:
- that the device compilation (nvcc, --fmad contraction into FMAs, __half/__nv_bfloat16
  arithmetic, __float2ll_rn) computes what the host compilation does: the host build is SSE2
  without FMA, so results are compared with the reference within tolerances, never bit for
  bit with a GPU; bfloat16 storage is not emulated (float16 is, as _Float16);
- the real launch configuration: grid and block dimensions, the dynamic shared-memory size
  passed at launch (and that the device grants it), occupancy, __launch_bounds__ and register
  pressure, the vector loads' alignment faults (the host only checks the launcher's rule);
- shared-memory races and barriers: that __syncthreads() separates zeroing, scatter and flush,
  that s_origin is read after tid 0 writes it (compute-sanitizer racecheck/synccheck);
- the atomics themselves (atomicAdd on float, double and unsigned long long in shared and
  global memory), warp scheduling, __shfl_down_sync with a full mask, and abs_max_bits_kernel's
  atomicMax (here only the arithmetic around them is emulated);
- memory safety on the device (compute-sanitizer memcheck), the host launcher's choice of path
  (tiled or generic, fixed or record, table or generic adjoint) and its 32-bit offset checks,
  stream ordering and the one host synchronisation of the fixed-point scale.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from op_helpers import make_inputs, with_layout

from fastwarp.ops import reference

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "cuda_host" / "warp_fast_host.cpp"
HEADERS = (ROOT / "csrc" / "cuda" / "warp_fast_math.h", ROOT / "csrc" / "warp_math.h")
# Baseline x86-64 code (no -march): the same float results on every CPU of the fleet.
CXXFLAGS = ["-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Wextra", "-Wno-maybe-uninitialized"]

DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.float16: 2}
ACC = {torch.float32: torch.float32, torch.float64: torch.float64, torch.float16: torch.float32}
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 2e-3}
OPS = ("warp", "warp_blend")
MODES = ("border", "zeros")
LAYOUTS = ("contiguous", "channels_last", "strided")
REF = {"warp": reference.warp, "warp_blend": reference.warp_blend}
GUARD = 64  # elements of NaN (inputs) or sentinel (outputs) on each side of every buffer

P = ctypes.c_void_p
I32, I64, U32, U64, F32, F64 = (ctypes.c_int32, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_float,
                                ctypes.c_double)
S = ctypes.POINTER(I64)
S32 = ctypes.POINTER(I32)
SIGNATURES = {
    "fw_has_half": ([], ctypes.c_int),
    "fw_tile_threads": ([], ctypes.c_int),
    "fw_window_halo": ([], I64),
    "fw_max_window_bytes": ([], I64),
    "fw_uptab_bytes": ([ctypes.c_int], ctypes.c_int),
    "fw_tile_shape": ([I64, I64, S32], None),
    "fw_tile_position": ([U32, I32, I32, U32, U32, S32], None),
    "fw_window_params": ([I32, I32, I64, I64, I64, I64, ctypes.c_int, S32], None),
    "fw_window_origin": ([I64, I64, F32, I64, I64], I64),
    "fw_window_slot": ([I64] * 7 + [S], ctypes.c_int),
    "fw_window_flush_element": ([I32, I32, I32, I32, ctypes.c_int, S32], None),
    "fw_choose_fixed_point_scale": ([F32, F32, I64, ctypes.POINTER(ctypes.c_int)], ctypes.c_int),
    "fw_fixed_point_encode": ([P, I64, F32, P], None),
    "fw_fixed_point_decode": ([P, I64, F32, P], None),
    "fw_uptab": ([ctypes.c_int, I64, I64, I64, S32, ctypes.POINTER(F64)], ctypes.c_int),
    "fw_forward_tiled": ([ctypes.c_int] * 4 + [P, S32] * 5 + [I32] * 6 + [ctypes.c_int, P, S], ctypes.c_int),
    "fw_backward_tiled": ([ctypes.c_int] * 6 + [P, S] * 5 + [I64] * 6 + [ctypes.c_int, P, S, I64] + [P, S] * 3
                          + [P, U64, P, P, P, P], ctypes.c_int),
    "fw_upsample_adjoint": ([ctypes.c_int, ctypes.c_int, P, S, P, S] + [I64] * 6, ctypes.c_int),
}


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """The driver, built once for this module (about 10 s on 2 busy cores) into the session's
    temporary directory, keyed by the sources, the compiler and the flags."""
    cxx = _compiler()
    if cxx is None:
        pytest.skip(f"no host C++ compiler ({os.environ.get('CXX', 'g++')} not found; set CXX)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256("\0".join([version, *CXXFLAGS] + [p.read_text() for p in (DRIVER, *HEADERS)])
                         .encode()).hexdigest()[:16]
    lib_path = tmp_path_factory.getbasetemp() / f"cuda_host_{key}" / "warp_fast_host.so"
    if not lib_path.exists():
        lib_path.parent.mkdir(parents=True, exist_ok=True)
        build = subprocess.run([cxx, *CXXFLAGS, "-o", str(lib_path), str(DRIVER)], capture_output=True, text=True,
                               check=False)
        assert build.returncode == 0, f"host build of {DRIVER.name} failed:\n{build.stderr[-4000:]}"
    lib = ctypes.CDLL(str(lib_path))
    for name, (args, res) in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


# --- buffers --------------------------------------------------------------------------------

def ptr(t: torch.Tensor | None):
    return None if t is None else P(t.data_ptr())


def strides(t: torch.Tensor | None, ctype=I64):
    return None if t is None else (ctype * 4)(*t.stride())


def extent(t: torch.Tensor) -> int:
    """The largest element offset of ``t`` (non-negative strides)."""
    return sum((n - 1) * s for n, s in zip(t.shape, t.stride())) if t.numel() else 0


class Guarded:
    """``t``'s values at ``t``'s strides inside a flat buffer whose every other element (the
    GUARD elements on each side and any holes between strided elements) is ``fill``: a read
    of them shows as NaN in the result, a write of them changes ``untouched()``."""

    def __init__(self, t: torch.Tensor, fill: float = float("nan")):
        self.fill = fill
        self.buf = torch.full((2 * GUARD + extent(t) + 1,), fill, dtype=t.dtype)
        self.view = self.buf.as_strided(t.shape, t.stride(), GUARD)
        self.view.copy_(t)

    def untouched(self) -> bool:
        outside = torch.ones(self.buf.shape, dtype=torch.bool)
        outside.as_strided(self.view.shape, self.view.stride(), GUARD).fill_(False)
        rest = self.buf[outside]
        return bool((torch.isnan(rest) if math.isnan(self.fill) else rest == self.fill).all())


def layout_like(t: torch.Tensor, layout: str) -> torch.Tensor:
    """An uninitialised tensor of t's shape in ``layout`` ("strided": contiguous, as the ops
    give their outputs the image's suggested memory format)."""
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    return torch.empty(t.shape, dtype=t.dtype).contiguous(memory_format=fmt)


def cpu64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def assert_matches(actual, expected, tol, name="", equal_nan=False, coord_tol=0.0):
    """As tests/test_ops.py: ``tol`` relative, and ``tol`` times the largest finite magnitude
    (at least 1) absolute; plus ``coord_tol`` (see :func:`coordinate_tol`) times that magnitude."""
    assert actual.shape == expected.shape, name
    finite = expected[torch.isfinite(expected)]
    scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
    torch.testing.assert_close(cpu64(actual), expected, rtol=tol, atol=(tol + coord_tol) * scale,
                               equal_nan=equal_nan, msg=lambda m: f"{name}: {m}")


def coordinate_tol(image, flow) -> float:
    """The float32 math's share of the error that grows with the sample coordinate: a
    coordinate c = x + dx carries a rounding of a few ulps of |c| (the upsampled flow, its
    scale factor, the sum), moving a sample of an image whose neighbours differ by at most
    2 (values in [-1, 1]) by 2 * 4 * 2^-24 * |c| at most. 0 for float64 (2^-52)."""
    if image.dtype == torch.float64:
        return 0.0
    H, W = image.shape[2:]
    up = reference.upsample_flow(cpu64(flow), (H, W))
    finite = up[torch.isfinite(up)]
    largest = (finite.abs().max().item() if finite.numel() else 0.0) + max(H, W)
    return 2 * 4 * 2.0 ** -24 * largest


def reference_forward(op, args, mode):
    with torch.no_grad():
        return REF[op](*(cpu64(t) for t in args), padding_mode=mode)


def reference_grads(op, args, grad_output, mode):
    leaves = [cpu64(t).requires_grad_(True) for t in args]
    out = REF[op](*leaves, padding_mode=mode)
    return list(torch.autograd.grad(out, leaves, cpu64(grad_output)))


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(t.shape, dtype=torch.float64, generator=gen) * 2 - 1).to(t.dtype)


def permutation(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return (U32 * n)(*torch.randperm(n, generator=gen).tolist())


def needs_half(host, dtype):
    if dtype == torch.float16 and not host.fw_has_half():
        pytest.skip("the host compiler has no _Float16 (GCC >= 12 or Clang on x86-64 has)")


# --- tiles ----------------------------------------------------------------------------------

def grid_of(host, N, H, W):
    tw_th = (I32 * 2)()
    host.fw_tile_shape(H, W, tw_th)
    tw, th = tw_th
    return tw, th, -(-W // tw), -(-H // th), N * -(-W // tw) * -(-H // th)


@pytest.mark.parametrize("H,W", [(1, 1), (1, 17), (13, 1), (3, 300), (16, 16), (17, 33), (123, 77), (2, 5)])
def test_tiles_cover_every_pixel_once(host, H, W):
    N = 3
    tw, th, tiles_x, tiles_y, blocks = grid_of(host, N, H, W)
    # One thread per pixel of a tile: 256 threads, 8 full warps (the backward's reduction).
    assert tw * th == host.fw_tile_threads() == 256
    assert tw & (tw - 1) == 0 and th & (th - 1) == 0
    hits = torch.zeros(N, H, W, dtype=torch.int64)
    pos = (I32 * 3)()
    for b in range(blocks):
        host.fw_tile_position(b, tiles_x, tiles_y, tw, th, pos)
        n, y0, x0 = pos
        assert 0 <= n < N and y0 % th == 0 and x0 % tw == 0
        hits[n, y0:y0 + th, x0:x0 + tw] += 1  # the threads with y < H and x < W
    assert bool((hits == 1).all())


@pytest.mark.parametrize("H,W", [(1, 1), (5, 3), (16, 16), (40, 37), (123, 77), (2, 300)])
@pytest.mark.parametrize("C", [1, 3, 8, 20, 64])
@pytest.mark.parametrize("word", [4, 8])
def test_window_params(host, H, W, C, word):
    tw, th, *_ = grid_of(host, 1, H, W)
    out = (I32 * 3)()
    host.fw_window_params(tw, th, H, W, C, word, 0, out)
    wh, ww, enabled = out
    halo, budget = host.fw_window_halo(), host.fw_max_window_bytes()
    assert (halo, budget) == (2, 32 * 1024)
    if enabled:
        assert C * wh * ww * word <= budget
        # Inside the image, and the tile plus the halo on every side wherever the image has room.
        assert wh == min(th + 2 * halo, H) and ww == min(tw + 2 * halo, W)
    else:
        assert C * min(th + 2 * halo, H) * min(tw + 2 * halo, W) * word > budget


def test_window_origin(host):
    gen = torch.Generator().manual_seed(5)
    for _ in range(3000):
        size = int(torch.randint(1, 200, (1,), generator=gen))
        tile_len = int(torch.tensor([1, 2, 8, 16, 32, 256])[torch.randint(0, 6, (1,), generator=gen)])
        win_len = min(tile_len + 4, size)
        tile0 = int(torch.randint(0, size, (1,), generator=gen)) // tile_len * tile_len
        mean = float(torch.randn(1, generator=gen) * 10 ** float(torch.rand(1, generator=gen) * 3))
        o = host.fw_window_origin(tile0, tile_len, mean, win_len, size)
        assert 0 <= o <= size - win_len, (tile0, tile_len, mean, win_len, size, o)
        # A displaced tile that stays in the image lies inside its window (with the halo's
        # margin: a whole flow within +-1 px of the mean keeps every tap in the window).
        lo = math.floor(float(torch.tensor(tile0, dtype=torch.float32) + torch.tensor(mean, dtype=torch.float32)))
        if win_len == tile_len + 4 and 0 <= lo - 1 and lo + tile_len + 1 < size:
            assert o <= lo - 1 and lo + tile_len + 1 < o + win_len
    for bad in (float("nan"), float("inf"), float("-inf")):
        o = host.fw_window_origin(16, 16, bad, 20, 100)
        assert 0 <= o <= 80


def test_window_slot_and_flush_are_inverse(host):
    slot = I64()
    crr = (I32 * 3)()
    for C, wh, ww, cl in [(1, 20, 20, 0), (3, 20, 20, 1), (3, 5, 7, 0), (4, 1, 260, 1), (2, 6, 1, 0)]:
        seen = set()
        for e in range(C * wh * ww):
            host.fw_window_flush_element(e, C, wh, ww, cl, crr)
            c, ry, rx = crr
            assert 0 <= c < C and 0 <= ry < wh and 0 <= rx < ww
            # The tap of (c, wy0 + ry, wx0 + rx) lands in the element that the flush sends back there.
            assert host.fw_window_slot(c, 10 + ry, 30 + rx, 10, 30, wh, ww, ctypes.byref(slot))
            assert slot.value == (c * wh + ry) * ww + rx
            seen.add(slot.value)
        assert seen == set(range(C * wh * ww))  # each element flushed exactly once
        # Outside the window (either side, either axis): the global fallback.
        for ty, tx in [(9, 30), (10 + wh, 30), (10, 29), (10, 30 + ww), (-5, -5)]:
            assert not host.fw_window_slot(0, ty, tx, 10, 30, wh, ww, ctypes.byref(slot))
    assert not host.fw_window_slot(0, 0, 0, 0, 0, 0, 0, ctypes.byref(slot))  # no window


# --- tiled forward --------------------------------------------------------------------------

# (image shape, grid of the maps or None): odd sizes, 1-pixel axes, C of every specialisation
# (1, 3, 4, the vectorised multiple of 4, the runtime loop), low-res maps.
FORWARD_CASES = [
    ((2, 3, 37, 21), None),
    ((1, 4, 17, 40), None),
    ((2, 8, 9, 13), None),
    ((3, 1, 1, 17), None),
    ((2, 5, 13, 1), None),
    ((1, 1, 1, 1), None),
    ((2, 3, 16, 20), (8, 5)),
    ((1, 4, 17, 19), (4, 7)),
    ((2, 8, 12, 9), (1, 1)),
]


def case_id(case):
    shape, grid = case
    return "x".join(map(str, shape)) + ("" if grid is None else "-grid" + "x".join(map(str, grid)))


def flow_scale_of(kind: str, shape, grid) -> float:
    """As tests/test_ops.py: "inside", a few pixels; "outside", twice the image size (most
    samples leave it), in pixels of the maps' grid. The float32 coordinate's rounding grows
    with its magnitude: this keeps it within the tolerance, as for the other backends."""
    h, w = grid or shape[2:]
    if kind == "inside":
        return 3.0 if grid is None else 2.0
    return 2.0 * max(h, w)


def vec4_ok(t: torch.Tensor) -> bool:
    """warp_kernel.cu's vec4_ok: channels_last-style strides, C and the other strides multiples
    of 4, the pointer aligned to 4 elements."""
    s = t.stride()
    return (t.shape[1] % 4 == 0 and s[1] == 1 and s[0] % 4 == 0 and s[2] % 4 == 0 and s[3] % 4 == 0
            and t.data_ptr() % (4 * t.element_size()) == 0)


def forward_variants(C: int, vec4: bool, dtype) -> list:
    """The (kC, kVec) instantiations able to run this call: the one the launcher picks and
    the others that accept it (the runtime-C loop accepts every C)."""
    out = [(0, 1)] + ([(C, 1)] if C in (1, 3, 4) else [])
    if vec4 and dtype != torch.float64:
        out += [(0, 4)] + ([(4, 4)] if C == 4 else [])
    return out


def run_forward(host, op, args, mode, kC, kVec, layout, order=None):
    image, flow = args[0], args[1]
    texture, mask = (args[2], args[3]) if op == "warp_blend" else (None, None)
    N, C, H, W = image.shape
    out = Guarded(layout_like(image, layout), fill=-7.0)
    done = I64(0)
    rc = host.fw_forward_tiled(DTYPE_CODE[image.dtype], op == "warp_blend", kC, kVec,
                               ptr(image), strides(image, I32), ptr(flow), strides(flow, I32),
                               ptr(texture), strides(texture, I32), ptr(mask), strides(mask, I32),
                               ptr(out.view), strides(out.view, I32), N, C, H, W, flow.shape[2], flow.shape[3],
                               MODES.index(mode), order, ctypes.byref(done))
    assert rc == 0
    assert done.value == N * H * W  # every output pixel computed by exactly one thread
    assert out.untouched(), "the tiled forward wrote outside its output"
    return out.view


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("flow_kind", ["inside", "outside"])
@pytest.mark.parametrize("case", FORWARD_CASES, ids=case_id)
def test_forward_tiled_matches_reference(host, case, flow_kind, dtype, layout, mode, op):
    needs_half(host, dtype)
    shape, grid = case
    inputs = make_inputs(shape, dtype, "cpu", layout, flow_scale_of(flow_kind, shape, grid), seed=1, grid=grid)
    args = [Guarded(t).view for t in inputs[:2 if op == "warp" else 4]]  # NaN around every input
    expected = reference_forward(op, args, mode)
    for kC, kVec in forward_variants(shape[1], vec4_ok(args[0]), dtype):
        out = run_forward(host, op, args, mode, kC, kVec, layout)
        if kVec == 4:
            assert vec4_ok(out)
        assert_matches(out, expected, TOL[dtype], name=f"kC={kC} kVec={kVec}",
                       coord_tol=coordinate_tol(args[0], args[1]))
    # Blocks are independent: any order of the grid gives the same bits.
    shuffled = run_forward(host, op, args, mode, 0, 1, layout,
                           order=permutation(grid_of(host, shape[0], shape[2], shape[3])[4], seed=7))
    assert torch.equal(shuffled, run_forward(host, op, args, mode, 0, 1, layout))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("op", OPS)
def test_forward_tiled_nonfinite_and_huge_flow(host, mode, op):
    # NaN, infinite and huge finite flows: the taps stay inside the image (the guards around
    # it are NaN: a read there would make a finite reference value NaN) and the values are
    # grid_sample's (border: NaN clamps to the first pixel; zeros: NaN/Inf give NaN, huge 0).
    inputs = make_inputs((2, 3, 19, 23), torch.float32, "cpu", "contiguous", 4.0, seed=3)
    flow = inputs.flow.clone()
    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), 1e30, -1e30, 3e9, -2.5e9])
    idx = torch.randperm(flow.numel(), generator=torch.Generator().manual_seed(4))[:200]
    flow.view(-1)[idx] = specials[torch.arange(200) % specials.numel()]
    args = [Guarded(t).view for t in (inputs.image, flow, inputs.texture, inputs.mask)[:2 if op == "warp" else 4]]
    out = run_forward(host, op, args, mode, 3, 1, "contiguous")
    assert_matches(out, reference_forward(op, args, mode), TOL[torch.float32], equal_nan=True)


# --- tiled backward -------------------------------------------------------------------------

def run_backward(host, op, args, grad_output, mode, *, fixed=False, exponent=0, window=True, order=None, seed=0,
                 want_exact=False):
    """The emulated tiled backward plus, for maps smaller than the image, the tabled adjoint.
    Returns (grads [image, flow, texture, mask] as the op returns them, acc buffer, info)."""
    image, flow = args[0], args[1]
    blend = op == "warp_blend"
    texture, mask = (args[2], args[3]) if blend else (None, None)
    N, C, H, W = image.shape
    h, w = flow.shape[2:]
    dtype = image.dtype
    fmt = torch.channels_last if image.is_contiguous(memory_format=torch.channels_last) and C > 1 \
        and not image.is_contiguous() else torch.contiguous_format
    # The accumulation buffer, in the image's memory format (zeros_in_format), with guards of 0.
    acc_dtype = torch.int64 if fixed else ACC[dtype]
    acc = Guarded(torch.zeros(image.shape, dtype=acc_dtype).contiguous(memory_format=fmt), fill=0)
    acc_cl = acc.view.stride(1) == 1 and C > 1
    # Per-pixel map gradients at the image's resolution (H x W buffers when the grid is smaller).
    g_flow = Guarded(torch.zeros(N, 2, H, W, dtype=dtype), fill=0)
    g_tex = Guarded(torch.zeros(N, C, H, W, dtype=dtype), fill=0) if blend else None
    g_mask = Guarded(torch.zeros(N, 1, H, W, dtype=dtype), fill=0) if blend else None
    blocks = grid_of(host, N, H, W)[4]
    origins = torch.full((blocks, 2), -1, dtype=torch.int64)
    exact = torch.zeros(N, C, H, W, dtype=torch.float64) if want_exact else None
    count = torch.zeros(N, C, H, W, dtype=torch.int64) if want_exact else None
    stats = torch.zeros(4, dtype=torch.int64)
    rc = host.fw_backward_tiled(DTYPE_CODE[dtype], blend, fixed, exponent, window, acc_cl,
                                ptr(image), strides(image), ptr(flow), strides(flow), ptr(texture), strides(texture),
                                ptr(mask), strides(mask), ptr(grad_output), strides(grad_output),
                                N, C, H, W, h, w, MODES.index(mode),
                                ptr(acc.view), strides(acc.view), extent(acc.view),
                                ptr(g_flow.view), strides(g_flow.view),
                                ptr(g_tex.view) if blend else None, strides(g_tex.view) if blend else None,
                                ptr(g_mask.view) if blend else None, strides(g_mask.view) if blend else None,
                                order, seed, ptr(origins), ptr(exact), ptr(count), ptr(stats))
    assert rc == 0
    window_adds, global_adds, flush_adds, stray = stats.tolist()
    assert stray == 0, "an add outside the accumulation buffer"
    for g in (acc, g_flow, g_tex, g_mask):
        assert g is None or g.untouched(), "the backward wrote outside a gradient buffer"

    def lowres(g):
        if (h, w) == (H, W):
            return g.view.clone()
        lo = torch.zeros(N, g.view.shape[1], h, w, dtype=dtype)
        assert host.fw_upsample_adjoint(DTYPE_CODE[dtype], 1, ptr(g.view), strides(g.view), ptr(lo), strides(lo),
                                        N, g.view.shape[1], h, w, H, W) == 0
        return lo

    grads = [None, lowres(g_flow)] + ([lowres(g_tex), lowres(g_mask)] if blend else [])
    if not fixed:
        grads[0] = acc.view.to(dtype)  # finish_grad_image
    info = {"origins": origins, "exact": exact, "count": count, "window_adds": window_adds,
            "global_adds": global_adds, "flush_adds": flush_adds}
    return grads, acc.view, info


def decode(host, q: torch.Tensor, exponent: int) -> torch.Tensor:
    """fixed_point_decode of every word (the conversion kernel's arithmetic), as float32."""
    q = q.contiguous()
    out = torch.empty(q.shape, dtype=torch.float32)
    host.fw_fixed_point_decode(ptr(q), q.numel(), 2.0 ** -exponent, ptr(out))
    return out


def fixed_point_exponent(host, grad_output, mask, pixels) -> int:
    """The launcher's scale: choose_fixed_point_scale(max |grad_output|, max |mask| or 1, H * W)."""
    e = ctypes.c_int()
    m = float(mask.abs().max()) if mask is not None else 1.0
    assert host.fw_choose_fixed_point_scale(float(grad_output.abs().max()), m, pixels, ctypes.byref(e))
    return e.value


BACKWARD_CASES = [
    ((2, 3, 37, 21), None),
    ((1, 4, 17, 40), None),
    ((3, 1, 1, 17), None),
    ((2, 5, 13, 1), None),
    ((2, 3, 16, 20), (8, 5)),
    ((1, 3, 17, 19), (4, 7)),
    ((2, 2, 12, 9), (12, 4)),
]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype,path", [(d, p) for d in (torch.float64, torch.float32, torch.float16)
                                        for p in ("atomic", "atomic-no-window", "fixed")
                                        if not (p == "fixed" and d == torch.float64)],  # float64: no fixed point
                         ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("flow_kind", ["inside", "outside"])
@pytest.mark.parametrize("case", BACKWARD_CASES, ids=case_id)
def test_backward_tiled_matches_reference(host, case, flow_kind, path, dtype, layout, mode, op):
    needs_half(host, dtype)
    shape, grid = case
    inputs = make_inputs(shape, dtype, "cpu", layout, flow_scale_of(flow_kind, shape, grid), seed=2, grid=grid)
    args = [Guarded(t).view for t in inputs[:2 if op == "warp" else 4]]
    grad_output = Guarded(with_layout(random_like(inputs.image, seed=3), layout)).view
    exponent = fixed_point_exponent(host, grad_output, args[3] if op == "warp_blend" else None,
                                    shape[2] * shape[3]) if path == "fixed" else 0
    grads, acc, info = run_backward(host, op, args, grad_output, mode, fixed=path == "fixed", exponent=exponent,
                                    window=path != "atomic-no-window", seed=11)
    if path == "fixed":
        grads[0] = decode(host, acc, exponent).to(dtype)
    if path == "atomic-no-window":
        assert info["window_adds"] == info["flush_adds"] == 0
    expected = reference_grads(op, args, grad_output, mode)
    for name, g, e in zip(("image", "flow", "texture", "mask"), grads, expected):
        assert_matches(g, e, TOL[dtype], name=name, coord_tol=coordinate_tol(args[0], args[1]))


def test_backward_window_catches_translations_and_falls_back_for_the_rest(host):
    # A translation (one flow for every pixel) puts every tap of a tile in its window: no
    # global atomic but the flush. Random large flows send taps outside the window: those
    # take the global fallback, and the gradient is still the reference's.
    shape = (2, 3, 45, 38)
    inputs = make_inputs(shape, torch.float32, "cpu", "contiguous", 3.0, seed=8)
    grad_output = random_like(inputs.image, seed=9)
    for dx, dy in [(0.3, 0.45), (-3.7, 2.2), (11.6, -7.3), (-60.4, 0.5)]:
        flow = torch.empty(2, 2, *shape[2:])
        flow[:, 0], flow[:, 1] = dx, dy
        for mode in MODES:
            grads, _, info = run_backward(host, "warp", [inputs.image, flow], grad_output, mode)
            assert info["global_adds"] == 0, (dx, dy, mode)
            expected = reference_grads("warp", [inputs.image, flow], grad_output, mode)
            if bool((expected[0] != 0).any()):  # zeros mode, far outside: no valid tap at all
                assert info["window_adds"] > 0 and info["flush_adds"] > 0
            assert_matches(grads[0], expected[0], TOL[torch.float32], name=f"translation {dx},{dy} {mode}")
    # The window sits on the displaced tile: its origin follows the translation.
    _, _, info = run_backward(host, "warp", [inputs.image, torch.full((2, 2, *shape[2:]), 5.5)], grad_output,
                              "border")
    origins = info["origins"]
    assert int(origins[0, 0]) == 0 + 5 - 1 and int(origins[0, 1]) == 0 + 5 - 1
    inputs = make_inputs(shape, torch.float32, "cpu", "contiguous", 20.0, seed=10)
    grads, _, info = run_backward(host, "warp", inputs[:2], grad_output, "zeros")
    assert info["global_adds"] > 0 and info["window_adds"] > 0
    expected = reference_grads("warp", inputs[:2], grad_output, "zeros")
    assert_matches(grads[0], expected[0], TOL[torch.float32], name="fallback")


# --- fixed-point deterministic backward -----------------------------------------------------

@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_fixed_point_is_order_independent_and_within_its_error(host, dtype, op):
    needs_half(host, dtype)
    shape = (2, 3, 29, 35)
    # Many samples share pixels (a zoom-out onto the border) and others scatter widely.
    inputs = make_inputs(shape, dtype, "cpu", "channels_last", 8.0, seed=12)
    flow = inputs.flow.clone()
    flow[0] = inputs.flow[0] * 0.25 - 10.0
    args = [inputs.image, flow, inputs.texture, inputs.mask][:2 if op == "warp" else 4]
    grad_output = random_like(inputs.image, seed=13) * 3.0
    e = fixed_point_exponent(host, grad_output, args[3] if op == "warp_blend" else None, shape[2] * shape[3])
    runs = []
    blocks = grid_of(host, shape[0], shape[2], shape[3])[4]
    for k, (window, order, seed) in enumerate([(True, None, 0), (True, permutation(blocks, 1), 5),
                                               (False, permutation(blocks, 2), 6), (True, permutation(blocks, 3), 7)]):
        _, q, info = run_backward(host, op, args, grad_output, "border", fixed=True, exponent=e, window=window,
                                  order=order, seed=seed, want_exact=True)
        runs.append((q.clone(), info))
    # Bit-identical words whatever the order of blocks, threads, flush and global atomics.
    for q, _ in runs[1:]:
        assert torch.equal(q, runs[0][0])
    q, info = runs[0]
    assert info["global_adds"] > 0 and info["flush_adds"] > 0  # orders of global atomics that could differ
    # Within the stated error of the exact sum of the values scattered (summed in float64,
    # error <= count * 2^-52 * max |v|): 2^-(e+1) per value, then one float rounding.
    exact, count = info["exact"], info["count"].double()
    gm = float(grad_output.abs().max()) * (float(args[3].abs().max()) if op == "warp_blend" else 1.0)
    got = decode(host, q, e).double()
    bound = count * 2.0 ** -(e + 1) + got.abs() * 2.0 ** -24 + count * gm * 2.0 ** -50
    assert bool(((got - exact).abs() <= bound).all())
    assert int(count.max()) > 20  # some pixels really collect many values


def _float_below_power_of_two(k: int) -> float:
    return math.ldexp(1 - 2.0 ** -24, k)  # the largest float32 below 2^k


def test_fixed_point_scale(host):
    e = ctypes.c_int()
    gen = torch.Generator().manual_seed(14)
    cases = [(1.0, 1.0, 1), (0.0, 1.0, 100), (1.0, 0.0, 7), (_float_below_power_of_two(0), 1.0, 4096 * 4096),
             (_float_below_power_of_two(100), _float_below_power_of_two(25), 2 ** 30), (1e-30, 1e-8, 50),
             (1e-38, 1.0, 1)]
    for _ in range(400):
        g = float(torch.rand(1, generator=gen)) * 2.0 ** int(torch.randint(-140, 120, (1,), generator=gen))
        m = float(torch.rand(1, generator=gen)) * 2.0 ** int(torch.randint(-20, 20, (1,), generator=gen))
        cases.append((float(torch.tensor(g, dtype=torch.float32)), float(torch.tensor(m, dtype=torch.float32)),
                      int(torch.randint(1, 2 ** 36, (1,), generator=gen))))
    for g, m, pixels in cases:
        ok = host.fw_choose_fixed_point_scale(g, m, pixels, ctypes.byref(e))
        bound = 2 * pixels * Fraction(g) * Fraction(m)
        if Fraction(g) * Fraction(m) >= 2 ** 126:
            assert not ok
            continue
        # (The scale leaving float32's range below, exponent < -126, needs bound >= 2^187:
        # G * M < 2^126 and pixels < 2^61 never get there.)
        assert ok, (g, m, pixels)
        assert -126 <= e.value <= 126
        scale = Fraction(2) ** e.value
        # The overflow bound: |sum of all a target's values| * scale < 2^61 ...
        assert bound * scale < 2 ** 61
        # ... and the scale is the largest power of two that keeps it, unless capped at 2^126.
        if bound > 0 and e.value < 126:
            assert bound * scale * 2 >= 2 ** 61
        if bound == 0:
            assert e.value == 0
    for bad in [(float("nan"), 1.0, 10), (float("inf"), 1.0, 10), (1.0, float("nan"), 10), (1.0, float("inf"), 10),
                (1.0, 1.0, 0), (3e38, 3e38, 10), (2.0 ** 100, 2.0 ** 26, 1)]:
        assert not host.fw_choose_fixed_point_scale(*bad, ctypes.byref(e)), bad


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("op", OPS)
def test_fixed_point_worst_case_does_not_overflow(host, op, sign):
    # Every output pixel's sample clamped onto pixel (0, 0) with weight 1 (border mode), the
    # largest |grad_output| everywhere with one sign, the mask at its largest too: pixel
    # (0, 0) receives H * W values of G * M, the bound's worst case.
    N, C, H, W = 1, 2, 48, 64
    G = _float_below_power_of_two(7)
    M = _float_below_power_of_two(1) if op == "warp_blend" else 1.0
    image = torch.rand(N, C, H, W)
    flow = torch.full((N, 2, H, W), -1e6)
    texture = torch.zeros(N, C, H, W)
    mask = torch.full((N, 1, H, W), M)
    grad_output = torch.full((N, C, H, W), sign * G)
    args = [image, flow, texture, mask][:2 if op == "warp" else 4]
    e = fixed_point_exponent(host, grad_output, mask if op == "warp_blend" else None, H * W)
    _, q, _ = run_backward(host, op, args, grad_output, "border", fixed=True, exponent=e)
    # The value each tap scatters: go * m rounded to float (warp_backward_pixel), times weight 1.
    v = Fraction(float(torch.tensor(G, dtype=torch.float32) * torch.tensor(M, dtype=torch.float32)))
    per_value = round(v * 2 ** e)  # exact: v * 2^e is an integer here
    assert per_value * 2 ** -e == v
    total = H * W * per_value
    assert abs(total) < 2 ** 62  # the claimed bound on sum |q|
    assert int(q[0, 0, 0, 0]) == int(sign) * total and int(q[0, 1, 0, 0]) == int(sign) * total
    assert int(q.abs().sum()) == 2 * abs(total)  # nothing anywhere else
    got = decode(host, q, e)[0, 0, 0, 0].item()
    assert got == float(torch.tensor(float(sign * H * W * v), dtype=torch.float32))


def test_fixed_point_encode_rounds_to_nearest_even(host):
    # fixed_point_encode: rint(v * scale), ties to even (as __float2ll_rn), two's complement.
    v = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 0.25, 0.75, -0.75, 3.0, -2.0 ** 30, 1e-9], dtype=torch.float32)
    q = torch.empty(v.numel(), dtype=torch.int64)
    host.fw_fixed_point_encode(ptr(v), v.numel(), 1.0, ptr(q))
    assert q.tolist() == [0, 2, 2, 0, -2, 0, 1, -1, 3, -2 ** 30, 0]
    host.fw_fixed_point_encode(ptr(v), v.numel(), 4.0, ptr(q))
    assert q.tolist() == [2, 6, 10, -2, -6, 1, 3, -3, 12, -2 ** 32, 0]
    # decode: one rounding to float, then the exact power of two.
    words = torch.tensor([2 ** 62, -(2 ** 40) - 1, 3, -1], dtype=torch.int64)
    assert decode(host, words, 10).tolist() == [2.0 ** 52, -(2.0 ** 30), 3 / 1024, -1 / 1024]


# --- tabled upsampling adjoint --------------------------------------------------------------

ADJOINT_CASES = [(8, 5, 16, 20), (4, 7, 17, 19), (12, 4, 12, 9), (1, 1, 9, 11), (8, 8, 32, 32), (3, 2, 100, 7),
                 (5, 6, 5, 6)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("sizes", ADJOINT_CASES, ids=lambda s: "x".join(map(str, s)))
def test_uptab_weights_are_interpolate(host, sizes, dtype):
    # UpTab's two taps and weights per output row/column are F.interpolate's
    # (bilinear, align_corners=False) interpolation matrix, float64.
    h, w, H, W = sizes
    i01 = (I32 * 2)()
    l01 = (F64 * 2)()
    for n_in, n_out in ((h, H), (w, W)):
        basis = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, n_in, 1)  # each source sample alone
        matrix = reference.upsample(basis, (n_out, 1))[:, 0, :, 0].T  # [out, in]
        for dst in range(n_out):
            host.fw_uptab(DTYPE_CODE[dtype], dst, n_in, n_out, i01, l01)
            row = torch.zeros(n_in, dtype=torch.float64)
            assert 0 <= i01[0] <= i01[1] < n_in
            row[i01[0]] += l01[0]
            row[i01[1]] += l01[1]
            torch.testing.assert_close(row, matrix[dst], rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("sizes", ADJOINT_CASES, ids=lambda s: "x".join(map(str, s)))
def test_upsample_adjoint_table_matches_reference(host, sizes, dtype, layout):
    needs_half(host, dtype)
    h, w, H, W = sizes
    N, K = 2, 3
    grad_hi = Guarded(with_layout(random_like(torch.empty(N, K, H, W, dtype=dtype), seed=15), layout)).view
    lo_table, lo_generic = (Guarded(torch.zeros(N, K, h, w, dtype=dtype).contiguous(
        memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format), fill=0)
        for _ in range(2))
    for table, lo in ((1, lo_table), (0, lo_generic)):
        assert host.fw_upsample_adjoint(DTYPE_CODE[dtype], table, ptr(grad_hi), strides(grad_hi), ptr(lo.view),
                                        strides(lo.view), N, K, h, w, H, W) == 0
        assert lo.untouched()
    # The table changes where the weights come from, not the arithmetic: the same bits.
    assert torch.equal(lo_table.view, lo_generic.view)
    # The adjoint of reference.upsample, by autograd in float64.
    lo64 = torch.zeros(N, K, h, w, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(reference.upsample(lo64, (H, W)), lo64, cpu64(grad_hi))
    assert_matches(lo_table.view, expected, TOL[dtype])
    # The table's shared-memory footprint the launcher budgets: (H + W) entries of 16 / 24 bytes.
    assert host.fw_uptab_bytes(DTYPE_CODE[dtype]) == (24 if dtype == torch.float64 else 16)
