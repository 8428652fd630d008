"""The dashboard's files: only its own and the chart library's named files are served."""

from __future__ import annotations

from llmrouter.views.dashboard.assets import VENDOR_FILES, WEB_MODULES_ENV, charts_installed, static_file, vendor_file


def test_only_the_dashboards_own_files_and_the_named_library_files_are_served():
    """A name is a key of a table, never a path: ../ and unknown names find nothing."""
    assert static_file("index.html")[1] == "text/html" and static_file("dashboard.js")[1] == "application/javascript"
    assert static_file("../views.py") is None and static_file("series.py") is None
    assert vendor_file("../../package.json") is None and vendor_file("uplot") is None
    assert set(VENDOR_FILES) == {"uPlot.iife.min.js", "uPlot.min.css"}


def test_the_chart_library_is_read_from_the_npm_install_named_by_the_environment(tmp_path, monkeypatch):
    """LLMROUTER_WEB_MODULES points at a node_modules folder: its uPlot is served; an empty one serves nothing."""
    monkeypatch.setenv(WEB_MODULES_ENV, str(tmp_path))
    assert not charts_installed() and vendor_file("uPlot.min.css") is None
    for relative in VENDOR_FILES.values():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("/* uPlot */")
    assert charts_installed() and vendor_file("uPlot.min.css") == (b"/* uPlot */", "text/css")
