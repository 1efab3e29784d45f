#!/usr/bin/env python3
"""The differential smuggling run: an origin that records every byte it receives, then each
raw case of the corpus sent to each target proxy, one connection per case, and a verdict.

Verdicts, per case and target:
  rejected    the origin received nothing (the proxy answered or closed by itself);
  normalised  the origin received request(s) with exactly one reading;
  ambiguous   the origin received something two parsers could read differently: both
              Content-Length and Transfer-Encoding, a Content-Length that is not plain
              digits, a Transfer-Encoding other than one `chunked`, zero or several Host,
              a malformed Host or one unlike the absolute target, an `_` name imitating a
              framing or routing header, obs-fold / bare LF / bare CR / control bytes in the
              head, raw dot segments, `//`, `%2e`, `\\`, non-ASCII or a fragment in the target,
              `Upgrade: h2c` or `HTTP2-Settings`, a CONNECT, a method that is a standard one
              in another case, a framing or routing field in
              chunked trailers, a body framing the origin could
              not parse, bytes after the request on its connection, or a `/smuggled` request;
  aborted     the client was answered (the body failed to frame mid-stream) and the origin
              got the head and part of the body, then its connection was closed: an
              aborted request, never a complete-looking one;
  hung        the client had no final response within the timeout (counted with the origin
              holding a partial request, when it did).
The origin answers each request with `Connection: close`, so every upstream connection
carries one request and anything after it is evidence of a desync.

Usage: run.py --origin PORT --target NAME=PORT [--target ...] [--corpus DIR] [--timeout S]
       [--out FILE.tsv] [--dump DIR] [--only SUBSTRING] [--strict NAME]
"""

import argparse
import os
import re
import socket
import sys
import threading
import time

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
GUARDED = {
    "content-length", "transfer-encoding", "host", "connection", "upgrade", "te", "trailer",
    "expect", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
}
TCHAR = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
HOST_RE = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_]+)(:[0-9]{1,5})?$")


class Conn:
    def __init__(self, case):
        self.case = case
        self.raw = b""
        self.head = None
        self.complete = False
        self.body_error = None
        self.leftover = b""
        self.trailers = []
        self.done = False


class Origin:
    """Accepts connections, tags each with the case running when it arrived."""

    def __init__(self, port):
        self.case = None
        self.conns = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(128)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            s, _ = self.sock.accept()
            c = Conn(self.case)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self.serve, args=(s, c), daemon=True).start()

    def of(self, case):
        with self.lock:
            return [c for c in self.conns if c.case == case]

    def serve(self, s, c):
        s.settimeout(0.3)
        idle_since = time.time()
        try:
            while time.time() - idle_since < 3.0:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    break
                idle_since = time.time()
                c.raw += data
                end = parse(c)
                if end is not None:
                    s.sendall(RESPONSE if c.body_error is None else
                              b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    # What arrives after the request on a connection the origin closes.
                    deadline = time.time() + 0.3
                    while time.time() < deadline:
                        try:
                            more = s.recv(65536)
                        except socket.timeout:
                            break
                        if not more:
                            break
                        c.raw += more
                    c.leftover = c.raw[end:]
                    break
        except OSError:
            pass
        finally:
            c.done = True
            try:
                s.close()
            except OSError:
                pass


def head_end(raw):
    i, j = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    ends = [x + 4 for x in [i] if x >= 0] + [x + 2 for x in [j] if x >= 0]
    return min(ends) if ends else None


def fields(head):
    lines = head.split(b"\n")
    return lines[0].rstrip(b"\r"), [l for l in lines[1:] if l.strip(b"\r")]


def parse(c):
    """The origin's own reading (TE chunked wins, else Content-Length); the offset where the
    request ends, or None while incomplete."""
    end = head_end(c.raw)
    if end is None:
        return None
    c.head = c.raw[:end]
    _, lines = fields(c.head)
    te = cl = None
    for l in lines:
        name, _, value = l.rstrip(b"\r").partition(b":")
        n = name.strip().lower()
        if n == b"transfer-encoding" and value.strip().lower().split(b",")[-1].strip() == b"chunked":
            te = True
        elif n == b"content-length" and cl is None and value.strip().isdigit():
            cl = int(value.strip())
    if te:
        return read_chunked(c, end)
    length = cl or 0
    if len(c.raw) - end < length:
        return None
    c.complete = True
    return end + length


def read_chunked(c, pos):
    raw = c.raw
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return None
        line = raw[pos:eol]
        size_txt = line.split(b";")[0]
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_txt):
            c.body_error = "chunk size %r" % line
            return eol + 2
        size = int(size_txt, 16)
        pos = eol + 2
        if size == 0:
            # trailers until an empty line
            while True:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    c.complete = True
                    return eol + 2
                c.trailers.append(raw[pos:eol])
                pos = eol + 2
        if len(raw) < pos + size + 2:
            return None
        if raw[pos + size:pos + size + 2] != b"\r\n":
            c.body_error = "chunk data not followed by CRLF"
            return pos + size
        pos += size + 2


def ambiguities(c):
    out = []
    if c.head is None:
        return out
    if b"\n" in c.head.replace(b"\r\n", b""):
        out.append("bare LF in head")
    if b"\r" in c.head.replace(b"\r\n", b""):
        out.append("bare CR in head")
    start, lines = fields(c.head)
    parts = start.split(b" ")
    if len(parts) != 3:
        out.append("request line %r" % start[:60])
    else:
        method, target, _ = parts
        if method == b"CONNECT":
            out.append("CONNECT forwarded")
        standard = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"PATCH")
        if method != method.upper() and method.upper() in standard:
            out.append("method %r imitates %r" % (method, method.upper()))
        path = target
        m = re.match(rb"^https?://([^/?#]*)(.*)$", target, re.I)
        if m:
            path = m.group(2) or b"/"
        p = path.split(b"?")[0]
        if re.search(rb"(^|/)\.\.?(/|$|;)", p) or b"//" in p:
            out.append("dot segments or // in path")
        if re.search(rb"%2e|%2f|%5c|%00", p, re.I) or b"\\" in p:
            out.append("encoded dot/separator in path")
        if re.search(rb"%(4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|5F|7E)", p, re.I):
            out.append("encoded unreserved in path")
        if any(b > 0x7E or b < 0x21 for b in target):
            out.append("raw byte in target")
        if b"#" in target:
            out.append("fragment in target")
        if target == b"*" and method != b"OPTIONS":
            out.append("* target")
        if b"/smuggled" in target:
            out.append("smuggled request")
    hosts, cls, tes = [], [], []
    for l in lines:
        l = l.rstrip(b"\r")
        if l[:1] in (b" ", b"\t"):
            out.append("obs-fold")
            continue
        name, colon, value = l.partition(b":")
        if not colon or not TCHAR.match(name):
            out.append("bad field name %r" % name[:30])
            continue
        if any(b < 0x20 and b != 9 or b == 0x7F for b in value):
            out.append("control byte in %r" % name)
        n = name.lower().decode("latin-1")
        v = value.strip()
        if "_" in n and n.replace("_", "-") in GUARDED:
            out.append("look-alike %r" % name)
        if n == "host":
            hosts.append(v)
        elif n == "content-length":
            cls.append(v)
        elif n == "transfer-encoding":
            tes.append(v)
        elif n == "upgrade" and b"h2c" in v.lower():
            out.append("Upgrade: h2c")
        elif n == "http2-settings":
            out.append("HTTP2-Settings")
    if len(hosts) != 1:
        out.append("%d Host fields" % len(hosts))
    elif not HOST_RE.match(hosts[0]):
        out.append("malformed Host %r" % hosts[0][:40])
    if cls and tes:
        out.append("both Content-Length and Transfer-Encoding")
    if len(cls) > 1 or any(not re.fullmatch(rb"0|[1-9][0-9]*", v) for v in cls):
        out.append("Content-Length %r" % cls)
    if len(tes) > 1 or any(v.lower() != b"chunked" for v in tes):
        out.append("Transfer-Encoding %r" % tes)
    for t in c.trailers:
        n = t.partition(b":")[0].strip().lower()
        if n in (b"content-length", b"transfer-encoding", b"host", b"connection"):
            out.append("framing or routing field %r in trailers" % n)
    if c.body_error:
        out.append("body the origin cannot frame (%s)" % c.body_error)
    if c.leftover.strip():
        out.append("%d bytes after the request (desync)" % len(c.leftover))
    return out


def send_case(port, data, timeout):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(0.2)
    got = b""
    closed = False
    try:
        s.sendall(data)
    except OSError:
        pass
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            if final_statuses(got) and not expects_more(data, got):
                break
            continue
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        got += chunk
    s.close()
    return got, closed


def final_statuses(got):
    return [int(x) for x in re.findall(rb"(?:^|\n)HTTP/1\.[01] (\d{3})", got) if int(x) >= 200]


def expects_more(data, got):
    # Pipelined cases: wait for as many responses as requests sent (roughly).
    return len(final_statuses(got)) < data.count(b" HTTP/1.")


def verdict(got, closed, conns):
    reasons = []
    for c in conns:
        reasons += ambiguities(c)
    saw = any(c.raw for c in conns)
    if reasons:
        return "ambiguous", reasons
    if not final_statuses(got) and not closed:
        return "hung", ["partial request at the origin"] if saw else []
    if any(c.complete for c in conns):
        return "normalised", []
    if saw:
        # The client was answered; the origin got a head and part of a body, then its
        # connection closed: an aborted request, never a complete-looking one.
        return "aborted", ["partial request, connection closed"]
    return "rejected", []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--origin", type=int, required=True)
    ap.add_argument("--target", action="append", required=True, help="NAME=PORT")
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus"))
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None, help="substring of case names to run")
    ap.add_argument("--dump", default=None, help="folder: write what the origin received per case")
    ap.add_argument("--strict", action="append", default=[],
                    help="NAME: exit 1 if this target forwarded any case ambiguously")
    a = ap.parse_args()
    origin = Origin(a.origin)
    cases = sorted(f for f in os.listdir(a.corpus) if f.endswith(".req"))
    if a.only:
        cases = [c for c in cases if a.only in c]
    targets = [t.split("=", 1) for t in a.target]
    rows = []
    for name, port in targets:
        for case in cases:
            data = open(os.path.join(a.corpus, case), "rb").read()
            tag = (name, case)
            origin.case = tag
            got, closed = send_case(int(port), data, a.timeout)
            deadline = time.time() + 1.5
            while time.time() < deadline and not all(c.done for c in origin.of(tag)):
                time.sleep(0.05)
            v, why = verdict(got, closed, origin.of(tag))
            if a.dump:
                os.makedirs(a.dump, exist_ok=True)
                with open(os.path.join(a.dump, f"{name}--{case[:-4]}.origin"), "wb") as fh:
                    fh.write(b"".join(c.raw for c in origin.of(tag)))
            statuses = ",".join(str(s) for s in final_statuses(got)) or "-"
            rows.append((name, case[:-4], v, statuses, "; ".join(why)))
            origin.case = None
    if a.out:
        with open(a.out, "w") as fh:
            fh.write("target\tcase\tverdict\tstatuses\twhy\n")
            for r in rows:
                fh.write("\t".join(r) + "\n")
    report(rows, [t[0] for t in targets], len(cases))
    failed = [r for r in rows if r[0] in a.strict and r[2] == "ambiguous"]
    if failed:
        print(f"\nFAIL: {len(failed)} case(s) forwarded ambiguously by {', '.join(a.strict)}")
        return 1
    return 0


def report(rows, targets, n):
    kinds = ["rejected", "normalised", "aborted", "ambiguous", "hung"]
    print(f"\n{n} cases per target\n")
    print("| target | rejected | forwarded normalised | aborted at origin | forwarded ambiguous | hung (partial at origin) |")
    print("|---|---|---|---|---|---|")
    for t in targets:
        mine = [r for r in rows if r[0] == t]
        count = {k: sum(1 for r in mine if r[2] == k) for k in kinds}
        partial = sum(1 for r in mine if r[2] == "hung" and r[4])
        print(f"| {t} | {count['rejected']} | {count['normalised']} | {count['aborted']} | {count['ambiguous']} | {count['hung']} ({partial}) |")
    for t in targets:
        bad = [r for r in rows if r[0] == t and r[2] in ("aborted", "ambiguous", "hung")]
        if bad:
            print(f"\n{t}: aborted, ambiguous or hung")
            for r in bad:
                print(f"  {r[2]:9} {r[1]:40} {r[3]:8} {r[4]}")
    base = [r for r in rows if r[1].startswith("baseline--") and r[2] != "normalised"]
    if base:
        print("\nbaseline cases not forwarded normally:")
        for r in base:
            print(f"  {r[0]:10} {r[1]:40} {r[2]} {r[3]}")


if __name__ == "__main__":
    sys.exit(main())
