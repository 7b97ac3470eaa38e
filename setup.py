"""Builds fastwarp._C: the CPU kernels always, the CUDA kernels when torch has CUDA and
nvcc is found. Environment overrides: FASTWARP_FORCE_CUDA=1, FASTWARP_FORCE_CPU=1,
TORCH_CUDA_ARCH_LIST (e.g. "9.0"), FASTWARP_DEBUG=1 (-O0 -g).

Install with `pip install --no-build-isolation -e .` after torch is installed.
"""

import glob
import os
import sys

from setuptools import setup

import torch
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


def _cuda_decision() -> tuple[bool, str]:
    if _flag("FASTWARP_FORCE_CPU"):
        return False, "FASTWARP_FORCE_CPU is set"
    if _flag("FASTWARP_FORCE_CUDA"):
        return True, "FASTWARP_FORCE_CUDA is set"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} has no CUDA"
    if CUDA_HOME is None:
        return False, "nvcc was not found (set CUDA_HOME)"
    return True, f"torch {torch.__version__} with CUDA {torch.version.cuda}, nvcc at {CUDA_HOME}"


def _cuda_archs() -> str:
    """The architectures the CUDA kernels are built for, as ``"8.0;9.0;12.1+PTX"``, read from
    the nvcc flags torch's build will use (TORCH_CUDA_ARCH_LIST, or torch's default)."""
    try:
        from torch.utils.cpp_extension import _get_cuda_arch_flags

        flags = _get_cuda_arch_flags()
    except Exception:  # noqa: BLE001  (a private helper: fall back to what was asked)
        return os.environ.get("TORCH_CUDA_ARCH_LIST", "unknown").replace(" ", ";")
    cubins, ptx = [], []
    for flag in flags:
        for part in flag.split(",code=")[1:]:
            kind, num = part.strip("[]").split("_", 1)
            (cubins if kind == "sm" else ptx).append(f"{num[:-1]}.{num[-1]}")
    return ";".join(sorted(set(cubins), key=float) + [f"{a}+PTX" for a in sorted(set(ptx), key=float)])


def extensions():
    use_cuda, why = _cuda_decision()
    debug = _flag("FASTWARP_DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    sources = ["csrc/fastwarp.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    # at::parallel_for's OpenMP pragma is inlined from ATen's headers into our code.
    cxx = opt + ["-fopenmp"]  # the C++ standard is torch's own choice (C++20 for torch 2.13)
    kwargs = dict(extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])
    if use_cuda:
        archs = _cuda_archs()
        # fastwarp.build_info() reports them (torch.ops.fastwarp._cuda_archs).
        cxx.append(f'-DFASTWARP_CUDA_ARCHS="{archs}"')
        sources += sorted(glob.glob("csrc/cuda/*_kernel.cu"))
        kwargs["extra_compile_args"]["nvcc"] = opt + ["--expt-relaxed-constexpr", "-lineinfo"]
        ext = CUDAExtension("fastwarp._C", sources, **kwargs)
    else:
        ext = CppExtension("fastwarp._C", sources, **kwargs)
    backends = "CPU + CUDA" if use_cuda else "CPU only"
    print(f"fastwarp build: {backends} kernels ({why}); "
          f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '<torch default>')}; "
          f"{'debug' if debug else 'release'}", file=sys.stderr)
    return [ext]


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
