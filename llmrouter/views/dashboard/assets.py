"""Where the dashboard's files are: its own (``static/``, in the package) and the chart library.

The chart library (uPlot) comes from the npm registry: ``web/package.json`` and
its lock file are committed, ``infra/web_assets.sh`` (run by
``infra/bootstrap.sh``) installs it into ``web/node_modules``, which is never
committed. The worker serves it from there: in a checkout (the editable install
``make`` does) that is beside the package; elsewhere ``LLMROUTER_WEB_MODULES``
names the ``node_modules`` folder. Without it the page still works and says
the charts are missing, showing its figures as text.

Only the files named here are served: a request names a key of these tables,
never a path.
"""

from __future__ import annotations

import os
from pathlib import Path

WEB_MODULES_ENV = "LLMROUTER_WEB_MODULES"
STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {".html": "text/html", ".js": "application/javascript", ".css": "text/css"}
VENDOR_FILES = {  # name in the URL -> file under node_modules
    "uPlot.iife.min.js": "uplot/dist/uPlot.iife.min.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
}


def node_modules() -> Path:
    """The npm install the worker serves the chart library from."""
    configured = os.environ.get(WEB_MODULES_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "web" / "node_modules"


def static_file(name: str) -> tuple[bytes, str] | None:
    """One of the dashboard's own files (content, content type), or None."""
    own = {path.name: path for path in STATIC_DIR.iterdir() if path.suffix in CONTENT_TYPES}
    path = own.get(name)
    return None if path is None else (path.read_bytes(), CONTENT_TYPES[path.suffix])


def vendor_file(name: str) -> tuple[bytes, str] | None:
    """A file of the chart library (content, content type), or None when unknown or not installed."""
    relative = VENDOR_FILES.get(name)
    if relative is None:
        return None
    path = node_modules() / relative
    if not path.is_file():
        return None
    return path.read_bytes(), CONTENT_TYPES[path.suffix]


def charts_installed() -> bool:
    return all((node_modules() / relative).is_file() for relative in VENDOR_FILES.values())
