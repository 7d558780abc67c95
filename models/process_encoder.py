"""The encoder in a process of its own, for the server: forward passes that do not wait for searches.

A forward pass is some two hundred tensor operations called from Python, and each call takes the
interpreter lock again when it returns. In the server that lock is also wanted by the event loop
and by every search (mostly small numpy steps between Python). On the 2-core host with eight
clients sending ``/suggest`` (10,000 ideas), the query batcher's forward passes took much longer
than alone while a third of the CPU stood idle: the passes waited for the lock. With the encoder in
its own process (its own interpreter, so its own lock) and one torch thread, eight clients got
2.5x the throughput of one instead of 2.0x (``python -m evaluation.load --scaling --upload-rows
0``; the figures are in the README, "Load").

:class:`EncoderProcess` starts the process (``spawn``: a fresh interpreter, never a fork of a
process with running threads), which builds the encoder from an importable factory and serves two
connections, each on its own thread:

* **queries**: the coaches' searches (the query batcher's worker is its only caller);
* **bulk**: passages (uploads, new ideas) and bulk queries, on a thread the server gives a lower CPU
  priority (``bulk_setup``), so an upload's encoding gives way to searches as it does in one process.

Each connection carries one call at a time (a lock per connection in this process). A failure in
the child comes back as an exception of the same kind where that is a ``ValueError``, an
:class:`EncoderProcessError` otherwise. A child that dies (killed for memory, say) is replaced by
a new one, and every call that was waiting on it is tried once more on the new one (an encoding is
a pure function of its texts); a call that outlasts ``call_timeout`` has its child replaced too.
Each child has a generation number, so that two calls that saw the same child die replace it once.
The child never outlives this process: it stops when the connections close (this process ended or
called :meth:`EncoderProcess.close`).

Only the server uses it (``idesluss serve``): a command that encodes once and exits would pay a
second interpreter's start for nothing. The server then imports neither torch nor transformers;
the child does.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

STOP = None
log = logging.getLogger(__name__)


class EncoderProcessError(RuntimeError):
    """The encoder process failed to start, stopped, or failed a call in a way the caller cannot fix."""


class EncoderProcessDied(EncoderProcessError):
    """The child stopped (or hung) while a call waited on it; the call itself may be fine.

    Attributes:
        generation: the child's generation number (see :class:`EncoderProcess`).
    """

    generation = -1


encoder_of_this_process: Any = None  # the child's encoder (None in the server)


def _resolve(path: str) -> Any:
    """The object named by ``"module:name"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _answer(conn: Connection, call: tuple[str, list[str]]) -> None:
    """Run one call and send its answer: ("ok", vectors) or ("error", kind, message)."""
    kind, texts = call
    try:
        if kind == "queries":
            out = encoder_of_this_process.encode_queries(texts)
        elif kind == "passages":
            out = encoder_of_this_process.encode_passages(texts)
        else:
            raise ValueError(f"unknown call {kind!r}")
        conn.send(("ok", np.asarray(out, dtype=np.float32)))
    except Exception as exc:  # noqa: BLE001 - the caller hears of every failure
        conn.send(("error", type(exc).__name__, str(exc)))


def _serve_connection(conn: Connection, setup: str | None = None) -> None:
    if setup:
        try:
            _resolve(setup)()
        except Exception:  # noqa: BLE001 - best effort (a priority); serving matters more
            log.exception("the encoder process's setup %s failed; serving without it", setup)
    while True:
        try:
            call = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if call is STOP:
            return
        _answer(conn, call)


def _main(factory: str, kwargs: dict[str, Any], queries: Connection, bulk: Connection, bulk_setup: str | None) -> None:
    """The child: build the encoder, report ready, serve both connections until the queries' stops."""
    global encoder_of_this_process
    try:
        encoder_of_this_process = _resolve(factory)(**kwargs)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        queries.send(("error", type(exc).__name__, str(exc)))
        return
    queries.send(("ready", {"model_id": encoder_of_this_process.model_id, "dim": int(encoder_of_this_process.dim)}))
    threading.Thread(target=_serve_connection, args=(bulk, bulk_setup), name="bulk", daemon=True).start()
    _serve_connection(queries)


class EncoderProcess:
    """A :class:`~models.encoder.TextEncoder` whose encoder runs in a child process.

    Args:
        factory: ``"module:function"``, importable in a fresh interpreter, that returns the encoder.
        kwargs: the factory's keyword arguments (picklable).
        bulk_setup: ``"module:function"`` the child's bulk thread calls first (the server lowers
            that thread's CPU priority with it); None: nothing.
        start_timeout: seconds to wait for a child to build the encoder.
        call_timeout: seconds one call may take before its child is taken for hung and replaced.

    Raises:
        EncoderProcessError: the child could not build the encoder (its error is in the message).
    """

    def __init__(
        self,
        factory: str,
        kwargs: dict[str, Any] | None = None,
        bulk_setup: str | None = None,
        start_timeout: float = 900.0,
        call_timeout: float = 900.0,
    ) -> None:
        self._args = (factory, dict(kwargs or {}), bulk_setup)
        self._start_timeout = start_timeout
        self._call_timeout = call_timeout
        self._locks = {"queries": threading.Lock(), "bulk": threading.Lock()}
        self._restart_lock = threading.Lock()
        self._closed = False
        self.restarts = 0
        self.generation = 0
        self._process, self._conns = self._start()

    def _start(self) -> tuple[Any, dict[str, Connection]]:
        """A new child, once its encoder is built; its connections are handed out only then."""
        factory, kwargs, bulk_setup = self._args
        ctx = multiprocessing.get_context("spawn")
        queries, queries_child = ctx.Pipe()
        bulk, bulk_child = ctx.Pipe()
        process = ctx.Process(
            target=_main,
            args=(factory, kwargs, queries_child, bulk_child, bulk_setup),
            name="idesluss-encoder",
            daemon=True,  # never outlives the server
        )
        process.start()
        queries_child.close()  # this process keeps only its own ends: the child's EOF is then real
        bulk_child.close()
        conns = {"queries": queries, "bulk": bulk}
        try:
            answer = _receive(process, queries, self._start_timeout, "starting")
            if answer[0] != "ready":
                raise EncoderProcessError(f"the encoder process could not start: {answer[1]}: {answer[2]}")
        except BaseException:
            _stop(process, conns)
            raise
        self.model_id: str = answer[1]["model_id"]
        self.dim: int = answer[1]["dim"]
        return process, conns

    @property
    def pid(self) -> int | None:
        """The current child's process id."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the current child is running."""
        return self._process.is_alive()

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors, on the queries connection (the coaches' searches)."""
        return self._call("queries", "queries", texts)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, on the bulk connection (lower priority in the child)."""
        return self._call("bulk", "passages", texts)

    def bulk_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors for bulk work (an upload's precomputed suggestions), on the bulk connection."""
        return self._call("bulk", "queries", texts)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the child after the calls it is answering (one still running after ``timeout`` fails);
        later calls raise EncoderProcessError."""
        with self._restart_lock:
            if self._closed:
                return
            self._closed = True
            with self._every_line(wait=timeout):
                _stop(self._process, self._conns, timeout)

    @contextlib.contextmanager
    def _every_line(self, wait: float) -> Iterator[None]:
        """Hold both connections' locks, so that no call is reading or writing either while they are
        closed or swapped (a closed pipe's descriptor is soon reused, and a read still blocked on it
        would read someone else's data). A call still running after ``wait`` seconds has its child
        terminated: it then fails at once and lets go."""
        taken: list[threading.Lock] = []
        try:
            for name in ("queries", "bulk"):
                lock = self._locks[name]
                if not lock.acquire(timeout=wait):
                    self._process.terminate()
                    lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()

    def _replace(self, generation: int, why: str) -> None:
        """Replace the child of ``generation`` (once: a call that saw an older child die does nothing)."""
        with self._restart_lock:
            if self._closed:
                raise EncoderProcessError("the encoder process is closed")
            if self.generation != generation:
                return  # another call replaced it already
            log.warning("the encoder process %s (%s); starting a new one", why, _exit(self._process))
            with self._every_line(wait=0.0):  # the child is dead or hung: no call on it can succeed
                _stop(self._process, self._conns, 1.0)
                self._process, self._conns = self._start()
                self.generation += 1
                self.restarts += 1

    def _call(self, line: str, kind: str, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            answer = self._send(line, kind, texts)
        except EncoderProcessDied as died:
            # an encoding is a pure function of its texts: once more on a new child (a text that
            # kills the child kills the new one too, and that failure is the caller's)
            self._replace(died.generation, "stopped during a call")
            answer = self._send(line, kind, texts)
        if answer[0] == "ok":
            vectors: np.ndarray = answer[1]
            return vectors
        name, message = answer[1], answer[2]
        if name == "ValueError":
            raise ValueError(message)
        raise EncoderProcessError(f"the encoder process failed: {name}: {message}")

    def _send(self, line: str, kind: str, texts: list[str]) -> Any:
        """One call on the current child; EncoderProcessDied (with the child's generation) if it stops."""
        with self._locks[line]:
            if self._closed:
                raise EncoderProcessError("the encoder process is closed")
            generation, process, conn = self.generation, self._process, self._conns[line]
            try:
                if not process.is_alive():
                    raise EncoderProcessDied(f"the encoder process stopped ({_exit(process)})")
                conn.send((kind, texts))
                return _receive(process, conn, self._call_timeout, "encoding")
            except EncoderProcessDied as exc:
                exc.generation = generation
                raise
            except (OSError, ValueError) as exc:  # its connection closed or broke under us
                died = EncoderProcessDied(f"the encoder process stopped ({_exit(process)})")
                died.generation = generation
                raise died from exc


def _receive(process: Any, conn: Connection, timeout: float | None, doing: str) -> Any:
    """The next answer on ``conn``, waiting in slices so that a dead or hung child cannot hold the caller."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not conn.poll(1.0):
            if not process.is_alive():
                if conn.poll(0):  # it answered just before it stopped
                    break
                raise EncoderProcessDied(f"the encoder process stopped while {doing} ({_exit(process)})")
            if deadline is not None and time.monotonic() > deadline:
                process.terminate()  # taken for hung: the next call starts a new one
                raise EncoderProcessDied(f"the encoder process took over {timeout:.0f} s {doing}")
        return conn.recv()
    except (EOFError, OSError, ValueError) as exc:
        raise EncoderProcessDied(f"the encoder process stopped while {doing} ({_exit(process)})") from exc


def _stop(process: Any, conns: dict[str, Connection], timeout: float = 10.0) -> None:
    """Ask a child to stop, make sure it did, and close this side's connections."""
    for conn in conns.values():
        with contextlib.suppress(OSError, ValueError):  # already closed: the child sees EOF
            conn.send(STOP)
    process.join(timeout)
    if process.is_alive():
        process.terminate()
        process.join(timeout)
    for conn in conns.values():
        conn.close()


def _exit(process: Any) -> str:
    code = process.exitcode
    return "still running" if code is None else f"exit code {code}"
