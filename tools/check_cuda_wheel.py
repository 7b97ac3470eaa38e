"""Checks an installed fastwarp built with CUDA kernels, on a machine with or without a GPU
(``make wheel-cuda`` runs it in a clean environment holding only PyPI's CUDA build of torch,
numpy and the wheel):

- ``import fastwarp`` works (without a GPU too);
- ``fastwarp.build_info()`` says the CUDA kernels are built, and for which architectures;
  ``fastwarp.backends()["cuda"]`` is False where no device is visible (built, not runnable);
- every op fastwarp registers that takes tensors has a kernel under the CUDA dispatch key
  (``torch._C._dispatch_has_kernel_for_dispatch_key``), and under CPU too.

Prints one line per check and exits 1 naming what failed (0 when all pass).

    python tools/check_cuda_wheel.py [--expect-archs 8.0,9.0,12.1]
"""

from __future__ import annotations

import argparse
import sys


def fastwarp_ops() -> list[str]:
    """The qualified names of fastwarp's ops that dispatch on tensors (``fastwarp::warp``, ...)."""
    import torch

    import fastwarp.ops  # noqa: F401  (loads fastwarp._C, which registers the ops)

    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastwarp::"))
    # The C++ library's ops (csrc/fastwarp.cpp): not the Triton backend's own ops (triton_*,
    # registered from Python where triton imports), nor those without tensor arguments (_*:
    # one catch-all kernel).
    return [n for n in names if not n.split("::", 1)[1].startswith(("_", "triton_"))]


def check(expect_archs: list[str] | None = None) -> list[str]:
    """The failed checks' messages (empty: all passed); prints each check."""
    import torch

    failures: list[str] = []

    def report(ok: bool, text: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
        if not ok:
            failures.append(text)

    import fastwarp

    info = fastwarp.build_info()
    report(True, f"import fastwarp {fastwarp.__version__} with torch {torch.__version__} "
                 f"(CUDA {torch.version.cuda}), GPU visible: {torch.cuda.is_available()}")
    report(info["cuda_kernels"], f"build_info: cuda_kernels={info['cuda_kernels']}, "
                                 f"cuda_archs={info['cuda_archs']}")
    if not torch.cuda.is_available():
        report(fastwarp.backends()["cuda"] is False, f"backends() without a GPU: {fastwarp.backends()}")
    if expect_archs is not None:
        missing = [a for a in expect_archs if a not in info["cuda_archs"]]
        report(not missing, f"architectures built: {', '.join(info['cuda_archs']) or 'none'}"
                            + (f" (missing {', '.join(missing)})" if missing else ""))
    ops = fastwarp_ops()
    report(len(ops) >= 10, f"{len(ops)} fastwarp ops registered")
    for key in ("CPU", "CUDA"):
        missing = [n for n in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(n, key)]
        report(not missing, f"every op has a {key} kernel" + (f"; none for: {', '.join(missing)}" if missing else ""))
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expect-archs", default=None, help="comma-separated compute capabilities, e.g. 8.0,9.0")
    args = parser.parse_args(argv)
    failures = check(args.expect_archs.split(",") if args.expect_archs else None)
    if failures:
        print(f"check_cuda_wheel: {len(failures)} check(s) failed: " + "; ".join(failures), file=sys.stderr)
        return 1
    print("check_cuda_wheel: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
