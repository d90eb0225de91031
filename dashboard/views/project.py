"""Project: export a shareable file, import one (upload or path), choose and save layouts.

Export writes into ``<project folder>/exports/<time>/`` and offers the file for download (a zip
when the labels are in a sibling file). Import goes into this session's project and label store:
local labels are never overwritten (conflicts are listed); when the data's SHA-256 differs from the
file's, the view says so and offers to continue with the labels whose items exist here. After a
successful import the model is retrained and the file's layout is shown. The layout selector sets
the app's ``layout`` (the app rebuilds its views); "save current arrangement" writes
``<project folder>/layouts/<name>.yaml`` with this session's colour-by and query settings as options.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import panel as pn
import param

from core.errors import TailwiseError
from core.layout import (
    LAYOUTS_DIR,
    Layout,
    available_layouts,
    load_layout,
    parse_layout,
    save_layout,
)
from core.project import MAX_PROJECT_FILE_BYTES, load_project, resolve_inside
from dashboard.state import AppState, escape

PROJECT_SUFFIXES = (".yaml", ".yml", ".json")


def project_layouts_dir(state: AppState) -> Path:
    """Where this project's own layouts live: ``<project folder>/layouts``."""
    return Path(state.session.project.base_dir) / "layouts"


def layout_choices(state: AppState) -> list[str]:
    """Built-in layouts plus the project's own, without duplicates, sorted."""
    return sorted(
        set(available_layouts(LAYOUTS_DIR)) | set(available_layouts(project_layouts_dir(state)))
    )


def current_arrangement(layout: Layout, state: AppState, name: str) -> Layout:
    """``layout`` renamed, with this session's colour-by and query settings as its options."""
    data = layout.to_dict()
    data["name"] = name
    data["title"] = f"Tailwise · {name}"
    options = data.setdefault("options", {})
    options.setdefault("map", {})["colour_by"] = state.colour_by
    queue = options.setdefault("queue", {})
    queue["strategy"] = state.strategy
    queue["batch_size"] = int(state.batch_size)
    queue["target_class"] = state.target_class or None
    return parse_layout(data, source=f"layout {name!r}")


def bundle(files: list[Path]) -> io.BytesIO:
    """A zip (deflated) of ``files`` by their names, for one download."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, arcname=path.name)
    buffer.seek(0)
    return buffer


class ProjectView(pn.viewable.Viewer):
    """Export / import of shareable project files and the layout chooser."""

    layout_name = param.String(default="default", doc="The layout the app should show.")
    message = param.String(default="", doc="Last export/import outcome (plain text).")
    pending_mismatch = param.Boolean(
        default=False, doc="An import stopped at a data hash mismatch."
    )

    def __init__(
        self, state: AppState, app: Any = None, layout: Layout | None = None, **params: Any
    ) -> None:
        layout = layout if layout is not None else getattr(app, "layout", None)
        params.setdefault(
            "layout_name", layout.name if layout is not None else state.session.project.layout
        )
        super().__init__(**params)
        self.state = state
        self.app = app  # dashboard.app.App: setting app.layout rebuilds the page
        self.layout = layout
        self.last_export: Path | None = None
        self.last_import = None
        self._pending: tuple[str, bytes | str] | None = None  # what to retry with matched ids only

        self.fmt = pn.widgets.RadioButtonGroup(
            options=["yaml", "json"], value="yaml", css_classes=["tw-export-format"]
        )
        self.labels_mode = pn.widgets.RadioButtonGroup(
            options={"labels inline": "inline", "labels in a .jsonl": "file"},
            value="inline",
            css_classes=["tw-export-labels"],
        )
        self.export_button = pn.widgets.Button(
            label="Export project", color="primary", css_classes=["tw-export"]
        )
        self.export_button.on_click(lambda _: self.export())
        self.download = pn.widgets.FileDownload(
            label="Download", visible=False, color="success", css_classes=["tw-export-download"]
        )

        self.upload = pn.widgets.FileInput(
            accept=",".join(PROJECT_SUFFIXES), multiple=False, css_classes=["tw-import-upload"]
        )
        self.upload.param.watch(self._on_upload, "value")
        self.path_input = pn.widgets.TextInput(
            placeholder="or a path in the project folder: shared/project.yaml",
            css_classes=["tw-import-path"],
        )
        self.import_button = pn.widgets.Button(
            label="Import", color="primary", css_classes=["tw-import"]
        )
        self.import_button.on_click(self._on_import)
        self.matched_button = pn.widgets.Button(
            label="Continue with matched ids only",
            color="warning",
            visible=False,
            css_classes=["tw-import-matched"],
        )
        self.matched_button.on_click(self._on_matched)

        self.layout_select = pn.widgets.Select(
            label="layout",
            options=layout_choices(state),
            value=self.layout_name,
            css_classes=["tw-layout-select"],
        )
        self.layout_select.param.watch(self._on_select, "value")
        self.new_layout = pn.widgets.TextInput(
            placeholder="new layout name", css_classes=["tw-layout-name"]
        )
        self.save_button = pn.widgets.Button(
            label="Save current arrangement as layout", css_classes=["tw-layout-save"]
        )
        self.save_button.on_click(lambda _: self.save_layout(self.new_layout.value))
        # Only admins export, import and save layouts; the methods refuse others in any case.
        for button, action in ((self.export_button, "export"), (self.import_button, "import"),
                               (self.save_button, "save_layout")):
            button.disabled = not state.offers(action)

    # ------------------------------------------------------------------ export
    def export(self, folder: str | Path | None = None) -> Path | None:
        """Export this session's project (settings, classes, layout, labels) into ``folder``."""
        from core.exchange import export_project

        if not self.state.may("export"):
            self._refuse("export")
            return None
        project = self.state.session.project
        folder = (
            Path(folder)
            if folder is not None
            else (Path(project.base_dir) / "exports" / time.strftime("%Y%m%d-%H%M%S"))
        )
        try:
            path = export_project(
                self.state.session,
                folder,
                fmt=self.fmt.value,
                labels=self.labels_mode.value,
                layout=self.layout_name,
            )
        except (TailwiseError, OSError, ValueError) as err:
            self._say(f"export failed: {err}", error=True)
            return None
        self.last_export = path
        if self.labels_mode.value == "file":
            labels_file = path.parent / load_project(path).labels.path
            self.download.file = bundle([path, labels_file])
            self.download.filename = f"{path.stem}.zip"
        else:
            self.download.file = str(path)
            self.download.filename = path.name
        self.download.visible = True
        n = len(self.state.session.store.events())
        self._say(f"exported {n} label events to {path}")
        return path

    # ------------------------------------------------------------------ import
    def import_text(self, filename: str, content: bytes, matched_only: bool = False):
        """Import an uploaded project file (labels inline) into this session."""
        name = self._upload_name(filename, content)
        if name is None:
            return None
        with tempfile.TemporaryDirectory(prefix="tailwise-upload-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(content)
            return self._import(path, ("upload", (name, content)), matched_only)

    async def import_text_async(self, filename: str, content: bytes, matched_only: bool = False):
        """:meth:`import_text` with the import itself off the thread that serves the pages."""
        name = self._upload_name(filename, content)
        if name is None:
            return None
        with tempfile.TemporaryDirectory(prefix="tailwise-upload-") as tmp:
            path = Path(tmp) / name
            path.write_bytes(content)
            return await self._import_async(path, ("upload", (name, content)), matched_only)

    def _upload_name(self, filename: str, content: bytes) -> str | None:
        if not self.state.may("import"):  # refused on the server, not only a hidden button
            self._refuse("import")
            return None
        name = Path(filename or "shared.yaml").name
        if Path(name).suffix.lower() not in PROJECT_SUFFIXES:
            self._say(f"{name}: project files end in .yaml, .yml or .json", error=True)
            return None
        if len(content) > MAX_PROJECT_FILE_BYTES:
            self._say(
                f"{name}: {len(content) / 1e6:.1f} MB is over the "
                f"{MAX_PROJECT_FILE_BYTES // 2**20} MiB limit for project files",
                error=True,
            )
            return None
        return name

    def import_path(self, path: str | Path, matched_only: bool = False):
        """Import a project file that lies on the server (its label file may be a sibling).

        Relative paths start at the project folder; the file must lie inside it, so a page
        visitor cannot make the server read arbitrary files.
        """
        full = self._server_path(path)
        return None if full is None else self._import(full, ("path", str(path).strip()), matched_only)

    async def import_path_async(self, path: str | Path, matched_only: bool = False):
        """:meth:`import_path` with the import itself off the thread that serves the pages."""
        full = self._server_path(path)
        if full is None:
            return None
        return await self._import_async(full, ("path", str(path).strip()), matched_only)

    def _server_path(self, path: str | Path) -> Path | None:
        if not self.state.may("import"):  # refused on the server, not only a hidden button
            self._refuse("import")
            return None
        text = str(path).strip()
        if not text:
            self._say("choose a file to upload or type a path", error=True)
            return None
        try:
            return resolve_inside(self.state.session.project.base_dir, text, field="import path")
        except TailwiseError as err:
            self._say(f"{err}; or upload the file instead", error=True)
            return None

    def _import(self, path: Path, retry: tuple[str, Any], matched_only: bool):
        return self._imported(retry, *self._run_import(path, matched_only))

    async def _import_async(self, path: Path, retry: tuple[str, Any], matched_only: bool):
        from dashboard.state import STORE_WRITER

        self._say(f"importing {path.name}…")
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(STORE_WRITER, self._run_import, path, matched_only)
        return self._imported(retry, *outcome)

    def _run_import(self, path: Path, matched_only: bool):
        """The engine's part of an import (no page updates: it may run in a worker thread)."""
        from core.exchange import import_into_session

        try:
            return import_into_session(
                path,
                self.state.session,
                on_hash_mismatch="matched_only" if matched_only else "error",
                by=self.state.identity,
            ), None
        except (TailwiseError, OSError, ValueError) as err:
            return None, err

    def _imported(self, retry: tuple[str, Any], result, err: Exception | None):
        from core.exchange import DataHashMismatch

        if isinstance(err, DataHashMismatch):
            self._pending = retry
            self.pending_mismatch = True
            self.matched_button.visible = True
            self._say(str(err), error=True)
            return None
        if err is not None:
            self._say(f"import failed: {err}", error=True)
            return None
        self._pending = None
        self.pending_mismatch = False
        self.matched_button.visible = False
        self.last_import = result
        self.state.refresh(now=True)  # the imported labels and classes, in this tab at once
        text = result.summary()
        if result.conflicts:
            shown = "; ".join(
                f"{c['item_id']}: kept {c['local']!r} (file: {c['incoming']!r})"
                for c in result.conflicts[:10]
            )
            text += f" Conflicts: {shown}."
        if result.class_conflicts:
            text += " " + " ".join(result.class_conflicts)
        text += self.apply_settings(result.project)
        self._say(text)
        if result.layout in layout_choices(self.state):
            self.select_layout(result.layout)
        return result

    def apply_settings(self, shared) -> str:
        """Take the file's model and query settings (they act at the next retrain / batch).

        Encoder, map and seed shape the embedding and the map, which this running session keeps;
        a note says when they differ. Returns that note ('' when none).
        """
        session = self.state.session
        try:  # swapped in whole: a retrain already running keeps the settings it started with
            project = session.apply_settings(
                model=shared.model if shared.model != session.project.model else None,
                query=shared.query if shared.query != session.project.query else None,
                by=self.state.identity)
        except (TailwiseError, ValueError) as err:  # e.g. a target class this project lacks
            return f" The file's settings were not applied: {' '.join(str(err).split())}."
        self.state.strategy = project.query.strategy
        self.state.batch_size = project.query.batch_size
        self.state.target_class = project.query.target_class
        differ = [
            key
            for key in ("encoder", "map", "seed")
            if getattr(shared, key) != getattr(project, key)
        ]
        if differ:
            return (
                f" The file's {', '.join(differ)} settings differ from this project's; "
                "open the shared file itself to use them."
            )
        return ""

    def _on_upload(self, event) -> None:
        if event.new:
            name = Path(self.upload.filename or "file").name
            self._say(f"{name} uploaded ({len(event.new):,} bytes); press Import")

    async def _on_import(self, _event=None, matched_only: bool = False) -> None:
        if self.upload.value:
            result = await self.import_text_async(self.upload.filename, self.upload.value, matched_only)
        else:
            result = await self.import_path_async(self.path_input.value, matched_only)
        if result is not None and result.n_imported:
            await self.state.retrain_async()

    async def _on_matched(self, _event=None) -> None:
        if self._pending is None:
            return
        kind, payload = self._pending
        result = await (
            self.import_text_async(*payload, matched_only=True)
            if kind == "upload"
            else self.import_path_async(payload, matched_only=True)
        )
        if result is not None and result.n_imported:
            await self.state.retrain_async()

    # ------------------------------------------------------------------ layouts
    def select_layout(self, name: str) -> None:
        """Switch to the layout ``name`` (the app watches ``layout_name``)."""
        if name not in self.layout_select.options:
            self.layout_select.options = layout_choices(self.state)
        self.layout_select.value = name
        self.layout_name = name

    def _on_select(self, event) -> None:
        self.layout_name = event.new
        if self.app is None or getattr(self.app.layout, "name", None) == event.new:
            return
        try:
            self.app.layout = load_layout(event.new, search=[project_layouts_dir(self.state)])
        except (TailwiseError, ValueError) as err:
            self._say(f"layout {event.new!r}: {err}", error=True)

    def save_layout(self, name: str) -> Path | None:
        """Save the current arrangement as ``<project folder>/layouts/<name>.yaml``."""
        if not self.state.may("save_layout"):
            self._refuse("save_layout")
            return None
        name = (name or "").strip()
        folder = project_layouts_dir(self.state)
        try:
            base = self.layout or load_layout(self.layout_name, search=[folder])
            layout = current_arrangement(base, self.state, name)
        except (TailwiseError, ValueError) as err:
            self._say("cannot save layout: " + " ".join(str(err).split()), error=True)
            return None
        folder.mkdir(parents=True, exist_ok=True)
        path = save_layout(layout, folder / f"{layout.name}.yaml")
        self.layout_select.options = layout_choices(self.state)
        self._say(f"saved layout {layout.name!r} to {path}")
        return path

    # ------------------------------------------------------------------ rendering
    def _refuse(self, action: str) -> None:
        """Show why this user may not do ``action`` (the engine's own words)."""
        from core.errors import AccessError

        try:
            self.state.session.access.require(self.state.identity, action)
        except AccessError as err:
            self._say(str(err), error=True)

    def _say(self, text: str, error: bool = False) -> None:
        self.message = ("error: " if error else "") + text
        if error:
            self.state.error = text
        else:
            self.state.status = text  # survives a layout switch, which rebuilds this view

    def __panel__(self):
        message = pn.pane.HTML(
            pn.bind(
                lambda m: f'<div class="tw-project-message">{escape(m)}</div>' if m else "",
                self.param.message,
            ),
            sizing_mode="stretch_width",
            css_classes=["tw-import-result"],
        )
        from dashboard.views.label_export import LabelExportView

        return pn.Column(
            LabelExportView(self.state),
            pn.pane.Markdown("**Export** — settings, classes, layout and every label event"),
            pn.Row(self.fmt, self.labels_mode),
            pn.Row(self.export_button, self.download),
            pn.pane.Markdown("**Import** — labels already here are never overwritten"),
            self.upload,
            self.path_input,
            pn.Row(self.import_button, self.matched_button),
            message,
            pn.pane.Markdown("**Layout**"),
            self.layout_select,
            pn.Row(self.new_layout, self.save_button),
            css_classes=["tw-project-view"],
            sizing_mode="stretch_width",
        )
