#!/usr/bin/env python3
"""Writes bench/smuggling/corpus/: one raw request file per case, named CLASS--CASE.req.

The cases are drawn from published request-smuggling research (Linhart et al. 2005; James
Kettle's "HTTP Desync Attacks" 2019 and "Browser-Powered Desync" 2022; "HTTP/1.1 must die"
2025's 0.CL and expect-based desyncs; BishopFox's h2c smuggling 2020; Orange Tsai's path
confusion talks), the RFC 9112 / 9110 / 3986 examples, and past CVEs and advisories: nginx
(CVE-2019-20372 error-page smuggling; `underscores_in_headers`), HAProxy (CVE-2019-18277
Transfer-Encoding with a vertical tab, CVE-2021-40346 header-length overflow, CVE-2023-25725
empty header names, CVE-2023-40225 empty Content-Length), Pingora (CVE-2026-2833 premature
upgrade, CVE-2026-2836 cache key without host), Envoy's path normalisation options
(`merge_slashes`, encoded `/`), Apache Traffic Server and Node.js llhttp (bare LF,
obs-fold, chunk-extension LF). Every case sends `Host: h.test`, unless the Host is what it
tests. A smuggled request always asks for `/smuggled`: an origin that ever sees that path as a
request of its own was desynchronised. Legitimate pipelining uses `/second`.

Run it again after editing: it rewrites the folder.
"""

import os
import sys

H = b"Host: h.test\r\n"
SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: h.test\r\n\r\n"


def get(target=b"/", headers=b"", version=b"HTTP/1.1", method=b"GET", host=H):
    return method + b" " + target + b" " + version + b"\r\n" + host + headers + b"\r\n"


def post(headers, body, target=b"/", version=b"HTTP/1.1", host=H):
    return b"POST " + target + b" " + version + b"\r\n" + host + headers + b"\r\n" + body


def chunked(body_chunks, headers=b"Transfer-Encoding: chunked\r\n"):
    return post(headers, body_chunks)


CASES = {
    # ---- baseline: well-formed requests every proxy must forward --------------------------
    "baseline--get": get(),
    "baseline--post-cl": post(b"Content-Length: 5\r\n", b"hello"),
    "baseline--post-chunked": chunked(b"5\r\nhello\r\n0\r\n\r\n"),
    "baseline--pipelined-two": get() + get(b"/second"),
    "baseline--http10-with-host": get(version=b"HTTP/1.0"),
    "baseline--options-star": get(b"*", method=b"OPTIONS"),
    "baseline--query-kept": get(b"/a?x=/../&y=%2F"),
    "baseline--head": get(method=b"HEAD"),
    # ---- Content-Length -----------------------------------------------------------------
    "cl--sign-plus": post(b"Content-Length: +5\r\n", b"hello"),
    "cl--sign-minus": post(b"Content-Length: -5\r\n", b"hello"),
    "cl--leading-zeros": post(b"Content-Length: 005\r\n", b"hello"),
    "cl--list-same": post(b"Content-Length: 5, 5\r\n", b"hello"),
    "cl--list-differ": post(b"Content-Length: 5, 44\r\n", b"hello" + SMUGGLE),
    "cl--two-fields-differ": post(b"Content-Length: 5\r\nContent-Length: 44\r\n", b"hello" + SMUGGLE),
    "cl--two-fields-same": post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
    "cl--hex": post(b"Content-Length: 0x5\r\n", b"hello"),
    "cl--overflow-2p64": post(b"Content-Length: 18446744073709551621\r\n", b"hello"),
    "cl--huge": post(b"Content-Length: 99999999999999999999999999\r\n", b"hello"),
    "cl--space-inside": post(b"Content-Length: 5 0\r\n", b"hello"),
    "cl--empty": post(b"Content-Length: \r\n", b"hello"),
    "cl--decimal": post(b"Content-Length: 5.0\r\n", b"hello"),
    "cl--trailing-junk": post(b"Content-Length: 5abc\r\n", b"hello"),
    "cl--underscore-digits": post(b"Content-Length: 1_0\r\n", b"hello12345"),
    "cl--vertical-tab": post(b"Content-Length:\x0b5\r\n", b"hello"),
    "cl--get-with-body-smuggle": get(headers=b"Content-Length: " + str(len(SMUGGLE)).encode() + b"\r\n") + SMUGGLE,
    "cl--short-body": post(b"Content-Length: 10\r\n", b"hello"),
    "cl--zero-with-tail": post(b"Content-Length: 0\r\n", b"GET /smuggled HTTP/1.1\r\nX: "),
    "cl--0cl-expect": post(b"Content-Length: 44\r\nExpect: 100-continue\r\n", b""),
    # ---- Transfer-Encoding -----------------------------------------------------------------
    "te--cl-and-te": post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLE),
    "te--te-and-cl": post(b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n", b"0\r\n\r\n" + SMUGGLE),
    "te--cl-te-big-cl": post(b"Content-Length: 100\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLE),
    "te--gzip-chunked": post(b"Transfer-Encoding: gzip, chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--chunked-chunked": post(b"Transfer-Encoding: chunked, chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--chunked-identity": post(b"Transfer-Encoding: chunked, identity\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--identity": post(b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n", b"hello"),
    "te--two-fields": post(b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--two-fields-chunked": post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--xchunked": post(b"Transfer-Encoding: xchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--chunked-x": post(b"Transfer-Encoding: chunkedx\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--upper-case": post(b"Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--tab-before": post(b"Transfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--vertical-tab": post(b"Transfer-Encoding:\x0bchunked\r\nContent-Length: 5\r\n", b"hello"),
    "te--space-before-colon": post(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", b"hello"),
    "te--quoted": post(b'Transfer-Encoding: "chunked"\r\nContent-Length: 5\r\n', b"hello"),
    "te--comma-first": post(b"Transfer-Encoding: ,chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "te--http10": post(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n", version=b"HTTP/1.0"),
    "te--obs-fold": post(b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n", b"hello"),
    "te--on-get": get(headers=b"Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n",
    "te--nul-in-value": post(b"Transfer-Encoding: chunked\x00\r\nContent-Length: 5\r\n", b"hello"),
    # ---- chunked framing -------------------------------------------------------------------
    "chunk--size-overflow": chunked(b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    "chunk--size-many-digits": chunked(b"0000000000000000000000005\r\nhello\r\n0\r\n\r\n"),
    "chunk--size-hex-prefix": chunked(b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk--size-negative": chunked(b"-5\r\nhello\r\n0\r\n\r\n"),
    "chunk--size-space-before": chunked(b" 5\r\nhello\r\n0\r\n\r\n"),
    "chunk--size-space-after": chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
    "chunk--size-bare-lf": chunked(b"5\nhello\r\n0\r\n\r\n"),
    "chunk--data-bare-lf": chunked(b"5\r\nhello\n0\r\n\r\n"),
    "chunk--data-no-crlf": chunked(b"5\r\nhello0\r\n\r\n"),
    "chunk--data-too-long": chunked(b"3\r\nhello\r\n0\r\n\r\n"),
    "chunk--ext-plain": chunked(b"5;a=b\r\nhello\r\n0\r\n\r\n"),
    "chunk--ext-bare-lf": chunked(b"5;a\nb\r\nhello\r\n0\r\n\r\n"),
    "chunk--ext-bare-cr": chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
    "chunk--ext-quoted-crlf": chunked(b'5;a="\r\nX"\r\nhello\r\n0\r\n\r\n'),
    "chunk--last-no-final-crlf": chunked(b"5\r\nhello\r\n0\r\n"),
    "chunk--no-last-chunk": chunked(b"5\r\nhello\r\n"),
    "chunk--trailer-cl": chunked(b"5\r\nhello\r\n0\r\nContent-Length: 44\r\n\r\n"),
    "chunk--trailer-host": chunked(b"5\r\nhello\r\n0\r\nHost: evil.test\r\n\r\n"),
    "chunk--trailer-te": chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    "chunk--pipelined-after-last": chunked(b"0\r\n\r\n" + get(b"/second")),
    "chunk--bad-mid-stream": chunked(b"5\r\nhello\r\nZZ\r\nnot a chunk\r\n0\r\n\r\n"),
    "chunk--size-uppercase-x": chunked(b"5X\r\nhello\r\n0\r\n\r\n"),
    "chunk--0-with-ext": chunked(b"5\r\nhello\r\n0;x\r\n\r\n"),
    # ---- line endings and folding ----------------------------------------------------------
    "line--bare-lf-everywhere": b"GET / HTTP/1.1\nHost: h.test\n\n",
    "line--bare-lf-header-injection": b"GET / HTTP/1.1\r\nHost: h.test\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "line--bare-cr-header": b"GET / HTTP/1.1\r\nHost: h.test\r\nX: a\rContent-Length: 44\r\n\r\n" + SMUGGLE,
    "line--bare-cr-request-line": b"GET / HTTP/1.1\rHost: h.test\r\n\r\n",
    "line--obs-fold-header": get(headers=b"X-A: 1\r\n folded\r\n"),
    "line--obs-fold-first": b"GET / HTTP/1.1\r\n Host: h.test\r\n\r\n",
    "line--nul-in-value": get(headers=b"X-A: a\x00b\r\n"),
    "line--leading-crlf": b"\r\n" + get(),
    "line--space-before-colon": get(headers=b"Content-Length : 5\r\n"),
    "line--header-no-colon": get(headers=b"X-A 5\r\n"),
    "line--empty-name": get(headers=b": empty\r\n"),
    "line--multiple-spaces-request-line": b"GET  /  HTTP/1.1\r\nHost: h.test\r\n\r\n",
    "line--http09": b"GET /\r\n\r\n",
    "line--version-junk": b"GET / HTTP/1.1x\r\nHost: h.test\r\n\r\n",
    "line--version-2": b"GET / HTTP/2.0\r\nHost: h.test\r\n\r\n",
    "line--version-lower": b"GET / http/1.1\r\nHost: h.test\r\n\r\n",
    # ---- Host ------------------------------------------------------------------------------
    "host--missing-11": get(host=b""),
    "host--missing-10": get(host=b"", version=b"HTTP/1.0"),
    "host--two-differ": get(host=b"Host: h.test\r\nHost: evil.test\r\n"),
    "host--two-same": get(host=b"Host: h.test\r\nHost: h.test\r\n"),
    "host--userinfo": get(host=b"Host: u@h.test\r\n"),
    "host--list": get(host=b"Host: h.test, evil.test\r\n"),
    "host--space-inside": get(host=b"Host: h.test evil.test\r\n"),
    "host--empty": get(host=b"Host: \r\n"),
    "host--bad-port": get(host=b"Host: h.test:80x\r\n"),
    "host--port-overflow": get(host=b"Host: h.test:99999\r\n"),
    "host--two-colons": get(host=b"Host: h.test:80:81\r\n"),
    "host--slash": get(host=b"Host: h.test/evil\r\n"),
    "host--percent": get(host=b"Host: h%2etest\r\n"),
    "host--non-ascii": get(host=b"Host: h\xc3\xa9.test\r\n"),
    "host--underscore-lookalike": get(host=b"Host: h.test\r\nHost_: evil.test\r\n"),
    "host--absolute-differs": get(b"http://evil.test/"),
    "host--absolute-agrees": get(b"http://h.test/x"),
    "host--absolute-userinfo": get(b"http://u:p@h.test/"),
    "host--absolute-no-host-field": get(b"http://h.test/", host=b""),
    "host--absolute-other-port": get(b"http://h.test:8080/"),
    # ---- request target ----------------------------------------------------------------------
    "target--star-get": get(b"*"),
    "target--authority-get": get(b"h.test:80"),
    "target--connect": get(b"h.test:443", method=b"CONNECT", host=b"Host: h.test:443\r\n"),
    "target--connect-origin-form": get(b"/", method=b"CONNECT"),
    "target--ftp-scheme": get(b"ftp://h.test/"),
    "target--utf8": get(b"/caf\xc3\xa9"),
    "target--latin1": get(b"/caf\xe9"),
    "target--control": get(b"/a\x01b"),
    "target--tab": get(b"/a\tb"),
    "target--del": get(b"/a\x7fb"),
    "target--fragment": get(b"/a#frag"),
    "target--fragment-dots": get(b"/wp-admin#/../public"),
    "target--backslash": get(b"/a\\..\\wp-admin"),
    "target--no-slash": get(b"wp-admin"),
    "target--long": get(b"/" + b"a" * 70000),
    # ---- path normalisation -------------------------------------------------------------------
    "path--dotdot": get(b"/x/../wp-admin"),
    "path--dotdot-encoded": get(b"/%2e%2e/wp-admin"),
    "path--dotdot-encoded-upper": get(b"/x/%2E%2E/wp-admin"),
    "path--dotdot-mixed": get(b"/x/.%2e/wp-admin"),
    "path--dot": get(b"/./wp-admin"),
    "path--trailing-dot": get(b"/wp-admin/."),
    "path--double-slash": get(b"//wp-admin"),
    "path--many-slashes": get(b"///wp-admin//x"),
    "path--encoded-unreserved": get(b"/%77p-admin"),
    "path--encoded-slash": get(b"/x%2F..%2Fwp-admin"),
    "path--encoded-backslash": get(b"/x%5C..%5Cwp-admin"),
    "path--encoded-nul": get(b"/wp-admin%00.png"),
    "path--encoded-crlf": get(b"/x%0d%0aX-Injected:%201"),
    "path--double-encoded": get(b"/%252e%252e/wp-admin"),
    "path--bad-escape": get(b"/a%zz"),
    "path--tomcat-dotdot-semicolon": get(b"/public/..;/wp-admin"),
    "path--tomcat-dot-semicolon": get(b"/public/.;/wp-admin"),
    "path--dotdot-above-root": get(b"/../../etc/passwd"),
    "path--case": get(b"/WP-admin"),
    # ---- header names --------------------------------------------------------------------------
    "name--content-length-underscore": post(b"Content_Length: 44\r\n", SMUGGLE),
    "name--transfer-encoding-underscore": post(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLE),
    "name--x-forwarded-for-underscore": get(headers=b"X_Forwarded_For: 10.0.0.1\r\n"),
    "name--underscore-other": get(headers=b"X_Custom: 1\r\n"),
    "name--trailing-space": get(headers=b"Content-Length : 5\r\n"),
    "name--non-tchar": get(headers=b"X-A[1]: 5\r\n"),
    "name--space-inside": get(headers=b"Content Length: 5\r\n"),
    "name--utf8": get(headers=b"X-\xc3\xa9: 5\r\n"),
    # ---- hop-by-hop lists naming end-to-end fields -------------------------------------------
    "hop--connection-content-length": post(b"Connection: Content-Length\r\nContent-Length: 5\r\n", b"hello"),
    "hop--connection-transfer-encoding": chunked(b"5\r\nhello\r\n0\r\n\r\n", headers=b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n"),
    "hop--connection-host": get(headers=b"Connection: Host\r\n"),
    "hop--connection-x-forwarded-for": get(headers=b"Connection: X-Forwarded-For\r\nX-Forwarded-For: 10.0.0.1\r\n"),
    # ---- methods ---------------------------------------------------------------------------------
    "method--lower-case": get(method=b"get"),
    "method--unknown-with-body": post(b"Content-Length: 5\r\n", b"hello").replace(b"POST", b"FOO", 1),
    "method--trace": get(method=b"TRACE"),
    # ---- upgrades -----------------------------------------------------------------------------
    "upgrade--h2c": get(headers=b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
    "upgrade--h2c-no-connection": get(headers=b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
    # The origin answers 200, not 101: what follows is a new request, never tunnelled bytes.
    "upgrade--websocket-declined-then-next": get(b"/ws", headers=b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n") + get(b"/second"),
    "upgrade--http2-settings-alone": get(headers=b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
    "upgrade--connection-close-te": get(headers=b"Connection: close, Transfer-Encoding\r\n"),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "corpus")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith(".req"):
            os.remove(os.path.join(out, f))
    for name, data in CASES.items():
        with open(os.path.join(out, name + ".req"), "wb") as fh:
            fh.write(data)
    print(f"{len(CASES)} cases in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
