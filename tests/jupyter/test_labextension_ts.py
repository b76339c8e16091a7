"""The JupyterLab extension's TypeScript unit tests (jest): status text, sizes, load code,
polling backoff. They run in Node.js from the extension's own folder, as ``jlpm test`` would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "packages" / "labextension"


def test_typescript_unit_tests_pass():
    jlpm = Path(sys.executable).with_name("jlpm")
    assert (EXTENSION / "node_modules" / ".bin" / "jest").exists(), (
        "node_modules missing: pip install -e '.[dev]' (with Node.js) installs them"
    )
    done = subprocess.run(
        [str(jlpm), "test", "--ci", "--colors=false"],
        cwd=EXTENSION,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    match = re.search(r"Tests:\s+(\d+) passed, (\d+) total", report)
    assert match and match.group(1) == match.group(2) and int(match.group(1)) >= 15, report
