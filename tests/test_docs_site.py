"""The documentation site, built as CI builds it (`mkdocs build --strict`) and opened from files in
a real headless Chromium, with no network: the home page, its picture, and search."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from browser import needs_chromium
from cdp import Page
from workspace import REPO

pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode == 0, result.stderr
    return folder


def test_the_site_loads_nothing_from_the_network(site: Path) -> None:
    for page in site.glob("*.html"):
        text = page.read_text()
        for tag in ('<script src="http', '<link rel="stylesheet" href="http'):
            assert tag not in text, f"{page.name} loads {tag}... from the network"


def test_home_page_picture_and_search_work_from_files(site: Path, tmp_path: Path) -> None:
    with Page(tmp_path) as page:
        page.goto((site / "index.html").as_uri())
        assert page.js("document.querySelector('article h1').textContent") == "mnist-pipeline¶"
        page.wait_for("document.querySelector('article img').complete")
        assert page.js("document.querySelector('article img').naturalWidth") > 500

        query = "persist"  # a word of the pipeline page, not of the home page
        page.js(
            "(q => { q.focus(); q.value = " + json.dumps(query) + ";"
            " q.dispatchEvent(new Event('input', {bubbles: true})); })"
            "(document.querySelector('input.md-search__input'))"
        )
        page.wait_for("document.querySelectorAll('.md-search-result__item').length > 0")
        found = page.js(
            "[...document.querySelectorAll('.md-search-result__item a')].map(a => a.href)"
        )
        assert any("pipeline.html" in link for link in found), found
        page.screenshot(tmp_path / "search.png")
