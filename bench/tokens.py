"""The lean load client of workload 9: N token streams at once, one process, one epoll.

Each connection posts a run of the ``tokens`` agent (bench/token_agent.py)
to ``/runs/stream`` and reads its SSE stream to the end. No HTTP library and
no event loop framework: one ``epoll`` over non-blocking sockets, a chunked
decoder and a frame splitter, so that the client costs a few microseconds
per event and the server is what the figures measure (the same client holds
2,000 streams against a write-only server, bench/ceiling.py).

Every custom event carries its emit time (the system-wide monotonic clock),
read against the time its bytes were received here. Per run: lost and
duplicated events, end-to-end time against the schedule ``n * delay``, the
longest gap between two of its events. Prints one JSON object.

    python bench/tokens.py --port P --runs 500 --events 1500 --delay 0.04
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import select
import socket
import sys
import time
from array import array
from typing import Any

RAMP = 10.0  # seconds over which the runs are started, evenly: phases spread as in life
SLACK = 60.0  # seconds past the schedule (and the ramp) before unfinished runs count as lost
RECV = 65536  # bytes one recv may take
# The custom event's data as the agent writes it; json.loads is the fallback.
STAMP = re.compile(rb'"i":\s*(\d+),\s*"t":\s*([-+0-9.eE]+)')


class Stream:
    """One connection: the request, the chunked body, the SSE frames, the figures."""

    __slots__ = ("body", "closed", "dups", "end_seen", "ended_at", "error", "first_at", "head_done",
                 "last_at", "left", "max_gap", "raw", "received", "request", "seen", "sent_at",
                 "sock", "status")  # fmt: skip

    def __init__(self, sock: socket.socket, request: bytes, events: int) -> None:
        self.sock = sock
        self.request = request
        self.raw = bytearray()  # bytes not yet de-chunked
        self.body = bytearray()  # de-chunked bytes not yet split into frames
        self.left = 0  # bytes left in the current chunk; -1: its CRLF; 0: a size line
        self.head_done = False
        self.status = 0
        self.sent_at = 0.0
        self.first_at = 0.0
        self.last_at = 0.0
        self.ended_at = 0.0
        self.seen = bytearray(events)
        self.dups = 0
        self.received = 0
        self.max_gap = 0.0
        self.closed = False
        self.error = ""
        self.end_seen = False

    def dechunk(self) -> bool:
        """Move whole chunk payloads from ``raw`` to ``body``; True at the last chunk."""
        raw, pos, end = self.raw, 0, len(self.raw)
        last = False
        while pos < end:
            if self.left > 0:
                take = min(self.left, end - pos)
                self.body += raw[pos : pos + take]
                pos += take
                self.left -= take
                if self.left == 0:
                    self.left = -1
            elif self.left == -1:
                if end - pos < 2:
                    break
                pos += 2
                self.left = 0
            else:
                nl = raw.find(b"\r\n", pos)
                if nl < 0:
                    break
                size = int(raw[pos:nl].split(b";")[0], 16)
                pos = nl + 2
                if size == 0:
                    last = True
                    break
                self.left = size
        del raw[:pos]
        return last


class Load:
    """All the streams and what they measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.epoll = select.epoll()
        self.streams: dict[int, Stream] = {}
        self.all: list[Stream] = []
        self.latency = array("d")  # seconds, every custom event
        self.gaps = array("d")  # seconds between consecutive events of a run
        body = json.dumps(
            {
                "assistant_id": args.assistant,
                "input": {"n": args.events, "delay": args.delay},
                "stream_mode": ["custom"],
            }
        ).encode()
        self.request = (
            f"POST {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((self.args.host, self.args.port))
        stream = Stream(sock, self.request, self.args.events)
        if code not in (0, errno.EINPROGRESS):
            stream.error = f"connect: {errno.errorcode.get(code, code)}"
            stream.closed = True
            sock.close()
        else:
            self.streams[sock.fileno()] = stream
            self.epoll.register(sock.fileno(), select.EPOLLOUT)
        self.all.append(stream)

    def writable(self, fd: int, stream: Stream) -> None:
        err = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.close(fd, stream, f"connect: {errno.errorcode.get(err, err)}")
            return
        stream.sent_at = time.monotonic()
        stream.sock.send(stream.request)  # small: the loopback takes it whole
        self.epoll.modify(fd, select.EPOLLIN)

    def readable(self, fd: int, stream: Stream, now: float) -> None:
        try:
            data = stream.sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(fd, stream, f"recv: {exc}")
            return
        if not data:
            self.close(fd, stream, "" if self.ended(stream) else "closed before end")
            return
        stream.raw += data
        if not stream.head_done:
            head, sep, rest = bytes(stream.raw).partition(b"\r\n\r\n")
            if not sep:
                return
            stream.status = int(head.split(b" ", 2)[1])
            stream.head_done = True
            stream.raw = bytearray(rest)
            if stream.status != 200:
                self.close(fd, stream, f"status {stream.status}")
                return
        last = stream.dechunk()
        self.frames(stream, now)
        if last:
            self.close(fd, stream, "" if self.ended(stream) else "ended without end")

    def ended(self, stream: Stream) -> bool:
        """Whether a stream that closes now closes at its end (langgraph dev sends no `end`)."""
        return stream.end_seen or self.args.no_end

    def frames(self, stream: Stream, now: float) -> None:
        body = stream.body
        crlf = body.rfind(b"\r\n\r\n")
        cut = max(body.rfind(b"\n\n"), crlf + 2 if crlf >= 0 else -1)
        if cut < 0:
            return
        whole = bytes(body[: cut + 2])
        del body[: cut + 2]
        if b"\r" in whole:  # sse-starlette (langgraph dev) ends lines with CRLF
            whole = whole.replace(b"\r\n", b"\n")
        for frame in whole.split(b"\n\n"):
            if not frame or frame.startswith(b":"):
                continue  # a heartbeat comment or the split's tail
            name, data = b"", b""
            for line in frame.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:]
                elif line.startswith(b"data: "):
                    data = line[6:]
            if stream.last_at:
                gap = now - stream.last_at
                if gap > stream.max_gap:
                    stream.max_gap = gap
            stream.last_at = now
            if not stream.first_at:
                stream.first_at = now
            if name == b"custom":
                self.custom(stream, data, now)
            elif name == b"end":
                stream.end_seen = True
                stream.ended_at = now
            elif name == b"error":
                stream.error = f"error event: {data[:200]!r}"

    def custom(self, stream: Stream, data: bytes, now: float) -> None:
        found = STAMP.search(data)
        if found is not None:
            i, t = int(found[1]), float(found[2])
        else:
            value = json.loads(data)
            i, t = int(value["i"]), float(value["t"])
        if stream.seen[i]:
            stream.dups += 1
            return
        stream.seen[i] = 1
        stream.received += 1
        self.latency.append(now - t)

    def close(self, fd: int, stream: Stream, error: str) -> None:
        if stream.closed:
            return
        stream.closed = True
        if error and not stream.error:
            stream.error = error
        if not stream.ended_at:
            stream.ended_at = time.monotonic()
        self.epoll.unregister(fd)
        stream.sock.close()
        del self.streams[fd]

    def run(self) -> None:
        args = self.args
        began = time.monotonic()
        every = args.ramp / args.runs if args.runs else 0.0
        deadline = began + args.ramp + args.events * args.delay + args.slack
        opened = 0
        while time.monotonic() < deadline and (opened < args.runs or self.streams):
            now = time.monotonic()
            while opened < args.runs and now >= began + opened * every:
                self.open()
                opened += 1
            wait = 0.05 if opened >= args.runs else max(0.0, began + opened * every - now)
            for fd, mask in self.epoll.poll(min(wait, 0.05)):
                stream = self.streams.get(fd)
                if stream is None:
                    continue
                if mask & select.EPOLLOUT and not stream.sent_at:
                    self.writable(fd, stream)
                elif mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                    self.readable(fd, stream, time.monotonic())
        for fd, stream in list(self.streams.items()):
            self.close(fd, stream, "unfinished at the deadline")

    def summary(self, cpu: float, wall: float) -> dict[str, Any]:
        args = self.args
        schedule = args.events * args.delay
        done = [s for s in self.all if s.end_seen or (args.no_end and not s.error)]
        slow = [(s.ended_at - s.sent_at) / schedule - 1 for s in done if s.sent_at]
        errors: dict[str, int] = {}
        for s in self.all:
            if s.error:
                errors[s.error] = errors.get(s.error, 0) + 1
        received = sum(s.received for s in self.all)
        return {
            "runs": args.runs,
            "events_per_run": args.events,
            "delay_s": args.delay,
            "completed": len(done),
            "events_expected": args.runs * args.events,
            "events_received": received,
            "lost": args.runs * args.events - received,
            "duplicates": sum(s.dups for s in self.all),
            "latency_ms": _pcts([x * 1000 for x in self.latency]),
            "slowdown": _pcts(slow, (0.5, 0.99, 1.0)),
            "max_gap_ms": _pcts([s.max_gap * 1000 for s in self.all if s.received]),
            "errors": errors,
            "client_cpu_s": cpu,
            "wall_s": wall,
        }


def _pcts(values: list[float], qs: tuple[float, ...] = (0.5, 0.99, 1.0)) -> dict[str, float]:
    """Percentiles by name (p50, p99, max); NaN for none."""
    ordered = sorted(values)
    names = {0.5: "p50", 0.99: "p99", 1.0: "max"}
    if not ordered:
        return {names[q]: float("nan") for q in qs}
    return {names[q]: ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in qs}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/runs/stream", help="where a run is started and streamed")
    p.add_argument("--assistant", default="tokens")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--events", type=int, default=1500, help="tokens per run")
    p.add_argument("--delay", type=float, default=0.04, help="seconds between tokens")
    p.add_argument("--ramp", type=float, default=RAMP, help="seconds to start all runs")
    p.add_argument("--slack", type=float, default=SLACK, help="seconds past the schedule")
    p.add_argument("--no-end", action="store_true", help="a stream may close without `end`")
    return p.parse_args(argv)


def main(argv: list[str]) -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    load = Load(parse(argv))
    began, cpu = time.monotonic(), time.process_time()
    load.run()
    print(json.dumps(load.summary(time.process_time() - cpu, time.monotonic() - began)))


if __name__ == "__main__":
    main(sys.argv[1:])
