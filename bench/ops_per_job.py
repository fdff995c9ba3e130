"""Storage and queue operations per processed upload, by kind, and their price per million images.

    python bench/ops_per_job.py [--jobs 20] [--json]

It runs the pipeline's use cases as each cloud's functions call them (GCP:
``on_upload`` gets the MD5 and type from the notification; Azure: ``on_upload``
gets only the name from Event Grid) against fake-gcs-server and Azurite, through
a forwarding proxy that logs every storage request, and counts the queue sends
at the queue port. Straight uploads and ``POST /jobs`` uploads are counted apart;
the user's own upload write is listed on its own line, not in the pipeline's.

Observed here: every storage request, and the queue sends. Modelled, with the
source: Pub/Sub throughput (billed at least 1 KB a message, per publish and per
delivery), the Functions host's receive and delete of each queue message, the
function invocations, and the seed's design (one ``jobs.json`` rewritten on each
update, polled every 2 s). Prices are list prices, in USD, as of PRICES_DATE.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.memory import InMemoryTaskQueue  # noqa: E402
from core.pipeline import Services, accept_upload, process_job, submit_upload  # noqa: E402
from devstack.emulators import Azurite, FakeGcs  # noqa: E402
from devstack.environment import environment  # noqa: E402
from devstack.proxy import ForwardingProxy  # noqa: E402

PRICES_DATE = "2026-11-27"
PRICES = {  # USD list prices (a US region), from the pricing pages below; not checked live from here
    "gcs class A per 1k": 0.005,  # cloud.google.com/storage/pricing, Standard storage
    "gcs class B per 1k": 0.0004,
    "pubsub per TiB": 40.0,  # cloud.google.com/pubsub/pricing, throughput, 1 KB minimum per message
    "gcp invocations per million": 0.40,  # cloud.google.com/functions/pricing (Cloud Run functions)
    "azure write per 10k": 0.065,  # azure.microsoft.com/pricing/details/storage/blobs, Hot, LRS
    "azure read per 10k": 0.005,
    "azure list per 10k": 0.065,
    "azure queue per 10k": 0.004,  # azure.microsoft.com/pricing/details/storage/queues, LRS
    "azure executions per million": 0.40,  # azure.microsoft.com/pricing/details/functions, Flex on demand
}


def gcs_kind(method: str, path: str) -> str:
    """GCS operation class of one JSON API request (``cloud.google.com/storage/pricing#operations-by-class``)."""
    split = urllib.parse.urlsplit(path)
    if method == "DELETE":
        return "free"
    if method == "GET":
        listing = split.path.rstrip("/").endswith("/o")  # objects.list
        return "class A" if listing else "class B"
    return "class A"  # insert, patch, rewrite, compose


def azure_kind(method: str, path: str) -> str:
    """Azure Blob operation kind of one REST request."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(path).query))
    if method == "DELETE":
        return "free"
    if query.get("comp") == "list":
        return "list"
    return "read" if method in ("GET", "HEAD") else "write"


def photo(index: int) -> bytes:
    """A small JPEG, different for each index (so each is its own job)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (index % 256, index // 256 % 256, 40)).save(out, "JPEG")
    return out.getvalue()


def count(cloud: str, jobs: int) -> dict[str, dict[str, float]]:
    """Per job, for straight and API uploads: storage requests by kind, queue sends, and the upload itself."""
    data = [photo(i) for i in range(2 * jobs)]
    found: dict[str, dict[str, float]] = {}
    emulator = FakeGcs() if cloud == "gcp" else Azurite()
    port = emulator.port if isinstance(emulator, FakeGcs) else emulator.blob_port
    proxy = ForwardingProxy(port, record=True)
    if isinstance(emulator, FakeGcs):
        emulator.external_url = proxy.url  # media downloads follow the links it hands out: through the proxy too
    with emulator, proxy:
        env = (
            {"STORAGE_EMULATOR_HOST": proxy.url, "GOOGLE_CLOUD_PROJECT": "local"}
            if isinstance(emulator, FakeGcs)
            else {"AZURE_STORAGE_CONNECTION_STRING": emulator.connection_string_via(proxy.port)}
        )
        with environment(env):
            store = _store(cloud)
            kind = gcs_kind if cloud == "gcp" else azure_kind
            queue = InMemoryTaskQueue()  # the sends, counted here; the host's side is modelled
            svc = Services.over(store, queue)
            svc.upload_events = True
            for way in ("straight", "api"):
                upload_ops: Counter[str] = Counter()
                pipeline_ops: Counter[str] = Counter()
                before = len(queue.messages)
                for index in range(jobs):
                    body = data[index if way == "straight" else jobs + index]
                    proxy.take()
                    if way == "straight":
                        key = f"uploads/ops-{index:04d}.jpg"
                        store.put(key, body, content_type="image/jpeg")
                        upload_ops.update(kind(m, p) for m, p in proxy.take())
                        md5 = hashlib.md5(body).hexdigest()
                        # GCP: the notification carries the MD5 and type; Azure's event does not.
                        extra = {"md5": md5, "content_type": "image/jpeg"} if cloud == "gcp" else {}
                        job = accept_upload(svc, key, **extra)
                    else:
                        job = submit_upload(svc, body, filename=f"api-{index}.jpg")
                        upload_ops.update(kind(m, p) for m, p in proxy.take())
                        extra = {"md5": hashlib.md5(body).hexdigest(), "content_type": "image/jpeg"}
                        job = accept_upload(svc, job.source, **(extra if cloud == "gcp" else {}))
                    assert job is not None
                    process_job(svc, job.id)
                    pipeline_ops.update(kind(m, p) for m, p in proxy.take())
                sends = len(queue.messages) - before
                found[way] = {
                    **{f"storage {k}": v / jobs for k, v in sorted(pipeline_ops.items())},
                    "queue sends": sends / jobs,
                    **{f"the upload itself: {k}": v / jobs for k, v in sorted(upload_ops.items())},
                }
    return found


def _store(cloud: str) -> Any:
    if cloud == "gcp":
        from core.clouds.gcs import GcsObjectStore

        store = GcsObjectStore("ops-bench")
        store.create_bucket()
        return store
    from core.clouds.azure_blob import AzureBlobObjectStore

    store = AzureBlobObjectStore("ops-bench")
    store.create_container()
    return store


def dollars_per_million(cloud: str, ops: dict[str, float], api: bool) -> dict[str, float]:
    """USD per million images: storage, queue and invocations (observed counts, modelled queue side)."""
    million, p = 1_000_000, PRICES
    if cloud == "gcp":
        storage = (ops.get("storage class A", 0) * p["gcs class A per 1k"] / 1000
                   + ops.get("storage class B", 0) * p["gcs class B per 1k"] / 1000) * million  # fmt: skip
        # The job messages and the bucket notification, each published and delivered once, 1 KB billed each way.
        messages = ops["queue sends"] + (1 if ops["queue sends"] else 0)
        queue = messages * 2 * 1024 / 2**40 * p["pubsub per TiB"] * million
        invocations = (3 if api else 2) * p["gcp invocations per million"]
    else:
        storage = (ops.get("storage write", 0) * p["azure write per 10k"] / 10_000
                   + ops.get("storage read", 0) * p["azure read per 10k"] / 10_000
                   + ops.get("storage list", 0) * p["azure list per 10k"] / 10_000) * million  # fmt: skip
        # Each send, then the host's receive and delete: 3 queue operations per message.
        queue = ops["queue sends"] * 3 * p["azure queue per 10k"] / 10_000 * million
        invocations = (3 if api else 2) * p["azure executions per million"]
    return {"storage": storage, "queue": queue, "invocations": invocations, "total": storage + queue + invocations}


def seed_design(cloud: str) -> dict[str, float]:
    """The seed's design, modelled: one ``jobs.json`` for all jobs, read and rewritten on each of 3 updates
    (PENDING, PROCESSING, DONE), the upload read and the result written, and a list every 2 s; at a million
    images a month the poll adds 1.3 lists an image (2,592,000 s / 2 s / 1,000,000)."""
    polls = 30 * 24 * 3600 / 2 / 1_000_000
    if cloud == "gcp":  # each read is 2 class B with this SDK (metadata, then media), as measured above
        return {"storage class A": 3 + 1 + polls, "storage class B": 2 * (3 + 1), "queue sends": 0}
    return {"storage write": 3 + 1, "storage read": 3 + 1, "storage list": polls, "queue sends": 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRAYSCALE_LEASE_SECONDS", "120")
    report: dict[str, Any] = {"prices": PRICES, "prices_date": PRICES_DATE}
    for cloud in ("gcp", "azure"):
        found = count(cloud, args.jobs)
        report[cloud] = found
        print(f"{cloud}: operations per processed upload (over {args.jobs} jobs each way)")
        for way, ops in found.items():
            money = dollars_per_million(cloud, ops, api=way == "api")
            print(f"  {way:9} " + ", ".join(f"{k} {v:g}" for k, v in ops.items()))
            print(f"  {'':9} $ per million images: storage {money['storage']:.2f}, queue {money['queue']:.2f}, "
                  f"invocations {money['invocations']:.2f}, total {money['total']:.2f}")  # fmt: skip
        seed = seed_design(cloud)
        money = dollars_per_million(cloud, seed, api=False)
        print("  seed design (modelled): " + ", ".join(f"{k} {v:g}" for k, v in seed.items())
              + f"; $ per million: storage {money['storage']:.2f}, total {money['total']:.2f}")  # fmt: skip
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
