"""`Emitter`: the one background thread per `VoiceTelemetry` that turns finished records into
spans and metrics, so the caller's thread (an asyncio event loop: the voice path) only records.

A turn's data is fixed when it closes, so building its spans (attribute dicts, redaction, JSON,
`start_span` with explicit timestamps) and recording its metrics can happen later, in order,
elsewhere. Jobs run strictly FIFO: a turn span is created before its children look up its
context, and the root ends after every child (error keeping relies on that).

The caller's side is a length check, a deque append and — only when the thread sleeps — one
`Event.set()`: it never blocks. When the queue is full the job is dropped and counted
(`emit_dropped`); control jobs (root end, usage deadlines, flush markers) are few, bounded by
the number of sessions and turns, and are never dropped. The same thread wakes sessions at their
usage deadlines (`usage_wait_s`), replacing a second timer thread.
"""

from __future__ import annotations

import heapq
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from voicetrace.telemetry.health import TelemetryHealth

Job = tuple[Callable[..., Any], tuple[Any, ...]]


class Expiring(Protocol):
    """What the deadline heap wakes: a session with turns waiting for usage."""

    def _expire(self, now_ns: int) -> None: ...


# The worker looks for jobs this often instead of being woken for each: waking a thread
# (`Event.set`) from the event loop on every turn end and playback mark cost ~10 % of a busy
# service's CPU in GIL hand-offs. Spans are built at most this much later; while there is work,
# one wake-up per POLL_S per process. Control jobs (drain markers, root ends) still wake it.
POLL_S = 0.02
# After this many empty polls in a row the worker sleeps until a job arrives (or a usage
# deadline falls due): an idle process — between a quiet session's turns, or with no session
# at all — costs no wake-ups, and the next turn pays one `Event.set()`. A busy service keeps
# finding jobs, keeps polling and never pays for a wake-up.
IDLE_POLLS = 5


class Emitter:
    """A bounded FIFO of jobs drained by one lazily started daemon thread."""

    def __init__(self, health: TelemetryHealth, max_queue: int = 4096) -> None:
        if max_queue < 1:
            raise ValueError("the emitter queue needs room for at least one job")
        self._health = health
        self._max = max_queue
        self._queue: deque[Job] = deque()
        self._wake = threading.Event()
        self._deadlines: list[tuple[int, int, weakref.ref[Expiring]]] = []  # worker-only
        self._seq = 0
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False  # no new regular jobs
        self._stopping = False  # the worker exits once the queue is empty
        self._asleep = False  # the worker waits for a kick, not for its next poll

    # -- caller side ----------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Queue `fn(*args)` for the worker; False (and counted) when full or closed."""
        queue = self._queue
        if len(queue) >= self._max or self._closed:
            self._health.add("emit_dropped")
            return False
        queue.append((fn, args))
        # Start it; wake it from its idle sleep; or it fell behind.
        if self._thread is None or self._asleep or len(queue) > self._max // 2:
            self._kick()
        return True

    def submit_control(self, fn: Callable[..., Any], *args: Any) -> None:
        """Like `submit`, but never dropped for a full queue (root ends, deadlines, markers)."""
        if self._stopping:
            self._health.add("emit_dropped")
            return
        self._queue.append((fn, args))
        if not self._wake.is_set():
            self._kick()

    def wake_at(self, deadline_ns: int, target: Expiring) -> None:
        """Call `target._expire(now)` on the worker once `deadline_ns` (epoch ns) has passed."""
        self.submit_control(self._add_deadline, deadline_ns, weakref.ref(target))

    def queue_size(self) -> int:
        return len(self._queue)

    def drain(self, timeout_s: float) -> bool:
        """Wait (at most `timeout_s` of wall time) until every job queued so far has run."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return not self._queue
        if threading.current_thread() is thread:
            return False  # a job flushing from inside the worker would wait for itself
        if self._stopping:  # no marker can be queued any more: the thread ends when drained
            thread.join(max(timeout_s, 0.0))
            return not thread.is_alive()
        done = threading.Event()
        self.submit_control(done.set)
        return done.wait(max(timeout_s, 0.0))

    def stop(self, timeout_s: float) -> bool:
        """Refuse new jobs, run the queued ones, and end the thread; bounded in wall time."""
        self._closed = True
        with self._start_lock:
            thread = self._thread
            self._stopping = True
        self._wake.set()
        if thread is None:
            self._queue.clear()
            return True
        thread.join(max(timeout_s, 0.0))
        return not thread.is_alive()

    def close(self) -> None:
        """Non-blocking stop (the owner was garbage-collected without `shutdown`)."""
        self._closed = self._stopping = True
        self._wake.set()

    # -- worker side ----------------------------------------------------------------------------
    def _kick(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(
                        target=self._run, name="voicetrace-emitter", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def _add_deadline(self, deadline_ns: int, ref: weakref.ref[Expiring]) -> None:
        self._seq += 1
        heapq.heappush(self._deadlines, (deadline_ns, self._seq, ref))

    def _run(self) -> None:
        queue, wake, heap, health = self._queue, self._wake, self._deadlines, self._health
        empty_polls = 0
        while True:
            if queue:
                empty_polls = 0
            while queue:
                fn, args = queue.popleft()
                try:
                    fn(*args)
                except Exception as exc:  # fail-open: one bad job never stops the thread
                    health.error("emit", exc)
            now = time.time_ns()
            while heap and heap[0][0] <= now:
                target = heapq.heappop(heap)[2]()
                if target is not None:
                    try:
                        target._expire(now)
                    except Exception as exc:
                        health.error("expire", exc)
            if queue:
                continue
            if self._stopping:
                return
            wake.clear()
            empty_polls += 1
            # Set before the queue is checked again: a submit that appends after that check
            # sees the flag and kicks (the clear above cannot swallow its set).
            self._asleep = asleep = empty_polls > IDLE_POLLS
            if queue or self._stopping:  # a submit raced the clear: no lost wake-up
                self._asleep = False
                continue
            timeout = (heap[0][0] - time.time_ns()) / 1e9 if heap else None
            if not asleep:
                timeout = POLL_S if timeout is None else min(timeout, POLL_S)
            wake.wait(timeout)
            self._asleep = False
