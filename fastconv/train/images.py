"""Image files with Pillow alone: sample grids (PNG, JPEG, ... by the file name) and line charts of
training curves (PNG). Files are written atomically."""

from __future__ import annotations

import io
import math
import os

import numpy as np

from ..checkpoint import atomic_write


def _pil():
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        from ..extras import install_hint
        raise RuntimeError(f"Pillow is needed to write PNG files; expected `{install_hint('Pillow')}`") from None
    return Image, ImageDraw


def image_format(path: str) -> str:
    """The Pillow format that ``path``'s extension names (".png" -> "PNG", ".jpg" -> "JPEG", ...)."""
    Image, _ = _pil()
    ext = os.path.splitext(os.fspath(path))[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"output: got {os.fspath(path)!r}, expected a file name ending in an image extension "
                         "Pillow writes, such as .png or .jpg")
    return fmt


def _save(img, path: str) -> None:
    buf = io.BytesIO()
    img.save(buf, format=image_format(path))
    atomic_write(path, buf.getvalue())


def save_grid(images, path: str, nrow: int | None = None, value_range=(-1.0, 1.0), padding: int = 2,
              scale: int = 2, row_labels=None) -> None:
    """Tile a batch (N, 1|3, H, W) of numpy/cupy images into one PNG, ``nrow`` images per row.

    value_range: the values mapped to black and white (tanh outputs: (-1, 1)).
    scale: each pixel drawn as scale x scale (28x28 digits are small on screen).
    row_labels: one text per row (class names), written in a margin left of the rows.
    """
    if hasattr(images, "get"):
        images = images.get()
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or x.shape[0] < 1:
        raise ValueError(f"images: got shape {x.shape}, expected (N, 1 or 3, H, W) with N >= 1")
    if nrow is not None and (isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1):
        raise ValueError(f"nrow: got {nrow!r}, expected a positive int (images per row) or None (square)")
    lo, hi = value_range
    if not hi > lo:
        raise ValueError(f"value_range: got {value_range!r}, expected (low, high) with high > low")
    x = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    x = np.nan_to_num(x, nan=0.0)
    n, c, h, w = x.shape
    nrow = nrow or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / nrow))
    grid = np.zeros((c, padding + rows * (h + padding), padding + nrow * (w + padding)), np.float64)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y0:y0 + h, x0:x0 + w] = x[i]
    pixels = np.round(grid * 255.0).astype(np.uint8)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    Image, ImageDraw = _pil()
    img = Image.fromarray(pixels[0], mode="L") if c == 1 else Image.fromarray(pixels.transpose(1, 2, 0), "RGB")
    if row_labels is not None:
        img = _label_rows(img, list(row_labels), rows, (h + padding) * scale, padding * scale)
    _save(img, path)


def _label_rows(img, labels: list, rows: int, pitch: int, top: int):
    """``img`` with a margin on the left holding labels[r] beside row r (Pillow's built-in font)."""
    if len(labels) != rows:
        raise ValueError(f"row_labels: got {len(labels)} labels, expected one per row ({rows})")
    Image, ImageDraw = _pil()
    draw = ImageDraw.Draw(img)
    width = max(int(draw.textlength(str(t))) for t in labels) + 8
    out = Image.new(img.mode, (img.width + width, img.height), 0)
    out.paste(img, (width, 0))
    draw = ImageDraw.Draw(out)
    white = 255 if img.mode == "L" else (255, 255, 255)
    for r, text in enumerate(labels):
        draw.text((4, top + r * pitch + pitch // 2 - 6), str(text), fill=white)
    return out


_COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]


def _ticks(lo: float, hi: float, n: int = 8) -> list[float]:
    span = hi - lo
    raw = span / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=mag)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def plot_curves(path: str, series: dict, title: str = "", xlabel: str = "", ylabel: str = "",
                size=(720, 440)) -> None:
    """Draw line charts: series maps a label to (x values, y values); non-finite points are skipped.
    The title is centred above the legend; x ticks on an axis of whole numbers (epochs,
    iterations) are whole numbers."""
    Image, ImageDraw = _pil()
    w, h = size
    left, right, top, bottom = 64, 16, 52, 44
    img = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(img)
    pts = {}
    for label, (xs, ys) in series.items():
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        if xs.shape != ys.shape:
            raise ValueError(f"series[{label!r}]: got {xs.shape} x values and {ys.shape} y values, expected equal")
        ok = np.isfinite(xs) & np.isfinite(ys)
        pts[label] = (xs[ok], ys[ok])
    allx = np.concatenate([p[0] for p in pts.values()] or [np.zeros(0)])
    ally = np.concatenate([p[1] for p in pts.values()] or [np.zeros(0)])
    if allx.size == 0:
        allx, ally = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    x0, x1 = float(allx.min()), float(allx.max())
    y0, y1 = float(ally.min()), float(ally.max())
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    pad = 0.05 * (y1 - y0) if y1 > y0 else 0.5
    y0, y1 = y0 - pad, y1 + pad

    def px(x, y):
        return (left + (x - x0) / (x1 - x0) * (w - left - right),
                h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for t in _ticks(y0, y1):
        _, yy = px(x0, t)
        d.line([left, yy, w - right, yy], fill=(230, 230, 230))
        d.text((4, yy - 6), f"{t:.4g}", fill=(0, 0, 0))
    whole = allx.size and np.all(allx == np.round(allx))
    for t in _ticks(x0, x1):
        if whole and t != round(t):
            continue
        xx, _ = px(t, y0)
        d.line([xx, h - bottom, xx, h - bottom + 4], fill=(0, 0, 0))
        d.text((xx - 10, h - bottom + 8), f"{t:.4g}", fill=(0, 0, 0))
    for i, (label, (xs, ys)) in enumerate(pts.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        line = [px(a, b) for a, b in zip(xs, ys)]
        if len(line) > 1:
            d.line(line, fill=colour, width=2)
        elif line:
            (a, b), = line
            d.ellipse([a - 2, b - 2, a + 2, b + 2], fill=colour)
        lx = left + 10 + 150 * i
        d.line([lx, top - 24, lx + 20, top - 24], fill=colour, width=3)
        d.text((lx + 24, top - 30), label, fill=(0, 0, 0))
    if title:
        d.text(((w - 6 * len(title)) // 2, 6), title, fill=(0, 0, 0))
    if ylabel:
        d.text((4, top - 13), ylabel, fill=(0, 0, 0))
    if xlabel:
        d.text(((w - 7 * len(xlabel)) // 2, h - 16), xlabel, fill=(0, 0, 0))
    _save(img, path)
