"""Copying one object, and a whole run of them on one machine.

``copy_object`` is safe to repeat: it skips an object whose blob already has
the same size and MD5, or records the same source generation. A large object
is streamed as staged blocks and becomes visible only when the block list is
committed, so a killed copy never leaves a partial blob under the final name;
the next attempt reuses the blocks that were already staged for that generation.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import itertools
import logging
import queue
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from core import crc32c
from core.errors import Conflict, CoreError, NotFound
from core.logs import redact
from core.ports import CAVEATS, Destination, ObjectDetails, Source
from migrate import rules
from migrate.throttle import Throttle

if TYPE_CHECKING:  # aiohttp is imported by the bulk copy only
    from core.clouds import aio

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024
BLOCKS_IN_FLIGHT = 4
"""Blocks of one large object staged at once: memory stays under workers x 5 x block size."""
PIPELINE_FIRST = ("jobs/", "results/")
"""Copied before everything else, and ``uploads/`` last: when Azure's trigger sees a
migrated upload, its DONE record is already there, so it is not processed again."""
PIPELINE_LAST = "uploads/"
NEVER_COPIED = ("_cutover/",)
"""Control objects of the source cloud (the cutover freeze marker) stay where they are."""


class Reader(Protocol):
    """What copying one object reads from (a ``Source``, or a ``Source`` seen under another prefix)."""

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes: ...
    def signed_url(self, key: str, generation: str | None) -> str: ...


SINGLE_PUT_FROM_URL_LIMIT = 5000 * 1024 * 1024
MAX_BLOCKS = 50_000
"""Azure commits at most 50,000 blocks into one blob."""
MIB = 1024 * 1024


def block_size_for(size: int, block_size: int) -> int:
    """``block_size``, grown to whole MiB where ``size`` would need more than ``MAX_BLOCKS`` blocks of it."""
    need = -(-size // MAX_BLOCKS)
    return block_size if need <= block_size else -(-need // MIB) * MIB


def block_ranges(size: int, block_size: int, part_bytes: int) -> list[tuple[int, int]]:
    """The object's blocks cut into parts of about ``part_bytes``: ``(first, last)`` block indexes, inclusive."""
    size_of_block = block_size_for(size, block_size)
    blocks = -(-size // size_of_block)
    per_part = max(1, part_bytes // size_of_block)
    return [(first, min(first + per_part, blocks) - 1) for first in range(0, blocks, per_part)]


@dataclass(frozen=True)
class Options:
    block_size: int = DEFAULT_BLOCK_SIZE
    encode_names: bool = False
    tiers: dict[str, str] = field(default_factory=lambda: dict(rules.DEFAULT_TIERS))
    dry_run: bool = False
    server_side: bool = False
    """Azure fetches the bytes from a GCS signed URL; none pass through this process."""
    single_put_limit: int = SINGLE_PUT_FROM_URL_LIMIT
    throttle: Throttle | None = None
    """Caps on objects and bytes a second, over every worker of the run (``--max-rate``, ``--bwlimit``)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Metadata this copy adds (a cutover's ``DEFERRED_KEY``); a blob without them is not current."""


@dataclass
class Outcome:
    """What happened to one object: one line of the ``--report`` JSONL."""

    key: str
    action: str
    """copied | skipped | failed | would-copy | staged (a part of an object, not committed yet)"""
    bytes: int = 0
    md5: str | None = None
    tier: str | None = None
    error: str | None = None
    dest_key: str | None = None
    notes: list[str] = field(default_factory=list)
    caveats: tuple[str, ...] = ()
    """What the copy could not carry for this object (``core.ports.CAVEATS``)."""

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"key": self.key, "action": self.action, "bytes": self.bytes, "md5": self.md5}
        record.update(tier=self.tier, error=self.error)
        if self.dest_key and self.dest_key != self.key:
            record["dest_key"] = self.dest_key
        if self.notes:
            record["notes"] = self.notes
        if self.caveats:
            record["cannot_carry"] = list(self.caveats)
        return record


def existing_blob(dest: Destination) -> Callable[[str], ObjectDetails | None]:
    """``head`` that answers None for a missing blob: what ``copy_entry`` takes as ``existing``."""

    def head(key: str) -> ObjectDetails | None:
        try:
            return dest.head(key)
        except NotFound:
            return None

    return head


def dest_key_for(key: str, options: Options) -> tuple[str | None, str | None]:
    """(the blob name, None) or (None, why the name cannot be used)."""
    problem = rules.azure_name_problem(key)
    if problem is None:
        return key, None
    if options.encode_names:
        return rules.encode_name(key), None
    return None, f"name {problem}: Azure would reject or alter it; rerun with --encode-names to store it encoded"


def is_current(obj: ObjectDetails, existing: ObjectDetails | None) -> bool:
    """True when the blob already holds this object, or a newer generation of it (a replication got there first)."""
    if existing is None:
        return False
    recorded = existing.metadata.get(rules.GENERATION_KEY)
    if obj.generation and recorded:
        if recorded == obj.generation:
            return True
        if recorded.isdigit() and obj.generation.isdigit():  # generations of one object name only grow
            return int(recorded) > int(obj.generation)
    return existing.size == obj.size and obj.md5 is not None and existing.md5 == obj.md5


def up_to_date(obj: ObjectDetails, existing: ObjectDetails | None, options: Options) -> bool:
    """``is_current``, and the blob carries every tag the copy would write: nothing to copy."""
    if not is_current(obj, existing):
        return False
    assert existing is not None
    return all(existing.metadata.get(name) == value for name, value in options.tags.items())


def conditions(details: ObjectDetails) -> dict[str, Any]:
    """Write only over the blob that was there when the copy looked (``details.version``), or where there was none:
    two writers (the bulk copy and a replication) never overwrite each other's newer generation unseen."""
    return {"if_match": details.version} if details.version else {"if_none_match": True}


def copy_object(
    source: Reader,
    dest: Destination,
    obj: ObjectDetails,
    existing: ObjectDetails | None,
    options: Options,
    *,
    blocks: tuple[int, int] | None = None,
) -> Outcome:
    """Copy one object; never raises for a per-object problem, it reports it.

    With ``blocks=(first, last)`` only those blocks are staged (one part of an object too big for one
    function invocation), and the object is committed by whichever part finds every block staged and
    proven: the outcome is ``copied`` for that part and ``staged`` for the others.
    """
    outcome, details = _prepare(obj, existing, options, blocks)
    if details is None:
        return outcome
    try:
        if options.throttle is not None:
            options.throttle.take(outcome.bytes)
        if blocks is not None:
            note: str | None = None
            if not _copy_part(source, dest, obj, details, outcome.tier, options.block_size, blocks):
                outcome.action = "staged"
        elif options.server_side and obj.size > 0:
            note = _copy_server_side(source, dest, obj, details, outcome.tier, options)
        else:
            note = _stream(source, dest, obj, details, outcome.tier, options.block_size)
        if note:
            outcome.notes.append(note)
    except Exception as exc:
        _settle(outcome, exc, obj, options, existing_blob(dest)(details.key) if isinstance(exc, Conflict) else None)
    return outcome


def _prepare(
    obj: ObjectDetails, existing: ObjectDetails | None, options: Options, blocks: tuple[int, int] | None
) -> tuple[Outcome, ObjectDetails | None]:
    """The outcome so far, and the blob to write (its name, metadata and the version it may replace); no blob
    when nothing is to be written (a folder marker, a name Azure cannot take, up to date, a dry run)."""
    outcome = Outcome(obj.key, "copied", obj.size, obj.md5, caveats=obj.caveats)
    if rules.is_directory_marker(obj):
        outcome.action, outcome.bytes = "skipped", 0
        outcome.notes.append("directory marker: Azure Blob has no folders")
        return outcome, None
    target, problem = dest_key_for(obj.key, options)
    if target is None:
        outcome.action, outcome.error = "failed", problem
        return outcome, None
    outcome.dest_key = target
    if up_to_date(obj, existing, options):
        outcome.action = "skipped"
        return outcome, None
    if "customer-supplied-key" in obj.caveats:
        outcome.action, outcome.error = "failed", f"{obj.key} is encrypted with {CAVEATS['customer-supplied-key']}"
        return outcome, None
    try:
        metadata, notes = rules.azure_metadata(obj.metadata)
    except CoreError as exc:
        outcome.action, outcome.error = "failed", redact(str(exc))
        return outcome, None
    outcome.notes += notes
    if obj.generation:
        metadata[rules.GENERATION_KEY] = obj.generation
    if obj.md5 is None and obj.crc32c:
        metadata[rules.CRC32C_KEY] = obj.crc32c
    metadata.update(options.tags)
    outcome.tier = options.tiers.get((obj.storage_class or "STANDARD").upper())
    if options.dry_run:
        outcome.action = "would-copy"
        return outcome, None
    if blocks is not None:
        size = block_size_for(obj.size, options.block_size)
        outcome.bytes = min(obj.size, (blocks[1] + 1) * size) - blocks[0] * size
    return outcome, replace(obj, key=target, metadata=metadata, version=existing.version if existing else None)


def _settle(outcome: Outcome, exc: Exception, obj: ObjectDetails, options: Options, now: ObjectDetails | None) -> None:
    """What a failed write means: a ``Conflict`` is fine when ``now`` (the blob after it) holds this generation
    or a newer one; any other error fails this object only."""
    if isinstance(exc, Conflict):
        # Another writer got there between the look and the write: fine if it wrote this generation or a newer one.
        if up_to_date(obj, now, options):
            outcome.action, outcome.bytes = "skipped", 0
            outcome.notes.append("another writer stored this generation or a newer one first")
        else:
            outcome.action, outcome.error = "failed", f"{outcome.dest_key} changed while it was copied; copy it again"
    elif isinstance(exc, CoreError):
        outcome.action, outcome.error = "failed", redact(str(exc))
    else:  # one object's surprise must not stop the run
        log.error("copying %s failed", outcome.key, exc_info=exc)
        outcome.action, outcome.error = "failed", redact(f"{type(exc).__name__}: {exc}")


class Checksums:
    """What GCS recorded, checked against the bytes as they were read: CRC32C, or MD5 when there is no CRC32C.

    Every GCS object has a CRC32C, which costs a tenth of an MD5 to compute. The MD5
    still guards the Azure side: a whole put carries the source MD5 as Content-MD5
    and each staged block its own, so Azure refuses bytes that differ on the way.
    """

    def __init__(self, obj: ObjectDetails) -> None:
        self.obj = obj
        self.crc = 0 if obj.crc32c else None
        self.md5 = hashlib.md5() if obj.crc32c is None and obj.md5 else None

    def add(self, data: bytes) -> None:
        """Take the next bytes of the object."""
        if self.crc is not None:
            self.crc = crc32c.extend(self.crc, data)
        if self.md5 is not None:
            self.md5.update(data)

    def add_crc(self, crc: int, length: int) -> None:
        """Take the next ``length`` bytes by their CRC32C alone (a block staged before a resume)."""
        if self.crc is not None:
            self.crc = crc32c.combine(self.crc, crc, length)

    def check(self) -> None:
        obj = self.obj
        if self.crc is not None and self.crc != crc32c.from_gcs(obj.crc32c or ""):
            raise CoreError(f"CRC32C mismatch reading {obj.key}: the object changed or a read was corrupted")
        if self.md5 is not None and self.md5.hexdigest() != obj.md5:
            raise CoreError(f"MD5 mismatch reading {obj.key}: the object changed or a read was corrupted")


def _copy_whole(
    source: Reader, dest: Destination, obj: ObjectDetails, details: ObjectDetails, tier: str | None
) -> None:
    data = source.read_range(obj.key, obj.generation, 0, obj.size - 1) if obj.size else b""
    _prove(obj, data)
    dest.put(details, data, tier=tier, **conditions(details))


def _prove(obj: ObjectDetails, data: bytes) -> None:
    """The whole object's bytes agree with what GCS recorded (``CoreError`` if not)."""
    sums = Checksums(obj)
    sums.add(data)
    sums.check()


def block_id(generation: str | None, index: int, crc: int) -> str:
    """``GENERATION-INDEX-CRC32C`` (before base64): stable per source generation, so a retry recognises its own
    staged blocks, and carrying the block's CRC32C, so a resumed copy still proves the whole object."""
    return f"{generation or 'nogen'}-{index:08d}-{crc:08x}"


def staged_by_index(staged: Iterable[str], generation: str | None) -> dict[int, tuple[str, int]]:
    """The staged blocks of this generation: index -> (block id, its CRC32C). Other ids are ignored."""
    found: dict[int, tuple[str, int]] = {}
    for bid in staged:
        parts = bid.split("-")
        if len(parts) == 3 and parts[0] == (generation or "nogen") and parts[1].isdigit() and len(parts[2]) == 8:
            try:
                found[int(parts[1])] = (bid, int(parts[2], 16))
            except ValueError:
                continue
    return found


def _copy_blocks(
    source: Reader, dest: Destination, obj: ObjectDetails, details: ObjectDetails, tier: str | None, block_size: int
) -> str | None:
    """Stage the object's blocks and commit them only once the whole object is proven equal to the source.

    Blocks already staged for this generation (a killed copy) are not read again: their CRC32Cs, kept in
    their ids, are combined with those of the blocks read now. If that proof fails after a resume (a block
    staged from a corrupted read), the copy starts afresh once, reading everything; if it fails again,
    nothing is committed. Without a source CRC32C (an MD5 only) staged blocks cannot be proven, so
    everything is read. Returns a note for the report, or None.
    """
    staged = staged_by_index(dest.staged_blocks(details.key), obj.generation) if obj.crc32c else {}
    try:
        _stage_and_prove(source, dest, obj, details, tier, block_size, staged)
    except CoreError:
        if not staged:
            raise
        _stage_and_prove(source, dest, obj, details, tier, block_size, {})
        return f"{len(staged)} staged block(s) failed the proof; every block was read again"
    return f"resumed: {len(staged)} block(s) staged before were proven by their CRC32C" if staged else None


def _stage_and_prove(
    source: Reader,
    dest: Destination,
    obj: ObjectDetails,
    details: ObjectDetails,
    tier: str | None,
    block_size: int,
    staged: dict[int, tuple[str, int]],
) -> None:
    ids: list[str] = []
    sums = Checksums(obj)
    in_flight: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=BLOCKS_IN_FLIGHT, thread_name_prefix="block") as pool:
        for index, start in enumerate(range(0, obj.size, block_size)):
            end = min(start + block_size, obj.size) - 1
            if index in staged:
                bid, crc = staged[index]
                sums.add_crc(crc, end - start + 1)
            else:
                data = source.read_range(obj.key, obj.generation, start, end)
                sums.add(data)
                bid = block_id(obj.generation, index, crc32c.value(data))
                in_flight.append(pool.submit(dest.stage_block, details.key, bid, data))
                if len(in_flight) >= BLOCKS_IN_FLIGHT:
                    in_flight.pop(0).result()
            ids.append(bid)
        for future in in_flight:
            future.result()
    sums.check()  # before the commit: a blob that fails the proof never becomes visible
    dest.commit(details, ids, tier=tier, **conditions(details))


def _copy_part(
    source: Reader,
    dest: Destination,
    obj: ObjectDetails,
    details: ObjectDetails,
    tier: str | None,
    block_size: int,
    blocks: tuple[int, int],
) -> bool:
    """Stage blocks ``first..last`` not staged yet for this generation; then commit if every block is.

    Each part proves nothing alone: the commit does, combining the CRC32Cs that every block's id
    carries and comparing the whole with the source's, so no blob is made visible unproven.
    Returns True when this call committed the object.
    """
    if not obj.crc32c:
        raise CoreError(f"{obj.key} has no CRC32C: its parts could not be proven, so copy it whole")
    size = block_size_for(obj.size, block_size)
    staged = staged_by_index(dest.staged_blocks(details.key), obj.generation)
    first, last = blocks
    for index in range(first, last + 1):
        start = index * size
        if index in staged or start >= obj.size:
            continue
        data = source.read_range(obj.key, obj.generation, start, min(start + size, obj.size) - 1)
        dest.stage_block(details.key, block_id(obj.generation, index, crc32c.value(data)), data)
    staged = staged_by_index(dest.staged_blocks(details.key), obj.generation)  # other parts' too
    count = -(-obj.size // size)
    if any(index not in staged for index in range(count)):
        return False  # the part that stages the last missing block commits
    sums = Checksums(obj)
    for index in range(count):
        sums.add_crc(staged[index][1], min(size, obj.size - index * size))
    sums.check()
    dest.commit(details, [staged[index][0] for index in range(count)], tier=tier, **conditions(details))
    return True


def _copy_server_side(
    source: Reader, dest: Destination, obj: ObjectDetails, details: ObjectDetails, tier: str | None, options: Options
) -> str:
    """Put Blob From URL where Azure can prove the bytes itself; else stream, proven here. Returns which."""
    if obj.md5 and obj.size <= options.single_put_limit:
        # Azure checks what it fetched against x-ms-source-content-md5 before the blob exists.
        dest.put_from_url(details, source.signed_url(obj.key, obj.generation), tier=tier, **conditions(details))
        return "server-side: Azure fetched the bytes and proved them against the source MD5"
    why = "no MD5 for Azure to check" if not obj.md5 else "over one Put Blob From URL, and a range has no checksum"
    _stream(source, dest, obj, details, tier, options.block_size)
    return f"streamed, proven by CRC32C here: {why}"


def _stream(
    source: Reader, dest: Destination, obj: ObjectDetails, details: ObjectDetails, tier: str | None, block_size: int
) -> str | None:
    """Copy the bytes through this process: one put up to ``block_size``, staged blocks above. Returns a note."""
    if obj.size <= block_size:
        _copy_whole(source, dest, obj, details, tier)
        return None
    return _copy_blocks(source, dest, obj, details, tier, block_size_for(obj.size, block_size))


# A whole run ------------------------------------------------------------------------------------


@dataclass
class Summary:
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    would_copy: int = 0
    cannot_carry: Counter[str] = field(default_factory=Counter)
    """Caveat -> how many objects had it."""

    def add(self, outcome: Outcome) -> None:
        self.cannot_carry.update(outcome.caveats)
        if outcome.action == "copied":
            self.copied += 1
            self.bytes += outcome.bytes
        elif outcome.action == "would-copy":
            self.would_copy += 1
            self.bytes += outcome.bytes
        elif outcome.action == "skipped":
            self.skipped += 1
        else:
            self.failed += 1

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "copied": self.copied,
            "skipped": self.skipped,
            "failed": self.failed,
            "bytes": self.bytes,
        }
        record["seconds"] = round(self.seconds, 3)
        return record


def phases(source: Source, prefix: str) -> list[tuple[bool, Iterable[ObjectDetails]]]:
    """The source in the order that keeps the pipeline consistent: jobs/ and results/, the rest, uploads/.

    Each phase is ``(uploads, objects)``: ``uploads`` is True for the ``uploads/`` phase, which the
    fan-out holds back until every other batch is copied. Control objects (``NEVER_COPIED``) are left out.
    """
    if prefix:
        return [(False, (o for o in source.list(prefix) if not o.key[len(prefix) :].startswith(NEVER_COPIED)))]

    def middle() -> Iterator[ObjectDetails]:
        # Everything between the pipeline's prefixes, by key ranges: no object is listed twice. A key starting
        # with "jobs/" is below "jobs0" ('0' follows '/'), so [end of one prefix, start of the next) skips it.
        bounds = sorted((*PIPELINE_FIRST, PIPELINE_LAST))
        starts = [None, *(p[:-1] + chr(ord(p[-1]) + 1) for p in bounds)]
        for start, end in zip(starts, [*bounds, None], strict=True):
            for obj in source.list("", start_offset=start, end_offset=end):
                if not obj.key.startswith(NEVER_COPIED):
                    yield obj

    return [*((False, source.list(p)) for p in PIPELINE_FIRST), (False, middle()), (True, source.list(PIPELINE_LAST))]


def copy_entry(
    source: Source,
    dest: Destination,
    obj: ObjectDetails,
    existing: Callable[[str], ObjectDetails | None],
    options: Options,
    *,
    source_prefix: str = "",
    dest_prefix: str = "",
    blocks: tuple[int, int] | None = None,
) -> Outcome:
    """Copy one listed object from under ``source_prefix`` to under ``dest_prefix``; ``existing(blob name)``
    gives the blob already there, or None. The outcome keeps the source key."""
    moved, current = _moved(obj, existing, options, source_prefix, dest_prefix)
    outcome = copy_object(Prefixed(source, source_prefix, dest_prefix), dest, moved, current, options, blocks=blocks)
    outcome.key = obj.key
    return outcome


def _moved(
    obj: ObjectDetails,
    existing: Callable[[str], ObjectDetails | None],
    options: Options,
    source_prefix: str,
    dest_prefix: str,
) -> tuple[ObjectDetails, ObjectDetails | None]:
    """The object under its destination prefix, and the blob already there (None if none)."""
    moved = replace(obj, key=dest_prefix + obj.key[len(source_prefix) :])
    target, _ = dest_key_for(moved.key, options)
    return moved, existing(target) if target else None


@runtime_checkable
class AsyncReader(Protocol):
    """A source the bulk copy reads whole small objects from on its event loop (``GcsSource``)."""

    async def read_range_async(
        self, http: aio.Http, key: str, generation: str | None, start: int, end: int
    ) -> bytes: ...


@runtime_checkable
class AsyncWriter(Protocol):
    """A destination the bulk copy puts whole small objects to on its event loop (``AzureBlobDestination``)."""

    async def put_async(self, http: aio.Http, details: ObjectDetails, data: bytes, *, tier: str | None = None,
                        if_match: str | None = None, if_none_match: bool = False) -> None: ...  # fmt: skip


async def copy_whole_async(
    source: AsyncReader,
    dest: AsyncWriter,
    http: aio.Http,
    obj: ObjectDetails,
    existing: Callable[[str], ObjectDetails | None],
    options: Options,
    *,
    head: Callable[[str], ObjectDetails | None],
    source_prefix: str = "",
    dest_prefix: str = "",
) -> Outcome:
    """``copy_entry`` for an object of one put (no larger than a block), its two requests on the event loop:
    the same checks, proof and conditional write. ``head(blob name)`` is called, in a thread, only when
    another writer got there first."""
    moved, current = _moved(obj, existing, options, source_prefix, dest_prefix)
    outcome, details = _prepare(moved, current, options, None)
    if details is not None:
        try:
            data = await source.read_range_async(http, obj.key, obj.generation, 0, obj.size - 1) if obj.size else b""
            _prove(obj, data)
            await dest.put_async(http, details, data, tier=outcome.tier, **conditions(details))
        except Exception as exc:
            now = await asyncio.to_thread(head, details.key) if isinstance(exc, Conflict) else None
            _settle(outcome, exc, moved, options, now)
    outcome.key = obj.key
    return outcome


def run_copy(
    source: Source,
    dest: Destination,
    *,
    source_prefix: str = "",
    dest_prefix: str = "",
    workers: int = 16,
    options: Options | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> Summary:
    """Copy everything under the prefix; bounded memory: at most 2 x workers objects in flight.

    Where both ends can (``AsyncReader``, ``AsyncWriter``), aiohttp is installed and the copy goes through
    this process unthrottled, objects of one put are copied on an event loop (``copy_whole_async``) and
    larger ones by threads; otherwise every object is copied by ``workers`` threads.
    """
    options = options or Options()
    started = time.monotonic()
    summary = Summary()
    existing = {d.key: d for d in dest.list(dest_prefix)}  # one listing instead of a HEAD per object

    def task(obj: ObjectDetails) -> Outcome:
        return copy_entry(
            source, dest, obj, existing.get, options, source_prefix=source_prefix, dest_prefix=dest_prefix
        )

    def record(outcome: Outcome) -> None:
        summary.add(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    on_loop = isinstance(source, AsyncReader) and isinstance(dest, AsyncWriter) and _has_aiohttp()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="copy") as pool:
        if on_loop and options.throttle is None and not options.server_side:
            reader, writer, head = cast(AsyncReader, source), cast(AsyncWriter, dest), existing_blob(dest)

            async def whole(http: aio.Http, obj: ObjectDetails) -> Outcome:
                return await copy_whole_async(
                    reader, writer, http, obj, existing.get, options, head=head,
                    source_prefix=source_prefix, dest_prefix=dest_prefix,
                )  # fmt: skip

            phased = [phase for _, phase in phases(source, source_prefix)]
            asyncio.run(_run_async(phased, whole, task, record, pool, workers, options.block_size))
        else:
            for _, phase in phases(source, source_prefix):
                _run_threads(phase, task, record, pool, workers)
    summary.seconds = time.monotonic() - started
    return summary


def _has_aiohttp() -> bool:
    """aiohttp is installed (requirements-migrate.txt: the operator's machine, not the functions)."""
    return importlib.util.find_spec("aiohttp") is not None


def _run_threads(
    phase: Iterable[ObjectDetails],
    task: Callable[[ObjectDetails], Outcome],
    record: Callable[[Outcome], None],
    pool: ThreadPoolExecutor,
    workers: int,
) -> None:
    """Every object of the phase copied by the pool, at most 2 x workers in flight."""
    # Finished copies come back through a queue: ``concurrent.futures.wait`` would lock and unlock every
    # pending future's condition for each object, which cost a quarter of the copier's CPU on small objects.
    finished: queue.SimpleQueue[Future[Outcome]] = queue.SimpleQueue()
    in_flight = 0
    for obj in phase:
        pool.submit(task, obj).add_done_callback(finished.put)
        in_flight += 1
        while in_flight >= 2 * workers or (in_flight and not finished.empty()):
            record(finished.get().result())
            in_flight -= 1
    while in_flight:
        record(finished.get().result())
        in_flight -= 1


LISTED_AT_ONCE = 1000
"""Objects taken from a listing per hop to a thread: its page requests never block the event loop."""


async def _run_async(
    phased: list[Iterable[ObjectDetails]],
    whole: Callable[[aio.Http, ObjectDetails], Awaitable[Outcome]],
    task: Callable[[ObjectDetails], Outcome],
    record: Callable[[Outcome], None],
    pool: ThreadPoolExecutor,
    workers: int,
    block_size: int,
) -> None:
    """Each phase in turn: ``workers`` coroutines take its objects; one of a single put is copied on the
    loop, a larger one (staged blocks) by ``task`` in the pool."""
    from core.clouds import aio

    loop = asyncio.get_running_loop()

    async def copier(http: aio.Http, todo: asyncio.Queue[ObjectDetails | None]) -> None:
        while (obj := await todo.get()) is not None:
            if obj.size <= block_size:
                record(await whole(http, obj))
            else:
                record(await loop.run_in_executor(pool, task, obj))

    async with aio.Http(limit=workers) as http:
        for phase in phased:
            todo: asyncio.Queue[ObjectDetails | None] = asyncio.Queue(maxsize=2 * workers)
            copiers = [asyncio.create_task(copier(http, todo)) for _ in range(workers)]
            listed = iter(phase)
            try:
                while chunk := await asyncio.to_thread(list, itertools.islice(listed, LISTED_AT_ONCE)):
                    for obj in chunk:
                        await todo.put(obj)
                for _ in copiers:
                    await todo.put(None)
                await asyncio.gather(*copiers)
            finally:
                for running in copiers:
                    running.cancel()


class Prefixed:
    """The source seen under the destination's prefix: reads map the key back."""

    def __init__(self, source: Reader, source_prefix: str, dest_prefix: str) -> None:
        self.source, self.source_prefix, self.dest_prefix = source, source_prefix, dest_prefix

    def read_range(self, key: str, generation: str | None, start: int, end: int) -> bytes:
        return self.source.read_range(self._original(key), generation, start, end)

    def signed_url(self, key: str, generation: str | None) -> str:
        return self.source.signed_url(self._original(key), generation)

    def _original(self, key: str) -> str:
        return self.source_prefix + key[len(self.dest_prefix) :]


def fresh_details(source: Source, key: str) -> ObjectDetails | None:
    """The object's current details, or None when it is gone (the listing is the only per-object metadata read)."""
    return next((obj for obj in source.list(key) if obj.key == key), None)
