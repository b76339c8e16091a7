"""Issue 18 numbers: large uploads to S3, resumed uploads, and the memory of a huge upload.

    .venv/bin/python benchmarks/bench_transfer.py [--size-mib 1024] [--memory-size-mib 5120]
        [--servers moto,seaweedfs] [--runs 1] [--concurrency 8]

- throughput: one ``--size-mib`` file to each server (moto's S3 server and SeaweedFS, both
  subprocesses on loopback): ``ln.Artifact(path).save()`` (hashing, the CRC32 checksum of
  every part, the journal and the database included) against s3fs ``put_file`` and boto3's
  ``upload_file`` (TransferManager), all with the same part size and the same number of parts
  in flight. Target: lamin_nb >= 1.0x the faster of the two (ratio = their time / ours).
- resume: a child process saving the file through a counting TCP proxy is killed (SIGKILL)
  once 70 % of the bytes went through; a new process saves it again. Reported: bytes re-sent
  / file size (target <= 0.35, counted by the proxy) and the time of the resumed save against
  a fresh save in a new process.
- memory: peak RSS of a new process saving a ``--memory-size-mib`` file (sparse, to
  SeaweedFS, which keeps parts on disk). Target < 300 MB.

Methods alternate their order from run to run; each line shows the median.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.proxy import CountingProxy  # noqa: E402
from tests.support.seaweed import SeaweedServer  # noqa: E402
from tests.support.servers import MotoServer, s3_env  # noqa: E402

MiB = 1024 * 1024
# moto assembles a completed upload in Python: a 1 GiB completion can outlast botocore's 60 s
# default, and a retried completion then fails; every client gets the same patience
READ_TIMEOUT = 900
CHILD = ROOT / "tests" / "transfers" / "child_save.py"


def random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 16 * MiB)
            out.write(os.urandom(n))
            left -= n
    return path


class Server:
    def __init__(self, name: str, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.impl: Any = (
            MotoServer(work / "moto.log") if name == "moto" else SeaweedServer(work / "seaweed")
        )

    def __enter__(self) -> Server:
        self.impl.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.impl.stop()

    @property
    def endpoint(self) -> str:
        return str(self.impl.endpoint)

    def new_bucket(self) -> str:
        return str(self.impl.new_bucket())


def use_endpoint(endpoint: str, home: Path) -> None:
    """Point this process (and its children) at ``endpoint``, as a user configures S3."""
    import s3fs

    os.environ.update(s3_env(endpoint))
    os.environ["LAMIN_NB_HOME"] = str(home)
    s3fs.S3FileSystem.clear_instance_cache()


# -- throughput ------------------------------------------------------------------------------


def throughput(server: Server, path: Path, runs: int, concurrency: int, work: Path) -> None:
    import boto3
    import s3fs
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    import lamin_nb as ln
    from lamin_nb.core.storage import multipart

    use_endpoint(server.endpoint, work / f"home-{server.name}")
    part = multipart.part_size_for(path.stat().st_size)
    multipart.PARTS_IN_FLIGHT = concurrency
    bucket = server.new_bucket()
    options = {"config_kwargs": {"read_timeout": READ_TIMEOUT}}
    ln.init(storage=f"s3://{bucket}/bench", storage_options=options)
    fs = s3fs.S3FileSystem(**options)
    client = boto3.client("s3", config=Config(read_timeout=READ_TIMEOUT))
    config = TransferConfig(
        multipart_threshold=part, multipart_chunksize=part, max_concurrency=concurrency
    )

    def lamin() -> float:
        start = time.perf_counter()
        artifact = ln.Artifact(path, key="bench.bin").save()
        took = time.perf_counter() - start
        artifact.delete(permanent=True)  # the next run uploads again, not dedups
        return took

    def s3fs_put() -> float:
        start = time.perf_counter()
        fs.put_file(str(path), f"{bucket}/s3fs.bin", chunksize=part, max_concurrency=concurrency)
        took = time.perf_counter() - start
        fs.rm_file(f"{bucket}/s3fs.bin")
        return took

    def boto3_upload() -> float:
        start = time.perf_counter()
        client.upload_file(str(path), bucket, "boto3.bin", Config=config)
        took = time.perf_counter() - start
        client.delete_object(Bucket=bucket, Key="boto3.bin")
        return took

    methods: dict[str, Callable[[], float]] = {
        "lamin_nb save": lamin,
        "s3fs put_file": s3fs_put,
        "boto3 upload_file": boto3_upload,
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for run in range(runs):
        for name in names[run % 3 :] + names[: run % 3]:
            times[name].append(methods[name]())
    size = path.stat().st_size
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n[{server.name}] {size // MiB} MiB, part {part // MiB} MiB, {concurrency} in flight")
    for name, took in median.items():
        print(f"  {name:18s} {took:7.2f} s  {size / took / MiB:7.1f} MiB/s")
    best = min(median["s3fs put_file"], median["boto3 upload_file"])
    ratio = best / median["lamin_nb save"]
    print(f"  ratio (faster of s3fs/boto3 time / lamin_nb time): {ratio:.2f}x")
    ln.disconnect()


# -- resume ----------------------------------------------------------------------------------


def child_save(path: Path, key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(path), key],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def resume(server: Server, path: Path, work: Path) -> None:
    import lamin_nb as ln

    host, port = server.endpoint.removeprefix("http://").split(":")
    proxy = CountingProxy(host, int(port)).start()
    try:
        use_endpoint(proxy.endpoint, work / f"home-resume-{server.name}")
        options = {"config_kwargs": {"read_timeout": READ_TIMEOUT}}
        ln.init(storage=f"s3://{server.new_bucket()}/bench", storage_options=options)
        size = path.stat().st_size

        start = time.perf_counter()
        fresh = child_save(path, "fresh.bin")
        fresh.communicate()
        fresh_time = time.perf_counter() - start
        ln.Artifact.get("fresh.bin").delete(permanent=True)

        proxy.reset()
        child = child_save(path, "resumed.bin")
        while proxy.upstream < 0.7 * size and child.poll() is None:
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        time.sleep(2)  # let the server finish storing parts whose bodies arrived
        proxy.reset()
        start = time.perf_counter()
        again = child_save(path, "resumed.bin")
        _, log = again.communicate()
        resumed_time = time.perf_counter() - start
        said = [line for line in log.splitlines() if "resuming:" in line]
        print(f"\n[{server.name}] resume after a kill at 70 % of {size // MiB} MiB")
        print(f"  {said[0].strip() if said else 'no resume message!'}")
        print(f"  bytes re-sent / size: {proxy.upstream / size:.3f} (target <= 0.35)")
        print(
            f"  time: resumed {resumed_time:.2f} s vs fresh {fresh_time:.2f} s "
            f"({resumed_time / fresh_time:.2f}x)"
        )
        ok = ln.check(deep=True).is_consistent
        print(f"  deep check consistent: {ok}")
        ln.disconnect()
    finally:
        proxy.stop()


# -- memory ----------------------------------------------------------------------------------


def memory(server: Server, size: int, work: Path) -> None:
    import lamin_nb as ln

    use_endpoint(server.endpoint, work / f"home-memory-{server.name}")
    options = {"config_kwargs": {"read_timeout": READ_TIMEOUT}}
    ln.init(storage=f"s3://{server.new_bucket()}/bench", storage_options=options)
    path = work / "huge.bin"
    with open(path, "wb") as out:  # sparse: no disk for the source, same work for lamin_nb
        out.truncate(size)
    start = time.perf_counter()
    child = child_save(path, "huge.bin")
    _, _, usage = os.wait4(child.pid, 0)
    took = time.perf_counter() - start
    child.returncode = 0
    child.communicate()
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    print(f"\n[{server.name}] {size // MiB} MiB upload in a new process: {took:.1f} s")
    print(f"  peak RSS: {peak / MiB:.0f} MiB (target < 300 MB = {300e6 / MiB:.0f} MiB)")
    path.unlink()
    ln.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--memory-size-mib", type=int, default=5120)
    parser.add_argument("--servers", default="moto,seaweedfs")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma list of throughput,resume,memory")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    work = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    try:
        path = random_file(work / "big.bin", args.size_mib * MiB)
        for name in args.servers.split(","):
            with Server(name, work / f"srv-{name}-{secrets.token_hex(2)}") as server:
                if "throughput" not in skip:
                    throughput(server, path, args.runs, args.concurrency, work)
                if "resume" not in skip:
                    resume(server, path, work)
                if "memory" not in skip and name == "seaweedfs":
                    memory(server, args.memory_size_mib * MiB, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
