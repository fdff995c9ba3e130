"""Regenerate the sample images in this folder: python samples/make_samples.py

They are drawn with Pillow (no third-party pictures), small enough to commit,
and cover the paths of the grayscale contract, plus one broken file that the
demo shows ending FAILED with a reason.
"""

from __future__ import annotations

import struct
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

HERE = Path(__file__).resolve().parent


def scene(size: tuple[int, int] = (480, 320)) -> Image.Image:
    """A colourful picture: a Mandelbrot set over a sky-to-grass gradient, with a sun."""
    width, height = size
    fractal = Image.effect_mandelbrot(size, (-2.2, -1.2, 1.0, 1.2), 60)
    colour = ImageOps.colorize(fractal, black=(20, 40, 120), white=(250, 200, 60), mid=(200, 60, 80))
    sky = Image.linear_gradient("L").resize(size)
    backdrop = ImageOps.colorize(sky, black=(120, 180, 255), white=(40, 140, 60))
    picture = Image.blend(backdrop, colour, 0.6)
    draw = ImageDraw.Draw(picture)
    draw.ellipse((width - 110, 20, width - 30, 100), fill=(255, 230, 90))
    draw.rectangle((20, height - 80, 140, height - 20), fill=(200, 30, 30))
    return picture


def main() -> None:
    base = scene()
    base.save(HERE / "sunset.jpg", quality=88)

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; viewers rotate it 90 degrees clockwise
    base.resize((320, 240)).save(HERE / "rotated-exif.jpg", quality=88, exif=exif.tobytes())

    badge = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(badge).ellipse((10, 10, 190, 190), fill=(30, 120, 220, 255), outline=(250, 200, 0, 255), width=12)
    badge.save(HERE / "badge-alpha.png")

    frames = [scene((160, 120)).rotate(angle) for angle in (0, 90, 180, 270)]
    frames[0].save(HERE / "spinner.gif", save_all=True, append_images=frames[1:], duration=[120, 120, 120, 400], loop=0)

    base.resize((240, 160)).save(HERE / "scan.tiff", compression="tiff_lzw")

    good = (HERE / "sunset.jpg").read_bytes()
    (HERE / "truncated.jpg").write_bytes(good[: len(good) // 3])

    # A 16-bit grayscale ramp: it must come out scaled (0..255), not clipped to white.
    ramp = b"".join(struct.pack(">H", x * 257) for x in range(256)) * 64
    Image.frombytes("I;16B", (256, 64), ramp).save(HERE / "ramp-16bit.png")


if __name__ == "__main__":
    main()
