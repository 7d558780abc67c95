"""The encoder in a process of its own, for the server: forward passes that do not wait for searches.

A forward pass is some two hundred tensor operations called from Python, and each call takes the
interpreter lock again when it returns. In the server that lock is also wanted by the event loop
and by every search (mostly small numpy steps between Python). Measured on the 2-core host with
eight clients sending ``/suggest`` (10,000 ideas), the query batcher's forward passes took three
times as long as alone while a third of the CPU stood idle: the passes waited for the lock, and
eight clients got 2.0x the throughput of one. With the encoder in its own process (its own
interpreter, so its own lock) and one torch thread, the same run gave 2.6x (the figures are in
the README, "Load").

:class:`EncoderProcess` starts the process (``spawn``: a fresh interpreter, never a fork of a
process with running threads), which builds the encoder from an importable factory and serves two
connections, each on its own thread:

* **queries**: the coaches' searches (the query batcher's worker is its only caller);
* **bulk**: passages (uploads, new ideas) and bulk queries, on a thread the server gives a lower CPU
  priority (``bulk_setup``), so an upload's encoding gives way to searches as it does in one process.

Each connection carries one call at a time (a lock per connection in this process). A failure in
the child comes back as an exception of the same kind where that is a ``ValueError``, a
``RuntimeError`` otherwise; a child that dies fails every call waiting on it, and the next ones, with
a ``RuntimeError`` that says so. The child never outlives this process: it stops when the
connections close (this process ended or called :meth:`EncoderProcess.close`).

Only the server uses it (``idesluss serve``): a command that encodes once and exits would pay a
second interpreter's start for nothing. The server then imports neither torch nor transformers;
the child does.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

STOP = None
log = logging.getLogger(__name__)


class EncoderProcessError(RuntimeError):
    """The encoder process failed to start, stopped, or failed a call in a way the caller cannot fix."""


class EncoderProcessDied(EncoderProcessError):
    """The child stopped while a call waited on it (the call itself may be fine: it is retried once)."""


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
        _resolve(setup)()
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
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
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

    A child that died (killed for memory, say) is started again by the next call; the calls that
    were waiting on it are tried once more on the new one, and wait for it to load the encoder.

    Args:
        factory: ``"module:function"``, importable in a fresh interpreter, that returns the encoder.
        kwargs: the factory's keyword arguments (picklable).
        bulk_setup: ``"module:function"`` the child's bulk thread calls first (the server lowers
            that thread's CPU priority with it); None: nothing.
        start_timeout: seconds to wait for the child to build the encoder.

    Raises:
        EncoderProcessError: the child could not build the encoder (its error is in the message).
    """

    def __init__(
        self,
        factory: str,
        kwargs: dict[str, Any] | None = None,
        bulk_setup: str | None = None,
        start_timeout: float = 900.0,
    ) -> None:
        self._args = (factory, dict(kwargs or {}), bulk_setup)
        self._start_timeout = start_timeout
        self._locks = {"queries": threading.Lock(), "bulk": threading.Lock()}
        self._restart_lock = threading.Lock()
        self._closed = False
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        """Start a child and wait until its encoder is built (its model id and dimension are read)."""
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
        self._process, self._conns = process, {"queries": queries, "bulk": bulk}
        answer = self._receive(queries, self._start_timeout, "starting")
        if answer[0] != "ready":
            self._stop()
            raise EncoderProcessError(f"the encoder process could not start: {answer[1]}: {answer[2]}")
        self.model_id: str = answer[1]["model_id"]
        self.dim: int = answer[1]["dim"]

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the child is running."""
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
        """Stop the child (after the calls it is answering); later calls raise EncoderProcessError."""
        with self._restart_lock:
            if self._closed:
                return
            self._closed = True
            self._stop(timeout)

    def _stop(self, timeout: float = 10.0) -> None:
        for conn in self._conns.values():
            with contextlib.suppress(OSError, ValueError):  # already closed: the child sees EOF
                conn.send(STOP)
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)
        for conn in self._conns.values():
            conn.close()

    def _restart_if_dead(self) -> None:
        """Start a new child when the current one died (once, whoever notices first)."""
        with self._restart_lock:
            if self._closed:
                raise EncoderProcessError("the encoder process is closed")
            if self._process.is_alive():
                return
            log.warning("the encoder process stopped (%s); starting a new one", self._exit())
            self._stop(1.0)
            self.restarts += 1
            self._start()

    def _call(self, line: str, kind: str, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            answer = self._send(line, kind, texts)
        except EncoderProcessDied:
            # an encoding is a pure function of its texts: once more on a new child (a text that
            # kills the child kills the new one too, and that failure is the caller's)
            log.warning("the encoder process stopped during a call; trying it once more on a new one")
            self._process.join(5.0)  # a child being killed may still look alive for a moment
            answer = self._send(line, kind, texts)
        if answer[0] == "ok":
            vectors: np.ndarray = answer[1]
            return vectors
        name, message = answer[1], answer[2]
        if name == "ValueError":
            raise ValueError(message)
        raise EncoderProcessError(f"the encoder process failed: {name}: {message}")

    def _send(self, line: str, kind: str, texts: list[str]) -> Any:
        self._restart_if_dead()
        with self._locks[line]:
            conn = self._conns[line]
            try:
                conn.send((kind, texts))
            except (OSError, ValueError) as exc:
                raise EncoderProcessDied(f"the encoder process stopped ({self._exit()})") from exc
            return self._receive(conn, None, "encoding")

    def _receive(self, conn: Connection, timeout: float | None, doing: str) -> Any:
        """The next answer on ``conn``, waiting in slices so a dead child cannot leave the caller hanging."""
        waited = 0.0
        while not conn.poll(1.0):
            waited += 1.0
            if not self._process.is_alive():
                if conn.poll(0):  # it answered just before it stopped
                    break
                raise EncoderProcessDied(f"the encoder process stopped while {doing} ({self._exit()})")
            if timeout is not None and waited >= timeout:
                raise EncoderProcessError(f"the encoder process took over {timeout:.0f} s {doing}")
        try:
            return conn.recv()
        except (EOFError, OSError) as exc:
            raise EncoderProcessDied(f"the encoder process stopped while {doing} ({self._exit()})") from exc

    def _exit(self) -> str:
        code = self._process.exitcode
        return "still running" if code is None else f"exit code {code}"
