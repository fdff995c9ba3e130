"""HEIC, AVIF and JPEG XL in: sniffing, limits, orientation, colour, output format (DESIGN.md's grayscale contract).

Every input is made here by the real encoders from synthetic pixels (pillow-heif for HEIC, Pillow for AVIF, libjxl
for JPEG XL), and every expected value is computed from those pixels, never by the decoder under test.
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys

import pytest
from PIL import ExifTags, Image, ImageCms

from core import formats, icc
from core.errors import ConfigError, ImageTooLarge, InvalidImage
from core.imaging import grayscale, probe
from tests.helper import (
    PHONE_FORMATS,
    decode,
    encode,
    encode_heic,
    hopper,
    jxl_codestream,
    mean_abs_diff,
    noise,
    phone_photo,
    srgb_luma,
    upright,
)

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
ADOBE_RGB = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06), icc.D65)
LOSSLESS = {
    "HEIC": {"quality": -1, "chroma": 444, "matrix_coefficients": 0},
    "AVIF": {"quality": 100, "subsampling": "4:4:4"},
    "JXL": {"lossless": True},
}
NEW = ("HEIC", "AVIF", "JXL")


def max_diff(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size and a.mode == b.mode, (a.size, a.mode, b.size, b.mode)
    return max(abs(x - y) for x, y in zip(a.tobytes(), b.tobytes(), strict=True))


@pytest.fixture
def png_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lossless output, so that the result can be held to the source's luma within 1."""
    monkeypatch.setenv("GRAYSCALE_OUTPUT_FORMAT", "png")


# Sniffing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "sniffed"), [("HEIC", "HEIF"), ("AVIF", "AVIF"), ("JXL", "JXL")])
def test_each_new_format_is_sniffed_from_its_bytes(fmt: str, sniffed: str) -> None:
    assert formats.sniff(encode(hopper(), fmt)) == sniffed


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"])
def test_the_classic_formats_are_left_to_pillow(fmt: str) -> None:
    assert formats.sniff(encode(hopper(), fmt)) is None


def _only_shared_brands(data: bytes) -> bytes:
    """The same file with its ftyp saying only ``mif1``/``miaf``: the primary item's type must decide."""
    size = struct.unpack(">I", data[:4])[0]
    brands = b"mif1" + b"\0\0\0\0" + b"".join(b"mif1" if i % 8 else b"miaf" for i in range(0, size - 16, 4))
    return data[:8] + brands[: size - 8] + data[size:]


@pytest.mark.parametrize(("fmt", "sniffed"), [("HEIC", "HEIF"), ("AVIF", "AVIF")])
def test_the_shared_mif1_brand_is_decided_by_the_primary_items_type(fmt: str, sniffed: str) -> None:
    data = _only_shared_brands(encode(hopper(), fmt))
    assert b"heic" not in data[:40] and b"avif" not in data[:40]
    assert formats.sniff(data) == sniffed


def test_a_mif1_file_without_a_known_primary_item_is_not_sniffed() -> None:
    data = _only_shared_brands(encode(hopper(), "HEIC")).replace(b"hvc1", b"zzzz")
    assert formats.sniff(data) is None
    with pytest.raises(InvalidImage, match="not a supported image"):
        grayscale(data)


def test_a_jxl_container_is_sniffed_and_its_header_read() -> None:
    codestream = encode(hopper(), "JXL", lossless=True)
    box = struct.pack(">I4s", 8 + len(codestream), b"jxlc") + codestream
    container = b"\x00\x00\x00\x0cJXL \r\n\x87\n" + struct.pack(">I4s4sI4s", 20, b"ftyp", b"jxl ", 0, b"jxl ") + box
    assert formats.sniff(container) == "JXL"
    header = formats.jxl_header(container)
    assert (header.width, header.height, header.animated) == (64, 48, False)
    assert grayscale(container).width == 64


# The JPEG XL header, read by us ----------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (8, 8), (64, 48), (513, 7), (300, 200), (1000, 1000), (2000, 1125)])
@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_the_jxl_header_gives_the_size_and_alpha(size: tuple[int, int], mode: str) -> None:
    header = formats.jxl_header(encode(Image.new(mode, size), "JXL", lossless=True, effort=1))
    assert (header.width, header.height, header.alpha, header.animated) == (*size, mode == "RGBA", False)


def test_the_bit_writer_agrees_with_the_reader() -> None:
    header = formats.jxl_header(jxl_codestream(4912, 3264, orientation=6))
    assert (header.width, header.height, header.orientation, header.animated) == (4912, 3264, 6, False)


def test_an_animated_jxl_is_refused_with_a_sentence_before_decoding() -> None:
    with pytest.raises(InvalidImage, match="animated JPEG XL is not supported"):
        grayscale(jxl_codestream(64, 48, animated=True))


def test_a_jxl_over_the_pixel_limit_is_refused_from_its_header() -> None:
    # Only a header: had the decoder run, this would be a damaged file, not one too large.
    with pytest.raises(ImageTooLarge, match=r"JXL image of 100000x100000 = 10,000,000,000 pixels"):
        grayscale(jxl_codestream(100_000, 100_000))


def test_a_truncated_jxl_header_is_invalid() -> None:
    with pytest.raises(InvalidImage, match="header ends early"):
        formats.jxl_header(b"\xff\x0a\x01")


# Correct pixels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", NEW)
@pytest.mark.usefixtures("png_out")
def test_lossless_encodes_give_the_sources_luma_within_one(fmt: str) -> None:
    source = hopper()
    result = grayscale(encode(source, fmt, **LOSSLESS[fmt]))
    assert max_diff(decode(result.data), source.convert("L")) <= 1


@pytest.mark.parametrize("fmt", NEW)
@pytest.mark.usefixtures("png_out")
def test_alpha_is_kept(fmt: str) -> None:
    source = hopper("RGBA")
    source.putalpha(Image.linear_gradient("L").resize(source.size))
    out = decode(grayscale(encode(source, fmt, **LOSSLESS[fmt])).data)
    assert out.mode == "LA"
    assert max_diff(out.getchannel("A"), source.getchannel("A")) <= 1
    assert max_diff(out.getchannel("L"), source.convert("L")) <= 1


def _oriented(source: Image.Image, orientation: int, fmt: str, **params: object) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    if fmt == "JXL":  # libjxl keeps orientation in its codestream, which JPEG recompression fills from EXIF
        import pylibjxl

        return bytes(pylibjxl.jpeg_to_jxl(encode(source, "JPEG", quality=100, subsampling=0, exif=exif.tobytes())))
    return encode(source, fmt, exif=exif.tobytes(), **params)


@pytest.mark.parametrize("orientation", range(2, 9))
@pytest.mark.parametrize("fmt", NEW)
@pytest.mark.usefixtures("png_out")
def test_orientation_is_applied_once(fmt: str, orientation: int) -> None:
    """HEIF's irot/imir and JPEG XL's codestream orientation (which their decoders apply) and AVIF's (as EXIF)."""
    source = hopper()
    data = _oriented(source, orientation, fmt, **LOSSLESS.get(fmt, {}))
    if fmt == "JXL":
        assert formats.jxl_header(data).orientation == orientation
    expected = upright(source, orientation).convert("L")
    out = decode(grayscale(data).data)
    assert out.size == expected.size
    assert max_diff(out, expected) <= (6 if fmt == "JXL" else 1)  # the JXL one is a JPEG inside


def _in_profile(profile: bytes) -> tuple[Image.Image, Image.Image]:
    """Saturated synthetic pixels tagged with ``profile``, and their luma once converted to sRGB."""
    source = hopper()
    source.info["icc_profile"] = profile
    return source, srgb_luma(source, profile)


WIDE = {
    "Display P3": icc.profile(icc.PRIMARIES[12], 13, "Display P3"),
    "Adobe RGB": icc.profile(ADOBE_RGB, 1, "Adobe RGB (1998) compatible"),
    "BT.2020": icc.profile(icc.PRIMARIES[9], 1, "BT.2020"),
}


@pytest.mark.parametrize("gamut", list(WIDE))
@pytest.mark.parametrize("fmt", NEW)
@pytest.mark.usefixtures("png_out")
def test_an_embedded_wide_gamut_profile_is_converted_to_srgb_before_the_luma(fmt: str, gamut: str) -> None:
    source, expected = _in_profile(WIDE[gamut])
    out = decode(grayscale(encode(source, fmt, icc_profile=WIDE[gamut], **LOSSLESS[fmt])).data)
    if fmt == "AVIF":  # Pillow cannot write lossless AVIF (no identity matrix): q100 4:4:4 is off by up to 3
        assert mean_abs_diff(out, expected) <= 0.5
    else:
        assert max_diff(out, expected) <= 1
    assert mean_abs_diff(out, source.convert("L")) > 4  # the profile matters: ignoring it fails


def test_a_jpeg_with_a_wide_gamut_profile_is_converted_too() -> None:
    source, expected = _in_profile(WIDE["Display P3"])
    result = grayscale(encode(source, "JPEG", quality=100, subsampling=0, icc_profile=WIDE["Display P3"]))
    assert result.content_type == "image/jpeg"
    assert mean_abs_diff(decode(result.data), expected) <= 1.0
    assert mean_abs_diff(decode(result.data), source.convert("L")) > 4


def test_a_heif_with_nclx_display_p3_is_converted_to_srgb(png_out: None) -> None:
    source, expected = _in_profile(WIDE["Display P3"])
    del source.info["icc_profile"]
    params = {"color_primaries": 12, "transfer_characteristics": 13, "full_range_flag": 1}
    out = decode(grayscale(encode(source, "HEIC", **LOSSLESS["HEIC"], **params)).data)
    assert max_diff(out, expected) <= 1


def _with_primaries(data: bytes, primaries: int) -> bytes:
    """Pillow writes BT.709 nclx and cannot be told otherwise: set the code point in the file's colr box."""
    at = data.index(b"colr") + 8
    assert data[at - 4 : at] == b"nclx"
    return data[:at] + struct.pack(">H", primaries) + data[at + 2 :]


def test_an_avif_with_nclx_display_p3_is_converted_to_srgb(png_out: None) -> None:
    source, expected = _in_profile(WIDE["Display P3"])
    del source.info["icc_profile"]
    data = _with_primaries(encode(source, "AVIF", **LOSSLESS["AVIF"]), 12)
    assert formats.nclx(data) == (12, 13)
    assert mean_abs_diff(decode(grayscale(data).data), expected) <= 0.5  # Pillow's AVIF: off by up to 3
    bt709 = encode(source, "AVIF", **LOSSLESS["AVIF"])
    assert mean_abs_diff(decode(grayscale(bt709).data), source.convert("L")) <= 0.5


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF", "JPEG"])
def test_the_result_carries_no_colour_profile_of_its_source(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Its luma is sRGB's: the source's RGB profile would be wrong on a gray image (libpng refuses it)."""
    monkeypatch.setenv("GRAYSCALE_OUTPUT_FORMAT", fmt.lower())
    source, _ = _in_profile(WIDE["Display P3"])
    out = decode(grayscale(encode(source, "PNG")).data)
    assert "icc_profile" not in out.info


def test_the_made_profiles_agree_with_littlecms_srgb() -> None:
    source = noise((64, 64))
    made = ImageCms.ImageCmsProfile(io.BytesIO(icc.profile(icc.PRIMARIES[1], 13, "BT.709 made here")))
    back = ImageCms.profileToProfile(source, made, SRGB)
    assert back is not None and max_diff(back, source) <= 1
    assert icc.for_nclx(1, 13) is None and icc.for_nclx(2, 2) is None  # sRGB's, or unspecified


def test_the_primary_image_of_a_heif_collection_is_rendered() -> None:
    white, black = Image.new("RGB", (32, 32), (255, 255, 255)), Image.new("RGB", (48, 16), (0, 0, 0))
    result = grayscale(encode_heic([white, black], quality=-1, primary_index=1))
    out = decode(result.data)
    assert (result.width, result.height, result.frames) == (48, 16, 1)
    assert out.getpixel((5, 5)) < 10


def test_every_frame_and_duration_of_an_animated_avif_is_kept() -> None:
    frames = [Image.new("RGB", (32, 32), (i * 60, 255 - i * 60, 0)) for i in range(4)]
    data = encode(frames[0], "AVIF", save_all=True, append_images=frames[1:], duration=[100, 200, 300, 400])
    result = grayscale(data)
    assert (result.content_type, result.extension, result.frames, result.output_format) == (
        "image/avif",
        ".avif",
        4,
        "avif",
    )
    out = Image.open(io.BytesIO(result.data))
    durations, lumas = [], []
    for index in range(out.n_frames):
        out.seek(index)
        out.load()
        durations.append(out.info["duration"])
        lumas.append(out.convert("L").getpixel((16, 16)))
    assert durations == [100, 200, 300, 400]
    expected = [frame.convert("L").getpixel((16, 16)) for frame in frames]
    assert all(abs(a - b) <= 3 for a, b in zip(lumas, expected, strict=True)), (lumas, expected)


# Output format ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: encode(noise(), "HEIC", quality=80), ("jpeg", "image/jpeg", ".jpg", "heic")),
        (lambda: encode(hopper("RGBA"), "HEIC", quality=-1), ("png", "image/png", ".png", "heic")),
        (lambda: encode(noise(), "AVIF"), ("avif", "image/avif", ".avif", "avif")),
        (lambda: encode(hopper("RGBA"), "AVIF"), ("avif", "image/avif", ".avif", "avif")),
        (lambda: encode(hopper(), "JXL", lossless=True), ("png", "image/png", ".png", "jxl")),
        (lambda: _oriented(noise(), 1, "JXL"), ("jpeg", "image/jpeg", ".jpg", "jxl")),
        (lambda: encode(hopper("RGBA"), "JXL", lossless=True), ("png", "image/png", ".png", "jxl")),
    ],
    ids=["heic", "heic-alpha", "avif", "avif-alpha", "jxl-lossless", "jxl-recompressed-jpeg", "jxl-alpha"],
)
def test_the_result_is_a_format_browsers_show(make: object, expected: tuple[str, str, str, str]) -> None:
    result = grayscale(make())  # type: ignore[operator]
    assert (result.output_format, result.content_type, result.extension, result.input_format) == expected
    assert decode(result.data).format == expected[0].upper()


@pytest.mark.parametrize("chosen", ["jpeg", "png", "webp", "avif"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "HEIC", "AVIF", "JXL"])
def test_the_output_format_can_be_chosen(monkeypatch: pytest.MonkeyPatch, fmt: str, chosen: str) -> None:
    monkeypatch.setenv("GRAYSCALE_OUTPUT_FORMAT", chosen)
    result = grayscale(encode(hopper(), fmt))
    assert (result.output_format, result.content_type) == (chosen, f"image/{chosen}")
    assert decode(result.data).format == chosen.upper()


def test_jpeg_output_flattens_alpha_onto_white_and_keeps_the_first_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYSCALE_OUTPUT_FORMAT", "jpeg")
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert decode(grayscale(encode(clear, "PNG")).data).getextrema() == (255, 255)
    frames = [Image.new("L", (16, 16), v) for v in (0, 255)]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    result = grayscale(animated)
    assert (result.frames, result.output_format) == (1, "jpeg")
    assert decode(result.data).getpixel((8, 8)) < 10  # type: ignore[operator]


def test_a_bad_output_format_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYSCALE_OUTPUT_FORMAT", "heic")
    with pytest.raises(ConfigError, match="GRAYSCALE_OUTPUT_FORMAT must be one of same, jpeg, png, webp, avif"):
        grayscale(encode(hopper(), "PNG"))


# Switches and limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", NEW)
def test_a_format_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setenv("GRAYSCALE_FORMATS", "jpeg,png,heif" if fmt != "HEIC" else "jpeg,png,avif,jxl")
    name = {"HEIC": "HEIC", "AVIF": "AVIF", "JXL": "JXL"}[fmt]
    with pytest.raises(InvalidImage, match=f"{name} input is turned off here \\(GRAYSCALE_FORMATS"):
        probe(encode(hopper(), fmt))
    with pytest.raises(InvalidImage, match="GIF input is turned off"):
        probe(encode(hopper(), "GIF"))
    assert probe(encode(hopper(), "PNG")).name == "png"


def test_an_unknown_format_in_the_switch_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYSCALE_FORMATS", "jpeg,psd")
    with pytest.raises(ConfigError, match="GRAYSCALE_FORMATS must list formats among"):
        probe(encode(hopper(), "PNG"))


@pytest.mark.parametrize("fmt", NEW)
def test_the_pixel_limit_is_checked_before_decoding(fmt: str) -> None:
    data = encode(Image.new("RGB", (200, 100)), fmt)
    with pytest.raises(ImageTooLarge, match="20,000 pixels"):
        grayscale(data, max_pixels=19_999)
    assert probe(data, max_pixels=20_000).pixels == 20_000


def test_an_animated_avif_past_the_frame_cap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAYSCALE_MAX_FRAMES", "3")
    frames = [Image.new("L", (8, 8), i * 40) for i in range(5)]
    with pytest.raises(ImageTooLarge, match="AVIF animation of more than 3 frames"):
        grayscale(encode(frames[0], "AVIF", save_all=True, append_images=frames[1:]))


# Damaged files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [0.5, 0.9, 40])
@pytest.mark.parametrize("fmt", NEW)
def test_truncated_files_are_invalid_with_a_sentence(fmt: str, cut: float) -> None:
    data = encode(noise(), fmt)
    end = int(len(data) * cut) if cut < 1 else int(cut)
    with pytest.raises(InvalidImage) as caught:
        grayscale(data[:end])
    assert str(caught.value)[0].isupper() or str(caught.value).startswith(("damaged", "not a"))
    assert "Please build" not in str(caught.value)


@pytest.mark.parametrize(("fmt", "brand"), [("HEIC", b"avif"), ("AVIF", b"heic")])
def test_a_wrongly_branded_file_is_invalid(fmt: str, brand: bytes) -> None:
    data = encode(noise(), fmt)
    relabelled = data[:8] + brand + data[12:]
    with pytest.raises(InvalidImage, match="damaged or truncated"):
        grayscale(relabelled.replace(b"heix", brand).replace(b"heic", brand).replace(b"MA1A", brand))


def test_importing_the_pipeline_loads_no_format_plugin() -> None:
    code = (
        "import sys, core.imaging, core.pipeline, core.http_api\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pi_heif', 'pylibjxl', 'numpy', 'pillow_heif')"
        " or m in ('core.formats', 'core.icc')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize("fmt", PHONE_FORMATS)
def test_a_phone_photo_of_each_format_comes_out_right(fmt: str) -> None:
    """Orientation, Display P3 and, where the format has them, alpha and frames, all at once (as the e2e tests)."""
    data, expected, output = phone_photo(fmt)
    result = grayscale(data)
    out = decode(result.data)
    assert (result.output_format, out.size) == (output, expected.size)
    assert out.mode == ("RGBA" if output == "avif" else expected.mode)  # AVIF's gray with alpha decodes as RGBA
    assert mean_abs_diff(out.convert(expected.mode), expected) <= (0.5 if fmt == "HEIC" else 2.5)
    assert result.frames == (2 if fmt == "AVIF-animated" else 1)


def test_the_format_names_agree_between_the_sniffer_and_the_renderer() -> None:
    from core import imaging

    assert (imaging.HEIF, imaging.AVIF, imaging.JXL) == (formats.HEIF, formats.AVIF, formats.JXL)
