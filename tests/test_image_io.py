"""Photos kept whole (fastwarp/media/image.py; docs/design.md, "Media in and out"): alpha bit
for bit, 16 bits, grey as one channel, the ICC profile and EXIF, the EXIF orientation
applied once, and a truncated or corrupt file refused, on files made from the real photos
of ../shared/data/faces/images.

Each promise is checked against something independent of the code under test: Pillow's own
decoding (``Image.open``, ``ImageOps.exif_transpose``, ``getexif``), OpenCV's
``IMREAD_UNCHANGED``, tifffile, and the face region of the MediaPipe landmarks. The first
tests are read/write round trips without the networks (fast); the ``fastwarp edit`` tests
run the command's ``main()`` in this process, sharing one editor between the runs (the
``edit`` fixture), and one runs the installed console script.
"""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps

from fastwarp.media.image import (ImageReadError, Photo, orientation_reset, png_chunks, png_with_chunks, read_image,
                                  to_grey, to_uint8, write_image)
from op_helpers import FACES_DIR

needs_faces = pytest.mark.skipif(not (FACES_DIR / "images").is_dir(),
                                 reason=f"real photos not found at {FACES_DIR}/images (set FASTWARP_FACES_DIR)")
pytestmark = needs_faces

PHOTO = FACES_DIR / "images" / "st_people_0.png"       # frontal, neutral, 474 x 474
TALL = FACES_DIR / "images" / "dt_uncut_src_img.jpg"   # frontal, neutral, 500 x 613 (not square)
ORIENT = 0x0112
MAKE, MODEL = 0x010F, 0x0110


def _bgr(path=PHOTO) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


def _srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _alpha(shape) -> np.ndarray:
    """Every value 0..255 in a pattern that no resampling would keep."""
    h, w = shape[:2]
    yy, xx = np.mgrid[:h, :w]
    return ((xx * 7 + yy * 13) % 256).astype(np.uint8)


def _deep(bgr8: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 16-bit image from an 8-bit one with a non-trivial low byte (random)."""
    low = np.random.default_rng(seed).integers(0, 256, bgr8.shape, dtype=np.uint16)
    return (bgr8.astype(np.uint16) << 8) | low


def _edited(bgr: np.ndarray) -> np.ndarray:
    """A stand-in for the editor: a block of the image inverted."""
    out = bgr.copy()
    top = np.iinfo(bgr.dtype).max
    out[40:90, 60:140] = top - out[40:90, 60:140]
    return out


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# --- reading and writing, without the networks ---------------------------------------------------

def test_rgba_png_keeps_alpha_bit_for_bit(tmp_path):
    src = _bgr()
    alpha = _alpha(src.shape)
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([src[..., ::-1], alpha]), "RGBA").save(path)
    photo = read_image(path)
    assert photo.bgr.dtype == np.uint8 and not photo.grey and photo.format == "PNG"
    assert np.array_equal(photo.bgr, src) and np.array_equal(photo.alpha, alpha)
    for suffix in (".png", ".webp", ".tif"):
        out = tmp_path / f"out{suffix}"
        assert write_image(out, photo, _edited(photo.bgr)) == []
        with Image.open(out) as im:  # Pillow's own decoding
            assert im.mode == "RGBA", suffix
            back = np.asarray(im)
        assert np.array_equal(back[..., 3], alpha), suffix
        assert np.array_equal(back[..., 2::-1], _edited(src)), suffix


def test_16_bit_png_and_tiff_stay_16_bit(tmp_path):
    deep = _deep(_bgr())
    alpha = (_alpha(deep.shape).astype(np.uint16) * 257) ^ 0x00FF
    for name, pixels in (("rgb16.png", deep), ("rgba16.png", np.dstack([deep, alpha])),
                         ("rgb16.tif", deep), ("rgba16.tif", np.dstack([deep, alpha]))):
        path = tmp_path / name
        assert cv2.imwrite(str(path), pixels)
        photo = read_image(path)
        assert photo.bgr.dtype == np.uint16 and photo.bit_depth == 16, name
        assert np.array_equal(photo.bgr, deep), name
        assert (photo.alpha is None) == (pixels.shape[2] == 3)
        if photo.alpha is not None:
            assert np.array_equal(photo.alpha, alpha), name
        # the 8-bit copy detection sees
        assert np.array_equal(photo.bgr8, np.rint(deep / 257).astype(np.uint8))
        out = tmp_path / f"out_{name}"
        write_image(out, photo, _edited(photo.bgr))
        back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)  # OpenCV's own decoding
        assert back.dtype == np.uint16 and back.shape == pixels.shape, name
        assert np.array_equal(back[..., :3], _edited(deep)), name
        if photo.alpha is not None:
            assert np.array_equal(back[..., 3], alpha), name


def test_grey_stays_one_channel(tmp_path):
    grey = cv2.cvtColor(_bgr(), cv2.COLOR_BGR2GRAY)
    deep = _deep(grey)
    cases = {"g.png": ("L", grey), "g.jpg": ("L", None), "g16.png": ("I;16", deep), "g16.tif": ("I;16", deep)}
    for name, (mode, pixels) in cases.items():
        path = tmp_path / name
        if name.endswith(".jpg"):
            Image.fromarray(grey).save(path, quality=95)
        else:
            assert cv2.imwrite(str(path), pixels)
        photo = read_image(path)
        assert photo.grey, name
        assert np.array_equal(photo.bgr[..., 0], photo.bgr[..., 1]) and np.array_equal(photo.bgr[..., 0],
                                                                                         photo.bgr[..., 2])
        if pixels is not None:
            assert np.array_equal(photo.bgr[..., 0], pixels), name
        out = tmp_path / f"out_{name}"
        write_image(out, photo, photo.bgr)
        with Image.open(out) as im:
            assert im.mode in (mode, "I;16B", "I;16L") if mode == "I;16" else im.mode == mode, (name, im.mode)
        back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert back.ndim == 2, name
        if pixels is not None:  # lossless: the very pixels
            assert np.array_equal(back, pixels), name


def test_icc_profile_kept_png_and_jpeg(tmp_path):
    icc = _srgb_icc()
    rgb = _bgr()[..., ::-1]
    for name, kwargs in (("icc.png", {}), ("icc.jpg", {"quality": 95})):
        path = tmp_path / name
        Image.fromarray(rgb).save(path, icc_profile=icc, **kwargs)
        photo = read_image(path)
        assert photo.icc_profile == icc, name
        for suffix in (".png", ".jpg", ".tif", ".webp"):
            out = tmp_path / f"out_{name}{suffix}"
            write_image(out, photo, photo.bgr)
            with Image.open(out) as im:
                assert im.info.get("icc_profile") == icc, (name, suffix)


def test_icc_exif_and_png_chunks_of_a_16_bit_colour_png(tmp_path):
    """OpenCV writes the 16-bit pixels; the metadata chunks are spliced in (png_with_chunks):
    Pillow must read them back, and every chunk's CRC must hold (Pillow's verify())."""
    icc = _srgb_icc()
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = "fastwarp-test", "deep"
    meta = [(b"gAMA", struct.pack(">I", 45455)), (b"pHYs", struct.pack(">IIB", 3780, 2835, 1)),
            (b"tEXt", b"Comment\x00a 16-bit test")]
    iccp = b"test profile\x00\x00" + zlib.compress(icc)
    ok, png = cv2.imencode(".png", _deep(_bgr()))
    assert ok
    path = tmp_path / "meta16.png"
    path.write_bytes(png_with_chunks(png.tobytes(), [(b"iCCP", iccp), (b"eXIf", exif.tobytes()[6:]), *meta]))
    photo = read_image(path)
    assert photo.bit_depth == 16 and photo.icc_profile == icc
    out = tmp_path / "out16.png"
    write_image(out, photo, _edited(photo.bgr))
    with Image.open(out) as im:
        im.verify()  # every chunk's CRC
    with Image.open(out) as im:
        assert im.info["icc_profile"] == icc
        assert im.info["gamma"] == pytest.approx(0.45455)
        assert im.info["Comment"] == "a 16-bit test"
        assert im.info["dpi"] == pytest.approx((3780 * 0.0254, 2835 * 0.0254), rel=1e-3)
        assert im.getexif()[MAKE] == "fastwarp-test" and im.getexif()[MODEL] == "deep"
    assert np.array_equal(cv2.imread(str(out), cv2.IMREAD_UNCHANGED), _edited(photo.bgr))
    kinds = [k for k, _ in png_chunks(out.read_bytes())]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and kinds.index(b"iCCP") < kinds.index(b"IDAT")


#: The transpose that undoes each orientation's correction (Pillow's exif_transpose turns 6 by
#: ROTATE_270 and 8 by ROTATE_90; the others are their own inverses).
_STORE = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
          7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def _oriented_jpeg(path, upright_rgb: np.ndarray, orientation: int) -> None:
    """Store ``upright_rgb`` turned so that EXIF ``orientation`` turns it upright again."""
    im = Image.fromarray(upright_rgb)
    stored = im if _STORE[orientation] is None else im.transpose(_STORE[orientation])
    exif = Image.Exif()
    exif[ORIENT], exif[MAKE], exif[MODEL] = orientation, "fastwarp-test", "rotated"
    stored.save(path, quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_once_and_reset_to_1(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    _oriented_jpeg(path, _bgr(TALL)[..., ::-1], orientation)
    with Image.open(path) as im:  # Pillow's exif_transpose is the reference
        assert im.getexif()[ORIENT] == orientation
        upright = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))[..., ::-1]
    photo = read_image(path)
    assert photo.orientation == orientation
    assert np.array_equal(photo.bgr, upright)
    assert photo.bgr.shape[:2] == (613, 500)  # upright, whatever the stored orientation
    for suffix in (".jpg", ".png", ".webp"):
        out = tmp_path / f"out{orientation}{suffix}"
        write_image(out, photo, photo.bgr)
        with Image.open(out) as im:
            exif = im.getexif()
            assert exif[ORIENT] == 1, suffix
            assert exif[MAKE] == "fastwarp-test" and exif[MODEL] == "rotated", suffix
            assert im.size == (500, 613), suffix  # not turned a second time by a viewer either
            assert ImageOps.exif_transpose(im).size == (500, 613)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_of_16_bit_png_and_tiff(tmp_path, orientation):
    """16-bit pixels come from OpenCV (PNG) and tifffile (TIFF), which leave the orientation
    alone (Pillow's TIFF loader turns its own 8-bit pixels as it loads them): turned once."""
    import tifffile

    deep = _deep(_bgr(TALL))
    turn = {3: lambda a: a[::-1, ::-1], 6: lambda a: np.rot90(a, -1), 8: lambda a: np.rot90(a, 1)}[orientation]
    exif = Image.Exif()
    exif[ORIENT] = orientation
    ok, png = cv2.imencode(".png", deep)
    (tmp_path / "o.png").write_bytes(png_with_chunks(png.tobytes(), [(b"eXIf", exif.tobytes()[6:])]))
    tifffile.imwrite(tmp_path / "o.tif", deep[..., ::-1], photometric="rgb",
                     extratags=[(ORIENT, 3, 1, orientation, True)])
    for name in ("o.png", "o.tif"):
        photo = read_image(tmp_path / name)
        assert photo.bit_depth == 16 and np.array_equal(photo.bgr, turn(deep)), name
        with Image.open(tmp_path / name) as im:  # Pillow's upright size
            assert ImageOps.exif_transpose(im).size == photo.bgr.shape[1::-1], name
        write_image(tmp_path / f"out_{name}", photo, photo.bgr)
        with Image.open(tmp_path / f"out_{name}") as im:
            assert im.getexif().get(ORIENT, 1) == 1, name


def test_orientation_reset_touches_only_the_orientation():
    exif = Image.Exif()
    exif[ORIENT], exif[MAKE] = 6, "x"
    exif.get_ifd(0x8769)[0x9003] = "2024:01:02 03:04:05"  # DateTimeOriginal, in the Exif sub-IFD
    raw = exif.tobytes()
    reset = orientation_reset(raw)
    assert len(reset) == len(raw) and sum(a != b for a, b in zip(reset, raw)) == 1
    back = Image.Exif()
    back.load(reset)
    assert back[ORIENT] == 1 and back[MAKE] == "x" and back.get_ifd(0x8769)[0x9003] == "2024:01:02 03:04:05"


def test_truncated_and_corrupt_files_are_one_line_errors(tmp_path, monkeypatch):
    jpeg = TALL.read_bytes()
    png = PHOTO.read_bytes()
    cases = {
        "cut.jpg": (jpeg[: len(jpeg) // 2], r"truncated JPEG"),
        "cut_end.jpg": (jpeg[:-200], r"truncated JPEG"),
        "cut.png": (png[: len(png) // 2], r"truncated PNG \(the file ends inside the IDAT chunk\)"),
        "no_iend.png": (png[:-12], r"truncated PNG \(the file ends after the IDAT chunk, before IEND\)"),
        "flipped.png": (png[:5000] + bytes([png[5000] ^ 0x40]) + png[5001:],
                        r"corrupt PNG \(bad CRC in the IDAT chunk\)"),
        "text.png": (b"this is not a PNG" * 20, r"not an image file"),
    }
    ok, deep = cv2.imencode(".png", _deep(_bgr()))
    cases["cut16.png"] = (deep.tobytes()[: deep.size * 2 // 3], r"truncated PNG")
    # A module that lets Pillow decode truncated files (gradio's dependencies do) changes nothing here.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for name, (data, pattern) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageReadError, match=rf"^cannot read image {path}: {pattern}") as exc:
            read_image(path)
        _one_line(exc)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored as it was
    with pytest.raises(ImageReadError, match="No such file"):
        read_image(tmp_path / "missing.png")


def test_palette_and_what_a_format_cannot_hold(tmp_path):
    rgb = _bgr()[..., ::-1]
    pal = Image.fromarray(rgb).quantize(64)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    photo = read_image(tmp_path / "p.png")
    ref = np.asarray(Image.open(tmp_path / "p.png").convert("RGBA"))
    assert np.array_equal(photo.bgr, ref[..., 2::-1]) and np.array_equal(photo.alpha, ref[..., 3])
    write_image(tmp_path / "p_out.png", photo, photo.bgr)
    assert Image.open(tmp_path / "p_out.png").mode == "RGBA"  # edited and written as RGB(A)

    deep = Photo(bgr=_deep(_bgr()), alpha=np.full(rgb.shape[:2], 65535, np.uint16), icc_profile=_srgb_icc())
    notes = write_image(tmp_path / "d.jpg", deep, deep.bgr)
    assert notes == ["JPEG holds 8 bits per channel: the 16-bit image is written as 8-bit",
                     "JPEG has no alpha channel: the alpha channel is not written"]
    assert np.abs(cv2.imread(str(tmp_path / "d.jpg")).astype(int) - to_uint8(deep.bgr)).mean() < 2
    notes = write_image(tmp_path / "d.bmp", deep, deep.bgr)
    assert any("BMP holds no ICC profile" in n for n in notes)
    with pytest.raises(ValueError, match="cannot write images of type '.gif'"):
        write_image(tmp_path / "d.gif", deep, deep.bgr)
    with pytest.raises(ValueError, match="not the photo's"):
        write_image(tmp_path / "d.png", deep, to_uint8(deep.bgr))


def test_to_uint8_and_to_grey_are_exact_where_they_must_be():
    v = np.arange(65536, dtype=np.uint16)
    assert np.array_equal(to_uint8(v), np.rint(v / 257).astype(np.uint8)) and to_uint8(v)[-1] == 255
    assert np.array_equal(to_uint8(np.arange(256, dtype=np.uint16) * 257), np.arange(256))
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        g = np.arange(top + 1, dtype=dtype)[:, None]
        assert np.array_equal(to_grey(np.repeat(g[..., None], 3, 2))[:, 0], g[:, 0])  # equal channels: exact
    bgr = _bgr()
    assert np.abs(to_grey(bgr).astype(int) - cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)).max() <= 1


# --- fastwarp edit, end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def edit():
    """``edit(argv) -> (status, stdout + stderr)``: ``fastwarp edit`` through ``main()`` in
    this process, the runs sharing one editor per configuration (loading the models once)."""
    from fastwarp import expression_editor as ee
    from fastwarp.cli import main

    made: dict = {}

    class Shared(ee.ExpressionEditor):
        def close(self) -> None:  # closed once, at the end of the module
            pass

    def shared(*args, **kwargs):
        assert kwargs.get("max_faces") == 4  # what the command asks for by default
        key = repr((args, sorted(kwargs.items())))
        if key not in made:
            made[key] = Shared(*args, **kwargs)
        return made[key]

    patch = pytest.MonkeyPatch()
    patch.setattr(ee, "ExpressionEditor", shared)

    def run(*argv) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            status = main(["edit", *map(str, argv), "--device", "cpu"])
        return status, out.getvalue()

    yield run
    patch.undo()
    for editor in made.values():
        ee.ExpressionEditor.close(editor)


def _face(image8: np.ndarray) -> np.ndarray:
    from test_cli import _face_region, _landmarks

    return _face_region(image8, _landmarks(image8), grow=3)


def _check_edit(before: np.ndarray, after: np.ndarray, face: np.ndarray, threshold: int = 8) -> None:
    """Outside ``face`` bit-identical; inside, a visible change."""
    assert after.shape == before.shape and after.dtype == before.dtype
    assert np.array_equal(after[~face], before[~face])
    diff = np.abs(after.astype(np.int64) - before.astype(np.int64))
    diff = diff.max(-1) if diff.ndim == 3 else diff
    assert (diff[face] > threshold).mean() > 0.01, "the face did not change"


@pytest.mark.slow
def test_edit_rgba_png_keeps_alpha_and_everything_outside_the_face(edit, tmp_path):
    src = _bgr()
    alpha = _alpha(src.shape)
    path, out = tmp_path / "rgba.png", tmp_path / "out.png"
    Image.fromarray(np.dstack([src[..., ::-1], alpha]), "RGBA").save(path)
    status, text = edit(path, "--au", "AU12=+2", "-o", out)
    assert status == 0, text
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.shape == (*src.shape[:2], 4)
    assert np.array_equal(back[..., 3], alpha)  # alpha bit for bit, everywhere
    _check_edit(src, back[..., :3], _face(src))


@pytest.mark.slow
def test_edit_16_bit_png_stays_16_bit_and_outside_the_face_bit_identical(edit, tmp_path):
    src = _bgr()
    deep = _deep(src)
    path, out, same = tmp_path / "rgb16.png", tmp_path / "out16.png", tmp_path / "same16.png"
    assert cv2.imwrite(str(path), deep)
    status, text = edit(path, "--au", "AU12=+2", "-o", out)
    assert status == 0, text
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16
    _check_edit(deep, back, _face(to_uint8(deep)), threshold=8 * 257)
    assert edit(path, "--au", "AU12=+0", "-o", same)[0] == 0  # no AU changed: the very input
    assert np.array_equal(cv2.imread(str(same), cv2.IMREAD_UNCHANGED), deep)


@pytest.mark.slow
def test_edit_grey_png_and_jpeg_stay_one_channel(edit, tmp_path):
    grey = cv2.cvtColor(_bgr(), cv2.COLOR_BGR2GRAY)
    for name in ("grey.png", "grey.jpg"):
        path, out = tmp_path / name, tmp_path / f"out_{name}"
        Image.fromarray(grey).save(path)
        status, text = edit(path, "--au", "AU12=+2", "-o", out)
        assert status == 0, text
        with Image.open(out) as im:
            assert im.mode == "L", name
        back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert back.ndim == 2 and back.shape == grey.shape
        if name.endswith(".png"):
            _check_edit(grey, back, _face(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)))


@pytest.mark.slow
def test_edit_keeps_icc_profile_png_and_jpeg(edit, tmp_path):
    icc = _srgb_icc()
    rgb = _bgr()[..., ::-1]
    for name in ("icc.png", "icc.jpg"):
        path, out = tmp_path / name, tmp_path / f"out_{name}"
        Image.fromarray(rgb).save(path, icc_profile=icc)
        status, text = edit(path, "--au", "AU12=+2", "-o", out)
        assert status == 0, text
        with Image.open(out) as im:
            assert im.info.get("icc_profile") == icc, name


@pytest.mark.slow
def test_edit_exif_rotated_jpeg_edits_the_upright_photo(edit, tmp_path):
    rotated, upright = tmp_path / "rotated.jpg", tmp_path / "upright.png"
    _oriented_jpeg(rotated, _bgr(TALL)[..., ::-1], 6)
    with Image.open(rotated) as im:
        assert im.size == (613, 500)  # stored on its side
        ImageOps.exif_transpose(im).save(upright)  # Pillow's upright pixels, lossless
    out_rotated, out_upright = tmp_path / "out_rotated.png", tmp_path / "out_upright.png"
    for src, out in ((rotated, out_rotated), (upright, out_upright)):
        status, text = edit(src, "--au", "AU12=+2", "-o", out)
        assert status == 0 and "AU12" in text, text
    a, b = cv2.imread(str(out_rotated), cv2.IMREAD_UNCHANGED), cv2.imread(str(out_upright), cv2.IMREAD_UNCHANGED)
    assert a.shape == (613, 500, 3)
    assert np.array_equal(a, b)  # the same edit as of the upright photo: orientation applied once
    assert not np.array_equal(a, cv2.imread(str(upright)))
    with Image.open(out_rotated) as im:
        exif = im.getexif()
        assert exif[ORIENT] == 1 and exif[MAKE] == "fastwarp-test" and exif[MODEL] == "rotated"


@pytest.mark.slow
def test_console_script_edits_a_16_bit_rgba_png_quietly(tmp_path):
    """The installed entry point (a real process): stdout names the output, stderr stays empty."""
    src = _bgr()
    deep = np.dstack([_deep(src), (_alpha(src.shape).astype(np.uint16) * 257) ^ 0x0F0F])
    path, out = tmp_path / "rgba16.png", tmp_path / "out.png"
    assert cv2.imwrite(str(path), deep)
    from test_cli_errors import ENV, _fastwarp

    proc = subprocess.run(_fastwarp() + ["edit", str(path), "--au", "AU12=+2", "-o", str(out), "--device", "cpu"],
                          capture_output=True, text=True, env=ENV, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert proc.stdout.splitlines()[-1] == f"wrote {out.resolve()}"
    back = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and back.shape == deep.shape
    assert np.array_equal(back[..., 3], deep[..., 3])
    _check_edit(deep[..., :3], back[..., :3], _face(src), threshold=8 * 257)
