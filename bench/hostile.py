#!/usr/bin/env python3
"""Slow and hostile clients for bench/hostile.sh, standard library only. Every wait is bounded
by --bound seconds; each scenario prints one machine-readable line `HOSTILE <scenario> k=v ...`.

  hostile.py origin PORT                      origin: reads a request body to its end, answers 200;
                                              GET /big answers BIG_MIB MiB (default 64)
  hostile.py headers PORT N BOUND             N clients send a request head one byte a second
  hostile.py body-stall PORT N BOUND          N clients send a head (Content-Length 1 MB) and 10
                                              bytes of body, then nothing
  hostile.py body-drip PORT N BOUND           ... then one body byte a second until BOUND
  hostile.py never-read PORT N BOUND PID OPORT  N clients GET /big and never read; samples PID's
                                              RSS and the origin's /big responses in flight
                                              (its GET /inflight) each second
  hostile.py idle PORT N BOUND PID            N connections that send nothing: PID's RSS before and
                                              with all open, then how long until they are closed
  hostile.py tls-flood PORT SECONDS CONNS     CONNS loops of new TLS handshakes (no request)
  hostile.py tls-stall PORT N BOUND           N connections that send half a ClientHello, then nothing

"Closed" is measured from the client: the time until the server's EOF or reset, and the first
bytes it sent before closing (a status line, or nothing).
"""

import asyncio
import os
import socket
import ssl
import statistics
import sys
import time

HOST = "127.0.0.1"


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def inflight(port: int) -> int:
    """The origin's /big responses still being sent (its GET /inflight), -1 when unknown."""
    try:
        with socket.create_connection((HOST, port), timeout=5) as s:
            s.sendall(b"GET /inflight HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
            data = b""
            while not data.split(b"\r\n\r\n", 1)[1:] or b"\n" not in data.split(b"\r\n\r\n", 1)[1]:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return int(data.split(b"\r\n\r\n", 1)[1])
    except (OSError, ValueError, IndexError):
        return -1


def estab_local(port: int) -> int:
    """ESTABLISHED TCP sockets whose local port is PORT: the server's side of its clients'
    connections (a socket the server closed leaves this state at once)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "01" and int(parts[1].split(":")[1], 16) == port:
                        n += 1
        except OSError:
            pass
    return n


def summary(times: list[float]) -> str:
    if not times:
        return "closed=0"
    return (f"closed={len(times)} min_s={min(times):.1f} median_s={statistics.median(times):.1f} "
            f"max_s={max(times):.1f}")


async def until_closed(reader: asyncio.StreamReader, t0: float, bound: float) -> tuple[float | None, bytes]:
    """Read until EOF/reset or the bound; (seconds to close or None, first bytes seen)."""
    first = b""
    try:
        while True:
            left = bound - (time.monotonic() - t0)
            if left <= 0:
                return None, first
            data = await asyncio.wait_for(reader.read(4096), left)
            if not data:
                return time.monotonic() - t0, first
            if len(first) < 64:
                first += data[: 64 - len(first)]
    except (ConnectionError, OSError):
        return time.monotonic() - t0, first
    except asyncio.TimeoutError:
        return None, first


def status_of(first: bytes) -> str:
    line = first.split(b"\r\n", 1)[0]
    parts = line.split()
    return parts[1].decode() if len(parts) > 1 and line.startswith(b"HTTP/") else "none"


async def report(name: str, results: list[tuple[float | None, bytes]], bound: float, extra: str = "") -> None:
    closed = [t for t, _ in results if t is not None]
    statuses: dict[str, int] = {}
    for _, first in results:
        s = status_of(first)
        statuses[s] = statuses.get(s, 0) + 1
    st = ",".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
    print(f"HOSTILE {name} clients={len(results)} open_at_bound={len(results) - len(closed)} "
          f"bound_s={bound:g} {summary(closed)} statuses={st} {extra}".rstrip(), flush=True)


# ---- origin -------------------------------------------------------------------------------
BIG = int(os.environ.get("BIG_MIB", "64")) << 20
CHUNK = b"z" * 65536
INFLIGHT = [0]  # /big responses being sent: GET /inflight on the origin says how many


async def origin_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 600)
            lines = head.split(b"\r\n")
            length = 0
            for line in lines[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while length > 0:
                got = await asyncio.wait_for(reader.read(min(length, 65536)), 600)
                if not got:
                    return
                length -= len(got)
            if b" /big" in lines[0]:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
                sent = 0
                INFLIGHT[0] += 1
                try:
                    while sent < BIG:
                        writer.write(CHUNK)
                        sent += len(CHUNK)
                        await asyncio.wait_for(writer.drain(), 600)
                finally:
                    INFLIGHT[0] -= 1
            elif b" /inflight" in lines[0]:
                body = b"%d\n" % INFLIGHT[0]
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, ValueError,
            asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def origin(port: int) -> None:
    server = await asyncio.start_server(origin_conn, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


# ---- scenarios ----------------------------------------------------------------------------
async def connect(port: int):
    return await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)


async def slow_head(port: int, bound: float):
    reader, writer = await connect(port)
    t0 = time.monotonic()
    head = b"GET /1k HTTP/1.1\r\nHost: hostile.test\r\n" + b"".join(
        b"X-Pad-%d: %s\r\n" % (i, b"a" * 20) for i in range(200))

    async def drip():
        for b in head:
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(1)

    task = asyncio.create_task(drip())
    try:
        return await until_closed(reader, t0, bound)
    finally:
        task.cancel()
        writer.close()


async def slow_body(port: int, bound: float, drip: bool):
    reader, writer = await connect(port)
    t0 = time.monotonic()
    writer.write(b"POST /upload HTTP/1.1\r\nHost: hostile.test\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 10)
    await writer.drain()

    async def dripper():
        while drip:
            await asyncio.sleep(1)
            writer.write(b"b")
            await writer.drain()

    task = asyncio.create_task(dripper())
    try:
        return await until_closed(reader, t0, bound)
    finally:
        task.cancel()
        writer.close()


async def many(n: int, make) -> list:
    out = await asyncio.gather(*(make() for _ in range(n)), return_exceptions=True)
    return [r if isinstance(r, tuple) else (0.0, b"") for r in out]


async def never_read(port: int, n: int, bound: float, pid: int, oport: int) -> None:
    socks = []
    t0 = time.monotonic()
    rss0 = rss_kib(pid)
    for _ in range(n):
        s = socket.create_connection((HOST, port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: hostile.test\r\n\r\n")
        socks.append(s)
    peak_origin, peak_rss, released_at, closed_at = 0, rss0, None, None
    samples = []
    while time.monotonic() - t0 < bound:
        await asyncio.sleep(1)
        o, r, c = inflight(oport), rss_kib(pid), estab_local(port)
        peak_origin, peak_rss = max(peak_origin, o), max(peak_rss, r)
        samples.append(f"{time.monotonic() - t0:.0f}s:{o}/{c}")
        if o == 0 and released_at is None and time.monotonic() - t0 > 2:
            released_at = time.monotonic() - t0
        if c == 0 and closed_at is None:
            closed_at = time.monotonic() - t0
        if released_at is not None and closed_at is not None:
            break
    for s in socks:
        s.close()
    print(f"HOSTILE never-read clients={n} bound_s={bound:g} origin_inflight_peak={peak_origin} "
          f"origin_released_after_s={'%.0f' % released_at if released_at else 'never'} "
          f"clients_closed_by_server_after_s={'%.0f' % closed_at if closed_at else 'never'} "
          f"rss_before_kib={rss0} rss_peak_kib={peak_rss} "
          f"inflight/open_by_second={','.join(samples[-4:])}", flush=True)


async def idle(port: int, n: int, bound: float, pid: int) -> None:
    rss0, fd0 = rss_kib(pid), fds(pid)
    t0 = time.monotonic()
    conns = []
    for i in range(0, n, 500):
        batch = await asyncio.gather(*(connect(port) for _ in range(min(500, n - i))), return_exceptions=True)
        conns += [c for c in batch if not isinstance(c, BaseException)]
    opened = time.monotonic() - t0
    await asyncio.sleep(2)
    rss1, fd1 = rss_kib(pid), fds(pid)
    per = (rss1 - rss0) / len(conns) if conns else 0
    results = await asyncio.gather(*(until_closed(r, t0, bound) for r, _ in conns))
    for _, w in conns:
        w.close()
    await report("idle", list(results), bound,
                 f"opened={len(conns)} open_s={opened:.1f} rss_before_kib={rss0} rss_open_kib={rss1} "
                 f"rss_per_conn_kib={per:.1f} fds_before={fd0} fds_open={fd1} rss_after_kib={rss_kib(pid)}")


async def tls_flood(port: int, seconds: float, conns: int) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + seconds
    done, failed = 0, 0

    async def loop():
        nonlocal done, failed
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection(HOST, port, ssl=ctx), 10)
                done += 1
                w.close()
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                failed += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(loop() for _ in range(conns)))
    print(f"HOSTILE tls-flood seconds={seconds:g} loops={conns} handshakes={done} failed={failed} "
          f"per_s={done / seconds:.0f}", flush=True)


async def tls_stall(port: int, n: int, bound: float) -> None:
    async def one():
        reader, writer = await connect(port)
        t0 = time.monotonic()
        # The first 5 bytes of a TLS record header of a ClientHello, then nothing.
        writer.write(b"\x16\x03\x01\x02\x00")
        await writer.drain()
        try:
            return await until_closed(reader, t0, bound)
        finally:
            writer.close()

    await report("tls-stall", await many(n, one), bound)


def main() -> int:
    a = sys.argv[1:]
    if not a:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = a[0]
    if cmd == "origin":
        asyncio.run(origin(int(a[1])))
    elif cmd == "headers":
        port, n, bound = int(a[1]), int(a[2]), float(a[3])
        loop = asyncio.new_event_loop()
        res = loop.run_until_complete(many(n, lambda: slow_head(port, bound)))
        loop.run_until_complete(report("slowloris-headers", res, bound))
    elif cmd in ("body-stall", "body-drip"):
        port, n, bound = int(a[1]), int(a[2]), float(a[3])
        loop = asyncio.new_event_loop()
        res = loop.run_until_complete(many(n, lambda: slow_body(port, bound, cmd == "body-drip")))
        loop.run_until_complete(report("slowloris-" + cmd, res, bound))
    elif cmd == "never-read":
        asyncio.run(never_read(int(a[1]), int(a[2]), float(a[3]), int(a[4]), int(a[5])))
    elif cmd == "idle":
        asyncio.run(idle(int(a[1]), int(a[2]), float(a[3]), int(a[4])))
    elif cmd == "tls-flood":
        asyncio.run(tls_flood(int(a[1]), float(a[2]), int(a[3])))
    elif cmd == "tls-stall":
        asyncio.run(tls_stall(int(a[1]), int(a[2]), float(a[3])))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
