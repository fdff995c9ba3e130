"""Benchmark ``core.imaging.grayscale`` against the old pipeline and the decode bound.

    python bench/grayscale.py [FOLDER] [--repeat N] [--check]

FOLDER defaults to ../shared/data/seed-photos (beside the project), else samples/.
Everything runs in one process pinned to one core. For each JPEG it takes the
best of N runs of:

- ours:   ``core.imaging.grayscale`` (JPEG decoded straight to luma, re-encoded as JPEG);
- old:    the pipeline this project replaces: open, ``convert("L")``, PNG at default settings;
- decode: the decode-only bound: JPEG decoded to luma (draft mode), nothing else.

It prints megapixels per second for each and the two ratios, then the peak
memory (growth of peak RSS once imports are done) of each on the largest
photo, each in a fresh child process. A table compares PNG compression levels on the
same photos as lossless input.

The last table takes the formats phones and browsers send (HEIC, AVIF, JPEG XL), made in the same run from
the photos by the real encoders (pillow-heif in a child process: its libheif cannot share a process with
the decoder's), and compares ``grayscale`` with its bound: decoding the input plus encoding the output
alone, with the same decoder, encoder and settings (no colour conversion, luma or orientation).
``--check`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from core.imaging import grayscale  # noqa: E402

TARGET_VS_OLD = 12.0
TARGET_VS_DECODE = 0.8
TARGET_VS_BOUND = 0.8
NEW_FORMATS = ("HEIC", "AVIF", "JXL")


def ours(data: bytes) -> bytes:
    return grayscale(data).data


def old_pipeline(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data))
    out = io.BytesIO()
    im.convert("L").save(out, "PNG")
    return out.getvalue()


def decode_only(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data))
    im.draft("L", im.size)
    im.load()
    return b""


CASES: dict[str, Callable[[bytes], bytes]] = {"ours": ours, "old": old_pipeline, "decode": decode_only}


def default_folder() -> Path:
    shared = ROOT.parent / "shared" / "data" / "seed-photos"
    return shared if shared.is_dir() else ROOT / "samples"


def megapixels(data: bytes) -> float:
    with Image.open(io.BytesIO(data)) as im:
        return im.width * im.height / 1e6


def timed(fn: Callable[[bytes], bytes], data: bytes) -> float:
    start = time.perf_counter()
    fn(data)
    return time.perf_counter() - start


def peak_rss_mib(case: str, path: Path) -> float:
    """Growth of max RSS in a fresh child that runs ``case`` once on ``path`` (imports excluded)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, str(path)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip()) / 1024


def high_water_kib() -> int:
    """This process's peak RSS in KiB. VmHWM, unlike ru_maxrss, does not carry a
    forking parent's peak across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def png_levels(datas: list[bytes]) -> list[tuple[int, float, int]]:
    """(level, MP/s, total bytes) for PNG output of the gray photos at zlib levels 1, 3, 6 (default), 9."""
    grays = []
    for data in datas:
        im = Image.open(io.BytesIO(data))
        im.draft("L", im.size)
        grays.append(im.convert("L"))
    total_mp = sum(g.width * g.height for g in grays) / 1e6
    rows = []
    for level in (1, 3, 6, 9):
        size, elapsed = 0, 0.0
        for g in grays:
            start = time.perf_counter()
            buf = io.BytesIO()
            g.save(buf, "PNG", compress_level=level)
            elapsed += time.perf_counter() - start
            size += buf.tell()
        rows.append((level, total_mp / elapsed, size))
    return rows


def make_inputs(datas: list[bytes], folder: Path) -> dict[str, list[bytes]]:
    """Each photo as HEIC (quality 80, in a child), AVIF (Pillow's defaults), JPEG XL (libjxl recompressing it)."""
    import pylibjxl

    made: dict[str, list[bytes]] = {"HEIC": [], "AVIF": [], "JXL": []}
    for index, data in enumerate(datas):
        rgb = Image.open(io.BytesIO(data)).convert("RGB")
        buf = io.BytesIO()
        rgb.save(buf, "AVIF")
        made["AVIF"].append(buf.getvalue())
        made["JXL"].append(pylibjxl.jpeg_to_jxl(data))  # a recompressed JPEG, as most JPEG XL photos are today
        png = folder / f"{index}.png"
        rgb.save(png, compress_level=1)
    code = (
        "import sys, pillow_heif\nfrom PIL import Image\n"
        "for path in sys.argv[1:]:\n"
        "    pillow_heif.from_pillow(Image.open(path)).save(path + '.heic', quality=80)\n"
    )
    pngs = [str(folder / f"{index}.png") for index in range(len(datas))]
    subprocess.run([sys.executable, "-c", code, *pngs], check=True)
    made["HEIC"] = [Path(png + ".heic").read_bytes() for png in pngs]
    return made


def bound(data: bytes, output: bytes) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """Decode ``data`` as it is; encode ``output``'s pixels again as ours did: the work no pipeline can skip."""
    from core import imaging

    result = Image.open(io.BytesIO(output))
    result.load()
    fmt = result.format or "PNG"
    params: dict[str, object] = {"JPEG": {"quality": 90}, "PNG": {"compress_level": 1}}.get(fmt, {})
    if fmt == "AVIF":
        params = {"quality": imaging.AVIF_QUALITY, "speed": imaging.AVIF_SPEED}
    pixels = result.copy()

    def decode(raw: bytes) -> bytes:
        im = Image.open(io.BytesIO(raw))
        im.load()
        return b""

    def encode(_: bytes) -> bytes:
        buf = io.BytesIO()
        pixels.save(buf, fmt, **params)
        return buf.getvalue()

    return decode, encode


def new_formats(datas: list[bytes], repeat: int) -> dict[str, float]:
    """ours / bound for each new format; prints MP/s of each."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        made = make_inputs(datas, Path(folder))
    total_mp = sum(megapixels(d) for d in datas)
    ratios = {}
    print(f"HEIC, AVIF and JPEG XL made from {len(datas)} of the photos ({total_mp:.1f} MP), best of {repeat}:")
    for fmt in NEW_FORMATS:
        ours_s = decode_s = encode_s = 0.0
        for data in made[fmt]:
            output = grayscale(data).data
            decode, encode = bound(data, output)
            ours_s += min(timed(ours, data) for _ in range(repeat))
            decode_s += min(timed(decode, data) for _ in range(repeat))
            encode_s += min(timed(encode, data) for _ in range(repeat))
        ratios[fmt] = (decode_s + encode_s) / ours_s
        out_fmt = Image.open(io.BytesIO(grayscale(made[fmt][0]).data)).format
        bound_rate = total_mp / (decode_s + encode_s)
        print(f"  {fmt:<5} -> {out_fmt:<5} ours {total_mp / ours_s:6.1f} MP/s; bound {bound_rate:6.1f}"
              f" MP/s (decode {total_mp / decode_s:6.1f}, encode {total_mp / encode_s:6.1f});"
              f" ours / bound = {ratios[fmt]:.2f} (target >= {TARGET_VS_BOUND})")  # fmt: skip
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5, help="best of N runs per photo (default 5)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--new-formats", type=int, default=3, help="the largest N photos as HEIC/AVIF/JXL (default 3)")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        case, file = args.child
        data = Path(file).read_bytes()
        before = high_water_kib()
        CASES[case](data)
        print(high_water_kib() - before)
        return 0

    folder = args.folder or default_folder()
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not paths:
        print(f"no JPEG files in {folder}", file=sys.stderr)
        return 2
    datas = [p.read_bytes() for p in paths]
    total_mp = sum(megapixels(d) for d in datas)
    print(f"{len(paths)} JPEGs from {folder}, {total_mp:.1f} MP in all; {pin_to_one_core()}; best of {args.repeat}")

    # Interleave the cases photo by photo and keep each one's best time, so
    # that a burst of load on the machine hits all three alike.
    best = {name: [float("inf")] * len(datas) for name in CASES}
    gc.disable()
    for _ in range(args.repeat):
        for index, data in enumerate(datas):
            for name, fn in CASES.items():
                best[name][index] = min(best[name][index], timed(fn, data))
    gc.enable()
    rates = {}
    for name in CASES:
        elapsed = sum(best[name])
        rates[name] = total_mp / elapsed
        print(f"  {name:<7} {rates[name]:8.1f} MP/s   ({elapsed * 1000:8.1f} ms)")
    vs_old = rates["ours"] / rates["old"]
    vs_decode = rates["ours"] / rates["decode"]
    print(f"ours / old    = {vs_old:6.2f}x   (target >= {TARGET_VS_OLD}x)")
    print(f"ours / decode = {vs_decode:6.2f}    (target >= {TARGET_VS_DECODE})")

    largest = max(paths, key=lambda p: megapixels(p.read_bytes()))
    peaks = {name: peak_rss_mib(name, largest) for name in CASES}
    size = megapixels(largest.read_bytes())
    print(f"peak memory on the largest photo ({largest.name}, {size:.1f} MP), MiB above the interpreter's:")
    for name, mib in peaks.items():
        print(f"  {name:<7} {mib:8.1f} MiB")

    print("PNG output of the same photos by zlib level (lossless inputs take this path):")
    for level, rate, size in png_levels(datas):
        note = "  <- ours" if level == 1 else "  <- Pillow's default" if level == 6 else ""
        print(f"  level {level}: {rate:7.1f} MP/s  {size / 1e6:7.2f} MB{note}")

    # The largest: a phone's 12 MP photo is the size that matters.
    chosen = sorted(datas, key=megapixels, reverse=True)[: args.new_formats]
    ratios = new_formats(chosen, max(1, min(args.repeat, 3))) if chosen else {}

    missed = vs_old < TARGET_VS_OLD or vs_decode < TARGET_VS_DECODE or any(r < TARGET_VS_BOUND for r in ratios.values())
    if args.check and missed:
        print("target missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
