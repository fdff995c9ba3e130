"""The native decoders (libheif/libde265, libavif/dav1d, libjxl) fed mutated files, in a process of their own.

``tests/unit/test_fuzz.py`` runs this with memory and CPU limits, so that a crash (a segfault, an abort) or a
runaway allocation fails a test instead of killing pytest. Before each input, it is written to ``--last``: after a
crash, that file is the input that crashed.

    python -m tests.fuzz_native SEED_FILE... --count 200 --last /tmp/last-input
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from core.errors import InvalidImage
from core.imaging import grayscale


def mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 12)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    if rng.random() < 0.3:
        data = data[: rng.randint(1, len(data))]
    return bytes(data)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("seeds", nargs="+", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--last", type=Path, required=True)
    parser.add_argument("--random-seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.random_seed)
    outcomes: dict[str, int] = {"rendered": 0, "invalid": 0}
    for path in args.seeds:
        seed = path.read_bytes()
        for _ in range(args.count):
            data = mutate(seed, rng)
            args.last.write_bytes(data)
            try:
                grayscale(data, max_pixels=4_000_000)
                outcomes["rendered"] += 1
            except InvalidImage:
                outcomes["invalid"] += 1
    print(json.dumps(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
