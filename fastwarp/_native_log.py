"""Native libraries' log lines on stderr, hidden unless asked for.

MediaPipe (absl logging), TensorFlow Lite and FFmpeg (inside OpenCV) write their INFO and
WARNING lines straight to file descriptor 2 from C++: "Created TensorFlow Lite XNNPACK
delegate", "All log messages before absl::InitializeLog()...", "W0000 ...
inference_feedback_manager.cc:114] Feedback manager requires...". No setting reaches them
from Python in mediapipe 0.10 (``GLOG_minloglevel``, ``TF_CPP_MIN_LOG_LEVEL`` and
``ABSL_MIN_LOG_LEVEL`` are not read: measured), so :func:`quiet_native_stderr` points
fd 2 at a temporary file around the calls that log and, once fd 2 is back, writes out
again every line that is not one of those known log lines: Python's own output (a
warning, a traceback printed later) and any native error line still reach the user.

The ``fastwarp`` command's ``-v`` calls :func:`show_native_logs` to let them all through.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

#: Lines dropped from what the quiet window captured: absl/glog INFO and WARNING lines
#: ("W0000 00:00:1795985667.628260   22028 file.cc:114] ...": before absl is initialised
#: the seconds are the Unix time; E and F lines are kept),
#: TensorFlow Lite's and absl's "INFO: " / "WARNING: " lines, FFmpeg's "[mjpeg @ 0x...] "
#: and OpenCV's "[ WARN:0@1.2] " / "[ INFO:0@1.2] " lines.
NOISE = re.compile(rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] "
                   rb"|(?:INFO|WARNING): "
                   rb"|\[[\w.:-]+ @ 0x[0-9a-fA-F]+\] "
                   rb"|\[ ?(?:WARN|INFO|DEBUG|VERBOSE):\d)")

_state = {"show": False, "depth": 0}
# fd 2 is one per process: windows on two threads must not interleave (the second would
# save the first one's temporary file as "the" stderr and restore it for good).
_lock = threading.RLock()


def show_native_logs(show: bool = True) -> None:
    """Let native log lines through (``show=True``) or hide them (the default) from now on."""
    _state["show"] = bool(show)


def native_logs_shown() -> bool:
    """Whether :func:`quiet_native_stderr` lets native log lines through."""
    return _state["show"]


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide the native log lines (:data:`NOISE`) written to fd 2 inside the ``with`` block.

    Everything else written to fd 2 meanwhile (by Python or native code) is written out
    again, in order, when the block ends, whether it ends normally or by an exception (which
    propagates unchanged). A no-op after ``show_native_logs(True)``, inside another such
    block, or where fd 2 is not open.
    """
    if _state["show"]:
        yield
        return
    with _lock:
        if _state["depth"]:
            _state["depth"] += 1
            try:
                yield
            finally:
                _state["depth"] -= 1
            return
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (a daemon): nothing to hide
            yield
            return
        with tempfile.TemporaryFile() as capture:
            _flush_stderr()
            os.dup2(capture.fileno(), 2)
            _state["depth"] = 1
            try:
                yield
            finally:
                _state["depth"] = 0
                _flush_stderr()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                kept = b"".join(line for line in capture.read().splitlines(keepends=True) if not NOISE.match(line))
                while kept:
                    kept = kept[os.write(2, kept):]


def _flush_stderr() -> None:
    with contextlib.suppress(Exception):  # a closed or replaced sys.stderr has nothing to flush
        sys.stderr.flush()
