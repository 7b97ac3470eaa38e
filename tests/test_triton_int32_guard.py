"""The Triton backend's 32-bit indexing guard (issue 13, item 6): the kernels index in int32,
so a call whose flat indices or element offsets would pass 2^31 must raise a clear
ValueError before any launch instead of reading and writing the wrong elements. Tested
without allocating 2^31 elements: the offset arithmetic on meta tensors, and the ops with
the limit lowered (monkeypatched) so that small inputs cross it.
"""

from __future__ import annotations

import pytest
import torch

import fastwarp

from op_helpers import HAS_TRITON, _NO_TRITON_REASON, make_inputs

pytestmark = [pytest.mark.triton, pytest.mark.skipif(not HAS_TRITON, reason=_NO_TRITON_REASON)]

LIMIT = 2**31 - 1


@pytest.fixture
def tb():
    from fastwarp.ops import triton_backend

    return triton_backend


def meta(*shape, memory_format=torch.contiguous_format) -> torch.Tensor:
    return torch.empty(shape, device="meta", memory_format=memory_format)


def test_max_offset_reads_shape_and_strides(tb):
    assert tb.INT32_MAX == LIMIT
    t = meta(2, 3, 5, 7)
    assert tb.max_offset(t) == t.numel() - 1
    assert tb.max_offset(t, per_item=True) == 3 * 5 * 7 - 1
    cl = meta(2, 3, 5, 7, memory_format=torch.channels_last)
    assert tb.max_offset(cl) == cl.numel() - 1 and tb.max_offset(cl, per_item=True) == 3 * 5 * 7 - 1
    assert tb.max_offset(meta(1, 3, 1, 1).expand(4, 3, 6, 6)) == 2  # stride 0: one pixel read everywhere
    big = meta(1, 3, 2 * 40000 + 1, 40000)[:, :, ::2]  # a strided view: offsets span the whole buffer
    assert tb.max_offset(big) == 3 * (2 * 40000 + 1) * 40000 - 1
    assert tb.max_offset(meta(0, 3, 5, 7)) == 0


def test_int32_index_problem_boundaries(tb):
    block = 256
    # The last flat index a program computes is cdiv(total, block) * block - 1.
    assert tb.int32_index_problem(2**31, block, {}) is None  # indices 0 .. 2^31 - 1
    assert "flat indices up to 2147483903" in tb.int32_index_problem(2**31 + 1, block, {})
    assert tb.int32_index_problem(2**31 - 1000, 3000, {}) is not None  # rounded up past the limit by the block
    # A 4K RGB frame fits; 3 x 40000 x 40000 elements in one image do not, per batch item too.
    assert tb.int32_index_problem(2160 * 3840, block, {"image": meta(8, 3, 2160, 3840)}, per_item=True) is None
    huge = meta(1, 3, 40000, 40000)
    msg = tb.int32_index_problem(1, block, {"image": huge}, per_item=True)
    assert msg == "image of shape [1, 3, 40000, 40000] has element offsets within one batch item up to 4799999999"
    # Batch offsets are int64 in kernels that say so (per_item), int32 otherwise.
    batch = meta(200, 3, 2000, 2000)
    assert tb.int32_index_problem(1, block, {"image": batch}, per_item=True) is None
    assert "image of shape [200, 3, 2000, 2000]" in tb.int32_index_problem(1, block, {"image": batch})
    assert tb.int32_index_problem(1, block, {"texture": None}) is None
    assert tb.int32_index_problem(1, block, {}, {"a bound": LIMIT}) is None
    assert tb.int32_index_problem(1, block, {}, {"a bound": LIMIT + 1}) == f"a bound reaches {LIMIT + 1}"


def lowered(monkeypatch, tb, limit: int) -> None:
    monkeypatch.setattr(tb, "INT32_MAX", limit)


MESSAGE = r"backend='triton' indexes with 32-bit offsets, which must stay below 2\^31, but "


@pytest.mark.parametrize("op", ["warp", "warp_blend"])
def test_ops_refuse_past_the_limit(monkeypatch, tb, op):
    inputs = make_inputs((2, 3, 9, 11), torch.float32, "cpu", grid=(4, 5), seed=5)
    args = tuple(inputs[:2 if op == "warp" else 4])
    grad_output = torch.ones(2, 3, 9, 11)
    theta = torch.tensor([[[4 / 11, 0.0, 0.5 * 4 / 11 - 0.5], [0.0, 5 / 9, 0.5 * 5 / 9 - 0.5]]]).repeat(2, 1, 1)
    # At the real limit the calls run and agree with the reference.
    ref = getattr(fastwarp.reference, op)(*(a.double() for a in args))
    torch.testing.assert_close(fastwarp.__dict__[op](*args, backend="triton").double(), ref, rtol=1e-5, atol=1e-5)
    # One image holds 3 * 9 * 11 = 297 elements (offsets up to 296): a limit of 295 is crossed.
    lowered(monkeypatch, tb, 295)
    with pytest.raises(ValueError, match=rf"fastwarp\.{op}: {MESSAGE}image of shape \[2, 3, 9, 11\]"):
        fastwarp.__dict__[op](*args, backend="triton")
    backward = getattr(torch.ops.fastwarp, f"triton_{op}_backward").default
    with pytest.raises(ValueError, match=rf"fastwarp\.{op}_backward: {MESSAGE}"):
        backward(grad_output, *args, "border", "bilinear", [True] * len(args))
    with pytest.raises(ValueError, match=rf"fastwarp\.{op}: {MESSAGE}"):
        fastwarp.__dict__[op](*args, backend="triton", theta=theta)
    theta_backward = getattr(torch.ops.fastwarp, f"triton_{op}_theta_backward").default
    with pytest.raises(ValueError, match=rf"fastwarp\.{op}_backward: {MESSAGE}"):
        theta_backward(grad_output, *args, theta, "border", "bilinear", [True] * len(args))


def test_flat_index_over_the_batch_is_guarded(monkeypatch, tb):
    """The backward's flat pixel index runs over the whole batch (N * H * W)."""
    inputs = make_inputs((4, 1, 8, 8), torch.float32, "cpu", seed=6)
    lowered(monkeypatch, tb, 4 * 8 * 8 - 2)  # per image fine (64 elements), the flat index not
    with pytest.raises(ValueError, match=rf"fastwarp\.warp: {MESSAGE}the launch covers 256 pixels/elements"):
        fastwarp.warp(inputs.image, inputs.flow, backend="triton")


def test_mesh_flow_refuses_past_the_limit(monkeypatch, tb):
    vertices = torch.tensor([[[0.0, 0.0], [9.0, 0.0], [0.0, 9.0]]])
    triangles = torch.tensor([[0, 1, 2]])
    flow, _ = fastwarp.mesh_flow(vertices, torch.ones_like(vertices), triangles, (10, 10), backend="triton")
    ref, _ = fastwarp.reference.mesh_flow(vertices, torch.ones_like(vertices), triangles, (10, 10))
    torch.testing.assert_close(flow, ref)
    lowered(monkeypatch, tb, 2 * 10 * 10 - 2)  # one image's flow has offsets up to 199
    with pytest.raises(ValueError, match=rf"fastwarp\.mesh_flow: {MESSAGE}the largest offset within one image's flow reaches 199"):
        fastwarp.mesh_flow(vertices, torch.ones_like(vertices), triangles, (10, 10), backend="triton")
