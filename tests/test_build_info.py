"""fastwarp.build_info() and tools/check_cuda_wheel.py (what ``make wheel-cuda`` runs on the
CUDA wheel in a clean environment), here on this CPU-only build: the check must fail, naming
every op without a CUDA kernel, so a wheel whose CUDA kernels were not built or registered
cannot pass it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import fastwarp

ROOT = Path(__file__).resolve().parents[1]


def test_build_info_of_this_build():
    info = fastwarp.build_info()
    assert set(info) == {"cuda_kernels", "cuda_archs", "cuda_device", "torch", "torch_cuda"}
    assert info["cuda_kernels"] == torch._C._dispatch_has_kernel_for_dispatch_key("fastwarp::warp", "CUDA")
    assert info["cuda_device"] == torch.cuda.is_available() and info["torch"] == torch.__version__
    if not info["cuda_kernels"]:
        assert info["cuda_archs"] == []


def test_the_wheel_check_lists_every_op_and_fails_without_cuda_kernels():
    sys.path.insert(0, str(ROOT / "tools"))
    import check_cuda_wheel

    ops = check_cuda_wheel.fastwarp_ops()
    for name in ("warp", "warp_backward", "warp_blend", "warp_blend_backward", "warp_theta", "warp_blend_theta",
                 "warp_blend_theta_backward", "mesh_flow", "mesh_flow_backward"):
        assert f"fastwarp::{name}" in ops
    assert not [n for n in ops if n.startswith(("fastwarp::_", "fastwarp::triton_"))]  # C++ ops with tensors only
    if fastwarp.build_info()["cuda_kernels"]:
        return  # a CUDA build: the check passes (make wheel-cuda runs it)
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "check_cuda_wheel.py")], capture_output=True,
                         text=True)
    assert run.returncode == 1
    assert "FAIL build_info: cuda_kernels=False" in run.stdout
    missing = run.stdout.split("every op has a CUDA kernel; none for: ", 1)[1].splitlines()[0].split(", ")
    assert sorted(missing) == ops
    assert "ok   every op has a CPU kernel" in run.stdout
