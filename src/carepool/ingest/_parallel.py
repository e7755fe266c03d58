"""Run item generators in forked worker processes and read their items back in order.

Ingest spends most of its time on pure, CPU-bound work (JSON, FHIR R4 validation, HL7 fields,
terminology), and one Python process runs one thread at a time; so a large run parses its inputs
in worker processes while the parent stores what they send. Workers are forked once per run: they
share the parent's loaded modules and terminology snapshot without pickling them. Worker `w` of
`n` produces the streams `w`, `w + n`, `w + 2n`, ... one after another and sends their items
back pickled, in chunks, through a bounded queue of its own (a worker far ahead waits); the parent
reads the streams in order, so a parallel run stores exactly what a sequential one would. Fork is
used only on Linux; elsewhere, or with one worker, the generators run in-process. With a `recover`
function, a stream that fails (its generator raises, or its worker process dies) keeps the items
it sent and ends with what `recover` gives for it; the other streams go on (a dead worker's
remaining streams are produced here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import multiprocessing
import operator
import pickle
import queue
import sys
from collections.abc import Callable, Generator, Iterator
from multiprocessing.context import ForkProcess
from typing import Any, TypeVar

__all__ = ["available", "ordered"]

T = TypeVar("T")

_ITEMS, _DONE, _ERROR = "items", "done", "error"


def available() -> bool:
    """Whether worker processes can be forked here."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def ordered(
    produce: Callable[[int], Iterator[T]],
    count: int,
    *,
    workers: int,
    chunk: int = 256,
    ahead: int = 8,
    recover: Callable[[int, BaseException], Iterator[T]] | None = None,
) -> Generator[T, None, None]:
    """The items of `produce(0)`, `produce(1)`, ..., `produce(count - 1)`, in that order.

    Up to `workers` processes produce them (one per stream at most; one stream still gets one,
    so that it is parsed while the reader stores), each at most `ahead` chunks of `chunk` items
    ahead of the reader; with `workers` <= 1 they run here. An exception in a generator is
    raised here (as a `RuntimeError` when it cannot be pickled) unless `recover` is given (see
    the module docstring); closing this iterator early stops the workers.
    """
    if workers <= 1 or count == 0 or not available():
        for index in range(count):
            if recover is None:
                yield from produce(index)
                continue
            try:
                yield from produce(index)
            except Exception as exc:
                yield from recover(index, exc)
        return
    workers = min(workers, count)
    context = multiprocessing.get_context("fork")
    channels = [context.Queue(maxsize=ahead) for _ in range(workers)]
    processes: list[ForkProcess] = []
    try:
        for w, channel in enumerate(channels):
            indices = range(w, count, workers)
            process = context.Process(
                target=_work, args=(produce, indices, channel, chunk), daemon=True
            )
            process.start()
            processes.append(process)
        dead: set[int] = set()  # workers that ended without finishing
        for index in range(count):
            w = index % workers
            if w in dead:
                yield from ordered(
                    _stream(produce, index), 1, workers=1, recover=_shifted(recover, index)
                )
                continue
            process, channel = processes[w], channels[w]
            while True:
                try:
                    kind, payload = _receive(process, channel)
                except RuntimeError as exc:
                    if recover is None:
                        raise
                    dead.add(w)
                    yield from recover(index, exc)
                    break
                if kind == _DONE:
                    break
                if kind == _ERROR:
                    if recover is None:
                        raise payload
                    yield from recover(index, payload)
                    break
                yield from pickle.loads(payload)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
        for channel in channels:
            channel.close()


class _Pickler(pickle.Pickler):
    """Sends plain dataclasses (records, units) as constructor calls: the default, for slotted
    dataclasses, calls back into Python for every object when loading, which cost the reader
    more than everything else it does with an HL7 message."""

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        try:
            values = _VALUES[cls]
        except KeyError:
            values = _VALUES[cls] = _values_of(cls)
        if values is None:
            return NotImplemented
        return cls, values(obj)


# Class -> a function giving an object's constructor arguments as a tuple (None: pickle it the
# default way). Asked for every object that is not a plain list, dict, str or number.
_VALUES: dict[type, Callable[[Any], tuple[Any, ...]] | None] = {}


def _values_of(cls: type) -> Callable[[Any], tuple[Any, ...]] | None:
    """For a dataclass whose constructor takes all its fields and does nothing else: a C
    getter of them (`attrgetter` of several names returns a tuple)."""
    if not dataclasses.is_dataclass(cls):
        return None
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields) or hasattr(cls, "__post_init__"):
        return None
    names = [f.name for f in fields]
    if len(names) == 1:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    if not names:
        return lambda obj: ()
    return operator.attrgetter(*names)


def _dumps(items: list[Any]) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(items)
    return buffer.getvalue()


def _stream(produce: Callable[[int], Iterator[T]], index: int) -> Callable[[int], Iterator[T]]:
    """`produce` for stream `index` alone (as stream 0 of one)."""
    return lambda _zero: produce(index)


def _shifted(
    recover: Callable[[int, BaseException], Iterator[T]] | None, index: int
) -> Callable[[int, BaseException], Iterator[T]] | None:
    """`recover` for a stream produced alone (as stream 0 of one) that is stream `index`."""
    if recover is None:
        return None
    return lambda _zero, exc: recover(index, exc)


def _work(
    produce: Callable[[int], Iterator[Any]], indices: range, channel: Any, chunk: int
) -> None:
    """A worker's body: for each stream, its items in chunks, then done or the error; after an
    error the worker goes on with its next stream (the reader decides whether to go on)."""
    for index in indices:
        items: list[Any] = []
        try:
            for item in produce(index):
                items.append(item)
                if len(items) >= chunk:
                    channel.put((_ITEMS, _dumps(items)))
                    items = []
            if items:
                channel.put((_ITEMS, _dumps(items)))
        except BaseException as exc:
            if items:  # what the stream produced before the error is kept
                with contextlib.suppress(Exception):
                    channel.put((_ITEMS, _dumps(items)))
            try:
                pickle.dumps(exc)
                error: BaseException = exc
            except Exception:
                error = RuntimeError(f"{type(exc).__name__}: {exc}")
            channel.put((_ERROR, error))
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: stop
                break
            continue
        channel.put((_DONE, None))
    channel.close()
    channel.join_thread()


def _receive(process: ForkProcess, channel: Any) -> tuple[str, Any]:
    while True:
        try:
            message: tuple[str, Any] = channel.get(timeout=1.0)
            return message
        except queue.Empty:
            if process.is_alive():
                continue
            try:  # it may have sent its last chunk just before it ended
                message = channel.get(timeout=1.0)
                return message
            except queue.Empty:
                raise RuntimeError(
                    f"an ingest worker process ended without finishing (exit code "
                    f"{process.exitcode})"
                ) from None
