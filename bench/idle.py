#!/usr/bin/env python3
"""Idle client connections for bench/idle.sh: open N, hold them, report what the server's
process gained in resident memory.

  idle.py MODE HOST PORT N PID [PID...]

MODE is one of
  keepalive   HTTP/1.1 over TCP: one GET of PATH (default /1k) read to its end, then nothing
  half-head   HTTP/1.1 over TCP: the first two lines of a request head, then nothing
  h2          HTTP/2 over TLS 1.3 (ALPN h2, certificate not checked): the preface, SETTINGS,
              one GET of PATH read to its END_STREAM, SETTINGS acknowledged, then nothing

PIDs are the server's processes (nginx: its worker; Holdfast: its one process); their VmRSS
is summed from /proc, IDLE_SETTLE (5) seconds after the last connection opened. Prints one line:
  mode=M opened=N failed=F rss_before_kib=A rss_open_kib=B per_conn_kib=(B-A)/N open_s=S
and exits 1 when fewer than 99 % of the connections opened.
"""

import asyncio
import os
import ssl
import struct
import sys
import time

PATH = os.environ.get("IDLE_PATH", "/1k")
BATCH = 250
SETTLE_S = float(os.environ.get("IDLE_SETTLE", "5"))


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def read_http1_response(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"answer {head[:40]!r}")
    await reader.readexactly(length)


async def keepalive(host: str, port: int):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await read_http1_response(reader)
    return reader, writer


async def half_head(host: str, port: int):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\n".encode())
    await writer.drain()
    return reader, writer


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_literal(index: int, value: str) -> bytes:
    # literal header field without indexing, name from the static table (index < 15)
    v = value.encode()
    return bytes([index]) + bytes([len(v)]) + v


async def h2(host: str, port: int, ctx: ssl.SSLContext):
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="idle.test")
    if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
        raise RuntimeError("no h2 by ALPN")
    # :method GET (2), :scheme https (7), :path (4) and :authority (1) as literals
    block = bytes([0x82, 0x87]) + hpack_literal(4, PATH) + hpack_literal(1, "idle.test")
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 0x5, 1, block))
    acked = False
    while True:
        hdr = await reader.readexactly(9)
        length = int.from_bytes(hdr[:3], "big")
        kind, flags, stream = hdr[3], hdr[4], int.from_bytes(hdr[5:9], "big") & 0x7FFFFFFF
        payload = await reader.readexactly(length)
        if kind == 4 and not flags & 1 and not acked:      # the server's SETTINGS
            writer.write(frame(4, 1, 0, b""))
            acked = True
        elif kind == 7:                                    # GOAWAY
            raise RuntimeError(f"GOAWAY {payload[:8].hex()}")
        elif kind == 3 and stream == 1:                    # RST_STREAM
            raise RuntimeError("stream reset")
        elif kind in (0, 1) and stream == 1 and flags & 1:  # END_STREAM on our stream
            await writer.drain()
            return reader, writer


async def main() -> int:
    mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    pids = [int(p) for p in sys.argv[5:]]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    opener = {"keepalive": lambda: keepalive(host, port), "half-head": lambda: half_head(host, port),
              "h2": lambda: h2(host, port, ctx)}[mode]
    # one connection first, so that lazily made per-process state is in the baseline
    warm = await opener()
    await asyncio.sleep(1)
    before = rss_kib(pids)
    t0 = time.monotonic()
    conns, failed, first_error = [], 0, ""
    for i in range(0, n, BATCH):
        batch = await asyncio.gather(*(asyncio.wait_for(opener(), 30) for _ in range(min(BATCH, n - i))),
                                     return_exceptions=True)
        for c in batch:
            if isinstance(c, BaseException):
                failed += 1
                first_error = first_error or repr(c)[:120]
            else:
                conns.append(c)
    opened_s = time.monotonic() - t0
    # let the server settle: timers, buffers freed after the last write, and Holdfast's
    # release of idle connections (1-2 periods of edge.idle_release_after, default 1 s,
    # after a connection's last byte)
    await asyncio.sleep(SETTLE_S)
    after = rss_kib(pids)
    per = (after - before) / len(conns) if conns else 0.0
    print(f"mode={mode} opened={len(conns)} failed={failed} rss_before_kib={before} rss_open_kib={after} "
          f"per_conn_kib={per:.2f} open_s={opened_s:.1f}" + (f" first_error={first_error!r}" if failed else ""),
          flush=True)
    for _, w in conns + [warm]:
        w.close()
    return 0 if len(conns) >= n * 0.99 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
