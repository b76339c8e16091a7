"""Issue 16 numbers: browser uploads through the chunked REST protocol, on loopback.

    .venv/bin/python benchmarks/bench_upload.py [--mib 1024] [--runs 3] [--chunks 8,32,64]

- throughput: headless Chromium sends a file picked into an ``<input type=file>`` with
  ``File.slice()``, one ``PUT uploads/{id}?offset=N`` per chunk (what the UploadWidget's page
  code does), against one ``curl --data-binary`` PUT of the same file to the same route of the
  same server (``curl -T`` for 1 GiB and more, which curl's ``--data-binary`` refuses). Target:
  >= 0.7x of curl. Several chunk sizes, to pick the server's default.
- memory: the Jupyter server's peak RSS above its start while the browser sends the file.
- commit: ``POST uploads/{id}/commit`` of the staged file (the save protocol, run by the
  server) against ``ln.Artifact(path).save()`` of a file of the same size in a fresh process,
  to the same instance (different content, so that neither is deduplicated).

Runs alternate the order of browser and curl; each line shows median, min and max.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MiB = 2**20
CHROMIUM = os.environ.get("LAMIN_NB_CHROMIUM", "/usr/bin/chromium")

SEND = """async ([token, chunk]) => {
  const file = document.querySelector('#pick').files[0];
  const api = '/lamin/api/';
  const headers = {'Authorization': 'token ' + token};
  let r = await fetch(api + 'uploads', {method: 'POST', headers,
                      body: JSON.stringify({name: file.name, size: file.size})});
  const upload = await r.json();
  const started = performance.now();
  let offset = 0;
  while (offset < file.size) {
    const end = Math.min(offset + chunk, file.size);
    r = await fetch(api + `uploads/${upload.id}?offset=${offset}`,
                    {method: 'PUT', headers, body: file.slice(offset, end)});
    if (!r.ok) throw new Error(await r.text());
    offset = (await r.json()).received;
  }
  return [upload.id, (performance.now() - started) / 1000];
}"""

# what the sidebar's queue and the UploadWidget do: several chunks in flight, each at a
# multiple of the server's chunk size (the server writes each at its offset)
SEND_PARALLEL = """async ([token, lanes]) => {
  const file = document.querySelector('#pick').files[0];
  const api = '/lamin/api/';
  const headers = {'Authorization': 'token ' + token};
  let r = await fetch(api + 'uploads', {method: 'POST', headers,
                      body: JSON.stringify({name: file.name, size: file.size})});
  const upload = await r.json();
  const chunk = upload.chunk_size;
  const count = Math.ceil(file.size / chunk);
  const started = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const offset = (next++) * chunk;
      const end = Math.min(offset + chunk, file.size);
      const answer = await fetch(api + `uploads/${upload.id}?offset=${offset}`,
                                 {method: 'PUT', headers, body: file.slice(offset, end)});
      if (!answer.ok) throw new Error(await answer.text());
    }
  };
  await Promise.all(Array.from({length: lanes}, lane));
  return [upload.id, (performance.now() - started) / 1000];
}"""


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        import psutil

        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.start_rss = self.peak = self.process.memory_info().rss
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return self.peak - self.start_rss


def make_file(path: Path, size: int) -> None:
    block = bytearray(os.urandom(MiB))
    with open(path, "wb") as out:
        for index in range(size // MiB):
            block[:8] = index.to_bytes(8, "little")
            out.write(block)


class Bench:
    def __init__(self, tmp: Path, size: int) -> None:
        sys.path.insert(0, str(REPO))
        from tests.support.jupyter import JupyterProcess, isolated_env

        self.tmp, self.size = tmp, size
        self.home = tmp / "lamin-home"
        self.env = isolated_env(tmp / "jhome", LAMIN_NB_HOME=str(self.home))
        subprocess.run(
            [sys.executable, "-m", "lamin_nb.cli", "init", "--storage", str(tmp / "storage")],
            env=self.env,
            check=True,
            capture_output=True,
        )
        args = ["--ServerApp.jpserver_extensions=lamin_nb.jupyter.server=True"]
        self.server = JupyterProcess(tmp, tmp / "jhome", self.env, extra_args=args)
        self.source = tmp / "source.bin"
        make_file(self.source, size)

    def api(self, route: str) -> str:
        return f"{self.server.base}/lamin/api/{route}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.server.token}"}

    def start_upload(self) -> str:
        import requests

        body = {"name": self.source.name, "size": self.size}
        r = requests.post(self.api("uploads"), json=body, headers=self.auth, timeout=60)
        r.raise_for_status()
        return str(r.json()["id"])

    def cancel(self, upload_id: str) -> None:
        import requests

        requests.delete(self.api(f"uploads/{upload_id}"), headers=self.auth, timeout=60)

    def curl(self) -> float:
        upload_id = self.start_upload()
        started = time.perf_counter()
        subprocess.run(
            [
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "-X",
                "PUT",
                "-H",
                f"Authorization: token {self.server.token}",
                "-H",
                "Content-Type: application/octet-stream",
                # --data-binary @file reads the whole file into memory first and refuses files
                # of 1 GiB or more ("option --data-binary: ... too large"); -T streams the same
                # bytes as one PUT with a Content-Length
                *(
                    ["--data-binary", f"@{self.source}"]
                    if self.size < 2**30
                    else ["-T", str(self.source)]
                ),
                self.api(f"uploads/{upload_id}?offset=0"),
            ],
            check=True,
        )
        seconds = time.perf_counter() - started
        self.cancel(upload_id)
        return seconds

    def browser(
        self, page: Any, chunk: int, keep: bool = False, lanes: int = 1
    ) -> tuple[str, float]:
        if lanes > 1:
            upload_id, seconds = page.evaluate(SEND_PARALLEL, [self.server.token, lanes])
        else:
            upload_id, seconds = page.evaluate(SEND, [self.server.token, chunk])
        if not keep:
            self.cancel(upload_id)
        return upload_id, seconds

    def commit(self, upload_id: str) -> float:
        import requests

        started = time.perf_counter()
        r = requests.post(self.api(f"uploads/{upload_id}/commit"), headers=self.auth, timeout=600)
        seconds = time.perf_counter() - started
        assert r.status_code == 201, r.text
        return seconds

    def plain_save(self) -> float:
        other = self.tmp / "other.bin"
        make_file(other, self.size)  # other content: never deduplicated
        code = (
            "import time, lamin_nb as ln\n"
            "ln.connect()\n"
            f"a = ln.Artifact({str(other)!r}, key='bench/plain.bin')\n"
            "t = time.perf_counter(); a.save(); print(time.perf_counter() - t)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True, check=True
        )
        other.unlink()
        return float(out.stdout.strip().splitlines()[-1])


def line(label: str, values: list[float], unit: str = "s") -> str:
    med = statistics.median(values)
    return f"{label:<34} median {med:8.3f} {unit}  (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunks", default="16,64", help="chunk sizes in MiB, one in flight")
    parser.add_argument(
        "--lanes", default="4", help="chunks in flight (server's chunk size), e.g. 2,4"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    opts = parser.parse_args()
    size = opts.mib * MiB
    chunks = [int(c) * MiB for c in opts.chunks.split(",") if c]
    lanes = [int(n) for n in opts.lanes.split(",") if n]
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    bench = Bench(tmp, size)
    bench.server.start()
    results: dict[str, Any] = {"mib": opts.mib, "runs": opts.runs}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page()
            page.goto(f"{bench.server.base}/login")  # same origin; its CSP lets scripts fetch
            page.evaluate("document.body.innerHTML = '<input type=file id=pick>'")
            page.set_input_files("#pick", str(bench.source))
            curl: list[float] = []
            ways = [(c, 1) for c in chunks] + [(0, n) for n in lanes]
            by_way: dict[tuple[int, int], list[float]] = {w: [] for w in ways}
            for run in range(opts.runs):
                order: list[Any] = ["curl", *ways] if run % 2 == 0 else [*ways, "curl"]
                for what in order:
                    if what == "curl":
                        curl.append(bench.curl())
                    else:
                        chunk, n = what
                        by_way[what].append(bench.browser(page, chunk, lanes=n)[1])
            print(f"{opts.mib} MiB on loopback, {opts.runs} runs")
            print(line("curl --data-binary, one PUT", curl))
            results["curl_s"] = curl
            base = statistics.median(curl)
            for (chunk, n), values in by_way.items():
                rate = size / MiB / statistics.median(values)
                ratio = base / statistics.median(values)
                label = f"{chunk // MiB} MiB chunks" if n == 1 else f"{n} chunks in flight"
                print(line(f"browser, {label}", values), end="")
                print(f"  {rate:.0f} MiB/s, {ratio:.2f}x curl")
                results[f"browser_{chunk // MiB}mib_{n}_s"] = values
            best_chunk, best_lanes = min(ways, key=lambda w: statistics.median(by_way[w]))

            # memory and commit, with the best chunk size; the server opens its instance
            # (engine, schema check) on first use: done before, so the commit is timed alone
            import requests

            requests.get(bench.api("status"), headers=bench.auth, timeout=60).raise_for_status()
            commits, saves, growths = [], [], []
            for _ in range(opts.runs):
                rss = PeakRss(bench.server.proc.pid)  # type: ignore[union-attr]
                rss.start()
                upload_id, _ = bench.browser(page, best_chunk, keep=True, lanes=best_lanes)
                growths.append(rss.stop() / MiB)
                commits.append(bench.commit(upload_id))
                saves.append(bench.plain_save())
                make_file(bench.source, size)  # new content: the next commit is no dedup
                page.set_input_files("#pick", str(bench.source))  # a changed file is re-picked
            print(
                f"server RSS: {rss.start_rss / MiB:.0f} MiB at start, peak growth "
                f"{', '.join(f'+{g:.1f}' for g in growths)} MiB"
            )
            print(line("commit (server saves the staged)", commits))
            print(line("artifact.save() of the same size", saves))
            extra = statistics.median(commits) - statistics.median(saves)
            ratio = statistics.median(commits) / statistics.median(saves)
            print(f"commit overhead: {extra:+.3f} s ({ratio:.2f}x save())")
            results.update(rss_start_mib=rss.start_rss / MiB, rss_growth_mib=growths)
            results.update(commit_s=commits, save_s=saves)
            browser.close()
    finally:
        bench.server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
