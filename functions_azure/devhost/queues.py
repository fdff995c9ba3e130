"""The devhost's queue triggers, with the host's semantics.

A message is leased while its handler runs; on success it is deleted; on
failure it becomes visible again after host.json's ``visibilityTimeout``; once
its ``dequeue_count`` reaches ``maxDequeueCount`` a failure moves it to
``<queue>-poison``. A new batch of up to ``batchSize`` is fetched as soon as no
more than ``newBatchThreshold`` messages still run, and an empty queue is polled
with a back-off from 100 ms up to ``maxPollingInterval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func

from core.clouds.azure_queue import AzureQueueTaskQueue, Received
from core.errors import CoreError
from functions_azure.devhost.settings import HostSettings

log = logging.getLogger("devhost")
Handler = Callable[[func.QueueMessage], None]


class QueueTriggers:
    def __init__(self, settings: HostSettings, stopping: threading.Event, *, lease_seconds: float = 300.0) -> None:
        self.settings = settings
        self.stopping = stopping
        self.lease_seconds = lease_seconds
        """How long a message stays hidden while its handler runs (the host renews its own; a dead host's
        messages reappear after this)."""

    def drain(self, queue_name: str, name: str, handler: Handler, ready: threading.Event) -> None:
        """Run ``handler`` on the queue's messages until the host stops; ``ready`` is set once the queue exists."""
        queue = AzureQueueTaskQueue(queue_name)
        poison = AzureQueueTaskQueue(f"{queue_name}-poison")
        retry(queue.create_queue)
        ready.set()
        idle = 0.1
        batch, threshold = self.settings.batch_size, self.settings.new_batch_threshold
        # As the host: a new batch is fetched as soon as no more than newBatchThreshold messages are
        # still running, so up to batchSize + newBatchThreshold run at once; nobody waits for a whole batch.
        in_flight = [0]
        lock = threading.Condition()

        def run(message: Received) -> None:
            try:
                self.run_message(queue, poison, name, handler, message)
            finally:
                with lock:
                    in_flight[0] -= 1
                    lock.notify_all()

        with ThreadPoolExecutor(max_workers=batch + threshold, thread_name_prefix=name) as pool:
            while not self.stopping.is_set():
                with lock:
                    if not lock.wait_for(lambda: in_flight[0] <= threshold, timeout=0.5):
                        continue  # still busy: look at the stopping flag, then wait again
                try:
                    messages = queue.receive(max_messages=batch, visibility_timeout=int(self.lease_seconds))
                except CoreError as exc:
                    log.warning("cannot read queue %s: %s", queue_name, exc)
                    messages = []
                if not messages:
                    self.stopping.wait(idle)
                    idle = min(idle * 2, self.settings.max_polling_interval)
                    continue
                idle = 0.1
                with lock:
                    in_flight[0] += len(messages)
                for message in messages:
                    pool.submit(run, message)

    def run_message(
        self, queue: AzureQueueTaskQueue, poison: AzureQueueTaskQueue, name: str, handler: Handler, message: Received
    ) -> None:
        """Call the handler with the message as the worker builds it, then settle the message."""
        from azure.functions.queue import QueueMessage

        incoming = QueueMessage(
            id=message.id,
            body=message.body,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted,
            expiration_time=message.expires,
            pop_receipt=message.pop_receipt,
        )
        try:
            handler(incoming)
            failed: Exception | None = None
        except Exception as exc:
            failed = exc
        try:
            self.settle(queue, poison, name, message, failed)
        except CoreError as exc:
            # Storage unreachable: the message reappears when its lease ends, as on the real host.
            log.warning("%s: could not settle message %s, it returns after its lease: %s", name, message.id, exc)

    def settle(
        self,
        queue: AzureQueueTaskQueue,
        poison: AzureQueueTaskQueue,
        name: str,
        message: Received,
        failed: Exception | None,
    ) -> None:
        """Delete a handled message; release a failed one for a retry, or move it to the poison queue."""
        if failed is None:
            queue.delete(message)
        elif message.dequeue_count >= self.settings.max_dequeue_count:
            log.warning("%s: message %s failed %d times, moved to %s-poison: %s",
                        name, message.id, message.dequeue_count, queue.queue_name, failed)  # fmt: skip
            poison.send_body(message.body)
            queue.delete(message)
        else:
            retry_in = self.settings.visibility_timeout
            log.info("%s: message %s failed (attempt %d), retried in %.0fs: %s",
                     name, message.id, message.dequeue_count, retry_in, failed)  # fmt: skip
            queue.release(message, visibility_timeout=int(retry_in))


def retry(action: Callable[[], None], attempts: int = 50, pause: float = 0.2) -> None:
    """Run ``action`` until storage answers (the storage account may still be starting)."""
    for _ in range(attempts - 1):
        try:
            action()
            return
        except CoreError:
            time.sleep(pause)
    action()
