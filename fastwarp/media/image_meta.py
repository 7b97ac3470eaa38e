"""Image metadata helpers of :mod:`fastwarp.media.image`: PNG chunks (read, CRC-checked; and
spliced into a PNG that OpenCV encoded, which neither Pillow nor OpenCV can give metadata when it
holds 16-bit colour) and the EXIF / XMP orientation (applied to pixels, reset to 1 in place)."""

from __future__ import annotations

import re
import struct
import zlib

import numpy as np

__all__ = ["PNG_SIGNATURE", "CARRIED_PNG_CHUNKS", "png_chunks", "png_with_chunks", "orientation_reset"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Ancillary PNG chunks carried from a PNG input to a PNG output as they are (besides
#: iCCP, kept as it was, and eXIf, rewritten with orientation 1): colour space (gAMA,
#: cHRM, sRGB, cICP and the HDR ones), significant bits, resolution, time and text.
CARRIED_PNG_CHUNKS = (b"iCCP", b"gAMA", b"cHRM", b"sRGB", b"cICP", b"mDCV", b"cLLI", b"sBIT", b"pHYs", b"tIME",
                      b"tEXt", b"zTXt", b"iTXt")

_ORIENTATION = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"


# --- PNG chunks ------------------------------------------------------------------------------

def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG file, ``[(type, data)]`` from IHDR to IEND.

    A PNG chunk is its data's length (4 bytes, big-endian), its type (4 ASCII letters), the
    data and a CRC-32 of type + data (``zlib.crc32``). Every CRC is checked.

    Raises:
        ValueError: not a PNG, a bad CRC, or the file ends before IEND (truncated).
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    chunks, pos = [], len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            where = f"after the {chunks[-1][0].decode('latin-1')} chunk" if chunks else "in its header"
            raise ValueError(f"truncated PNG (the file ends {where}, before IEND)")
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 8 + length + 4
        if end > len(data):
            raise ValueError(f"truncated PNG (the file ends inside the {kind.decode('latin-1')} chunk)")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"corrupt PNG (bad CRC in the {kind.decode('latin-1')} chunk)")
        chunks.append((kind, body))
        pos = end
        if kind == b"IEND":
            return chunks


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))


def png_with_chunks(png: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """``png`` (an encoder's output) with ``chunks`` inserted right after IHDR, replacing any
    chunk of the same types the encoder wrote.

    Why: neither OpenCV nor Pillow can write the metadata of a 16-bit colour PNG (OpenCV's
    encoder takes no ICC profile or EXIF, and Pillow cannot hold 48-bit pixels), and Pillow
    writes no gAMA, cHRM, sRGB or pHYs of its own choosing; so the pixels come from the
    encoder and the metadata chunks are spliced in here. Right after IHDR is a valid place
    for all of them (iCCP, gAMA, cHRM, sRGB, sBIT must precede PLTE and IDAT; pHYs and eXIf
    must precede IDAT; text and tIME may be anywhere).
    """
    kinds = {k for k, _ in chunks}
    out = [PNG_SIGNATURE]
    for kind, body in png_chunks(png):
        if kind in kinds:
            continue
        out.append(_png_chunk(kind, body))
        if kind == b"IHDR":
            out.extend(_png_chunk(k, b) for k, b in chunks)
    return b"".join(out)


def _iccp_chunk(icc: bytes, name: bytes = b"ICC profile") -> bytes:
    return name + b"\x00\x00" + zlib.compress(icc)  # name, NUL, compression method 0 (deflate)


# --- EXIF and XMP orientation ----------------------------------------------------------------

def orientation_reset(exif: bytes) -> bytes:
    """EXIF bytes (with or without the ``Exif\\0\\0`` header; returned with it) whose
    Orientation tag, where there is one, is 1: the tag's value is overwritten in place, so
    every other byte (maker notes, offsets) stays as it was. EXIF this cannot walk is
    rewritten through Pillow's ``Image.Exif``."""
    body = exif[len(_EXIF_HEADER):] if exif.startswith(_EXIF_HEADER) else exif
    try:
        order = {b"II": "<", b"MM": ">"}[body[:2]]
        (ifd0,) = struct.unpack(order + "I", body[4:8])
        (count,) = struct.unpack(order + "H", body[ifd0:ifd0 + 2])
        patched = bytearray(body)
        for i in range(count):
            entry = ifd0 + 2 + 12 * i
            tag, kind, n = struct.unpack(order + "HHI", body[entry:entry + 8])
            if tag == _ORIENTATION and kind == 3 and n == 1:  # SHORT, 1 value: held in the entry itself
                patched[entry + 8:entry + 10] = struct.pack(order + "H", 1)
        return _EXIF_HEADER + bytes(patched)
    except (KeyError, struct.error, IndexError):
        from PIL import Image

        parsed = Image.Exif()
        parsed.load(_EXIF_HEADER + body)
        if _ORIENTATION in parsed:
            parsed[_ORIENTATION] = 1
        return parsed.tobytes()


_XMP_ORIENTATION = (rb'(tiff:Orientation=")([0-9])(")', rb"(<tiff:Orientation>)([0-9])(</tiff:Orientation>)")


def _xmp_orientation_reset(xmp: bytes) -> bytes:
    for pattern in _XMP_ORIENTATION:
        xmp = re.sub(pattern, rb"\g<1>1\g<3>", xmp)
    return xmp


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """``a`` ``[H, W, ...]`` turned upright as ``ImageOps.exif_transpose`` turns an image of
    this EXIF orientation (2: mirror, 3: 180°, 4: flip, 5: transpose, 6: 90° clockwise,
    7: transverse, 8: 90° counter-clockwise)."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = a.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)
