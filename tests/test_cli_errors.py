"""What a user sees on stderr from the ``fastwarp`` command: every error one line
(``fastwarp: error: ...``, exit status 1, no output file, no traceback) and nothing at all
on success, MediaPipe's and TensorFlow Lite's native log lines included (``-v`` shows them).

Native code writes to file descriptor 2 directly, which capsys cannot see: these tests read
the real stderr of a real process. The failure classes that fail before MediaPipe starts run
as forked children of one warm interpreter (``_run_forked``: each child runs ``main()`` with
its own fd 1 and fd 2, exactly as the console script does, so an uncaught exception prints
its traceback and exits 1 as it would there), which saves importing torch once per case; the
cases that start MediaPipe run the installed ``fastwarp`` entry point itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fastwarp._native_log import NOISE, quiet_native_stderr, show_native_logs
from fastwarp.cli import EXIT_ERROR, EXIT_USAGE, build_parser

PHOTO = "images/st_people_0.png"  # a frontal face (MANIFEST.csv: "neutral")
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "fastwarp" / "weights"
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}


def _fastwarp() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m fastwarp.cli``."""
    script = Path(sys.executable).with_name("fastwarp")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "fastwarp.cli"]


_DRIVER = textwrap.dedent("""
    import json, os, sys, traceback
    from fastwarp.cli import main

    results = []
    for i, argv in enumerate(json.loads(sys.argv[1])):
        out, err = (os.path.join(sys.argv[2], f"{i}.{k}") for k in ("out", "err"))
        pid = os.fork()
        if pid == 0:  # the child: the console script's `sys.exit(main())`, its output in two files
            for fd, path in ((1, out), (2, err)):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(f, fd)
                os.close(f)
            sys.argv = ["fastwarp", *argv]
            if os.environ.get("FASTWARP_TEST_DROP_ROOT") and os.geteuid() == 0:
                os.setgid(65534)  # nobody: root writes into read-only directories
                os.setuid(65534)
            try:
                code = main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc()  # as the interpreter prints an uncaught exception
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)
        status = os.waitpid(pid, 0)[1]
        results.append({"rc": os.waitstatus_to_exitcode(status), "out": open(out).read(), "err": open(err).read()})
    print(json.dumps(results))
""")


def _run_forked(cases: list[list[str]], tmp_path: Path, env: dict | None = None) -> list[dict]:
    """``fastwarp ARGV`` for every case: ``[{"rc", "out", "err"}]``."""
    env = env or ENV
    if not hasattr(os, "fork"):  # one fresh process per case
        procs = [subprocess.run(_fastwarp() + argv, capture_output=True, text=True, env=env, check=False)
                 for argv in cases]
        return [{"rc": p.returncode, "out": p.stdout, "err": p.stderr} for p in procs]
    logs = tmp_path / "logs"
    logs.mkdir()
    logs.chmod(0o777)  # (the children may run as nobody: FASTWARP_TEST_DROP_ROOT)
    proc = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(cases), str(logs)], capture_output=True,
                          text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _assert_one_error_line(result: dict, pattern: str, rc: int = EXIT_ERROR) -> str:
    lines = [line for line in result["err"].splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got:\n{result['err']}"
    assert lines[0].startswith("fastwarp: error: "), lines[0]
    assert "Traceback" not in result["err"]
    assert re.search(pattern, lines[0]), f"{pattern!r} not in {lines[0]!r}"
    assert result["rc"] == rc, result
    return lines[0]


@pytest.fixture
def inputs(tmp_path, faces_dir) -> dict[str, Path]:
    """Input files for the failure classes, all under ``tmp_path``."""
    text_jpg = tmp_path / "notes.jpg"
    text_jpg.write_text("this is a text file, not a JPEG\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    corrupt = tmp_path / "corrupt"  # a readable config beside a safetensors file that is not one
    shutil.copy(WEIGHTS_DIR / "base.json", corrupt.with_suffix(".json"))
    corrupt.with_suffix(".safetensors").write_bytes(b"\x00garbage" * 64)
    other = tmp_path / "other"  # lite's config with base's weights: tensors of other shapes
    shutil.copy(WEIGHTS_DIR / "lite.json", other.with_suffix(".json"))
    shutil.copy(WEIGHTS_DIR / "base.safetensors", other.with_suffix(".safetensors"))
    (tmp_path / "is_a_dir.mp4").mkdir()
    cut_jpg = tmp_path / "cut.jpg"  # a real JPEG, its second half missing
    jpeg = (faces_dir / "images" / "dt_uncut_src_img.jpg").read_bytes()
    cut_jpg.write_bytes(jpeg[: len(jpeg) // 2])
    bad_png = tmp_path / "bad.png"  # a real PNG with one bit flipped in its image data
    png = bytearray((faces_dir / PHOTO).read_bytes())
    png[len(png) // 2] ^= 0x10
    bad_png.write_bytes(bytes(png))
    return {"photo": faces_dir / PHOTO, "text_jpg": text_jpg, "missing": tmp_path / "missing.png", "a_file": a_file,
            "corrupt": corrupt, "other": other, "tmp": tmp_path, "cut_jpg": cut_jpg, "bad_png": bad_png}


# (argv with {placeholders}, the output it must not create, the message's pattern, exit status)
CASES = [
    # missing input
    ("edit {missing} --au AU12=2 -o {tmp}/o.png", "o.png", r"image not found: .*missing\.png$", 1),
    ("video {tmp}/missing.mp4 --au AU12=2 -o {tmp}/o.mp4", "o.mp4", r"video not found: .*missing\.mp4$", 1),
    # unreadable input: a text file named .jpg (OpenCV's FFmpeg logs its own complaint for the video),
    # a truncated JPEG, a PNG with a flipped bit: never a silent partial edit
    ("edit {text_jpg} --au AU12=2 -o {tmp}/o.png", "o.png",
     r"cannot read image .*notes\.jpg: not an image file \(Pillow does not recognise its format\)$", 1),
    ("edit {cut_jpg} --au AU12=2 -o {tmp}/o.png", "o.png",
     r"cannot read image .*cut\.jpg: truncated JPEG \(image file is truncated", 1),
    ("edit {bad_png} --au AU12=2 -o {tmp}/o.png", "o.png",
     r"cannot read image .*bad\.png: corrupt PNG \(bad CRC in the IDAT chunk\)$", 1),
    ("edit {photo} --au AU12=2 -o {tmp}/o.gif", "o.gif",
     r"cannot write images of type '\.gif': .*o\.gif \(use \.png, \.jpg, \.tif, \.webp or \.bmp\)$", 1),
    ("edit {photo} --au AU12=2 -o {tmp}/o.png --max-faces 0", "o.png", r"--max-faces must be at least 1, got 0", 1),
    ("video {text_jpg} --au AU12=2 -o {tmp}/o.mp4", "o.mp4", r"cannot read video .*notes\.jpg: no decodable frame", 1),
    # bad AU
    ("edit {photo} --au AU99=2 -o {tmp}/o.png", "o.png", r"unknown AU 'AU99'", 1),
    ("edit {photo} --au AU12=x -o {tmp}/o.png", "o.png", r"malformed AU edit 'AU12=x'", 1),
    ("video {photo} -o {tmp}/o.mp4", "o.mp4", r"no edit requested", 1),
    # bad weights: no such checkpoint, not safetensors, another config's tensors
    ("edit {photo} --au AU12=2 -o {tmp}/o.png --weights nope", "o.png",
     r"checkpoint file not found: nope\.safetensors", 1),
    ("edit {photo} --au AU12=2 -o {tmp}/o.png --weights {corrupt}", "o.png",
     r"cannot read weights .*corrupt\.safetensors: .*not a safetensors file", 1),
    ("edit {photo} --au AU12=2 -o {tmp}/o.png --weights {other}", "o.png",
     r"weights .*other\.safetensors do not match the config .*other\.json: size mismatch", 1),
    ("export -o {tmp}/o.onnx --weights {corrupt}", "o.onnx", r"cannot read weights .*corrupt\.safetensors", 1),
    # unwritable output: under a file, in a directory that does not exist, onto a directory
    ("edit {photo} --au AU12=2 -o {a_file}/o.png", "a_file/o.png",
     r"cannot write .*a_file/o\.png: .*a_file is not a directory", 1),
    ("edit {photo} --au AU12=2 -o {tmp}/no_such_dir/o.png", "no_such_dir",
     r"cannot write .*o\.png: .*no_such_dir does not exist", 1),
    ("edit {photo} --au AU12=2 -o {tmp}/o.png --side-by-side {a_file}/c.png", "o.png",
     r"cannot write .*c\.png: .*is not a directory", 1),
    ("video {photo} --au AU12=2 -o {tmp}/is_a_dir.mp4", "is_a_dir.mp4/",
     r"cannot write .*is_a_dir\.mp4: it is a directory", 1),
    ("webcam --camera {photo} --au AU12=2 -o {tmp}/no_such_dir/o.mp4", "no_such_dir", r"no_such_dir does not exist", 1),
    ("export -o {a_file}/o.onnx", "a_file/o.onnx", r"cannot write .*o\.onnx: .*a_file is not a directory", 1),
    # bad export options
    ("export -o {tmp}/o.bin", "o.bin", r"the ONNX output must end in \.onnx", 1),
    ("export --format tensorrt -o {tmp}/o.engine --max-batch 0", "o.engine", r"--max-batch must be at least 1", 1),
    ("export -o {tmp}/o.onnx --onnx {tmp}/x.onnx", "o.onnx", r"--onnx is the input of --format tensorrt", 1),
    # a malformed command line: argparse's usage error, one line too, exit status 2
    ("edit {photo} --au AU12=2", "o.png",
     r"the following arguments are required: -o/--output \(see: fastwarp edit --help\)", EXIT_USAGE),
    ("export -o {tmp}/o.onnx --opset 20", "o.onnx", r"argument --opset: invalid choice", EXIT_USAGE),
    ("frobnicate", "o.png", r"invalid choice: 'frobnicate'", EXIT_USAGE),
]
NO_GPU_CASES = [
    ("edit {photo} --au AU12=2 -o {tmp}/o.png --device cuda", "o.png",
     r"--device cuda, but no CUDA GPU is available", 1),
    ("webcam --camera {photo} --au AU12=2 -o {tmp}/o.mp4 --device cuda", "o.mp4", r"no CUDA GPU is available", 1),
]


def test_every_failure_class_is_one_line(inputs, tmp_path):
    cases = CASES + ([] if torch.cuda.is_available() else NO_GPU_CASES)
    results = _run_forked([argv.format(**inputs).split() for argv, *_ in cases], tmp_path)
    for (argv, output, pattern, rc), result in zip(cases, results):
        print(f"fastwarp {argv} -> {result['err'].strip()}")
        _assert_one_error_line(result, pattern, rc)
        assert result["out"] == "", argv
        if not output.endswith("/"):  # (is_a_dir.mp4 stays the directory it was)
            assert not (tmp_path / output).exists(), f"{argv} left {output}"
    # No temporary file (".o.xxxx.tmp.png") left anywhere either.
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA: this one has a GPU, "
                                                      "so --device cuda is no error here")
def test_no_gpu_message_names_the_fix(inputs, tmp_path):
    (result,) = _run_forked([f"video {inputs['photo']} --au AU12=2 -o {tmp_path}/o.mp4 --device cuda".split()],
                            tmp_path)
    line = _assert_one_error_line(result, r"--device cuda, but no CUDA GPU is available")
    assert line.endswith("use --device cpu")


@pytest.mark.skipif(not hasattr(os, "geteuid") or not hasattr(os, "fork"),
                    reason="needs POSIX users and fork (the child drops root to test a read-only directory)")
def test_read_only_output_directory(faces_dir):
    # Root writes into read-only directories: as root, the forked child runs as nobody
    # (FASTWARP_TEST_DROP_ROOT), so the directories it touches are world-readable ones.
    base = Path(tempfile.mkdtemp(prefix="fastwarp-ro-"))
    try:
        base.chmod(0o755)
        logs_parent = base / "run"
        logs_parent.mkdir()
        logs_parent.chmod(0o777)
        locked = base / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        (result,) = _run_forked([f"edit {faces_dir / PHOTO} --au AU12=2 -o {locked}/o.png".split()], logs_parent,
                                {**ENV, "FASTWARP_TEST_DROP_ROOT": "1"})
        _assert_one_error_line(result, r"cannot write .*locked/o\.png: the directory .*locked is not writable")
        assert not list(locked.iterdir())
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_no_face_is_one_line(tmp_path):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((200, 200, 3), 127, np.uint8))
    out = tmp_path / "o.png"
    proc = subprocess.run(_fastwarp() + ["edit", str(grey), "--au", "AU12=2", "-o", str(out), "--device", "cpu"],
                          capture_output=True, text=True, env=ENV, check=False)
    _assert_one_error_line({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr},
                           rf"no face found in {re.escape(str(grey))}$")
    assert not out.exists()


@pytest.mark.slow
def test_successful_edit_writes_nothing_to_stderr_and_verbose_shows_native_logs(faces_dir, tmp_path):
    src = faces_dir / PHOTO
    runs = {}
    for name, extra in (("quiet", []), ("verbose", ["-v"])):
        out = tmp_path / f"{name}.png"
        runs[name] = subprocess.run(_fastwarp() + ["edit", str(src), "--au", "AU12=3", "-o", str(out),
                                                   "--device", "cpu", *extra],
                                    capture_output=True, text=True, env=ENV, check=False)
        assert runs[name].returncode == 0, runs[name].stderr
        assert cv2.imread(str(out)).shape == cv2.imread(str(src)).shape
        assert runs[name].stdout.splitlines()[-1] == f"wrote {out.resolve()}"
    assert runs["quiet"].stderr == ""
    # -v lets MediaPipe's and TensorFlow Lite's own lines through; stdout is the same either way.
    verbose_err = runs["verbose"].stderr.splitlines()
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in verbose_err
    assert any(re.match(r"W\d{4} .*\] Feedback manager requires", line) for line in verbose_err)
    assert all(NOISE.match(line.encode()) for line in verbose_err), verbose_err
    assert runs["verbose"].stdout.replace("verbose.png", "quiet.png") == runs["quiet"].stdout


def test_verbose_is_a_global_flag_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["-v", "info"]).verbose
    assert parser.parse_args(["info", "--verbose"]).verbose
    assert parser.parse_args(["-v", "export", "-o", "m.onnx"]).verbose  # not undone by the command's default
    assert not parser.parse_args(["info"]).verbose


def test_quiet_window_drops_native_log_lines_and_keeps_the_rest(capfd):
    noise = [b"W0000 00:00:1795985667.628260   22028 inference_feedback_manager.cc:114] Feedback manager\n",
             b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
             b"[mjpeg @ 0x55678299e680] No JPEG data found in image\n"]
    with pytest.raises(ValueError, match="raised inside"), quiet_native_stderr():
        for line in noise:
            os.write(2, line)
        os.write(2, b"E0000 00:00:1795985667.6 22028 calc.cc:1] a native error\n")
        print("from python", file=sys.__stderr__, flush=True)  # fd 2 (pytest replaces sys.stderr)
        raise ValueError("raised inside")
    os.write(2, b"after\n")  # fd 2 is back
    err = capfd.readouterr().err
    assert err == "E0000 00:00:1795985667.6 22028 calc.cc:1] a native error\nfrom python\nafter\n"

    show_native_logs(True)
    try:
        with quiet_native_stderr():
            os.write(2, noise[0])
    finally:
        show_native_logs(False)
    assert capfd.readouterr().err == noise[0].decode()
