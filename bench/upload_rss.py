"""Peak memory growth while the eBill step streams an S3 object to a presigned URL.

Three processes, so that only the hub's memory is measured: moto's S3 server holds the object,
a sink accepts the PUT and throws the bytes away, and a fresh interpreter runs the hub's own code
(``FileStore.open`` -> ``HttpEbillClient.upload``) and reports its peak RSS (VmHWM) over its RSS
just before the upload.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-drops"
KEY = "ebill/customers/big.csv"
_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


class _Sink(BaseHTTPRequestHandler):
    """Accepts a PUT and discards the body as it arrives."""

    def do_PUT(self) -> None:
        left = int(self.headers["Content-Length"])
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


_CREATE = """
import boto3, io, sys
size = int(sys.argv[2])
class Zeros(io.RawIOBase):
    def __init__(self): self.left = size
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
bucket, key = sys.argv[3], sys.argv[4]
s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
s3.upload_fileobj(io.BufferedReader(Zeros(), 1 << 20), bucket, key)
"""

_MEASURE = """
import boto3, json, sys
from erphub.clients.ebill import HttpEbillClient
from erphub.files import FileStore
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field): return int(line.split()[1]) / 1024
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
store = FileStore(s3)
client = HttpEbillClient("http://127.0.0.1:9", None)
obj = store.head(sys.argv[3], sys.argv[4])
before = status("VmRSS:")
with store.open(obj) as stream:
    client.upload(sys.argv[2], stream.chunks, stream.size)
print(json.dumps({"bytes": obj.size, "rss_before_mb": before, "peak_mb": status("VmHWM:")}))
"""


def measure(size_bytes: int) -> dict[str, float]:
    """Stream an object of ``size_bytes`` and return the hub process's peak RSS growth (MB)."""
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    env = {**_FAKE_AWS, "PATH": "/usr/bin:/bin"}
    try:
        with _moto_server() as endpoint:
            subprocess.run(
                [sys.executable, "-c", _CREATE, endpoint, str(size_bytes), BUCKET, KEY],
                check=True,
                env=env,
            )
            started = time.perf_counter()
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _MEASURE,
                    endpoint,
                    f"http://127.0.0.1:{sink.server_port}/up",
                    BUCKET,
                    KEY,
                ],
                check=True,
                env=env,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            seconds = time.perf_counter() - started
    finally:
        sink.shutdown()
    figures = json.loads(out.stdout)
    return {
        "bytes": figures["bytes"],
        "rss_growth_mb": round(figures["peak_mb"] - figures["rss_before_mb"], 1),
        "seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100 * 2**20)))
