"""Views without a server: they build from every layout, render escaped HTML, map selections."""

from __future__ import annotations

import io

import numpy as np
import param
import pytest
from matplotlib.path import Path as MplPath

from core.layout import available_layouts, load_layout
from dashboard.state import AppState


def test_app_builds_every_builtin_layout(session, dashboard_project):
    """Every view of every layout builds; a hidden tab's view is built when its tab is shown."""
    from page_support import show_every_tab
    from core.layout import Tabs
    from dashboard.app import App

    for name in available_layouts():
        layout = load_layout(name)
        app = App(dashboard_project, layout=name)
        app.ready(session)
        hidden = {n for row in layout.main for c in row if isinstance(c, Tabs) for n in c.tabs[1:]}
        assert set(app.views) == set(layout.views()) - hidden
        assert app.sidebar.objects and app.body.objects
        show_every_tab(app)  # the page rendered: each tab's view is built when it is shown
        assert set(app.views) == set(layout.views())
        assert not app.body.select(lambda o: "tw-building" in str(getattr(o, "object", "")))
    app.layout = load_layout("review")  # switching layouts rebuilds the views
    assert "review" in app.views and "metrics" not in app.views and app.body.objects


def test_resolve_project_prefers_args_then_environment_then_demo(tmp_path):
    from dashboard.app import resolve_project

    assert resolve_project(["--project", "a.yaml"], {"TAILWISE_PROJECT": "b.yaml"}).name == "a.yaml"
    assert resolve_project([], {"TAILWISE_PROJECT": "b.yaml"}).name == "b.yaml"
    demo = resolve_project([], {"TAILWISE_HOME": str(tmp_path)})
    assert demo == tmp_path / "demo" / "project.yaml" and demo.exists()


def test_map_points_colours_and_box_stream(session):
    from dashboard.views.map import UNLABELLED, MapView

    state = AppState(session, annotator="ann")
    state.select(session.dataset.ids[:3].tolist())
    state.label_selection("0")
    view = MapView(state)
    assert not view.rasterised
    points = view._points("label")
    colours = points.dframe()["colour"].to_numpy()
    zero = next(c.colour for c in session.classes if c.name == "0")
    assert (colours == zero).sum() == 3 and (colours == UNLABELLED).sum() == len(colours) - 3
    x0, y0 = state.xy.min(axis=0)
    x1, y1 = state.xy.max(axis=0)
    view.bounds.event(bounds=(x0, y0, x1, y1))
    assert len(state.selection) == len(session.dataset)
    view.lasso.event(geometry=np.array([[x0 - 1, y0 - 1], [x0 - 0.5, y0 - 1], [x0 - 0.5, y0 - 0.5]]))
    assert state.selection == []


def test_a_small_map_draws_on_a_canvas_and_a_large_one_with_webgl(session, monkeypatch):
    """WebGL without a GPU is emulated by the browser and copied onto the page at every repaint:
    a map of a few thousand points is drawn on a plain canvas."""
    import dashboard.views.map as map_view
    from dashboard.style import holoviews

    hv = holoviews()
    state = AppState(session, annotator="ann")
    assert len(session.dataset) < map_view.WEBGL_MIN_POINTS
    assert hv.render(map_view.MapView(state).plot).output_backend == "canvas"
    monkeypatch.setattr(map_view, "WEBGL_MIN_POINTS", len(session.dataset))
    assert hv.render(map_view.MapView(state).plot).output_backend == "webgl"


def test_stars_and_selection_follow_labels_in_place_without_redrawing_the_map(session):
    import holoviews as hv

    from dashboard.views.map import MapView

    state, other = AppState(session, annotator="ann"), AppState(session, annotator="bob")
    view = MapView(other)  # another tab's map: it catches up from the store
    plot = hv.renderer("bokeh").get_plot(view.plot)  # drawn once, as the page draws it
    sources = view._layer_sources
    stars = lambda: int(np.isfinite(sources["rare"].data["x"]).sum())  # noqa: E731
    assert stars() == 0 and {"0", "1", "8"} <= set(state.rare_classes) and "2" not in state.rare_classes
    drawn, updates = view.layers_version, view.layer_updates
    ids = session.dataset.ids[:3].tolist()

    def label(item: str, cls: str) -> int:
        before = view.layer_updates
        state.select([item])
        state.label_selection(cls)
        other.refresh()
        return view.layer_updates - before

    assert label(ids[0], "2") == 0  # a common class: the stars stay as drawn
    assert label(ids[1], "0") == 1 and stars() == 1  # a rare one: updated in place
    assert label(ids[2], "3") == 0
    assert label(ids[1], "3") == 1 and stars() == 0  # a drawn star's item became common
    label(ids[2], "8")
    other.select(ids[:2])
    assert list(sources["selected"].data["x"]) == list(other.xy[:2, 0])
    assert view.layers_version == drawn and view.layer_updates == updates + 4  # no HoloViews redraw
    view.redraw += 1  # a full redraw of the points keeps the layers as they are now
    assert stars() == 1 and len(sources["selected"].data["x"]) == 2
    assert plot.state is not None


def test_a_new_batch_moves_the_queue_rings_in_place(session):
    """Every tab's queue changes with every new model: the rings' source is updated in place,
    not redrawn through HoloViews."""
    import holoviews as hv

    from dashboard.views.map import MapView

    state = AppState(session, annotator="ann")
    view = MapView(state)
    hv.renderer("bokeh").get_plot(view.plot)  # drawn once, as the page draws it
    drawn = view.layers_version
    for first in (0, 5):
        ids = session.dataset.ids[first:first + 3].tolist()
        state.queue_ids = ids
        rings = view._layer_sources["queue"].data
        assert list(rings["x"]) == list(state.xy[session.positions(ids), 0])
    assert view.layers_version == drawn and view.layer_updates == 2


def _raster(view):
    """The raster layer as the plot would draw it now (HoloViews' datashade + dynspread)."""
    overlay = view.plot[()]
    return next(el for el in overlay if type(el).__name__ == "RGB")


def test_rasterised_map_is_a_datashade_of_the_shared_table_updated_in_place(session):
    from dashboard.views.map import MapView

    state = AppState(session, annotator="ann")
    other = AppState(session, annotator="bob")
    assert state.frame is other.frame  # one table for every browser session, no copies
    view = MapView(state, raster_threshold=10)
    assert view.rasterised
    state.colour_by = "label"
    image = _raster(view)
    alpha = image.dimension_values("A", flat=True)
    assert 0 < (alpha > 0).sum() < alpha.size and view.rendered == "label"
    lo, hi = state.xy.min(axis=0) - 1, state.xy.max(axis=0) + 1
    view.lasso.event(geometry=np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]]))
    assert len(state.selection) == len(session.dataset)
    # Label a few items: only their codes change, and the raster shows the class colour.
    state.select(session.dataset.ids[:50].tolist())
    before = state.map_version
    codes = state.frame.columns["label"].codes
    state.label_selection("3")
    assert state.map_version > before and state.frame.columns["label"].codes is codes
    assert state.frame.counts("label")["3"] == 50
    colour = next(c.colour for c in session.classes if c.name == "3").lstrip("#")
    rgb = tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4))
    image = _raster(view)
    pixels = np.stack([image.dimension_values(c, flat=True) for c in "RGB"], axis=1)
    assert (np.abs(pixels.astype(int) - rgb).sum(axis=1) < 30).any()
    # The other tab sees it at its next refresh, through the same table.
    assert other.refresh() and other.map_version == state.map_version
    assert not other.refresh()  # nothing new: nothing to do
    # Continuous colours and a legend from the table's counts, without a point table.
    state.colour_by = "uncertainty"
    _raster(view)
    assert view.rendered == "uncertainty"
    assert "3" in view._legend("label")


def test_user_text_is_escaped(session):
    from dashboard.views.inspector import InspectorView
    from dashboard.views.map import MapView

    state = AppState(session, annotator="<img src=x onerror=alert(1)>")
    state.add_class("<b>bold</b>", colour="#112233", rare=True)
    state.select([session.dataset.ids[0]])
    state.label_selection("<b>bold</b>")
    html = InspectorView(state).render(state.selection)
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    legend = MapView(state)._legend("label")
    assert "<b>bold" not in legend and "&lt;b&gt;bold&lt;/b&gt; ★" in legend


def test_the_inspector_counts_the_labels_of_a_large_selection(session):
    """Many selected items are summarised as label counts, read from the shared map table: this
    tab's labels and another tab's (caught up), the unlabelled as '–', names escaped."""
    from dashboard.views.inspector import InspectorView

    state, other = AppState(session, annotator="ann"), AppState(session, annotator="bob")
    other.add_class("<i>x</i>")
    ids = session.dataset.ids[:30].tolist()
    state.select(ids[:4])
    state.label_selection("1")
    other.select(ids[4:7])
    other.label_selection("<i>x</i>")
    state.refresh()  # bob's labels reach this tab
    state.select(ids)
    html = InspectorView(state).render(state.selection)
    assert "30 selected" in html
    assert "labels: 1 × 4, &lt;i&gt;x&lt;/i&gt; × 3, – × 23" in html
    assert html.count("× ") == 3 and "<i>x" not in html


def test_the_inspector_tags_one_item_of_the_test_split(session):
    """One selected item's split is read for that item alone (not every label's split)."""
    from dashboard.views.inspector import InspectorView

    state = AppState(session, annotator="ann")
    ids = session.dataset.ids[:3].tolist()
    state.select(ids[:2])
    state.label_selection("1", split="test")
    state.select([ids[2]])
    state.label_selection("1")
    assert "tw-split-tag" in InspectorView(state).render([ids[0]])
    assert "tw-split-tag" not in InspectorView(state).render([ids[2]])


def test_thumbnail_is_upscaled_with_nearest_neighbour():
    from PIL import Image

    from dashboard.views.inspector import thumbnail_png

    image = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    big = np.asarray(Image.open(io.BytesIO(thumbnail_png(image, 64))))
    assert big.shape == (64, 64)
    assert set(np.unique(big).tolist()) == {0, 255}  # no blended grey pixels
    assert big[:32, :32].max() == 0 and big[:32, 32:].min() == 255


@pytest.mark.parametrize("names, expected", [
    (["0", "1", "2"], {"0": "0", "1": "1", "2": "2"}),
    (["cat", "dog"], {"1": "cat", "2": "dog"}),
    (["1", "cat"], {"1": "1", "2": "cat"}),
])
def test_number_keys_map_to_classes(names, expected):
    from dashboard.views.labelling import shortcut_keys

    assert shortcut_keys(names) == expected


def test_label_button_css_classes():
    from dashboard.views.labelling import css_slug

    assert css_slug("T-shirt/top") == "T-shirt-top" and css_slug("7") == "7"


def test_metrics_tables_follow_the_model(session):
    from dashboard.views.metrics import class_table

    state = AppState(session, annotator="ann")
    gt = session.dataset.ground_truth
    for cls in ("2", "9"):
        state.select(session.dataset.ids[gt == cls][:4].tolist())
        state.label_selection(cls)
    table = class_table(state)
    assert table.set_index("class").loc["2", "labelled"] == 4
    # Before any model: no NaN and no '?' anywhere; the support (held-out ground truth) is known.
    assert set(table["predicted"]) == {"–"} and set(table["recall"]) == {"–"}
    assert table["support"].str.isdigit().all()
    state.retrain()
    table = class_table(state)
    assert table["predicted"].replace("–", "0").astype(int).sum() == len(session.dataset)
    assert (table["recall"] != "–").any()
    assert not table.isna().any().any() and not table.astype(str).apply(
        lambda c: c.str.contains(r"\?|nan", case=False)).any().any()


def test_the_map_says_when_it_shows_a_sample_of_a_larger_pool(tmp_path):
    import pandas as pd
    import yaml

    from core.session import Session
    from dashboard.views.map import MapView

    rng = np.random.default_rng(0)
    (tmp_path / "pool").mkdir()
    frame = pd.DataFrame(rng.normal(size=(12_000, 4)), columns=list("abcd"))
    frame.insert(0, "id", [f"s{i}" for i in range(12_000)])
    frame.to_parquet(tmp_path / "pool" / "all.parquet", index=False, row_group_size=3_000)
    path = tmp_path / "project.yaml"
    path.write_text(yaml.safe_dump({"name": "big", "classes": [{"name": "x"}, {"name": "y"}],
                                    "data": {"kind": "parquet", "path": "pool", "max_items": 3_000},
                                    "map": {"method": "pca"}}), encoding="utf-8")
    session = Session.open(path)
    session.prepare()
    legend = MapView(AppState(session), raster_threshold=10)._legend("label")
    assert f"{len(session.dataset):,} of 12,000 items: a sample plus every labelled item" in legend
    session.store.close()


def test_clusters_view_switches_the_method_on_the_server_and_shows_its_state(session):
    from async_support import run_async

    from dashboard.views.clusters import ClustersView

    for cls in ("0", "1", "2"):
        rows = np.flatnonzero(session.dataset.ground_truth == cls)[:3]
        session.label(session.dataset.ids[rows].tolist(), cls, "ann")
    state = AppState(session, annotator="ann")
    view = ClustersView(state)
    assert view.method.value == "kmeans" and view.note.object == ""
    seen = []
    state.param.watch(lambda e: seen.append(e.new), "cluster_state")
    run_async(view._switch(type("E", (), {"new": "linkage"})()))
    assert seen[0] == "computing" and state.cluster_state == "ready"
    assert session.project.clusters.method == "linkage" and state.cluster_method == "linkage"
    assert "clusters by <b>linkage</b>" in view.note.object
    assert len(view.table.value) == len(state._clusters.summary) and state._clusters.used == "linkage"
    biggest = int(view.table.value.iloc[0]["cluster"])
    assert len(state.select_cluster(biggest)) == int(view.table.value.iloc[0]["size"])
    assert session.query_context().cluster_method == "linkage"

    run_async(view._switch(type("E", (), {"new": "dbscan"})()))  # refused, said on the page
    assert "unknown cluster method 'dbscan'" in state.error
    assert session.project.clusters.method == "linkage" and view.method.value == "linkage"


def test_clusters_view_escapes_a_failure_and_says_so(session, monkeypatch):
    from async_support import run_async

    from dashboard.views.clusters import ClustersView

    state = AppState(session, annotator="ann")
    view = ClustersView(state)

    def broken(*a, **k):
        raise ValueError("<b>no</b> clusters")

    monkeypatch.setattr(session, "clusters", broken)
    run_async(view._compute())
    assert state.cluster_state.startswith("failed") and "clustering failed" in state.error
    assert "&lt;b&gt;no&lt;/b&gt; clusters" in view.note.object and "role='alert'" in view.note.object


def test_map_outlines_the_predicted_clusters_on_demand(session):
    from async_support import run_async

    from dashboard.views.map import MapView

    state = AppState(session, annotator="ann")
    view = MapView(state)
    assert view._outlines().data == [] and view.outlines_drawn == 0  # off by default
    drawn = view.outlines_version
    with param.parameterized.discard_events(view):
        view.outline = True  # what the checkbox sets; its watcher is the coroutine run here
    run_async(view._want_outlines())
    assert state.cluster_state == "ready" and view.outlines_version > drawn
    drawn = view.outlines_version
    rings = view._outlines().split()
    assert len(rings) == view.outlines_drawn > 0
    biggest = state.shown_clusters.assignment == np.bincount(state.shown_clusters.assignment).argmax()
    ring = rings[0].array([0, 1])
    inside = MplPath(ring).contains_points(state.xy, radius=1e-9)
    assert inside[biggest].mean() >= 0.85  # the largest cluster's outline holds its core
    state.select(session.dataset.ids[:5].tolist())
    state.label_selection("1")  # the map table moves on with a label: the outlines stay drawn
    assert view.outlines_version == drawn
    view.outline = False
    assert view.outlines_version == drawn + 1 and view._outlines().data == []
