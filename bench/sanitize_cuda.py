"""Runs fastwarp's GPU kernels once over small, awkward inputs, for compute-sanitizer.

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 99 \\
        python3 bench/sanitize_cuda.py [--backends cuda triton] [--quick]

Every call goes forward and backward (all four gradients) for both ops and padding modes,
in float32, bfloat16 and float64, on same-size and smaller (resolution-independent)
grids, on size-1 axes, channels_last, and flows that leave the image, are huge or are
NaN/Inf: docs/design.md promises that no input makes a kernel read outside the image. With the caching
allocator off (the variable above) each tensor is its own allocation, so memcheck sees an
access past a tensor's end instead of into a neighbour's block. The CUDA backward also
runs once in deterministic mode (its scatter without atomics). Small sizes keep the run
to a minute or two under memcheck. Values are the tests' business: here an output is only
checked for NaN where the reference (finite flows) has none.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import sys
import time

import torch

import fastwarp
from fastwarp import reference

SHAPES = [  # (N, C, H, W, h, w)
    (2, 3, 17, 19, 17, 19),
    (2, 3, 33, 47, 9, 12),   # resolution-independent, odd ratios
    (1, 1, 1, 1, 1, 1),
    (3, 2, 13, 1, 5, 1),
    (1, 4, 64, 65, 32, 33),
]
DTYPES = (torch.float32, torch.bfloat16, torch.float64)
# --quick (bench/gpu_run.sh's first call): one resolution-independent odd shape with
# channels_last, the 1x1 image and C=4 (the vectorised tiles), float32 and bfloat16 (the
# shared-memory window and fixed-point paths; float64 has neither).
QUICK_SHAPES = [SHAPES[1], SHAPES[2], SHAPES[4]]
QUICK_DTYPES = (torch.float32, torch.bfloat16)


def inputs(shape, dtype, flow_kind, channels_last, gen, dev):
    N, C, H, W, h, w = shape
    image = torch.rand(N, C, H, W, generator=gen, device=dev).to(dtype)
    flow = torch.randn(N, 2, h, w, generator=gen, device=dev) * 3.0
    if flow_kind == "extreme":  # outside the image, huge, NaN and Inf in one field
        flow = flow * 50.0
        flat = flow.view(-1)
        flat[0::7] = 1e30
        flat[1::11] = -1e30
        flat[2::13] = float("nan")
        flat[3::17] = float("inf")
        flat[4::19] = float("-inf")
    flow = flow.to(dtype)
    texture = torch.rand(N, C, h, w, generator=gen, device=dev).to(dtype)
    mask = torch.rand(N, 1, h, w, generator=gen, device=dev).to(dtype)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    return [t.requires_grad_() for t in (image, flow, texture, mask)]


def run(backend: str, op: str, tensors, padding_mode: str, check: bool) -> None:
    fn = getattr(fastwarp, op)
    args = tensors[:2] if op == "warp" else tensors
    kwargs = {"padding_mode": padding_mode}
    if fastwarp_takes_backend:
        kwargs["backend"] = backend
    out = fn(*args, **kwargs)
    out.backward(torch.randn_like(out))
    if out.is_cuda:
        torch.cuda.synchronize()
    if not check:
        return
    ref = getattr(reference, op)(*(a.detach() for a in args), padding_mode=padding_mode)
    unwritten = out.isnan() & ~ref.isnan()
    if unwritten.any():
        raise AssertionError(f"{backend} {op} {padding_mode} {tuple(out.shape)} {out.dtype}: "
                             f"{int(unwritten.sum())} NaN outputs where the reference has none")


fastwarp_takes_backend = "backend" in inspect.signature(fastwarp.warp).parameters


def main(argv=None) -> int:
    available = [b for b in ("cuda", "triton") if fastwarp.backends().get(b)]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=available, help=f"default: {available}")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of this script with backend cpu")
    parser.add_argument("--quick", action="store_true", help="a small case: fewer shapes and dtypes (QUICK_SHAPES)")
    args = parser.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cpu":
        args.backends = ["cpu"]
    elif not torch.cuda.is_available():
        print("sanitize_cuda: no CUDA device", file=sys.stderr)
        return 2
    if not fastwarp_takes_backend and args.backends not in (["cuda"], ["cpu"]):
        print("sanitize_cuda: fastwarp ops take no backend= keyword: only their default (CUDA) kernels run")
        args.backends = ["cuda"]
    gen = torch.Generator(device=dev).manual_seed(0)
    t0, calls = time.time(), 0
    shapes, dtypes = (QUICK_SHAPES, QUICK_DTYPES) if args.quick else (SHAPES, DTYPES)
    for backend in args.backends:
        for shape, dtype, flow_kind, op, mode in itertools.product(
                shapes, dtypes, ("normal", "extreme"), ("warp", "warp_blend"), ("border", "zeros")):
            channels_last = shape[1] > 1 and shape[0] == 2 and flow_kind == "normal"
            tensors = inputs(shape, dtype, flow_kind, channels_last, gen, dev)
            # Where non-finite flows put NaN is the tests' business; here only their reads.
            run(backend, op, tensors, mode, check=flow_kind == "normal")
            calls += 1
        if backend == "cuda":
            torch.use_deterministic_algorithms(True)
            try:
                for op in ("warp", "warp_blend"):
                    run("cuda", op, inputs(SHAPES[1], torch.float32, "normal", False, gen, dev), "zeros", check=True)
                    calls += 1
            finally:
                torch.use_deterministic_algorithms(False)
        print(f"sanitize_cuda: {backend}: done ({calls} forward+backward calls so far, {time.time() - t0:.0f} s)",
              flush=True)
    print(f"sanitize_cuda: {calls} forward+backward calls over backends {args.backends} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
