"""A TCP link you can cut and restore: how the demo (and the tests) take one gate off the network.

:class:`LinkRelay` forwards each connection on a free local port to the target, byte for byte. It
terminates nothing: a gate connecting through it runs TLS end to end with the broker, whose certificate
(for 127.0.0.1) still verifies. Point the gate at the relay instead of the broker, and the relay is its link::

    with LinkRelay(broker.host, broker.port) as link:
        endpoint = Endpoint(link.listen_host, link.port, tls=files)   # the gate dials the relay
        link.cut()        # every live connection is closed, both sides, at once; new ones are refused
        link.restore()    # the gate's next reconnect attempt (paho's backoff) goes through again

While cut, it does not listen at all, so a client's connect is refused before any TLS begins, as when
the route to the broker is gone; the gate keeps retrying with its backoff. (A link that dies in the
middle of a handshake is covered too: see ``citypass.sync.endpoint.tls_context``.) Restoring listens on the same
port again (``SO_REUSEADDR``). Inside: one thread accepts;
each forwarded *pair* (client socket, target socket) has a pump thread per direction (blocking ``recv``
and ``sendall``). An end of stream is passed on as a half-close; an error ends both directions. A cut
shuts down every socket, waking the pumps; the last pump of a pair closes it, and ``cut()`` and ``stop()``
return once the pumps are done: no socket, and after ``stop()`` no thread, is left.
"""

from __future__ import annotations

import contextlib
import socket
import threading


def _shut(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):  # OSError: already shut down, or reset
            sock.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv() or sendall() on it


class _Pair:
    """One forwarded connection: the client's socket, the target's, and a pump thread per direction."""

    def __init__(self, relay: LinkRelay, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets, self.pumps = (client, upstream), 2
        self.threads = [threading.Thread(target=relay._pump, args=(self, src, dst), name=f"relay-{relay.port}-pump",
                                         daemon=True)
                        for src, dst in ((client, upstream), (upstream, client))]


class LinkRelay:
    """Forwards TCP connections from ``listen_host``:``port`` (a free port, set by :meth:`start`) to the target."""

    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1") -> None:
        self.target, self.listen_host = (target_host, target_port), listen_host
        self.port = 0
        self._up = True
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._threads: list[threading.Thread] = []  # pumps that may still run
        self._acceptor: threading.Thread | None = None
        self._accepting = threading.Event()

    def start(self) -> LinkRelay:
        if self._acceptor is not None:
            raise RuntimeError("this LinkRelay is already started")
        self._listen(0)
        return self

    def _listen(self, port: int) -> None:
        listener = socket.socket(socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the same port again after a cut
        try:
            listener.bind((self.listen_host, port))
        except OSError as exc:
            listener.close()
            raise OSError(f"the relay cannot listen on {self.listen_host}:{port} again: {exc.strerror}") from None
        listener.listen(64)
        listener.settimeout(0.05)  # accept() wakes this often to notice a cut or stop()
        self.port = listener.getsockname()[1]
        self._accepting = accepting = threading.Event()
        accepting.set()
        self._acceptor = threading.Thread(target=self._accept_loop, args=(listener, accepting),
                                          name=f"relay-{self.port}", daemon=True)
        self._acceptor.start()

    def _stop_accepting(self) -> None:
        self._accepting.clear()
        if self._acceptor is not None:
            self._acceptor.join()  # it closes the listener on its way out

    @property
    def is_up(self) -> bool:
        return self._up

    @property
    def connections(self) -> int:
        """Live forwarded pairs (one per connected client)."""
        with self._lock:
            return len(self._pairs)

    def cut(self) -> None:
        """Take the link down: stop listening (a client's connect is refused) and close every live
        connection, both sides, at once."""
        self._up = False  # set before _drop_all takes the lock: the acceptor adds no pair after that
        self._stop_accepting()
        self._drop_all()

    def restore(self) -> None:
        """Bring the link back: listen on the same port again; new connections are forwarded."""
        if not self._up and not self._closing.is_set():
            self._listen(self.port)
            self._up = True

    def stop(self) -> None:
        """Close the listener and every connection and join every thread (idempotent)."""
        self._closing.set()
        self._stop_accepting()
        self._drop_all()

    def __enter__(self) -> LinkRelay:
        return self if self._acceptor is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _drop_all(self) -> None:
        with self._lock:
            for pair in self._pairs:
                _shut(*pair.sockets)
            threads = list(self._threads)  # every pump of a pair shut here, or of one already ended
        for thread in threads:  # return once the pumps have closed their sockets
            thread.join()

    def _accept_loop(self, listener: socket.socket, accepting: threading.Event) -> None:
        with listener:
            while accepting.is_set() and not self._closing.is_set():
                with contextlib.suppress(TimeoutError):  # no one came: look at _closing again
                    self._forward(listener.accept()[0])

    def _forward(self, client: socket.socket) -> None:
        upstream = None
        if self._up:
            with contextlib.suppress(OSError):  # the target is unreachable: the client sees its connection closed
                upstream = socket.create_connection(self.target, timeout=5.0)
                upstream.settimeout(None)
        with self._lock:
            if upstream is None or not self._up or self._closing.is_set():
                client.close()
                if upstream is not None:
                    upstream.close()
                return
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # forward small packets at once
            pair = _Pair(self, client, upstream)
            self._pairs.add(pair)
            self._threads = [t for t in self._threads if t.is_alive()] + pair.threads
            for thread in pair.threads:
                thread.start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65_536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # pass the end of stream on; the other direction may go on
        except OSError:
            _shut(*pair.sockets)  # a reset, or a cut, on either side ends both directions
        finally:
            with self._lock:
                pair.pumps -= 1
                if pair.pumps == 0:  # the last pump of the pair closes it
                    self._pairs.discard(pair)
                    for sock in pair.sockets:
                        sock.close()
