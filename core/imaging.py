"""Grayscale rendering with Pillow.

``grayscale(data)`` follows the contract in DESIGN.md:

- JPEG (and MPO, the multi-picture JPEG of cameras) in gives JPEG out. It is
  decoded straight to luma (Pillow draft mode), so chroma is never upsampled
  or colour-converted.
- An input with alpha (RGBA, LA, a palette or RGB with transparency) gives PNG ``LA``.
- An animated GIF, WebP or PNG keeps its format, every frame and every duration.
- Every other input (PNG, TIFF, BMP, a still GIF or WebP, ...) gives PNG ``L``.
- Before converting: EXIF orientation is applied, CMYK goes through its ICC
  profile when it has one, and 16-bit samples are scaled to 8 bits, never clipped.

The pixel limit is checked from the header, before any raster is allocated.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, replace
from typing import cast

from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from core import config
from core.errors import ImageTooLarge, InvalidImage

# The formats we accept (JPEG includes MPO). Pillow can open more (EPS, PSD, ...), but each opener
# is attack surface, and these are what cameras, browsers and scanners produce.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
}
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp"}
_ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

# What Pillow raises on damaged input: OSError ("image file is truncated",
# "broken data stream"), SyntaxError from some parsers, EOFError from frame
# seeks, and ValueError, IndexError, KeyError, struct.error, TypeError ("Missing
# dimensions" from a TIFF without its width tag, found by tests/unit/test_fuzz.py)
# or arithmetic errors from odd headers.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    ArithmeticError,
    struct.error,
)


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, read without decoding the raster."""

    format: str
    content_type: str
    width: int
    height: int
    frames: int
    animated: bool

    @property
    def pixels(self) -> int:
        """Its cost in the pixel budget: every frame of an animation, each with ``config.FRAME_COST_PIXELS`` more."""
        if not self.animated:
            return self.width * self.height
        return (self.width * self.height + config.FRAME_COST_PIXELS) * self.frames


@dataclass(frozen=True)
class Rendered:
    """A grayscale rendering, ready to store."""

    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    frames: int = 1
    source_type: str = ""
    """Content type of the input, sniffed from its bytes."""


def probe(data: bytes, *, max_pixels: int | None = None) -> ImageInfo:
    """Identify ``data`` from its header; raise ``InvalidImage`` or ``ImageTooLarge``."""
    im = _open(data)
    try:
        return _check_size(im, _limit(max_pixels))
    finally:
        im.close()


def grayscale(data: bytes, *, max_pixels: int | None = None) -> Rendered:
    """Render ``data`` in grayscale as DESIGN.md's grayscale contract says."""
    limit = _limit(max_pixels)
    im = _open(data)
    try:
        info = _check_size(im, limit)
        try:
            if info.format in ("JPEG", "MPO") and not _has_alpha(im):
                rendered = _render_jpeg(im)
            elif info.animated:
                rendered = _render_animated(im, info)
            else:
                rendered = _render_still(im)
            return replace(rendered, source_type=info.content_type)
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc)) from exc
        except _DECODE_ERRORS as exc:
            raise InvalidImage(f"damaged or truncated {info.format} image: {exc}") from exc
    finally:
        im.close()


def _limit(max_pixels: int | None) -> int:
    return config.max_pixels() if max_pixels is None else max_pixels


def _open(data: bytes) -> Image.Image:
    if not data:
        raise InvalidImage("empty input: 0 bytes is not an image")
    try:
        with warnings.catch_warnings():
            # We enforce our own limit below; Pillow's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image is over the pixel limit ({config.MAX_PIXELS_VAR}): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise InvalidImage(f"not a supported image ({len(data)} bytes); expected one of {', '.join(FORMATS)}") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"damaged or truncated image (unreadable header): {exc}") from exc


def _frames(im: Image.Image, fmt: str) -> int:
    """How many frames ``im`` has; ``ImageTooLarge`` past the frame cap, found without reading every frame.

    A GIF's ``n_frames`` reads every frame header: a million of them would take longer than the render.
    """
    cap = config.max_frames()
    over = False
    try:
        if fmt in _ANIMATED_FORMATS and getattr(im, "is_animated", False):
            try:
                im.seek(cap)  # a frame past the cap exists
                over = True
            except EOFError:
                pass
            im.seek(0)
        frames = 1 if over else int(getattr(im, "n_frames", 1))
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"damaged or truncated {fmt} image: {exc}") from exc
    if over:
        raise ImageTooLarge(f"{fmt} animation of more than {cap:,} frames is over the limit ({config.MAX_FRAMES_VAR})")
    return frames


def _check_size(im: Image.Image, limit: int) -> ImageInfo:
    fmt = im.format or "unknown"
    frames = _frames(im, fmt)
    width, height = im.size
    if width < 1 or height < 1:
        raise InvalidImage(f"{fmt} image declares an empty size {width}x{height}")
    info = ImageInfo(
        format=fmt,
        content_type=CONTENT_TYPES.get(fmt, "application/octet-stream"),
        width=width,
        height=height,
        frames=frames,
        animated=frames > 1 and fmt in _ANIMATED_FORMATS,
    )
    if info.pixels > limit:
        raise ImageTooLarge(
            f"{fmt} image of {width}x{height}"
            + (f" x {frames} frames" if info.animated else "")
            + f" = {info.pixels:,} pixels"
            + (f" (with {config.FRAME_COST_PIXELS:,} a frame)" if info.animated else "")
            + f" is over the limit of {limit:,}"
            + f" ({config.MAX_PIXELS_VAR})"
        )
    return info


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in _ALPHA_MODES or im.has_transparency_data


def _render_jpeg(im: Image.Image) -> Rendered:
    # draft() asks libjpeg for grayscale output: chroma is entropy-decoded but
    # never upsampled, inverse-transformed or colour-converted. CMYK cannot be
    # drafted to L and takes the generic path through its ICC profile.
    im.draft("L", im.size)
    gray = _orient(im if im.mode == "L" else _to_luma(im), im)
    quality = config.jpeg_quality()
    tables = getattr(im, "quantization", None) or {}
    params: dict[str, object] = {"dpi": im.info.get("dpi", (72, 72))}
    if quality is None and 0 in tables:
        params["qtables"] = [tables[0]]  # the source's luma table: same quality, no requantization
    else:
        params["quality"] = quality or 90
    buf = io.BytesIO()
    gray.save(buf, "JPEG", **params)
    return _rendered(buf, "image/jpeg", gray)


def _render_still(im: Image.Image) -> Rendered:
    gray = _orient(_to_luma(im), im)
    buf = io.BytesIO()
    gray.save(buf, "PNG", compress_level=config.png_compress_level())
    return _rendered(buf, "image/png", gray)


def _render_animated(im: Image.Image, info: ImageInfo) -> Rendered:
    frames: list[Image.Image] = []
    durations: list[int] = []
    for index in range(info.frames):
        im.seek(index)
        frames.append(_to_luma(im))
        durations.append(int(im.info.get("duration", 0) or 0))
    alpha = any(frame.mode == "LA" for frame in frames)
    if alpha:
        frames = [frame.convert("LA") for frame in frames]
    options: dict[str, object] = {
        "save_all": True,
        "append_images": frames[1:],
        "duration": durations,
        "loop": im.info.get("loop", 0),
    }
    buf = io.BytesIO()
    if info.format == "GIF":
        # GIF has no LA: a palette of grays, one index kept for transparency.
        frames = [_gif_frame(frame) for frame in frames]
        options["append_images"] = frames[1:]
        if alpha:
            options.update(transparency=255, disposal=2)
        frames[0].save(buf, "GIF", **options)
    elif info.format == "WEBP":
        frames[0].save(buf, "WEBP", lossless=True, method=0, **options)
    else:
        frames[0].save(buf, "PNG", compress_level=config.png_compress_level(), **options)
    content_type = CONTENT_TYPES[info.format]
    return _rendered(buf, content_type, frames[0], frames=len(frames))


def _gif_frame(frame: Image.Image) -> Image.Image:
    """A gray frame as a GIF palette image; fully transparent pixels get index 255."""
    if frame.mode != "LA":
        return frame.convert("L")
    gray, alpha = frame.split()
    # 255 gray levels plus the transparent index: lose one level, keep transparency.
    paletted = gray.point(lambda v: min(v, 254)).convert("P")
    paletted.putpalette([v for level in range(256) for v in (level, level, level)])
    paletted.paste(255, mask=alpha.point(lambda a: 255 if a < 128 else 0))
    return paletted


def _to_luma(im: Image.Image) -> Image.Image:
    """Convert one frame to ``L``, or ``LA`` when it has alpha."""
    if im.mode == "CMYK":
        im = _cmyk_to_rgb(im)
    if im.mode in _SIXTEEN_BIT_MODES or im.mode == "I":
        return _scale_to_8_bits(im)
    if im.mode == "F":
        return _scale_to_8_bits(im)
    if im.mode in ("L", "LA"):
        return im.copy()
    if _has_alpha(im):
        return im.convert("RGBA").convert("LA")
    return im.convert("L")


def _scale_to_8_bits(im: Image.Image) -> Image.Image:
    """Scale 16-bit (or 32-bit) samples linearly into 0..255; never clip."""
    wide = im.convert("I") if im.mode != "F" else im
    low, high = cast(tuple[float, float], wide.getextrema())
    top = 65535 if im.mode != "F" and low >= 0 and high <= 65535 else max(float(high), 1.0)
    scaled: Image.Image = wide.point(lambda v: v * (255.0 / top) + 0.5)
    return scaled.convert("L")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(
                im, source, srgb, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
            )
            if converted is not None:
                return converted
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: fall back to the naive conversion below
    return im.convert("RGB")


def _orient(gray: Image.Image, source: Image.Image) -> Image.Image:
    """Apply the source's EXIF orientation to its gray rendering."""
    orientation = source.getexif().get(ExifTags.Base.Orientation, 1)
    method = _ORIENTATION.get(orientation)
    return gray.transpose(method) if method is not None else gray


_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _rendered(buf: io.BytesIO, content_type: str, first: Image.Image, *, frames: int = 1) -> Rendered:
    return Rendered(
        data=buf.getvalue(),
        content_type=content_type,
        extension=EXTENSIONS[content_type],
        width=first.width,
        height=first.height,
        frames=frames,
    )
