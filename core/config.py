"""Settings, read from the environment each time they are asked for.

The order is always: explicit argument, then environment variable, then default.
Nothing is read at import time, so callers and tests may change ``os.environ``
at any moment. A malformed or missing value raises ``ConfigError`` naming the
variable.
"""

from __future__ import annotations

import os

from core.errors import ConfigError

MAX_PIXELS_VAR = "GRAYSCALE_MAX_PIXELS"
MAX_UPLOAD_BYTES_VAR = "GRAYSCALE_MAX_UPLOAD_BYTES"
MAX_FRAMES_VAR = "GRAYSCALE_MAX_FRAMES"
JPEG_QUALITY_VAR = "GRAYSCALE_JPEG_QUALITY"
PNG_COMPRESS_LEVEL_VAR = "GRAYSCALE_PNG_COMPRESS_LEVEL"
LEASE_SECONDS_VAR = "GRAYSCALE_LEASE_SECONDS"
UPLOAD_EVENTS_VAR = "GRAYSCALE_UPLOAD_EVENTS"
FORMATS_VAR = "GRAYSCALE_FORMATS"
OUTPUT_FORMAT_VAR = "GRAYSCALE_OUTPUT_FORMAT"

DEFAULT_MAX_PIXELS = 64_000_000  # a 64 MP raster: 64 MB as L, 256 MB as RGBA while decoding
DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_FRAMES = 1_000
FRAME_COST_PIXELS = 16_384
"""What a frame costs in the pixel budget besides its pixels: each frame is decoded,
converted and encoded on its own, so a million 1x1 frames are a million times the work of one.
A 128x128 frame's worth: 1,000 small frames fit the default budget."""
# zlib level 1 with PNG's adaptive filters: about 4x faster than Pillow's default
# level 6 on photos, for files a few percent larger (bench/grayscale.py measures it).
DEFAULT_PNG_COMPRESS_LEVEL = 1
DEFAULT_LEASE_SECONDS = 120
INPUT_FORMATS = ("jpeg", "png", "gif", "webp", "tiff", "bmp", "heic", "avif", "jxl")
"""Every input format, by the name the job record and ``GRAYSCALE_FORMATS`` use."""
OUTPUT_FORMATS = ("same", "jpeg", "png", "webp", "avif")


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Return the integer in ``$name``, or ``default`` when it is unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ConfigError(f"{name} must be at least {minimum}{upper}, got {value}")
    return value


def require(name: str, value: str | None = None) -> str:
    """Return ``value`` if given, else ``$name``; raise ``ConfigError`` naming it when unset."""
    if value:
        return value
    found = os.environ.get(name, "").strip()
    if not found:
        raise ConfigError(f"{name} is not set: export {name}=... (see README, Configuration)")
    return found


def max_pixels() -> int:
    """Largest raster, in pixels over all frames, that ``grayscale`` will decode."""
    return env_int(MAX_PIXELS_VAR, DEFAULT_MAX_PIXELS, minimum=1)


def max_frames() -> int:
    """Most frames of an animation that ``grayscale`` will render."""
    return env_int(MAX_FRAMES_VAR, DEFAULT_MAX_FRAMES, minimum=1)


def max_upload_bytes() -> int:
    """Largest upload, in bytes, that the HTTP API accepts."""
    return env_int(MAX_UPLOAD_BYTES_VAR, DEFAULT_MAX_UPLOAD_BYTES, minimum=1)


def jpeg_quality() -> int | None:
    """Quality (1-95) of grayscale JPEG output; ``None``, the default, keeps the source's luma tables.

    Keeping the tables re-encodes at the quality the photo already had: no
    second generation of quantization loss, and no file larger than its source.
    """
    value = env_int(JPEG_QUALITY_VAR, 0, minimum=0, maximum=95)
    return value or None


def png_compress_level() -> int:
    """zlib level for PNG output (0-9)."""
    return env_int(PNG_COMPRESS_LEVEL_VAR, DEFAULT_PNG_COMPRESS_LEVEL, minimum=0, maximum=9)


def lease_seconds() -> int:
    """How long a PROCESSING job belongs to its worker before a retry may take it over."""
    return env_int(LEASE_SECONDS_VAR, DEFAULT_LEASE_SECONDS, minimum=1)


def upload_events() -> bool:
    """Whether writes under ``uploads/`` raise storage events here (default yes; ``0`` where none do)."""
    raw = os.environ.get(UPLOAD_EVENTS_VAR, "").strip().lower()
    if raw in ("", "1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise ConfigError(f"{UPLOAD_EVENTS_VAR} must be 1 or 0, got {raw!r}")


def formats() -> frozenset[str]:
    """The input formats accepted here: ``GRAYSCALE_FORMATS``, a comma-separated list, or all of them.

    ``heif`` is another name for ``heic``; ``all`` means every format. Turning one off makes its uploads
    ``InvalidImage`` (415 at the API, FAILED in a job) with a sentence naming the variable.
    """
    raw = os.environ.get(FORMATS_VAR, "").strip().lower()
    if not raw or raw == "all":
        return frozenset(INPUT_FORMATS)
    names = {"heic" if name.strip() == "heif" else name.strip() for name in raw.split(",") if name.strip()}
    unknown = sorted(names - set(INPUT_FORMATS))
    if unknown or not names:
        raise ConfigError(f"{FORMATS_VAR} must list formats among {', '.join(INPUT_FORMATS)} (or all), got {raw!r}")
    return frozenset(names)


def output_format() -> str:
    """``same`` (the default: the output follows the input, DESIGN.md's grayscale contract), or a format for all."""
    raw = os.environ.get(OUTPUT_FORMAT_VAR, "").strip().lower() or "same"
    if raw not in OUTPUT_FORMATS:
        raise ConfigError(f"{OUTPUT_FORMAT_VAR} must be one of {', '.join(OUTPUT_FORMATS)}, got {raw!r}")
    return raw
