#!/usr/bin/env python3
"""WebSocket origin and client for bench/soak.sh, standard library only (RFC 6455, text
frames up to 64 KiB, no extensions).

  soak_ws.py origin PORT                    echo server on 127.0.0.1:PORT; any other GET is 200 "ok"
  soak_ws.py client PORT SECONDS SESSIONS   SESSIONS concurrent loops, until SECONDS have passed,
                                            each: connect to 127.0.0.1:PORT, upgrade /ws/echo,
                                            exchange MESSAGES echoes, close; then the next session

The client prints one line, `WS sessions=N messages=M failures=F`, then up to 10 failure
reasons, and exits 0 (failures are the caller's verdict). Every wait is bounded (5 s).
"""

import asyncio
import base64
import hashlib
import os
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
WAIT = 5.0
MESSAGES = 20


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    else:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader):
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        raise ValueError("frame too large for this test")
    key = await reader.readexactly(4) if b1 & 0x80 else None
    data = await reader.readexactly(n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)


# ---- origin ------------------------------------------------------------------------------
async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 120)
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                if b":" in line:
                    k, v = line.split(b":", 1)
                    headers[k.strip().lower()] = v.strip()
            if headers.get(b"upgrade", b"").lower() != b"websocket":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                await writer.drain()
                continue
            key = headers.get(b"sec-websocket-key", b"")
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key) + b"\r\n\r\n")
            await writer.drain()
            while True:
                op, data = await asyncio.wait_for(read_frame(reader), 120)
                if op == 8:
                    writer.write(frame(8, data[:2], False))
                    await writer.drain()
                    return
                if op == 9:
                    writer.write(frame(10, data, False))
                elif op in (1, 2):
                    writer.write(frame(op, data, False))
                await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, ValueError,
            asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def origin(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# ---- client ------------------------------------------------------------------------------
class Tally:
    def __init__(self) -> None:
        self.sessions = 0
        self.messages = 0
        self.failures = 0
        self.reasons: list[str] = []

    def fail(self, why: str) -> None:
        self.failures += 1
        if len(self.reasons) < 10:
            self.reasons.append(why)


async def session(port: int, tally: Tally) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), WAIT)
    try:
        key = base64.b64encode(os.urandom(16))
        writer.write(b"GET /ws/echo HTTP/1.1\r\nHost: soak.test\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")
        await writer.drain()
        head = await read_head(reader)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status or accept_key(key) not in head:
            tally.fail(f"handshake: {status.decode(errors='replace')}")
            return
        for i in range(MESSAGES):
            msg = f"soak {i} {time.time()}".encode() * (1 + i % 8)
            writer.write(frame(1, msg, True))
            await writer.drain()
            op, data = await asyncio.wait_for(read_frame(reader), WAIT)
            if op != 1 or data != msg:
                tally.fail(f"echo {i}: opcode {op}, {len(data)} bytes")
                return
            tally.messages += 1
        writer.write(frame(8, struct.pack("!H", 1000), True))
        await writer.drain()
        op, _ = await asyncio.wait_for(read_frame(reader), WAIT)
        if op != 8:
            tally.fail(f"close: opcode {op}")
            return
        tally.sessions += 1
    finally:
        writer.close()


async def client_loop(port: int, deadline: float, tally: Tally) -> None:
    while time.monotonic() < deadline:
        try:
            await session(port, tally)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError,
                asyncio.LimitOverrunError) as e:
            tally.fail(f"{type(e).__name__}: {e}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.05)


async def client(port: int, seconds: float, sessions: int) -> None:
    tally = Tally()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client_loop(port, deadline, tally) for _ in range(sessions)))
    print(f"WS sessions={tally.sessions} messages={tally.messages} failures={tally.failures}")
    for r in tally.reasons:
        print(f"  failure: {r}")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "origin":
        asyncio.run(origin(int(sys.argv[2])))
        return 0
    if len(sys.argv) == 5 and sys.argv[1] == "client":
        asyncio.run(client(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
