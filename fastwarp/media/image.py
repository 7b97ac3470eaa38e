"""Image files in and out, kept whole (docs/design.md, "Media in and out").

:func:`read_image` decodes a photo into a :class:`Photo`: the colour pixels as BGR (the
editor's layout) at the file's own bit depth (8 or 16 bits), the alpha channel apart, whether
it was grey, its ICC profile, EXIF, XMP and the PNG chunks that describe it; the EXIF
orientation is applied to the pixels once (Pillow's ``ImageOps.exif_transpose``) and reset to
1 in the EXIF kept. :func:`write_image` writes edited colour pixels back with all of that:
the alpha bit for bit, the bit depth, grey as one channel, the ICC profile and EXIF (and the
PNG's own gamma, chromaticity, sRGB, resolution and text chunks).

Pillow decodes and encodes, except for what it cannot hold: 16-bit colour (Pillow opens a
48-bit PNG as 8-bit RGB) and 16-bit grey with alpha. Those pixels go through OpenCV
(``IMREAD_UNCHANGED``, ``imencode``), after Pillow has decoded the whole file once to prove
it is complete; a 16-bit colour PNG gets its metadata chunks from :func:`png_with_chunks` and
a 16-bit colour TIFF its ICC profile from tifffile. A truncated or corrupt file is an
:class:`ImageReadError`, never a partial image (Pillow's ``LOAD_TRUNCATED_IMAGES`` is held
False while reading, and every chunk CRC of a PNG is checked).

Formats written (:data:`WRITABLE_SUFFIXES`): PNG, JPEG (quality 95), TIFF, WebP (lossless)
and BMP. Where the output format cannot hold something of the input (alpha in a JPEG,
16 bits in a JPEG, WebP or BMP, an ICC profile in a BMP), :func:`write_image` returns a note
saying what was not kept. Palette images ('P') are edited and written as RGB (RGBA when
they have transparency); 1-bit images as 8-bit grey.
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .image_meta import (_EXIF_HEADER, _ORIENTATION, CARRIED_PNG_CHUNKS, PNG_SIGNATURE, _iccp_chunk, _orient,
                         _xmp_orientation_reset, orientation_reset, png_chunks, png_with_chunks)

__all__ = ["ImageReadError", "Photo", "WRITABLE_SUFFIXES", "read_image", "write_image", "to_uint8", "to_grey",
           "png_chunks", "png_with_chunks", "orientation_reset"]

#: Output suffixes :func:`write_image` writes (the format is chosen by the suffix).
WRITABLE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                     ".webp": "WEBP", ".bmp": "BMP"}
#: JPEG quality of :func:`write_image` (what ``cv2.imwrite`` used before).
JPEG_QUALITY = 95



class ImageReadError(ValueError):
    """A file that is not a complete image this module can read: its message is one line,
    ``cannot read image PATH: why`` (e.g. ``truncated JPEG``)."""


@dataclass
class Photo:
    """A decoded photo, kept whole for :func:`write_image`.

    Attributes:
        bgr: ``[H, W, 3]`` uint8 or uint16 BGR, upright (EXIF orientation applied). A grey
            photo's one channel repeated three times.
        alpha: ``[H, W]``, ``bgr``'s dtype, or None (no alpha channel); never edited.
        grey: the file had one colour channel (written back as one).
        icc_profile: the ICC profile's bytes, or None.
        exif: EXIF (``b"Exif\\0\\0"`` + TIFF structure) with Orientation 1, or None.
        xmp: XMP packet bytes (orientation set to 1), or None.
        format: Pillow's name of the input format (``"PNG"``, ``"JPEG"``, ``"TIFF"``, ...).
        orientation: the EXIF orientation (1..8) that was applied to the pixels.
        png_chunks: ``(type, data)`` of the input PNG's ancillary chunks that
            :func:`write_image` copies into a PNG output (:data:`CARRIED_PNG_CHUNKS`).
        dpi: ``(x, y)`` resolution or None.
        comment: a JPEG comment, or None.
        notes: what reading did not keep (e.g. the later frames of an animation).
        path: the file read.
    """

    bgr: np.ndarray
    alpha: np.ndarray | None = None
    grey: bool = False
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    format: str = ""
    orientation: int = 1
    png_chunks: list[tuple[bytes, bytes]] = field(default_factory=list)
    dpi: tuple[float, float] | None = None
    comment: bytes | None = None
    notes: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def bit_depth(self) -> int:
        """Bits per channel: 8 or 16."""
        return 16 if self.bgr.dtype == np.uint16 else 8

    @property
    def bgr8(self) -> np.ndarray:
        """``bgr`` as uint8 (:func:`to_uint8`; the array itself when it is uint8): what face
        detection and the networks see."""
        return to_uint8(self.bgr)

    def describe(self) -> str:
        """E.g. ``"16-bit RGBA PNG"``."""
        kind = ("grey" if self.grey else "RGB") + ("+alpha" if self.grey and self.alpha is not None else
                                                    "A" if self.alpha is not None else "")
        return f"{self.bit_depth}-bit {kind} {self.format}"


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint16 ``v`` -> uint8 ``round(v / 257)`` (65535 -> 255); uint8 comes back as it is.

    Raises:
        TypeError: another dtype.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype != np.uint16:
        raise TypeError(f"expected a uint8 or uint16 image, got {image.dtype}")
    return np.rint(image / 257.0).astype(np.uint8)


def to_grey(bgr: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` BGR -> ``[H, W]`` luma ``0.299 R + 0.587 G + 0.114 B``, rounded, same
    dtype; a pixel whose three channels are equal keeps its value exactly."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    top = 65535 if bgr.dtype == np.uint16 else 255
    return np.clip(np.rint(0.299 * r + 0.587 * g + 0.114 * b), 0, top).astype(bgr.dtype)


# --- reading ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _strict_loading():
    """Pillow's LOAD_TRUNCATED_IMAGES off while reading (another module may have set it):
    a truncated file raises instead of decoding as grey."""
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def _why(fmt: str | None, exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = fmt or "image"
    if "truncated" in text.lower():
        return f"truncated {name} ({text})"
    return f"corrupt {name} ({text})"


_STRUCTURAL_TIFF_TAGS = {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 282, 283, 284,
                         290, 291, 292, 293, 296, 317, 320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 530, 531,
                         532, 700, 34377, 34675}


def _exif_of(im, fmt: str, oriented: bool = False) -> bytes | None:
    raw = im.info.get("exif")
    if raw:
        return raw if raw.startswith(_EXIF_HEADER) else _EXIF_HEADER + raw
    if fmt != "TIFF":
        return None
    # A TIFF's EXIF is its own IFD: keep the descriptive tags (make, model, date, ...) and
    # the Exif and GPS sub-IFDs, not the ones that describe its pixel layout.
    exif = im.getexif()
    kept = {k: v for k, v in exif.items() if k not in _STRUCTURAL_TIFF_TAGS}
    sub = [k for k in (0x8769, 0x8825) if k in exif]
    if not kept and not sub and not oriented:
        return None
    from PIL import Image

    out = Image.Exif()
    if oriented:  # (Pillow's TIFF loader dropped the tag when it turned the pixels)
        out[_ORIENTATION] = 1
    for k, v in kept.items():
        if k not in sub:
            out[k] = v
    for k in sub:
        out[k] = exif.get_ifd(k)
    return out.tobytes()


def _png_depth_and_colour(chunks: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    ihdr = chunks[0][1]
    return ihdr[8], ihdr[9]


def read_image(path) -> Photo:
    """Decode an image file into a :class:`Photo` (every format Pillow reads; 16-bit PNG and
    TIFF at 16 bits).

    The whole file is decoded before anything is returned: a truncated JPEG, a PNG with a
    bad chunk CRC or missing its end, or any decoder error is an :class:`ImageReadError`.
    The EXIF orientation is applied to the pixels (and alpha) once, as
    ``ImageOps.exif_transpose`` does, and the EXIF (and XMP) kept says orientation 1.
    Palette images come back RGB (RGBA with transparency); 1-bit ones as 8-bit grey; of
    an animation or multi-page file the first frame (with a note).

    Raises:
        ImageReadError: not readable (missing, a directory, permissions), not an image,
            truncated or corrupt, or a pixel type fastwarp cannot edit (32-bit float, or
            32-bit integers beyond 16 bits). CMYK is converted to RGB (with a note), not
            refused.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    prefix = f"cannot read image {path}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{prefix}: {exc.strerror or exc}") from None
    chunks: list[tuple[bytes, bytes]] = []
    if data.startswith(PNG_SIGNATURE):
        try:
            chunks = png_chunks(data)
        except ValueError as exc:
            raise ImageReadError(f"{prefix}: {exc}") from None
    fmt = None
    try:
        with _strict_loading(), Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            orientation = int(im.getexif().get(_ORIENTATION, 1) or 1)  # (before load: Pillow's TIFF
            im.load()                                                  # loader turns the pixels itself)
            return _decode(im, data, chunks, path, orientation if orientation in range(1, 9) else 1)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(f"{prefix}: not an image file (Pillow does not recognise its format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{prefix}: {' '.join(str(exc).split())}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError) as exc:
        raise ImageReadError(f"{prefix}: {_why(fmt, exc)}") from None


def _deep_pixels(data: bytes, fmt: str, orientation: int, prefix: str) -> np.ndarray:
    """The stored (not yet oriented) pixels of a 16-bit PNG or TIFF, uint16 ``[H, W]`` or
    ``[H, W, C]`` with colour as BGR(A). PNG: OpenCV (it leaves the orientation to us). TIFF:
    tifffile, which returns the stored pixels as they are; OpenCV's TIFF decoder turns them
    by the TIFF orientation itself for 2..4 and fails for 5..8, so it stands in only for the
    compressions tifffile cannot decode without imagecodecs (LZW, JPEG) and orientation 1."""
    import cv2

    if fmt == "TIFF":
        try:
            import tifffile

            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                page = tif.pages[0]
                pixels = page.asarray()
                if int(page.planarconfig) == 2 and pixels.ndim == 3:  # separate planes: [C, H, W]
                    pixels = np.moveaxis(pixels, 0, -1)
            if pixels.ndim == 3 and pixels.shape[2] >= 3:
                pixels = pixels[..., [2, 1, 0, *range(3, pixels.shape[2])]]
            pixels = np.ascontiguousarray(pixels)
        except Exception as exc:  # noqa: BLE001 (tifffile raises ValueError, KeyError, ... for a codec it lacks)
            if orientation != 1:
                raise ImageReadError(f"{prefix}: a 16-bit TIFF with EXIF orientation {orientation} needs tifffile "
                                     f"to decode it ({' '.join(str(exc).split())})") from None
            pixels = None
    else:
        pixels = None
    if pixels is None:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype.kind != "u" or pixels.dtype.itemsize != 2:
        raise ImageReadError(f"{prefix}: its 16-bit pixels cannot be decoded")
    return pixels.astype(np.uint16, copy=False)


def _decode(im, data: bytes, chunks: list[tuple[bytes, bytes]], path: Path, orientation: int) -> Photo:
    fmt = im.format or "image"
    prefix = f"cannot read image {path}"
    notes = []
    if getattr(im, "n_frames", 1) > 1:
        notes.append(f"{path.name} has {im.n_frames} frames: the first is edited")
    # Pillow's TIFF loader applies the orientation to its pixels as it loads them (and drops
    # the tag); every other loader, and OpenCV's IMREAD_UNCHANGED, leaves it to us.
    turned_by_pillow = fmt == "TIFF" and orientation != 1 and _ORIENTATION not in im.getexif()
    icc = im.info.get("icc_profile") or None
    mode = im.mode

    # 16-bit files whose pixels Pillow cannot hold: colour, or grey with alpha.
    deep = False
    if chunks:
        depth, colour = _png_depth_and_colour(chunks)
        deep = depth == 16 and colour in (2, 4, 6)
    elif fmt == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        deep = max(bits) == 16 and int(im.tag_v2.get(277, 1)) >= 2
    if deep:
        pixels = _deep_pixels(data, fmt, orientation, prefix)
        stored = im.size[::-1] if turned_by_pillow and orientation >= 5 else im.size  # (W, H) as stored
        if pixels.shape[1::-1] != stored:
            raise ImageReadError(f"{prefix}: its 16-bit pixels ({pixels.shape[1]}x{pixels.shape[0]}) are not "
                                 f"the size its header says ({im.size[0]}x{im.size[1]})")
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        grey = _png_depth_and_colour(chunks)[1] == 4 if chunks else int(im.tag_v2.get(262, 2)) in (0, 1)
        bgr, alpha = pixels[..., :3], (pixels[..., 3] if pixels.shape[2] == 4 else None)
        if pixels.shape[2] == 2:  # grey + alpha
            bgr, alpha = np.repeat(pixels[..., :1], 3, 2), pixels[..., 1]
        elif pixels.shape[2] == 1:
            bgr = np.repeat(pixels, 3, 2)
    else:
        if mode == "CMYK" and icc:  # a CMYK profile does not describe the RGB pixels written
            notes.append(f"{path.name} is CMYK: edited and written as RGB, without its CMYK ICC profile")
            icc = None
        if mode in ("P", "PA"):
            im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
        elif mode == "1":
            im = im.convert("L")
        elif mode in ("RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGBA" if mode == "RGBa" else "RGB")
        elif mode == "La":
            im = im.convert("LA")
        elif mode in ("RGB", "L") and "transparency" in im.info:  # a colour-key tRNS: an alpha channel
            im = im.convert("RGBA" if mode == "RGB" else "LA")
        elif mode == "F":
            raise ImageReadError(f"{prefix}: 32-bit float images are not supported (use 8 or 16 bits)")
        arr = np.asarray(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            if arr.min() < 0 or arr.max() > 65535:
                raise ImageReadError(f"{prefix}: 32-bit integer pixels beyond 16 bits are not supported")
            arr = arr.astype(np.uint16)
            mode = "L"
        grey = mode in ("L", "LA")
        if grey:
            bgr = np.repeat(arr[..., :1] if arr.ndim == 3 else arr[..., None], 3, 2)
            alpha = arr[..., 1] if mode == "LA" else None
        else:
            bgr = arr[..., 2::-1]
            alpha = arr[..., 3] if mode == "RGBA" else None

    if turned_by_pillow and not deep:
        orientation_to_apply = 1
    else:
        orientation_to_apply = orientation
    exif = _exif_of(im, fmt, orientation != 1)
    if exif is not None:
        exif = orientation_reset(exif)
    xmp = im.info.get("xmp") or None
    if isinstance(xmp, str):
        xmp = xmp.encode()
    if xmp is not None:
        xmp = _xmp_orientation_reset(xmp)
    dpi = im.info.get("dpi")
    carried = []
    if chunks:
        # Palette-bound chunks (PLTE, tRNS, bKGD, hIST, sPLT) stay behind: a palette image
        # is written as RGB(A). sBIT's size follows the colour type: kept unless it was 'P'.
        palette = _png_depth_and_colour(chunks)[1] == 3
        for kind, body in chunks:
            if kind in CARRIED_PNG_CHUNKS and not (kind == b"sBIT" and palette):
                if kind == b"pHYs" and orientation >= 5:  # the image turned by 90°: x and y swap
                    body = body[4:8] + body[:4] + body[8:]
                if kind == b"iTXt" and body.startswith(b"XML:com.adobe.xmp\x00"):
                    body = _xmp_orientation_reset(body)
                carried.append((kind, body))
    if dpi is not None and orientation >= 5:
        dpi = (dpi[1], dpi[0])
    comment = im.info.get("comment") or None
    if isinstance(comment, str):
        comment = comment.encode()
    return Photo(bgr=_orient(bgr, orientation_to_apply),
                 alpha=None if alpha is None else _orient(alpha, orientation_to_apply),
                 grey=grey, icc_profile=icc, exif=exif, xmp=xmp, format=fmt, orientation=orientation,
                 png_chunks=carried, dpi=tuple(float(v) for v in dpi) if dpi else None, comment=comment, notes=notes,
                 path=path)


# --- writing ---------------------------------------------------------------------------------

def _format_of(path: Path) -> str:
    fmt = WRITABLE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write images of type '{path.suffix or '(none)'}' (use "
                         f"{', '.join(sorted(set(WRITABLE_SUFFIXES)))})")
    return fmt


def write_image(path, photo: Photo | None, bgr: np.ndarray) -> list[str]:
    """Write ``bgr`` as ``photo`` was: its alpha, bit depth, grey, ICC profile, EXIF and XMP
    (and a PNG's metadata chunks) go with the edited colour pixels. The format is chosen by
    ``path``'s suffix (:data:`WRITABLE_SUFFIXES`).

    Args:
        path: the file to write (overwritten; wrap in an atomic rename for safety).
        photo: what :func:`read_image` gave (None: a plain image without metadata).
        bgr: ``[H, W, 3]`` BGR, uint8 or uint16 (``photo.bgr``'s dtype and size), the
            edited colour pixels.
    Returns:
        Notes, one line each, on what the output format could not keep (alpha in a JPEG,
        16 bits in a JPEG, WebP or BMP, metadata in a BMP, ...); empty when all was kept.
    Raises:
        ValueError: an unknown suffix, or ``bgr`` not ``[H, W, 3]`` uint8/uint16 matching
            ``photo``; OSError: the file cannot be written.
    """
    path = Path(path)
    fmt = _format_of(path)
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected [H, W, 3] uint8 or uint16 BGR, got {bgr.shape} {bgr.dtype}")
    photo = photo or Photo(bgr=bgr)
    if bgr.shape != photo.bgr.shape or bgr.dtype != photo.bgr.dtype:
        raise ValueError(f"the pixels {bgr.shape} {bgr.dtype} are not the photo's {photo.bgr.shape} "
                         f"{photo.bgr.dtype}")
    notes: list[str] = []
    alpha, grey = photo.alpha, photo.grey
    deep = bgr.dtype == np.uint16
    if deep and fmt not in ("PNG", "TIFF"):
        notes.append(f"{fmt} holds 8 bits per channel: the 16-bit image is written as 8-bit")
        bgr, alpha, deep = to_uint8(bgr), None if alpha is None else to_uint8(alpha), False
    if alpha is not None and fmt == "JPEG":
        notes.append("JPEG has no alpha channel: the alpha channel is not written")
        alpha = None
    if grey and fmt == "WEBP":
        grey = False  # (WebP decodes to RGB anyway: no note)
    if alpha is not None and fmt == "BMP":  # (Pillow writes no BMP alpha that readers read back)
        notes.append("BMP keeps no alpha channel here: the alpha channel is not written (use .png)")
        alpha = None

    icc, exif, xmp = photo.icc_profile, photo.exif, photo.xmp
    if fmt == "BMP":
        lost = [n for n, v in (("ICC profile", icc), ("EXIF", exif), ("XMP", xmp)) if v]
        if lost:
            notes.append(f"BMP holds no {' or '.join(lost)}: not written")
        icc = exif = xmp = None

    if fmt == "PNG":
        encoded = _encode_png(bgr, alpha, grey, deep, notes)
        extra = list(photo.png_chunks)
        kinds = {k for k, _ in extra}
        if icc and b"iCCP" not in kinds and b"sRGB" not in kinds:
            extra.insert(0, (b"iCCP", _iccp_chunk(icc)))
        if exif:
            extra.append((b"eXIf", exif[len(_EXIF_HEADER):]))
        if xmp and not any(k == b"iTXt" and b.startswith(b"XML:com.adobe.xmp\x00") for k, b in extra):
            extra.append((b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
        if deep and grey and alpha is not None:  # written as RGBA (see _encode_png): grey's sBIT no longer fits
            extra = [(k, b) for k, b in extra if k != b"sBIT"]
        if photo.dpi and b"pHYs" not in kinds:
            ppm = [max(1, round(v / 0.0254)) for v in photo.dpi]
            extra.append((b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
        Path(path).write_bytes(png_with_chunks(encoded, extra) if extra else encoded)
        return notes

    if deep and not (grey and alpha is None):  # 16-bit colour (or grey + alpha) TIFF
        _write_deep_tiff(path, bgr, alpha, grey, icc, exif, notes)
        return notes

    im = _pillow_image(bgr, alpha, grey)
    kwargs: dict = {}
    if icc:
        kwargs["icc_profile"] = icc
    if exif:
        kwargs["exif"] = exif
    if xmp and fmt in ("JPEG", "WEBP"):
        kwargs["xmp"] = xmp
    if photo.dpi and fmt in ("JPEG", "TIFF", "BMP"):
        kwargs["dpi"] = photo.dpi
    if fmt == "JPEG":
        kwargs["quality"] = JPEG_QUALITY
        if photo.comment:
            kwargs["comment"] = photo.comment
    elif fmt == "WEBP":
        kwargs.update(lossless=True, exact=True)  # exact: colour under transparent pixels kept too
    elif fmt == "TIFF":
        kwargs["compression"] = "tiff_deflate"
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    Path(path).write_bytes(buf.getvalue())
    return notes


def _pillow_image(bgr: np.ndarray, alpha, grey: bool):
    """8-bit (or 16-bit grey) pixels as a Pillow image: L / LA for grey, RGB / RGBA for colour."""
    from PIL import Image

    if grey:
        g = to_grey(bgr)
        return Image.fromarray(g) if alpha is None else Image.fromarray(np.dstack([g, alpha]), "LA")
    rgb = bgr[..., ::-1]
    return Image.fromarray(np.ascontiguousarray(rgb if alpha is None else np.dstack([rgb, alpha])),
                           "RGB" if alpha is None else "RGBA")


def _encode_png(bgr: np.ndarray, alpha, grey: bool, deep: bool, notes: list[str]) -> bytes:
    """The pixels alone as a PNG (no metadata chunks): Pillow where it holds them (8-bit,
    16-bit grey), OpenCV for 16-bit colour and 16-bit grey + alpha."""
    if deep and not (grey and alpha is None):
        import cv2

        if grey:  # OpenCV writes no two-channel PNG
            notes.append("a 16-bit grey PNG with alpha is written as 16-bit RGBA")
        arr = bgr if alpha is None else np.dstack([bgr, alpha])
        ok, buf = cv2.imencode(".png", arr)
        if not ok:
            raise OSError("OpenCV could not encode the 16-bit PNG")
        return buf.tobytes()
    im = _pillow_image(bgr, alpha, grey)
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def _write_deep_tiff(path: Path, bgr, alpha, grey: bool, icc, exif, notes: list[str]) -> None:
    """A 16-bit colour (or grey + alpha) TIFF: tifffile writes it with its ICC profile (tag
    34675); EXIF is not written there (tifffile writes no Exif IFD)."""
    if grey:
        channels = [to_grey(bgr)]
    else:
        channels = [bgr[..., 2], bgr[..., 1], bgr[..., 0]]
    if alpha is not None:
        channels.append(alpha)
    arr = np.ascontiguousarray(np.stack(channels, -1))
    try:
        import tifffile
    except ImportError:
        import cv2

        notes.append("a 16-bit colour TIFF is written without its ICC profile and EXIF (install tifffile "
                     "to keep the ICC profile)")
        order = arr[..., [2, 1, 0, 3][:arr.shape[2]]] if arr.shape[2] >= 3 else arr
        if not cv2.imwrite(str(path), order):
            raise OSError("OpenCV could not write the 16-bit TIFF")
        return
    if exif:
        notes.append("a 16-bit colour TIFF is written without its EXIF (tifffile writes no EXIF)")
    tifffile.imwrite(path, arr, photometric="minisblack" if grey else "rgb",
                     extrasamples=["unassalpha"] if alpha is not None else None,
                     iccprofile=icc, compression="zlib")
