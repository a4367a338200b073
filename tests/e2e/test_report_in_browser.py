"""The drift HTML report as a browser renders it: headless Chromium, not just the file.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped when no
``chromium`` or ``chromium-browser`` binary is on the PATH.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from ranking.checks.limits import SEVERITY
from ranking.monitoring import drift
from ranking.monitoring.html_report import write_html_report

pytestmark = pytest.mark.e2e

NUMERIC = ["amount", "clicks"]
CATEGORICAL = ["category", "device"]
DRIFTED = ["amount", "category"]
CATEGORIES = [f"cat{i:02d}" for i in range(8)]
DEVICES = ["android", "ios", "web"]
WINDOW = (1280, 1100)  # wide enough for both charts side by side, tall enough for the page


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (Debian: apt-get install -y chromium)",
)


def _frame(n: int, seed: int, shift: float = 0.0, cat_p: np.ndarray | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(50.0 + shift, 10.0, n),
            "clicks": rng.poisson(3.0, n),
            "category": rng.choice(CATEGORIES, size=n, p=cat_p),
            "device": rng.choice(DEVICES, size=n, p=[0.5, 0.3, 0.2]),
        }
    )


def _chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium once, on its own profile and HOME under ``tmp_path``."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # root in a container: the sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",  # small /dev/shm in containers crashes the renderer
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--mute-audio",
        f"--user-data-dir={profile}",
        *args,
    ]
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


class _Dom(HTMLParser):
    """Counts what the rendered DOM holds: body rows of the table and <img> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.rows: list[list[str]] = []
        self._in_tbody = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.imgs.append(dict(attrs))
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._in_tbody:
            self.rows.append([])
        elif tag == "td" and self._in_tbody:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_tbody = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


# The report itself runs no script; this page loads it in an iframe and writes what the
# browser made of each image into its own DOM, where --dump-dom picks it up.
PROBE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"></head><body>
<pre id="result">pending</pre>
<iframe id="report" src="REPORT" width="WIDTH" height="HEIGHT"></iframe>
<script>
document.getElementById("report").addEventListener("load", (event) => {
  const out = document.getElementById("result");
  try {
    const doc = event.target.contentDocument;
    const images = Array.from(doc.images).map((img) => {
      const box = img.getBoundingClientRect();
      return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
              naturalHeight: img.naturalHeight, width: box.width, height: box.height};
    });
    out.textContent = JSON.stringify({
      rows: doc.querySelectorAll("tbody tr").length, images: images});
  } catch (err) {
    out.textContent = "error: " + err;
  }
});
</script></body></html>
"""


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reference = _frame(3000, seed=1)
    skewed = np.array([0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05])
    current = _frame(3000, seed=2, shift=10.0, cat_p=skewed)  # amount +1 sd, category skewed
    report = drift.detect_drift(reference, current, NUMERIC, CATEGORICAL)
    status = {f.name: f.status for f in report.features}
    assert sorted(f.name for f in report.drifted) == DRIFTED, status
    assert status["clicks"] == status["device"] == "ok", status
    out = tmp_path_factory.mktemp("report")
    return write_html_report(report, reference, current, out / "drift.html")


@needs_chromium
def test_rendered_dom_has_every_row_and_one_image_per_drifted_feature(
    report_path: Path, tmp_path: Path
) -> None:
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", report_path.as_uri())
    parsed = _Dom()
    parsed.feed(dom)
    assert sorted(row[0] for row in parsed.rows) == sorted(NUMERIC + CATEGORICAL)
    statuses = {row[0]: row[2] for row in parsed.rows}
    severity = [SEVERITY[row[2]] for row in parsed.rows]
    assert severity == sorted(severity, reverse=True)  # the worst rows first
    assert {name for name, s in statuses.items() if s in ("warn", "fail")} == set(DRIFTED)
    assert len(parsed.imgs) == 2
    assert [img["alt"] for img in parsed.imgs] == [f"{n}: reference vs current" for n in DRIFTED]
    assert all((img["src"] or "").startswith("data:image/png;base64,") for img in parsed.imgs)


@needs_chromium
def test_every_image_decodes_and_is_laid_out(report_path: Path, tmp_path: Path) -> None:
    width, height = WINDOW
    probe = tmp_path / "probe.html"
    page = PROBE.replace("REPORT", report_path.as_uri())
    probe.write_text(page.replace("WIDTH", str(width)).replace("HEIGHT", str(height)))
    dom = _chromium(
        tmp_path,
        "--allow-file-access-from-files",  # file:// pages are opaque origins otherwise
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    )
    found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
    assert found, dom[:2000]
    text = html.unescape(found.group(1))
    assert text.startswith("{"), f"probe did not report: {text!r}"
    result = json.loads(text)
    assert result["rows"] == 4
    images = result["images"]
    assert [img["alt"] for img in images] == [f"{n}: reference vs current" for n in DRIFTED]
    for img in images:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img
        assert img["width"] > 100 and img["height"] > 100, img  # on the page, not collapsed


@needs_chromium
def test_screenshot_is_not_blank(report_path: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    width, height = WINDOW
    _chromium(
        tmp_path,
        f"--screenshot={shot}",
        f"--window-size={width},{height}",
        "--virtual-time-budget=5000",
        report_path.as_uri(),
    )
    assert shot.is_file() and shot.stat().st_size > 0
    pixels = matplotlib.image.imread(shot)  # PNG: floats in [0, 1]
    assert pixels.shape[:2] == (height, width)
    rgb = np.rint(pixels[..., :3] * 255).astype(np.int16)
    non_white = (rgb < 245).any(axis=-1).mean()
    assert non_white > 0.05, f"only {non_white:.1%} of the page is not white"
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 2
    # The charts' two colours: reference blue (#4c72b0) and current orange (#dd8452),
    # also when drawn half-transparent over white. The status rows are too pale to count.
    r, b = rgb[..., 0], rgb[..., 2]
    blue, orange = (b - r > 40).sum(), (r - b > 40).sum()
    assert blue > 2000 and orange > 2000, f"chart colours: {blue} blue, {orange} orange pixels"
