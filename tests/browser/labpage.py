"""Driving a notebook in JupyterLab like a user, with a few reads of Lab's own state.

``window.jupyterapp`` exists because the fixture starts Lab with
``--LabApp.expose_app_in_browser=True``.
"""

from __future__ import annotations

from typing import Any

from tests.support.jupyter import JupyterProcess

KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && !w.sessionContext.pendingInput;
}"""

CELLS = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  return nb.widgets.map(c => ({tags: c.model.getMetadata('tags') || [], type: c.model.type,
                               count: c.model.type === 'code' ? c.model.executionCount : null}));
}"""

# a code cell is done when it has an execution count and the kernel is idle again
ALL_RUN_UP_TO = """(n) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cells = w.content.widgets.slice(0, n).filter(c => c.model.type === 'code');
  const k = w.sessionContext.session.kernel;
  return k.status === 'idle' && cells.every(c => c.model.executionCount !== null
                                             && !c.hasClass('jp-mod-running'));
}"""


CELL_DONE = """([i, before]) => {
  const w = window.jupyterapp.shell.currentWidget;
  const cell = w.content.widgets[i];
  const count = cell.model.executionCount;
  return w.sessionContext.session.kernel.status === 'idle' && count !== null && count !== before
         && !cell.hasClass('jp-mod-running');
}"""


class NotebookPage:
    def __init__(self, page: Any, lab: JupyterProcess, name: str) -> None:
        self.page, self.lab, self.name = page, lab, name

    def open(self) -> NotebookPage:
        self.page.goto(f"{self.lab.base}/lab/tree/{self.name}?token={self.lab.token}&reset")
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell")
        self.page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
        self.page.wait_for_function(KERNEL_IDLE)
        return self

    def cells(self) -> list[dict[str, Any]]:
        return list(self.page.evaluate(CELLS))

    def first_tagged(self, tag: str) -> int:
        return next(i for i, c in enumerate(self.cells()) if tag in c["tags"])

    def run_until(self, tag: str) -> int:
        """Run every cell above the first cell tagged ``tag`` (what a user steps through)."""
        stop = self.first_tagged(tag)
        self._select(stop)
        self.page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-above')")
        self.page.wait_for_function(ALL_RUN_UP_TO, arg=stop, timeout=240_000)
        self.assert_no_errors()
        return stop

    def run_tagged(self, tag: str) -> None:
        """Run each cell tagged ``tag``, one at a time, each to completion."""
        for index, cell in enumerate(self.cells()):
            if tag in cell["tags"]:
                self._select(index)
                self.page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")
                self.page.wait_for_function(CELL_DONE, arg=[index, cell["count"]], timeout=120_000)
        self.assert_no_errors()

    def assert_no_errors(self) -> None:
        failed = self.page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.content.widgets"
            ".filter(c => c.model.type === 'code')"
            ".flatMap(c => c.model.outputs.toJSON().filter(o => o.output_type === 'error'))"
            ".map(o => o.ename + ': ' + o.evalue)"
        )
        assert failed == [], f"cells failed in {self.name}: {failed}"

    def _select(self, index: int) -> None:
        self.page.evaluate(
            "(i) => { const nb = window.jupyterapp.shell.currentWidget.content;"
            " nb.mode = 'command'; nb.activeCellIndex = i; }",
            index,
        )
