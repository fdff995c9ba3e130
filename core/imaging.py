"""Grayscale rendering with Pillow.

``grayscale(data)`` follows the contract in DESIGN.md:

- JPEG (and MPO, the multi-picture JPEG of cameras) in gives JPEG out. It is decoded straight to luma (Pillow
  draft mode), so chroma is never upsampled or colour-converted, unless its ICC profile is not sRGB.
- AVIF stays AVIF, with its alpha and every frame.
- An input with alpha (RGBA, LA, a palette or RGB with transparency) gives PNG ``LA``.
- An animated GIF, WebP or PNG keeps its format, every frame and every duration.
- HEIC and JPEG XL give JPEG, or PNG where there is alpha or the JPEG XL is lossless.
- Every other input (PNG, TIFF, BMP, a still GIF or WebP, ...) gives PNG ``L``.
- ``GRAYSCALE_OUTPUT_FORMAT`` (``jpeg|png|webp|avif``) overrides all of the above; ``jpeg`` flattens alpha onto
  white and keeps the first frame.
- Before converting: the orientation is applied once (EXIF; for HEIC and JPEG XL their decoders apply the file's
  own, ``irot``/``imir`` or the codestream's, and the EXIF copy is ignored as their specifications say), an ICC
  profile other than sRGB (CMYK, Display P3, Adobe RGB, BT.2020) is converted to sRGB, and 16-bit samples are
  scaled to 8 bits, never clipped.

HEIC and JPEG XL load their Pillow plugins only when such bytes arrive (``core.formats.sniff``), so importing this
module costs what it did. The pixel limit is checked from the header, before any raster is allocated; for JPEG XL
also from our own reading of its header, which says whether it is animated (refused: its decoder gives one frame)
and whether it is XYB-coded (lossy, so a photo).
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from dataclasses import dataclass, replace
from typing import cast

from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from core import config
from core.errors import ConfigError, ImageTooLarge, InvalidImage

# The formats we accept (JPEG includes MPO). Pillow can open more (EPS, PSD, ...), but each opener
# is attack surface, and these are what cameras, phones, browsers and scanners produce.
CLASSIC = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP")
HEIF, AVIF, JXL = "HEIF", "AVIF", "JXL"
"""Recognised by ``core.formats.sniff`` (imported when an image is opened: a cold start compiles no more)."""
FORMATS = (*CLASSIC, HEIF, AVIF, JXL)
NAMES = {"MPO": "jpeg", HEIF: "heic"} | {fmt: fmt.lower() for fmt in FORMATS if fmt != HEIF}
"""Pillow's format names to the names of ``GRAYSCALE_FORMATS`` and the job record's ``input_format``."""
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    HEIF: "image/heic",
    AVIF: "image/avif",
    JXL: "image/jxl",
}
EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/avif": ".avif",
}
_ANIMATED_FORMATS = ("GIF", "WEBP", "PNG", AVIF)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_SELF_ORIENTED = (HEIF, JXL)
"""Formats whose decoders apply the file's own orientation; their EXIF orientation is not applied again."""
AVIF_SPEED = 8
"""libavif's speed for AVIF output (0 slowest, 10 fastest); Pillow's default 6 takes 2.2x as long (performance.md)."""
AVIF_QUALITY = 75

# What Pillow raises on damaged input: OSError ("image file is truncated",
# "broken data stream"), SyntaxError from some parsers, EOFError from frame
# seeks, and ValueError, IndexError, KeyError, struct.error, TypeError ("Missing
# dimensions" from a TIFF without its width tag, found by tests/unit/test_fuzz.py)
# or arithmetic errors from odd headers. The HEIC and JPEG XL decoders raise
# RuntimeError ("Generic Error") as well.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    ArithmeticError,
    RuntimeError,
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

    @property
    def name(self) -> str:
        """The format as the job record's ``input_format`` says it: ``jpeg``, ``heic``, ``avif``, ..."""
        return NAMES.get(self.format, self.format.lower())


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
    input_format: str = ""
    output_format: str = ""


def probe(data: bytes, *, max_pixels: int | None = None) -> ImageInfo:
    """Identify ``data`` from its header; raise ``InvalidImage`` or ``ImageTooLarge``."""
    limit = _limit(max_pixels)
    im = _open(data, limit)
    try:
        return _check_size(im, limit)
    finally:
        im.close()


def grayscale(data: bytes, *, max_pixels: int | None = None) -> Rendered:
    """Render ``data`` in grayscale as DESIGN.md's grayscale contract says."""
    limit = _limit(max_pixels)
    im = _open(data, limit)
    try:
        info = _check_size(im, limit)
        try:
            target = _target(im, info, data)
            if target == "JPEG" and info.format in ("JPEG", "MPO") and not _has_alpha(im) and _is_srgb(im):
                rendered = _render_jpeg(im)
            elif info.animated and target != "JPEG":
                rendered = _render_animated(im, info, target)
            else:
                rendered = _render_still(im, target)
            return replace(
                rendered, source_type=info.content_type, input_format=info.name, output_format=target.lower()
            )
        except Image.DecompressionBombError as exc:
            raise ImageTooLarge(str(exc)) from exc
        except ConfigError:
            raise  # a RuntimeError too, but a setting's, not the image's
        except _DECODE_ERRORS as exc:
            raise InvalidImage(f"damaged or truncated {info.format} image: {_reason(exc)}") from exc
    finally:
        im.close()


def _limit(max_pixels: int | None) -> int:
    return config.max_pixels() if max_pixels is None else max_pixels


def _reason(exc: BaseException) -> str:
    """The decoder's complaint in one line (libjxl's ends with advice to rebuild it, which is not ours to give)."""
    return str(exc).split("\n")[0].removesuffix(" Please build `libjxl` from source (using `vendored` feature)")


def _open(data: bytes, limit: int) -> Image.Image:
    if not data:
        raise InvalidImage("empty input: 0 bytes is not an image")
    from core import formats

    accepted = config.formats()
    sniffed = formats.sniff(data)
    if sniffed is not None:
        _turned_on(sniffed, accepted)
        if sniffed == JXL:
            _check_jxl(data, limit)
        _load_plugin(sniffed)
    candidates = (sniffed,) if sniffed else CLASSIC
    try:
        with warnings.catch_warnings():
            # We enforce our own limit below; Pillow's warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=candidates)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image is over the pixel limit ({config.MAX_PIXELS_VAR}): {exc}") from exc
    except UnidentifiedImageError as exc:
        if sniffed:
            raise InvalidImage(f"damaged or truncated {sniffed} image: its decoder cannot read it") from exc
        raise InvalidImage(f"not a supported image ({len(data)} bytes); expected one of {', '.join(FORMATS)}") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"damaged or truncated {sniffed or 'image'} (unreadable header): {_reason(exc)}") from exc
    if not sniffed:
        _turned_on(im.format or "", accepted)
    elif sniffed == AVIF and "icc_profile" not in im.info and (stated := formats.nclx(data)):
        # Pillow's AVIF plugin does not expose nclx: the colours' primaries come from the file's own box.
        im.info["nclx_profile"] = {"color_primaries": stated[0], "transfer_characteristics": stated[1]}
    return im


def _turned_on(fmt: str, accepted: frozenset[str]) -> None:
    name = NAMES.get(fmt, fmt.lower())
    if name not in accepted:
        raise InvalidImage(
            f"{name.upper()} input is turned off here ({config.FORMATS_VAR} lists {', '.join(sorted(accepted))})"
        )


@functools.cache
def _load_plugin(fmt: str) -> None:
    """Register the Pillow plugin for ``fmt`` the first time such bytes arrive (AVIF is Pillow's own)."""
    if fmt == HEIF:
        from pi_heif import as_plugin  # LGPL libheif and libde265, decode only: no HEVC encoder (docs/formats.md)

        as_plugin.register_heif_opener()
    elif fmt == JXL:
        import pylibjxl  # BSD libjxl; its plugin decodes on load(), not in open()

        pylibjxl.register_pillow()


def _check_jxl(data: bytes, limit: int) -> None:
    """The pixel limit and the animation check for JPEG XL, from its header, before its decoder sees the bytes."""
    from core import formats

    header = formats.jxl_header(data)
    if header.animated:
        raise InvalidImage(
            "animated JPEG XL is not supported: its decoder here gives one frame (send GIF, APNG, WebP or AVIF)"
        )
    if header.width * header.height > limit:
        raise ImageTooLarge(
            f"JXL image of {header.width}x{header.height} = {header.width * header.height:,} pixels"
            f" is over the limit of {limit:,} ({config.MAX_PIXELS_VAR})"
        )


def _frames(im: Image.Image, fmt: str) -> int:
    """How many frames ``im`` has; ``ImageTooLarge`` past the frame cap, found without reading every frame.

    A GIF's ``n_frames`` reads every frame header: a million of them would take longer than the render.
    A HEIF collection's other images (thumbnails, bursts) are not frames: its primary image is the photo.
    """
    if fmt == HEIF:
        return 1
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
        raise InvalidImage(f"damaged or truncated {fmt} image: {_reason(exc)}") from exc
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


def _target(im: Image.Image, info: ImageInfo, data: bytes) -> str:
    """The output's Pillow format: ``GRAYSCALE_OUTPUT_FORMAT``, or the contract's choice for this input."""
    chosen = config.output_format()
    if chosen != "same":
        return chosen.upper()
    if info.format == AVIF or info.animated:
        return info.format
    if _has_alpha(im):
        return "PNG"
    if info.format in ("JPEG", "MPO", HEIF):
        return "JPEG"
    if info.format == JXL:
        from core import formats

        return "JPEG" if formats.jxl_header(data).photo else "PNG"
    return "PNG"


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


def _render_still(im: Image.Image, target: str) -> Rendered:
    gray = _orient(_to_luma(im), im)
    buf = io.BytesIO()
    if target == "JPEG":
        gray = _flatten(gray)
        gray.save(buf, "JPEG", quality=config.jpeg_quality() or 90, dpi=im.info.get("dpi", (72, 72)))
    elif target == "WEBP":
        gray.save(buf, "WEBP", quality=config.jpeg_quality() or 90)
    elif target == "AVIF":
        gray.save(buf, "AVIF", quality=config.jpeg_quality() or AVIF_QUALITY, speed=AVIF_SPEED)
    else:
        gray.save(buf, "PNG", compress_level=config.png_compress_level())
    return _rendered(buf, "image/" + target.lower(), gray)


def _flatten(gray: Image.Image) -> Image.Image:
    """``LA`` onto white, as ``L``: JPEG has no alpha."""
    if gray.mode != "LA":
        return gray
    white = Image.new("L", gray.size, 255)
    white.paste(gray.getchannel("L"), mask=gray.getchannel("A"))
    return white


def _render_animated(im: Image.Image, info: ImageInfo, target: str) -> Rendered:
    frames: list[Image.Image] = []
    durations: list[int] = []
    for index in range(info.frames):
        im.seek(index)
        frames.append(_orient(_to_luma(im), im))
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
    if target == "GIF":
        # GIF has no LA: a palette of grays, one index kept for transparency.
        frames = [_gif_frame(frame) for frame in frames]
        options["append_images"] = frames[1:]
        if alpha:
            options.update(transparency=255, disposal=2)
        frames[0].save(buf, "GIF", **options)
    elif target == "WEBP":
        frames[0].save(buf, "WEBP", lossless=True, method=0, **options)
    elif target == "AVIF":
        frames[0].save(buf, "AVIF", quality=config.jpeg_quality() or AVIF_QUALITY, speed=AVIF_SPEED, **options)
    else:
        frames[0].save(buf, "PNG", compress_level=config.png_compress_level(), **options)
    return _rendered(buf, "image/" + target.lower(), frames[0], frames=len(frames))


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
    """Convert one frame to ``L``, or ``LA`` when it has alpha, in sRGB, carrying no colour profile."""
    gray = _luma(im)
    gray.info.pop("icc_profile", None)  # the source's profile is RGB's, and wrong on gray; the luma is sRGB's
    return gray


def _luma(im: Image.Image) -> Image.Image:
    im.load()  # some plugins (JPEG XL) fill in the ICC profile as they decode
    if im.mode in ("CMYK", "RGB", "RGBA") and not _is_srgb(im):
        im = _to_srgb(im)
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


def _is_srgb(im: Image.Image) -> bool:
    """Whether ``im``'s colours are sRGB already: no profile, or one that says sRGB (CMYK never is)."""
    if im.mode == "CMYK":
        return False
    profile = _profile_of(im)
    return not profile or _srgb_profile(profile)


def _profile_of(im: Image.Image) -> bytes | None:
    """The ICC profile of ``im``: embedded, or made from its ``nclx`` code points (HEIF and AVIF)."""
    embedded = im.info.get("icc_profile")
    if embedded:
        return cast(bytes, embedded)
    stated = im.info.get("nclx_profile")
    if not isinstance(stated, dict):
        return None
    from core import icc

    primaries, transfer = int(stated.get("color_primaries", 2)), int(stated.get("transfer_characteristics", 2))
    chroma = None
    if "color_primary_red_x" in stated:  # pi_heif gives the primaries' values too
        chroma = tuple(
            (float(stated[f"color_primary_{c}_x"]), float(stated[f"color_primary_{c}_y"]))
            for c in ("red", "green", "blue", "white")
        )
    return icc.for_nclx(primaries, transfer, cast(icc.Chromaticities | None, chroma))


@functools.lru_cache(maxsize=32)
def _srgb_profile(icc: bytes) -> bool:
    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError):
        return True  # a broken profile: convert naively, as without one
    return "srgb" in description.lower().replace(" ", "").replace("-", "")


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(im: Image.Image) -> Image.Image:
    """``im`` through its ICC profile into sRGB (``RGB``, or ``RGBA`` keeping alpha); naive when it cannot be."""
    out = "RGBA" if im.mode == "RGBA" else "RGB"
    profile = _profile_of(im)
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            converted = ImageCms.profileToProfile(
                im, source, _SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode=out
            )
            if converted is not None:
                if out == "RGBA":
                    converted.putalpha(im.getchannel("A"))
                return converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall back to the naive conversion below
    return im.convert(out)


def _orient(gray: Image.Image, source: Image.Image) -> Image.Image:
    """Apply the source's EXIF orientation to its gray rendering, where its decoder has not oriented it."""
    if source.format in _SELF_ORIENTED:
        return gray
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
