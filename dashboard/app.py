"""The Tailwise app: a template whose views come from the project's layout file.

Opening a project (data, embedding, map) runs in a worker thread shared by every browser session
of that project; until it is ready the page shows what is being prepared. Each browser session
then gets its own :class:`~dashboard.state.AppState` (selection, annotator, queue).

Every tab of the server shares one event loop, and building a page's views (HoloViews plots,
tables, Bokeh models) takes it for about a second: a tab opening held every other tab's clicks
that long. A served page is therefore built in slices: the sidebar (the labelling controls) at
once, then one view of the main area per turn of the loop, so other tabs' clicks are served in
between; the views of a group of tabs are built when their tab is first shown.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

import panel as pn
import param
from panel.io.state import set_curdoc

from core.layout import Layout, Tabs, load_layout
from core.project import ProjectConfig, load_project
from core.serve import default_project
from dashboard.client import ConnectionWatch, ControlGuard, TableResync
from dashboard.state import AppState, Preparation, describe, escape, open_shared
from dashboard.style import SYSTEM_FONT, html_pane, offline_design
from dashboard.views import TITLES, view_classes

ACCENT = "#3b6ea8"
SIDE_WIDTH = 400  # a view beside the map (inspector, plots)
REFRESH_MS = 500  # how often a page looks for other pages' labels, classes and new models
SIDEBAR_WIDTH = 330

log = logging.getLogger("tailwise")


def resolve_project(argv: Sequence[str] = (), environ: Mapping[str, str] = os.environ) -> Path:
    """The project to open: ``--project FILE``, else ``$TAILWISE_PROJECT``, else the demo
    (written on first use, see ``core.serve.default_project``)."""
    parser = argparse.ArgumentParser(prog="panel serve dashboard --args")
    parser.add_argument("--project", help="project file (YAML or JSON)")
    parser.add_argument("--layout", help="layout name or file, instead of the project's")
    args, _ = parser.parse_known_args(list(argv))
    if args.project:
        return Path(args.project).expanduser()
    return default_project(environ)


def layout_arg(argv: Sequence[str] = ()) -> str | None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--layout")
    return parser.parse_known_args(list(argv))[0].layout


def run_in_slices(steps: Sequence[Callable[[], None]], schedule: Callable[[Callable[[], None]], None],
                  finish: Callable[[], None], cancelled: Callable[[], bool] = lambda: False) -> None:
    """Run each of ``steps`` in a callback of its own (``schedule`` queues one for a later turn
    of the event loop), then ``finish``. A step that raises is logged and the next one still
    comes, and so does ``finish``; ``cancelled()`` true (a newer build) ends the chain there."""
    pending = list(steps)

    def next_step() -> None:
        if cancelled():
            return
        if pending:
            step = pending.pop(0)
            try:
                step()
            except Exception:  # noqa: BLE001  (a slice that fails must not stop the page)
                log.exception("a slice of building the page failed")
        if pending:
            schedule(next_step)
        else:
            finish()

    schedule(next_step)


class App(pn.viewable.Viewer):
    """The page for one browser session. ``state.layout`` changes rebuild the arrangement."""

    layout = param.ClassSelector(class_=Layout, doc="The arrangement shown; set it to switch layouts.")

    def __init__(self, project_path: str | Path, layout: str | Layout | None = None, **params) -> None:
        self.project_path = Path(project_path)
        self.project: ProjectConfig = load_project(self.project_path)
        if not isinstance(layout, Layout):
            layout = load_layout(layout or self.project.layout,
                                 search=[self.project.base_dir / "layouts", self.project.base_dir])
        super().__init__(layout=layout, **params)
        self.state: AppState | None = None
        self.views: dict[str, pn.viewable.Viewable] = {}
        self.sidebar = pn.Column(sizing_mode="stretch_width")
        self.body = pn.Column(sizing_mode="stretch_width")
        self.preparation: Preparation | None = None
        self.progress = pn.indicators.Progress(value=-1, max=100, width=420, active=True)
        self.message = html_pane("", css_classes=["tw-loading-message"])
        self.body.objects = [pn.Column(
            html_pane(f"<div class='tw-loading'>Preparing <b>{escape(self.project.name)}</b>: "
                      "embedding the items and computing the map (cached after the first run)…</div>"),
            self.progress, self.message, css_classes=["tw-loading-page"], align="center")]
        self._poll = None
        self._build = 0  # bumped by each relayout: a slice of an older build is dropped
        self._then: Callable[[], None] | None = None  # what runs once the views are built
        self.param.watch(self._relayout, "layout")

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        """Open (or join) the shared preparation and poll it until the project is ready."""
        self.preparation = open_shared(self.project_path)
        if self._check():
            return
        self._poll = pn.state.add_periodic_callback(self._check, period=250)

    def _check(self) -> bool:
        prep = self.preparation
        if not prep.future.done():
            if prep.total > 1 or prep.done:
                self.progress.value = int(100 * prep.done / max(prep.total, 1))
            self.message.object = f"<div class='tw-muted'>{escape(prep.message)}</div>"
            return False
        if self._poll is not None:
            self._poll.stop()
            self._poll = None
        error = prep.future.exception()
        if error is not None:
            self.body.objects = [html_pane(
                f"<div class='tw-error'>Could not open the project {escape(self.project_path)}: "
                f"{escape(error)}</div>")]
            return True
        try:
            self.ready(prep.future.result())
        except Exception as err:  # noqa: BLE001  (the poll is stopped: say so instead of "Preparing")
            log.exception("could not start the page of %s", self.project_path)
            self.body.objects = [html_pane(
                f"<div class='tw-error'>The page could not start: {escape(describe(err))}. "
                "Reload the page.</div>")]
        return True

    def ready(self, session) -> None:
        """Build this browser session's state and views over the prepared ``session``; ask for
        the first batch so the inspector shows the next item to label straight away.

        The user is the one Panel authenticated (``--basic-auth``, OAuth), if any; a user without
        a role in the project's ``access`` section gets a refusal instead of the views.
        """
        doc = pn.state.curdoc
        schedule = None
        if doc is not None:
            def schedule(delay_s: float, callback) -> None:
                doc.add_timeout_callback(self._reported(callback), max(int(delay_s * 1000), 1))
        self.state = AppState(session, user=pn.state.user or None, schedule=schedule,
                              offload_reads=doc is not None)
        if self.state.user and self.state.role is None:
            self.body.objects = [html_pane(
                f"<div class='tw-no-access'>{escape(self.state.user)} has no role in this project; "
                "ask one of its admins to add you to the access section of the project file.</div>")]
            self.state = None
            return
        if doc is None:
            self._relayout()
            return
        # Exceptions of this page's callbacks (clicks, keys, widget changes, async handlers and
        # what Panel runs on the next tick) reach the server log with their traceback and the
        # page that asked, instead of tornado's log alone (this setting is per session).
        pn.config.exception_handler = self._callback_failed
        requester = self.state.requester  # a closed tab gives its queued items back
        pn.state.on_session_destroyed(lambda _context: session.release(requester))
        # Following the other tabs (and the first batch) starts once the views are built: a
        # HoloViews layer redrawn while its plot is still being sent to the browser would
        # reference models the page does not have yet.
        self._relayout(then=self._follow)

    def _reported(self, callback: Callable[[], None]) -> Callable[[], None]:
        """``callback`` for Bokeh to run later (a timeout, the next tick): a failure goes to
        :meth:`_callback_failed` like those of the callbacks Panel runs."""
        def run() -> None:
            try:
                callback()
            except Exception as err:  # noqa: BLE001  (logged and shown)
                self._callback_failed(err)
        return run

    def _callback_failed(self, err: BaseException) -> None:
        """Panel's exception handler for this session's callbacks: logged, and shown here."""
        log.error("a callback of the page failed", exc_info=err)
        if self.state is not None:
            self.state._fail(err)
        else:
            self.body.insert(0, html_pane(f"<div class='tw-error'>{escape(describe(err))}</div>"))

    def _follow(self) -> None:
        """Follow the other tabs and ask for the first batch (the page is built)."""
        # Two comparisons when nothing changed, so it can run often: other tabs' labels,
        # class edits and new models reach this page within half a second.
        pn.state.add_periodic_callback(self.state.refresh, period=REFRESH_MS)
        if not self.state.queue_ids and self.state.may("query"):
            pn.state.execute(self.state.first_batch_async)

    # ------------------------------------------------------------------ layout
    def _title(self, name: str) -> str:
        spec = self.layout.plots.get(name)
        return (spec.title or name) if spec is not None else TITLES[name]

    def _view(self, name: str):
        if name not in self.views and name in self.layout.plots:
            from dashboard.views.plots import plot_view

            self.views[name] = plot_view(self.state, self.layout.plots[name], name)
        if name not in self.views:
            cls = view_classes()[name]
            options = self.layout.options
            kwargs = {
                "map": {"options": options.map, "raster_threshold": self.project.map.raster_threshold},
                "queue": {"options": options.queue},
                "inspector": {"options": options.inspector},
                "metrics": {"options": options.metrics},
                "project": {"app": self},
            }.get(name, {})
            self.views[name] = cls(self.state, **kwargs)
        return self.views[name]

    @staticmethod
    def _size(beside_map: bool) -> dict:
        return {"width": SIDE_WIDTH} if beside_map else {"sizing_mode": "stretch_width"}

    def _cell(self, cell, beside_map: bool = False):
        """A view in a card (or a group of tabs); next to the map a cell keeps a fixed width.
        The first tab's view is built now, the others' when their tab is first shown."""
        size = self._size(beside_map)
        if isinstance(cell, Tabs):
            first, *others = cell.tabs
            return pn.Tabs((self._title(first), self._view(first)),
                           *[(self._title(n), self._deferred_view(n)) for n in others],
                           dynamic=True, css_classes=["tw-tabs"], **size)
        return pn.Card(self._view(cell), title=self._title(cell), collapsible=False,
                       css_classes=[f"tw-card-{cell}"], **size)

    def _deferred_view(self, name: str):
        """View ``name``, built when it is first rendered (a tab opened): a hidden tab's view
        also follows no label or model until then."""
        return pn.param.ParamFunction(lambda: self._guarded(name, lambda: self._view(name)),
                                      lazy=True, sizing_mode="stretch_width")

    def _relayout(self, *_, then: Callable[[], None] | None = None):
        """Build the views of the layout; ``then`` runs once they are all built."""
        if self.state is None:
            return
        layout = self.layout
        self.state.forget_views()  # the views of an earlier layout stop following changes
        self.views = {}
        self._build += 1
        # A layout switched before the last build ended still runs what that build was to run.
        then = self._then = then or self._then
        self.sidebar.objects = [self._guarded(n, lambda n=n: pn.Card(
            self._view(n), title=self._title(n), sizing_mode="stretch_width",
            css_classes=[f"tw-card-{n}"])) for n in layout.sidebar]
        rows, cells = [], []
        for row in layout.main:
            has_map = "map" in row and len(row) > 1
            # Views beside the map keep a fixed width; plots share the width with the map.
            fixed = lambda c: has_map and c != "map" and not (isinstance(c, str) and c in layout.plots)
            rows.append(pn.Row(*[self._pending(fixed(c)) for c in row], sizing_mode="stretch_width"))
            cells += [(rows[-1], k, c, fixed(c)) for k, c in enumerate(row)]
        self.body.objects = rows
        steps = [partial(self._place, *cell) for cell in cells]
        doc = pn.state.curdoc
        if doc is None or doc.session_context is None:  # no server (tests, notebooks): at once
            for step in steps:
                step()
            self._finished(then)
            return
        build = self._build

        def schedule(step: Callable[[], None]) -> None:
            def in_doc() -> None:
                with set_curdoc(doc):
                    step()
            doc.add_next_tick_callback(self._reported(in_doc))

        run_in_slices(steps, schedule, finish=lambda: self._finished(then),
                      cancelled=lambda: build != self._build)

    def _place(self, row: pn.Row, k: int, cell, beside_map: bool) -> None:
        """Build ``cell`` (a view or a group of tabs) into ``row[k]``, its error in its place."""
        name = cell if isinstance(cell, str) else " / ".join(cell.tabs)
        row[k] = self._guarded(name, lambda: self._cell(cell, beside_map=beside_map), beside_map)

    def _guarded(self, name: str, build: Callable[[], pn.viewable.Viewable],
                 beside_map: bool = False) -> pn.viewable.Viewable:
        """``build()``, or in its place the error it raised (logged): one view that cannot be
        shown never keeps the page's other views, or what runs after them, from coming."""
        try:
            return build()
        except Exception as err:  # noqa: BLE001  (shown in its place; the others come)
            log.exception("could not build the view %s", name)
            return html_pane(f"<div class='tw-error'>Could not show {escape(name)}: "
                             f"{escape(err)}</div>", **self._size(beside_map))

    def _finished(self, then: Callable[[], None] | None) -> None:
        self._then = None
        if then is None:
            return
        try:
            then()
        except Exception as err:  # noqa: BLE001  (the page says so instead of waiting silently)
            log.exception("could not finish building the page")
            self.body.insert(0, html_pane(
                f"<div class='tw-error'>The page could not start following the other tabs or ask "
                f"for the first batch: {escape(err)}. Reload the page.</div>"))

    def _pending(self, beside_map: bool):
        """What a view's place shows until the view is built (a fraction of a second)."""
        return html_pane("<div class='tw-muted tw-building'>…</div>", **self._size(beside_map))

    def __panel__(self):
        template = pn.template.FastListTemplate(
            title=f"Tailwise · {self.project.name}", sidebar=[self.sidebar], main=[self.body],
            header=[ControlGuard(height=0, width=0, margin=0),
                    ConnectionWatch(height=0, width=0, margin=0),
                    TableResync(height=0, width=0, margin=0)],
            accent=ACCENT, sidebar_width=SIDEBAR_WIDTH, main_layout=None, theme_toggle=False,
            design=offline_design(), font=SYSTEM_FONT,
            # Panel's busy spinner follows every callback of every tab on the server (one global
            # flag): with a team, each tab's refresh re-sent every other tab's spinner. Each page
            # shows its own jobs instead (status, progress bars).
            busy_indicator=None)
        pn.state.onload(self.start)
        return template
