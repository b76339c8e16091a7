"""What a user sees in JupyterLab (headless Chromium): the tutorials' panels, driven by hand.

Each notebook runs up to its first cell tagged ``simulated-user`` (the cells that stand in
for clicks when the notebook runs unattended); the test then does those steps in the page
itself: picking a file and clicking Save, ticking a box, clicking Repair and Confirm.
Screenshots: ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.conftest import SHOTS
from tests.browser.labpage import NotebookPage

pytestmark = pytest.mark.browser

BAR_IS_FULL = """(bar) => bar.style.width === '100%'"""
# red, and wide enough to be seen (a red bar at 0 % is invisible)
VISIBLY_RED = """(el) => {
  const [r, g, b] = getComputedStyle(el).backgroundColor.match(/\\d+/g).map(Number);
  return r > 150 && g < 120 && b < 120 && el.getBoundingClientRect().width > 50;
}"""


def bar_of(locator: Any) -> Any:
    return locator.locator(".progress-bar").first


def test_bulk_upload_progress_and_upload_widget(page, lab):
    nb = NotebookPage(page, lab, "bulk-upload.ipynb").open()
    nb.run_until("simulated-user")

    first, second = (
        page.locator(".lamin-save-progress").nth(0),
        page.locator(".lamin-save-progress").nth(1),
    )
    overall = bar_of(first.locator(".lamin-save-overall"))
    overall.wait_for()
    page.wait_for_function(BAR_IS_FULL, arg=overall.element_handle())
    assert "progress-bar-danger" in overall.get_attribute("class")
    assert first.locator(".lamin-item-row").count() == 12
    assert first.locator(".lamin-item-row.lamin-item-saved").count() == 11
    failed = first.locator(".lamin-item-row.lamin-item-failed")
    assert failed.count() == 1
    text = failed.inner_text()
    assert "well_03.tiff" in text and "failed:" in text and "Access Denied" in text
    failed_bar = bar_of(failed)
    assert "progress-bar-danger" in failed_bar.get_attribute("class")
    assert failed_bar.evaluate(VISIBLY_RED), "the failed row's bar is not visibly red"
    first.scroll_into_view_if_needed()
    first.screenshot(path=str(SHOTS / "bulk-upload-first-save.png"))

    rerun_bar = bar_of(second.locator(".lamin-save-overall"))
    page.wait_for_function(BAR_IS_FULL, arg=rerun_bar.element_handle())
    assert "progress-bar-success" in rerun_bar.get_attribute("class")
    assert second.locator(".lamin-item-row.lamin-item-failed").count() == 0
    assert second.locator(".lamin-item-row.lamin-item-already-saved").count() == 11
    saved_again = second.locator(".lamin-item-row.lamin-item-saved")
    assert saved_again.count() == 1 and "well_03.tiff" in saved_again.inner_text()

    # the UploadWidget, by hand: the file chooser, then Save
    upload = page.locator(".lamin-upload-widget").first
    upload.scroll_into_view_if_needed()
    with page.expect_file_chooser() as chooser:
        upload.locator(".lamin-upload-picker").click()
    chooser.value.set_files(
        files=[
            {
                "name": "from-the-browser.csv",
                "mimeType": "text/csv",
                "buffer": b"well,od600\nB7,0.61\nB8,0.58\n",
            }
        ]
    )
    upload.locator(".lamin-upload-picker:has-text('(1)')").wait_for()
    upload.locator(".lamin-save-button").click()
    # a click before the picked file reached the server saves it once it has arrived
    status = upload.locator(".lamin-upload-status.lamin-status-ok")
    status.wait_for()
    assert "saved 1 file(s)" in status.inner_text()
    row = upload.locator(".lamin-item-row.lamin-item-saved")
    row.wait_for()
    assert "uploads/manual/from-the-browser.csv" in row.inner_text()
    page.wait_for_function(
        BAR_IS_FULL, arg=bar_of(upload.locator(".lamin-save-overall")).element_handle()
    )
    upload.screenshot(path=str(SHOTS / "bulk-upload-upload-widget.png"))

    nb.run_tagged("cleanup")


def test_consistency_panel_repair_with_confirmation(page, lab):
    nb = NotebookPage(page, lab, "consistency.ipynb").open()
    nb.run_until("simulated-user")

    panel = page.locator(".lamin-consistency-panel").first
    status = panel.locator(".lamin-consistency-status")
    assert "lamin-inconsistent" in status.get_attribute("class")
    assert "NOT consistent" in status.inner_text()
    counts = panel.locator(".lamin-consistency-counts").inner_text()
    assert "missing: 1" in counts and "orphans: 1" in counts and "ok: 24" in counts
    panel.get_by_text("orphans (1)").click()  # open the list, as a user would
    orphan = panel.locator(".lamin-consistency-details :text('Zs9xQ2rT7uVw1yB30000.csv')")
    orphan.wait_for()
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(SHOTS / "consistency-orphan.png"))

    panel.locator(".lamin-repair-mark-lost input[type=checkbox]").check()
    panel.locator(".lamin-repair-button").click()
    plan = panel.locator(".lamin-repair-plan")
    plan.wait_for()
    assert "quarantine orphan" in plan.inner_text() and "mark lost" in plan.inner_text()
    confirm = panel.locator(".lamin-confirm-button")
    confirm.wait_for()
    assert "lamin-inconsistent" in status.get_attribute("class")  # the plan alone changes nothing
    panel.screenshot(path=str(SHOTS / "consistency-plan.png"))

    confirm.click()
    panel.locator(".lamin-consistency-status.lamin-consistent").wait_for()
    assert "are consistent" in status.inner_text()
    counts = panel.locator(".lamin-consistency-counts").inner_text()
    assert "orphans: 0" in counts and "missing: 0" in counts and "lost: 1" in counts
    confirm.wait_for(state="hidden")
    panel.screenshot(path=str(SHOTS / "consistency-repaired.png"))

    nb.run_tagged("after-repair")  # the kernel agrees: ln.check() is consistent
    nb.run_tagged("cleanup")


FETCH = """async ([route, method, xsrf]) => {
  const base = window.jupyterapp.serviceManager.serverSettings.baseUrl;
  const cookie = document.cookie.split('; ').find(c => c.startsWith('_xsrf='));
  const headers = xsrf && cookie ? {'X-XSRFToken': decodeURIComponent(cookie.slice(6))} : {};
  const r = await fetch(base + 'lamin/api/' + route, {method, headers, credentials: 'same-origin'});
  return [r.status, await r.text()];
}"""


def test_server_extension_answers_the_lab_page(page, lab):
    """The REST API from the page itself: the login cookie, and the XSRF token for POST."""
    page.goto(f"{lab.base}/lab?token={lab.token}&reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.serviceManager")
    status, body = page.evaluate(FETCH, ["consistency", "GET", False])
    assert status == 200 and json.loads(body)["is_consistent"] is True
    status, body = page.evaluate(FETCH, ["artifacts?limit=5", "GET", False])
    assert status == 200 and json.loads(body)["artifacts"] == []
    status, _ = page.evaluate(FETCH, ["repair", "POST", False])
    assert status == 403  # a cookie alone cannot POST: cross-site request forgery protection
    status, body = page.evaluate(FETCH, ["repair", "POST", True])
    assert status == 200 and json.loads(body)["dry_run"] is True
