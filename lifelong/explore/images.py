"""Image utilities (there is no torchvision here): grids, PNG and GIF bytes."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import torch
from PIL import Image

HIGHLIGHT = (230, 60, 60)  # frame colour of highlighted tiles


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] floats in [0, 1] -> [N, H, W, 3] uint8 (grey repeated to RGB)."""
    arr = images.detach().float().clamp(0, 1).cpu().numpy()
    arr = (arr * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.repeat(arr, 3, axis=3) if arr.shape[3] == 1 else arr


def grid(
    images: torch.Tensor,
    ncol: int,
    pad: int = 2,
    scale: int = 1,
    highlight: torch.Tensor | list[bool] | None = None,
) -> np.ndarray:
    """Tile [N, C, H, W] row-major into an [rows*(H+pad)+pad, ...] RGB uint8 image on a light
    grey background, each image upscaled `scale` times (nearest) for crisp display.
    `highlight` [N] bools frames those tiles in red (e.g. the expert eq. 7 routes to)."""
    tiles = to_uint8(images)
    n, h, w, _ = tiles.shape
    if scale > 1:
        tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
        h, w = h * scale, w * scale
    rows = max(1, -(-n // ncol))
    out = np.full((rows * (h + pad) + pad, ncol * (w + pad) + pad, 3), 200, dtype=np.uint8)
    marked = [bool(v) for v in highlight] if highlight is not None else [False] * n
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        if marked[i]:
            out[top - pad : top + h + pad, left - pad : left + w + pad] = HIGHLIGHT
        out[top : top + h, left : left + w] = tiles[i]
    return out


def upscale(image: torch.Tensor, scale: int) -> np.ndarray:
    """One image [C, H, W] in [0, 1] -> uint8 [H*scale, W*scale] (grey) or [..., 3] (RGB),
    nearest-neighbour: the live decoder's image, without grid padding or grey-to-RGB copies."""
    arr = (image.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    arr = arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)
    return arr.repeat(scale, axis=0).repeat(scale, axis=1)


def png_bytes(image: np.ndarray, compress_level: int = 6) -> bytes:
    """uint8 [H, W] or [H, W, 3] -> PNG bytes; compress_level=1 encodes ~4x faster for images
    that are shown once and thrown away (a slider's rerun), at a few % more bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def png_data_url(image: np.ndarray) -> str:
    """uint8 [H, W] or [H, W, 3] -> a `data:image/png;base64,...` URL, encoded without PIL.

    For the live decoder, which encodes one small image per slider step: PIL's plugin
    machinery costs more than the compression itself on a 168 x 168 image. A PNG is a
    signature, an IHDR chunk, one IDAT chunk of zlib-compressed scanlines (each prefixed by
    filter type 0) and an IEND chunk; each chunk is length, type, data, CRC-32 of type + data.
    """
    h, w = image.shape[:2]
    colour = 0 if image.ndim == 2 else 2  # greyscale or RGB, 8 bits per channel
    rows = np.zeros((h, 1 + image[0].size), dtype=np.uint8)
    rows[:, 1:] = image.reshape(h, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def gif_bytes(frames: list[np.ndarray], ms_per_frame: int = 120) -> bytes:
    """An endlessly looping animated GIF of RGB uint8 frames (the sweep goes there and back)."""
    seq = frames + frames[-2:0:-1]
    imgs = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE) for f in seq]
    buf = io.BytesIO()
    imgs[0].save(
        buf, format="GIF", save_all=True, append_images=imgs[1:], duration=ms_per_frame, loop=0
    )
    return buf.getvalue()
