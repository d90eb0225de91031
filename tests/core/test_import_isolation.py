"""``core`` never imports panel, bokeh or holoviews (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, pkgutil, importlib, sys
import core, core.project, core.data, core.labels
names = sorted(m.name for m in pkgutil.walk_packages(core.__path__, "core."))
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as err:  # reported, so a broken module cannot hide a UI import
        failed[name] = f"{type(err).__name__}: {err}"
ui = sorted(m for m in sys.modules if m.split(".")[0] in {"panel", "bokeh", "holoviews"})
print(json.dumps({"modules": names, "failed": failed, "ui": ui}))
"""


def test_core_imports_no_ui_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, check=False, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "core.data.loading" in report["modules"] and "core.cli.project_cmds" in report["modules"]
    assert report["failed"] == {}
    assert report["ui"] == []
