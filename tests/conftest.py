"""pytest configuration of the test suite: Triton's interpreter where there is no GPU, the
``faces_dir`` fixture and the skipping of ``needs_cuda`` tests where fastwarp has no CUDA
backend. Helpers live in op_helpers.py; the ``needs_cuda``, ``triton`` and ``slow``
markers are declared in pyproject.toml.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # No GPU: the Triton kernels run on CPU tensors in Triton's interpreter. Set before
    # anything imports triton (triton.jit reads it when fastwarp.ops.triton_backend defines its kernels).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from op_helpers import _NO_CUDA_REASON, FACES_DIR, HAS_CUDA  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # Tests marked needs_cuda directly (not through devices()) skip the same way.
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason=_NO_CUDA_REASON)
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def faces_dir() -> Path:
    """The shared faces data directory; skips the test when it is missing."""
    if not FACES_DIR.is_dir():
        pytest.skip(f"faces data not found at {FACES_DIR} (set FASTWARP_FACES_DIR to its location)")
    return FACES_DIR
