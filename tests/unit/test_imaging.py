"""core.imaging.grayscale against DESIGN.md's grayscale contract."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import pytest
from PIL import Image, ImageCms, ImageOps

from core.errors import ConfigError, ImageTooLarge, InvalidImage
from core.imaging import grayscale, probe
from tests.helper import (
    absent,
    assert_image_similar,
    decode,
    encode,
    hopper,
    mean_abs_diff,
    noise,
    png_bytes,
    tiny_animation,
)

CMYK_PROFILE = Path("/usr/share/color/icc/ghostscript/default_cmyk.icc")  # SWOP, Debian: libgs-common


# Output format --------------------------------------------------------------------------------


def test_jpeg_in_gives_grayscale_jpeg_out() -> None:
    source = hopper()
    result = grayscale(encode(source, "JPEG", quality=95))
    out = decode(result.data)
    assert (result.content_type, result.extension, out.format, out.mode) == ("image/jpeg", ".jpg", "JPEG", "L")
    assert out.size == source.size
    assert_image_similar(out, source.convert("L"), 2.5)


def test_gray_jpeg_stays_gray_jpeg() -> None:
    result = grayscale(encode(hopper("L"), "JPEG"))
    assert decode(result.data).mode == "L"
    assert result.content_type == "image/jpeg"


def test_progressive_jpeg() -> None:
    result = grayscale(encode(hopper(), "JPEG", progressive=True, quality=90))
    assert_image_similar(decode(result.data), hopper("L"), 3)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP"])
def test_lossless_inputs_give_png_l(fmt: str) -> None:
    result = grayscale(encode(hopper(), fmt))
    out = decode(result.data)
    assert (result.content_type, result.extension, out.format, out.mode) == ("image/png", ".png", "PNG", "L")
    # Lossless in, lossless out: exactly Pillow's ITU-R 601 luma.
    assert mean_abs_diff(out, hopper("L")) == 0


def test_still_gif_and_webp_give_png() -> None:
    for fmt, params in (("GIF", {}), ("WEBP", {"lossless": True})):
        result = grayscale(encode(hopper(), fmt, **params))
        assert result.content_type == "image/png", fmt
        assert decode(result.data).mode == "L"


def test_rgba_png_gives_la_png_with_alpha_kept() -> None:
    source = hopper("RGBA")
    source.putalpha(Image.linear_gradient("L").resize(source.size))
    out = decode(grayscale(encode(source, "PNG")).data)
    assert (out.format, out.mode) == ("PNG", "LA")
    assert out.getchannel("A").tobytes() == source.getchannel("A").tobytes()
    assert mean_abs_diff(out.getchannel("L"), source.convert("L")) <= 1


def test_palette_with_transparency_gives_la() -> None:
    source = hopper().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    transparent_index = source.getpixel((0, 0))
    out = decode(grayscale(encode(source, "PNG", transparency=transparent_index)).data)
    assert out.mode == "LA"
    assert out.getpixel((0, 0))[1] == 0
    assert out.getpixel((63, 47))[1] == 255


def test_rgb_png_with_trns_colour_gives_la() -> None:
    source = hopper()
    out = decode(grayscale(encode(source, "PNG", transparency=(255, 255, 255))).data)
    assert out.mode == "LA"
    assert out.getpixel((0, 0)) == (255, 0)


def test_la_png_keeps_alpha() -> None:
    source = hopper("LA")
    out = decode(grayscale(encode(source, "PNG")).data)
    assert out.mode == "LA"


# 16-bit ------------------------------------------------------------------------------------------


def test_16_bit_gray_png_is_scaled_not_clipped() -> None:
    values = [0, 257, 1000, 32768, 65535]
    rows = b"".join(b"\0" + struct.pack(">H", v) for v in values)
    out = decode(grayscale(png_bytes(1, len(values), 16, 0, rows)).data)
    assert out.mode == "L"
    assert [out.getpixel((0, y)) for y in range(len(values))] == [0, 1, 4, 128, 255]


def test_16_bit_rgb_png_is_scaled_not_clipped() -> None:
    rows = b"".join(b"\0" + struct.pack(">HHH", v, v, v) for v in (0x8000, 0x0400, 0xFFFF))
    out = decode(grayscale(png_bytes(1, 3, 16, 2, rows)).data)
    assert [out.getpixel((0, y)) for y in range(3)] == [128, 4, 255]


def test_16_bit_tiff_is_scaled() -> None:
    source = Image.new("I;16", (2, 1))
    source.putpixel((0, 0), 65535)
    source.putpixel((1, 0), 16384)
    out = decode(grayscale(encode(source, "TIFF")).data)
    assert [out.getpixel((x, 0)) for x in range(2)] == [255, 64]


# Colour management and orientation --------------------------------------------------------------


def test_cmyk_jpeg_goes_through_its_icc_profile() -> None:
    if not CMYK_PROFILE.exists():
        absent("the CMYK ICC profile", f"nothing at {CMYK_PROFILE} (apt: libgs-common; .ci/run installs it)")
    icc = CMYK_PROFILE.read_bytes()
    cyan = Image.new("CMYK", (32, 32), (255, 0, 0, 0))
    result = grayscale(encode(cyan, "JPEG", icc_profile=icc, quality=95))
    assert result.content_type == "image/jpeg"
    out = decode(result.data)
    reference = ImageCms.profileToProfile(
        cyan, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"), outputMode="RGB"
    )
    assert reference is not None
    expected, naive = reference.convert("L").getpixel((0, 0)), cyan.convert("L").getpixel((0, 0))
    assert abs(expected - naive) > 20, "the profile must matter for this colour"
    assert abs(out.getpixel((16, 16)) - expected) <= 3


def test_cmyk_without_profile_uses_the_plain_conversion() -> None:
    cyan = Image.new("CMYK", (32, 32), (255, 0, 0, 0))
    out = decode(grayscale(encode(cyan, "JPEG", quality=95)).data)
    assert abs(out.getpixel((16, 16)) - cyan.convert("L").getpixel((0, 0))) <= 3


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied(fmt: str, orientation: int) -> None:
    source = hopper()
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(source, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    out = decode(grayscale(data).data)
    expected = ImageOps.exif_transpose(decode(data)).convert("L")
    assert out.size == expected.size
    assert_image_similar(out, expected, 2.5)
    assert out.getexif().get(0x0112) in (None, 1), "the output must not be rotated twice by viewers"


# Animation ---------------------------------------------------------------------------------------


def _frames(*colours: tuple[int, ...]) -> list[Image.Image]:
    return [Image.new("RGBA", (24, 16), colour) for colour in colours]


@pytest.mark.parametrize(("fmt", "content_type"), [("GIF", "image/gif"), ("WEBP", "image/webp"), ("PNG", "image/png")])
def test_animation_keeps_every_frame_and_duration(fmt: str, content_type: str) -> None:
    frames = _frames((255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 255, 255))
    frames = [f.convert("RGB") for f in frames]
    params: dict[str, object] = {"save_all": True, "append_images": frames[1:], "duration": [100, 250, 400], "loop": 0}
    if fmt == "WEBP":
        params["lossless"] = True
    result = grayscale(encode(frames[0], fmt, **params))
    assert result.content_type == content_type
    assert result.frames == 3
    out = Image.open(io.BytesIO(result.data))
    assert out.n_frames == 3
    seen = []
    for index in range(3):
        out.seek(index)
        out.load()
        seen.append((int(out.info["duration"]), out.convert("L").getpixel((5, 5))))
    expected = [(d, f.convert("L").getpixel((5, 5))) for d, f in zip([100, 250, 400], frames, strict=True)]
    for (duration, value), (want_duration, want_value) in zip(seen, expected, strict=True):
        assert duration == want_duration
        assert abs(value - want_value) <= 1


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_keeps_transparency(fmt: str) -> None:
    first, second = _frames((200, 50, 10, 255), (0, 0, 255, 255))
    first.paste((0, 0, 0, 0), (0, 0, 8, 8))
    params: dict[str, object] = {"save_all": True, "append_images": [second], "duration": [100, 200], "loop": 0}
    if fmt == "WEBP":
        params["lossless"] = True
    out = Image.open(io.BytesIO(grayscale(encode(first, fmt, **params)).data))
    out.seek(0)
    out.load()
    assert out.convert("LA").getpixel((2, 2))[1] == 0, "the transparent corner stays transparent"
    assert out.convert("LA").getpixel((20, 12))[1] == 255


# Bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, world", b"%PDF-1.4\n%...", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", bytes(1000)],
    ids=["empty", "text", "pdf", "png-signature-only", "jpeg-soi-only", "gif-signature-only", "zeros"],
)
def test_not_an_image_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidImage) as err:
        grayscale(data)
    assert not isinstance(err.value, ImageTooLarge)
    assert str(err.value)


def _samples() -> dict[str, bytes]:
    pic = noise()
    frames = [noise(), noise().transpose(Image.Transpose.ROTATE_180)]
    return {
        "jpeg": encode(pic, "JPEG", quality=95),
        "progressive-jpeg": encode(pic, "JPEG", quality=95, progressive=True),
        "png": encode(pic, "PNG"),
        "png16": png_bytes(64, 64, 16, 0, b"".join(b"\0" + bytes(range(128)) for _ in range(64))),
        "gif": encode(pic, "GIF"),
        "animated-gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "webp": encode(pic, "WEBP", quality=90),
        "animated-webp": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]),
        "tiff": encode(pic, "TIFF"),
        "bmp": encode(pic, "BMP"),
    }


@pytest.mark.parametrize("kind", list(_samples()))
def test_truncated_images_are_invalid(kind: str) -> None:
    data = _samples()[kind]
    grayscale(data)  # the whole file is fine
    for cut in (len(data) // 2, len(data) - 40):
        with pytest.raises(InvalidImage):
            grayscale(data[:cut])


@pytest.mark.parametrize("kind", list(_samples()))
def test_corrupted_images_raise_only_invalid_image(kind: str) -> None:
    data = _samples()[kind]
    rng = random.Random(kind)
    for _ in range(40):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            result = grayscale(bytes(damaged))
        except InvalidImage:
            continue
        # Some damage is survivable (a flipped bit in pixel data): then the output is whole.
        assert decode(result.data).size[0] > 0


def test_decompression_bomb_is_refused_from_the_header_without_allocating() -> None:
    bomb = png_bytes(50_000, 50_000, 8, 2)
    before = Image.core.get_stats()["new_count"]
    with pytest.raises(ImageTooLarge) as err:
        grayscale(bomb)
    assert Image.core.get_stats()["new_count"] == before, "no raster may be allocated"
    assert "GRAYSCALE_MAX_PIXELS" in str(err.value)


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(hopper(), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_header_over_the_limit_is_refused_before_decoding() -> None:
    bomb = _jpeg_with_size(12_000, 12_000)
    before = Image.core.get_stats()["new_count"]
    with pytest.raises(ImageTooLarge, match="12000x12000"):
        grayscale(bomb)
    assert Image.core.get_stats()["new_count"] == before


def test_animation_counts_every_frame_against_the_limit() -> None:
    frames = [Image.new("L", (100, 100), v) for v in range(0, 250, 10)]  # 25 frames x 10,000 pixels
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    budget = 25 * (10_000 + 16_384)  # every frame's pixels and its own cost
    assert grayscale(data, max_pixels=budget).frames == 25
    with pytest.raises(ImageTooLarge, match="25 frames"):
        grayscale(data, max_pixels=budget - 1)


def test_an_animation_past_the_frame_cap_is_refused_without_reading_every_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert grayscale(tiny_animation(1_000)).frames == 1_000  # the default cap, reached
    with pytest.raises(ImageTooLarge, match=r"more than 1,000 frames is over the limit \(GRAYSCALE_MAX_FRAMES\)"):
        grayscale(tiny_animation(1_001))
    monkeypatch.setenv("GRAYSCALE_MAX_FRAMES", "10")
    with pytest.raises(ImageTooLarge, match="more than 10 frames"):
        grayscale(tiny_animation(11))
    assert grayscale(tiny_animation(10)).frames == 10


def test_each_frame_costs_more_than_its_pixels() -> None:
    """Ten 1x1 frames are ten renders: each counts 16,384 pixels more in the budget."""
    data = tiny_animation(10)
    assert grayscale(data, max_pixels=10 * 16_385).frames == 10
    with pytest.raises(ImageTooLarge, match="10 frames"):
        grayscale(data, max_pixels=10 * 16_385 - 1)


def test_limit_comes_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(hopper(), "PNG")  # 64 x 48 = 3,072 pixels
    monkeypatch.setenv("GRAYSCALE_MAX_PIXELS", "3000")
    with pytest.raises(ImageTooLarge):
        grayscale(data)
    assert grayscale(data, max_pixels=3072).width == 64
    monkeypatch.setenv("GRAYSCALE_MAX_PIXELS", "3072")
    assert grayscale(data).width == 64


def test_image_too_large_is_an_invalid_image_and_a_value_error() -> None:
    assert issubclass(ImageTooLarge, InvalidImage)
    assert issubclass(InvalidImage, ValueError)


def test_probe_reads_the_header_only() -> None:
    info = probe(encode(hopper(), "WEBP"))
    assert (info.format, info.content_type, info.width, info.height, info.frames) == ("WEBP", "image/webp", 64, 48, 1)
    with pytest.raises(InvalidImage):
        probe(b"not an image")


def test_jpeg_output_keeps_the_source_luma_table_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAYSCALE_JPEG_QUALITY", raising=False)
    data = encode(noise(), "JPEG", quality=70)
    source_table = list(Image.open(io.BytesIO(data)).quantization[0])
    out = Image.open(io.BytesIO(grayscale(data).data))
    assert list(out.quantization[0]) == source_table
    assert len(grayscale(data).data) < len(data), "one channel at the same quality is smaller"


def test_jpeg_quality_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(noise(), "JPEG", quality=70)
    monkeypatch.setenv("GRAYSCALE_JPEG_QUALITY", "20")
    low = grayscale(data)
    monkeypatch.setenv("GRAYSCALE_JPEG_QUALITY", "95")
    high = grayscale(data)
    assert len(low.data) < len(high.data)
    monkeypatch.setenv("GRAYSCALE_JPEG_QUALITY", "high")
    with pytest.raises(ConfigError, match="GRAYSCALE_JPEG_QUALITY"):
        grayscale(data)


def test_a_tiff_without_its_width_tag_is_invalid() -> None:
    """Found by the fuzzer: Pillow raised TypeError ("Missing dimensions") for this one."""
    data = bytearray(encode(hopper(), "TIFF"))
    data[130] = 1
    with pytest.raises(InvalidImage):
        grayscale(bytes(data))


# Alpha, palettes, animations, MPO, 16-bit alpha, TIFF orientation: pixel for pixel --------------


def test_alpha_that_varies_is_kept_pixel_for_pixel() -> None:
    source = noise((40, 30), "RGBA")  # every pixel its own alpha and colour
    out = decode(grayscale(encode(source, "PNG")).data)
    assert out.mode == "LA"
    assert out.getchannel("A").tobytes() == source.getchannel("A").tobytes()
    assert len(set(source.getchannel("A").tobytes())) > 100, "the alpha really varies"
    assert out.getchannel("L").tobytes() == source.convert("L").tobytes()


def test_palette_transparency_keeps_luma_and_alpha() -> None:
    source = hopper().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    transparent = source.getpixel((0, 0))
    out = decode(grayscale(encode(source, "PNG", transparency=transparent)).data)
    luma = source.convert("RGB").convert("L")
    for x, y in [(0, 0), (20, 20), (63, 47), (40, 5), (5, 40)]:
        expected_alpha = 0 if source.getpixel((x, y)) == transparent else 255
        assert out.getpixel((x, y)) == (luma.getpixel((x, y)), expected_alpha), (x, y)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_every_frame_of_an_animation_keeps_its_transparency_and_luma(fmt: str) -> None:
    colours = [(200, 50, 10, 255), (0, 0, 255, 255), (30, 220, 90, 255)]
    frames = _frames(*colours)
    for index, frame in enumerate(frames):  # a different transparent square in each frame
        frame.paste((0, 0, 0, 0), (index * 8, 0, index * 8 + 8, 8))
    params: dict[str, object] = {"save_all": True, "append_images": frames[1:], "duration": [100] * 3, "loop": 0}
    if fmt == "WEBP":
        params["lossless"] = True
    if fmt == "GIF":
        params["disposal"] = 2
    out = Image.open(io.BytesIO(grayscale(encode(frames[0], fmt, **params)).data))
    assert out.n_frames == 3
    for index, colour in enumerate(colours):
        out.seek(index)
        frame = out.convert("LA")
        inside, outside = (index * 8 + 3, 3), ((index * 8 + 12) % 24, 12)
        want = Image.new("RGB", (1, 1), colour[:3]).convert("L").getpixel((0, 0))
        assert frame.getpixel(inside)[1] == 0, f"frame {index}: its transparent square"
        value, alpha = frame.getpixel(outside)
        assert alpha == 255 and abs(value - want) <= 1, f"frame {index}: {value} != {want}"


def test_mpo_gives_the_first_picture_in_grayscale_jpeg() -> None:
    first, second = hopper(), hopper().rotate(180)
    data = encode(first, "MPO", save_all=True, append_images=[second], quality=95)
    assert Image.open(io.BytesIO(data)).format == "MPO"
    result = grayscale(data)
    assert (result.content_type, result.source_type, result.frames) == ("image/jpeg", "image/jpeg", 1)
    out = decode(result.data)
    assert (out.format, out.mode, out.size) == ("JPEG", "L", first.size)
    assert_image_similar(out, first.convert("L"), 2.5)
    assert mean_abs_diff(out, second.convert("L")) > 10, "the first picture, not the second"


def test_16_bit_with_alpha_is_scaled_not_clipped() -> None:
    # Grayscale + alpha at 16 bits (colour type 4): values and alpha both scaled to 8 bits.
    pixels = [(0, 65535), (0x8000, 0x8000), (65535, 0x0400), (0x0400, 65535)]
    rows = b"".join(b"\0" + struct.pack(">HH", v, a) for v, a in pixels)
    out = decode(grayscale(png_bytes(1, len(pixels), 16, 4, rows)).data)
    assert out.mode == "LA"
    assert [out.getpixel((0, y)) for y in range(len(pixels))] == [(0, 255), (128, 128), (255, 4), (4, 255)]
    # RGBA at 16 bits (colour type 6).
    rgba = [(0x8000, 0x8000, 0x8000, 0xFFFF), (0xFFFF, 0xFFFF, 0xFFFF, 0x8000)]
    rows = b"".join(b"\0" + struct.pack(">HHHH", *p) for p in rgba)
    out = decode(grayscale(png_bytes(1, 2, 16, 6, rows)).data)
    assert [out.getpixel((0, y)) for y in range(2)] == [(128, 255), (255, 128)]


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_on_a_tiff(orientation: int) -> None:
    source = hopper()
    buf = io.BytesIO()
    source.save(buf, "TIFF", tiffinfo={0x0112: orientation})
    assert Image.open(io.BytesIO(buf.getvalue())).getexif().get(0x0112) == orientation
    out = decode(grayscale(buf.getvalue()).data)
    # Written out here, not with ImageOps.exif_transpose: 3 is upside down, 6 and 8 quarter turns.
    expected = {3: source.rotate(180), 6: source.rotate(270, expand=True), 8: source.rotate(90, expand=True)}[
        orientation
    ].convert("L")
    assert out.size == expected.size
    assert out.tobytes() == expected.tobytes()
