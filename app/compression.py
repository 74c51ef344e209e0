"""Compressed responses, so that a first page load stays small (Plotly's bundle alone is 4.6 MB raw).

Static bundles are compressed once per process and kept: first at a fast level, then, in a background
thread, at Brotli's best level (about a quarter smaller for JavaScript, too slow to do per request).
Callback answers are compressed at a fast level, and the larger ones kept by digest (a memoised answer is
compressed once). Nothing here changes what is sent, only how.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict

import brotli
import flask

STATIC_PREFIXES = ("/_dash-component-suites/", "/assets/", "/opencem/zones/")
MIN_BYTES = 1024
REPEAT_MIN_BYTES = 8 * 1024  # callback answers from this size up are kept compressed (`_compress_repeated`)
MAX_ANSWERS = 256
_answers: OrderedDict[tuple[bytes, str], bytes] = OrderedDict()
_cache: dict[tuple[str, str, int], bytes] = {}
_pending: set[tuple[str, str, int]] = set()
_lock = threading.Lock()


def _compress(data: bytes, encoding: str, *, best: bool) -> bytes:
    if encoding == "br":
        return brotli.compress(data, quality=11 if best else 5)
    return gzip.compress(data, compresslevel=9 if best else 6, mtime=0)


def _upgrade(key: tuple[str, str, int], data: bytes, encoding: str) -> None:
    better = _compress(data, encoding, best=True)
    with _lock:
        _cache[key] = better
        _pending.discard(key)


def pending() -> int:
    """How many bundles are still being compressed at the best level."""
    with _lock:
        return len(_pending)


def _compress_repeated(data: bytes, encoding: str) -> bytes:
    """A callback answer compressed at a fast level, kept by its digest: answers memoised per warehouse
    version come back byte for byte, and are then compressed once, not on every request."""
    key = (hashlib.blake2b(data, digest_size=16).digest(), encoding)
    with _lock:
        body = _answers.get(key)
        if body is not None:
            _answers.move_to_end(key)
            return body
    body = _compress(data, encoding, best=False)
    with _lock:
        _answers[key] = body
        while len(_answers) > MAX_ANSWERS:
            _answers.popitem(last=False)
    return body


def _choose(accept: str) -> str | None:
    offered = {part.split(";")[0].strip() for part in accept.split(",")}
    return "br" if "br" in offered else ("gzip" if "gzip" in offered else None)


def compress_response(response: flask.Response) -> flask.Response:
    encoding = _choose(flask.request.headers.get("Accept-Encoding", ""))
    if (encoding is None or response.direct_passthrough or response.status_code != 200
            or "Content-Encoding" in response.headers):
        return response
    data = response.get_data()
    if len(data) < MIN_BYTES:
        return response
    path = flask.request.path
    if path.startswith(STATIC_PREFIXES):
        key = (path, encoding, hash(data))
        with _lock:
            body = _cache.get(key)
            start = body is None and key not in _pending
            if start:
                _pending.add(key)
        if body is None:
            body = _compress(data, encoding, best=False)
            with _lock:
                _cache.setdefault(key, body)
            if start:
                threading.Thread(target=_upgrade, args=(key, data, encoding), daemon=True).start()
    elif len(data) >= REPEAT_MIN_BYTES:
        body = _compress_repeated(data, encoding)
    else:
        body = _compress(data, encoding, best=False)
    response.set_data(body)
    response.headers["Content-Encoding"] = encoding
    response.headers["Content-Length"] = str(len(body))
    response.vary.add("Accept-Encoding")
    return response


def install_compression(server: flask.Flask) -> None:
    server.after_request(compress_response)
