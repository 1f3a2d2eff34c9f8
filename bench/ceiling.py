"""The ceilings for workloads 1 and 3: a trio HTTP server that does no work.

It answers ``POST /runs/stream`` with a metadata frame, N custom frames and an
end frame, all encoded before the first byte is sent; ``POST /runs/wait``
with a fixed JSON body once ``input.delay`` seconds have passed; and
``GET /ok``. No store, no supervisor: what the client and the loopback can do
at best.
Usage: ``python bench/ceiling.py PORT``.
"""

from __future__ import annotations

import json
import sys

import trio

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
    b"Content-Location: /threads/t/runs/r\r\nTransfer-Encoding: chunked\r\n\r\n"
)

WAITED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Location: /threads/t/runs/r\r\n"
    b'Content-Length: 10\r\n\r\n{"done":1}'
)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def frames(n: int) -> bytes:
    parts = [b'event: metadata\ndata: {"run_id":"r","attempt":1}\nid: 0\n\n']
    parts += [
        f'event: custom\ndata: {{"i":{i},"token":"hello"}}\nid: {i + 1}\n\n'.encode()
        for i in range(n)
    ]
    parts.append(f'event: end\ndata: {{"run_id":"r","status":"success"}}\nid: {n + 1}\n\n'.encode())
    # Several frames per write, as runyard does when a client is behind.
    return b"".join(chunk(b"".join(parts[i : i + 64])) for i in range(0, len(parts), 64))


async def handle(stream: trio.SocketStream) -> None:
    buffer = b""
    try:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            while len(buffer) < length:
                buffer += await stream.receive_some(65536)
            body, buffer = buffer[:length], buffer[length:]
            if lines[0].startswith("GET /ok"):
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 11\r\n\r\n{"ok":true}'
                )
                continue
            given = json.loads(body or b"{}").get("input", {})
            if "/runs/wait " in lines[0]:
                await trio.sleep(float(given.get("delay", 0)))
                await stream.send_all(WAITED)
                continue
            n = given.get("n", 10)
            await stream.send_all(HEAD + frames(n) + b"0\r\n\r\n")
    except trio.BrokenResourceError:
        return


async def main(port: int) -> None:
    await trio.serve_tcp(handle, port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
