"""What the SaveProgress widget costs: a bulk save with it attached vs without, same run.

    python benchmarks/bench_progress.py [--items 1000] [--size 10240] [--runs 3]

Embedded default (SQLite + a local folder) in a scratch folder removed afterwards. Each run
saves ``--items`` fresh random files twice, once plain and once with a ``SaveProgress``
(alternating which goes first), so the ratio compares like with like. Target: <= 1.05x.

No kernel is needed to count what would reach the front end: ``comm.create_comm`` is the
hook ipykernel itself replaces, and here it returns a comm that signs and serialises every
message with a ``jupyter_client`` Session exactly as ipykernel does before its ZMQ send.
So the timed run pays the real per-message cost, and the message count is exact.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET = 1.05


class CountingComms:
    """Installs a serialising, counting comm for every widget created afterwards."""

    def __init__(self) -> None:
        import comm
        from comm.base_comm import BaseComm
        from jupyter_client.session import Session

        session = Session(key=os.urandom(32))
        counter = self
        self.messages = 0
        self.bytes = 0
        self.by_type: dict[str, int] = {}

        class SerialisingComm(BaseComm):
            def publish_msg(
                self,
                msg_type: str,
                data: Any = None,
                metadata: Any = None,
                buffers: Any = None,
                **keys: Any,
            ) -> None:
                content = dict(data=data or {}, comm_id=self.comm_id, **keys)
                msg = session.msg(msg_type, content, metadata=metadata or {})
                frames = session.serialize(msg)  # JSON + HMAC, what goes on the wire
                counter.messages += 1
                counter.bytes += sum(len(f) for f in frames)
                method = (data or {}).get("method", msg_type)
                counter.by_type[method] = counter.by_type.get(method, 0) + 1

        comm.create_comm = lambda *args, **kwargs: SerialisingComm(*args, **kwargs)

    def reset(self) -> None:
        self.messages, self.bytes, self.by_type = 0, 0, {}


def make_files(folder: Path, n: int, size: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"f{i:05d}.bin" for i in range(n)]
    for path in paths:
        path.write_bytes(os.urandom(size))
    return paths


def timed_save(paths: list[Path], prefix: str, with_progress: bool) -> tuple[float, float, Any]:
    import lamin_nb as ln
    from lamin_nb.widgets import SaveProgress

    artifacts = [ln.Artifact(p, key=f"{prefix}/{p.name}") for p in paths]
    start, cpu = time.perf_counter(), time.process_time()
    progress = SaveProgress() if with_progress else None
    ln.save(artifacts, callback=progress)
    return time.perf_counter() - start, time.process_time() - cpu, progress


def widget_cpu(paths: list[Path], prefix: str) -> float:
    """CPU seconds spent inside the widget's own code during one save, whatever thread ran
    it (workers, the render thread), minus the timer's own cost: a figure other processes on
    the machine cannot blur."""
    import lamin_nb as ln
    from lamin_nb.widgets import SaveProgress

    spent: list[float] = []

    def timed(name: str) -> Any:
        original = getattr(SaveProgress, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            before = time.thread_time()
            try:
                return original(self, *args, **kwargs)
            finally:
                spent.append(time.thread_time() - before)  # list.append is thread-safe

        return wrapper

    timed_class = type(
        "TimedSaveProgress",
        (SaveProgress,),
        {
            name: timed(name)
            for name in ("__init__", "start", "state", "advance", "finish", "_tick")
        },
    )
    artifacts = [ln.Artifact(p, key=f"{prefix}/{p.name}") for p in paths]
    ln.save(artifacts, callback=timed_class())
    return sum(spent) - len(spent) * _timer_cost()


def _timer_cost() -> float:
    """What one measured interval adds by itself (CLOCK_THREAD_CPUTIME_ID is a syscall)."""
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(10_000):
            before = time.thread_time()
            _ = time.thread_time() - before
        samples.append((time.perf_counter() - start) / 10_000)
    return min(samples) / 2


def count_events(paths: list[Path]) -> int:
    import lamin_nb as ln
    from lamin_nb.core.callbacks import RecordingCallback

    class Counting(RecordingCallback):
        advances = 0

        def advance(self, index: int, nbytes: int) -> None:
            super().advance(index, nbytes)
            with self._lock:
                self.advances += 1

    recorder = Counting()
    ln.save([ln.Artifact(p, key=f"events/{p.name}") for p in paths], callback=recorder)
    return len(recorder.events) + recorder.advances


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--size", type=int, default=10 * 1024, help="bytes per file")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="lamin-bench-progress-"))
    os.environ["LAMIN_NB_HOME"] = str(scratch / "home")
    try:
        run(scratch, args)
        return 0
    finally:
        from lamin_nb.core import instance

        if instance._current is not None:
            instance._current.close()
        shutil.rmtree(scratch, ignore_errors=True)


def run(scratch: Path, args: argparse.Namespace) -> None:
    import lamin_nb as ln

    comms = CountingComms()
    ln.init(storage=str(scratch / "storage"))
    warm = make_files(scratch / "warm", 50, args.size)
    timed_save(warm, "warm", True)  # imports, first widgets, SQLite file growth
    events = count_events(make_files(scratch / "events", args.items, args.size))
    plain, with_widget, messages, sizes = [], [], [], []
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for number in range(args.runs):
        order = (False, True) if number % 2 == 0 else (True, False)
        for with_progress in order:
            paths = make_files(scratch / f"run{number}-{int(with_progress)}", args.items, args.size)
            comms.reset()
            elapsed, used, progress = timed_save(
                paths, f"r{number}-{int(with_progress)}", with_progress
            )
            (with_widget if with_progress else plain).append(elapsed)
            cpu[with_progress].append(used)
            if with_progress:
                assert progress.overall.bar_style == "success", repr(progress)
                messages.append(comms.messages)
                sizes.append(comms.bytes)
                by_type = dict(comms.by_type)
    own = [
        widget_cpu(make_files(scratch / f"cpu{n}", args.items, args.size), f"cpu{n}")
        for n in range(args.runs)
    ]
    ratios = [w / p for w, p in zip(with_widget, plain, strict=True)]
    ratio = statistics.median(with_widget) / statistics.median(plain)
    print(
        f"bulk save of {args.items} x {args.size} B files, SQLite + local folder, "
        f"{args.runs} run(s), load {os.getloadavg()[0]:.1f}"
    )
    print(f"  without progress: median {statistics.median(plain):.3f} s  {_list(plain)}")
    print(
        f"  with SaveProgress: median {statistics.median(with_widget):.3f} s  {_list(with_widget)}"
    )
    print(
        f"  ratio of medians: {ratio:.3f}x (per run {_list(ratios, '{:.3f}')}); "
        f"target <= {TARGET}x: {'met' if ratio <= TARGET else 'MISSED'}"
    )
    cpu_ratio = statistics.median(cpu[True]) / statistics.median(cpu[False])
    print(
        f"  CPU time of the process (all threads), ratio of medians: {cpu_ratio:.3f}x "
        f"({statistics.median(cpu[False]):.3f} s vs {statistics.median(cpu[True]):.3f} s); "
        "less sensitive to other processes on the machine than wall time"
    )
    share = statistics.median(own) / statistics.median(plain)
    print(
        f"  CPU time inside the widget's own code (thread_time, all threads): median "
        f"{statistics.median(own) * 1000:.1f} ms per save = {share:.1%} of the plain save's "
        f"wall time, i.e. an expected ratio of about {1 + share:.3f}x on an idle machine"
    )
    print(f"  progress events from the core: {events} (state + advance calls)")
    print(
        f"  comm messages per save: {_list(messages, '{:d}')} "
        f"({statistics.median(sizes) / 1024:.0f} KiB signed JSON), last run by kind: {by_type}"
    )


def _list(values: list[Any], fmt: str = "{:.3f}") -> str:
    return "[" + ", ".join(fmt.format(v) for v in values) + "]"


if __name__ == "__main__":
    sys.exit(main())
