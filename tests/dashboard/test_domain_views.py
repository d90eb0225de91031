"""Domain plots, view plugins, the test-set view, rich items and label downloads — without a server."""

from __future__ import annotations

import io
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.layout import parse_layout
from dashboard.state import AppState, escape

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "tailwise-cmd"


@pytest.fixture(scope="module")
def sky_project(tmp_path_factory, sky_project_factory) -> Path:
    return sky_project_factory(tmp_path_factory.mktemp("sky-views"), n_items=200, seed=2,
                               model={"kind": "logistic", "max_iter": 300})


@pytest.fixture
def sky(sky_project, tmp_path):
    from core.labels import LabelStore
    from core.session import Session

    session = Session.open(sky_project, store=LabelStore(tmp_path / "labels.sqlite"))
    session.prepare()
    state = AppState(session, annotator="ann")
    yield state
    session.store.close()


def spec(**plot):
    return parse_layout({"main": [["map", "p"]], "plots": {"p": plot}}).plots["p"]


def test_scatter_box_selects_the_items_inside_and_rings_the_maps_selection(sky):
    from dashboard.views.plots import DomainPlotView, selection_digest

    view = DomainPlotView(sky, spec(kind="scatter", x="g_r", y="u_g"), "p")
    g_r, u_g = sky.dataset.columns["g_r"], sky.dataset.columns["u_g"]
    view.bounds.event(bounds=(-0.5, -0.5, 0.3, 0.8))
    inside = np.flatnonzero((g_r >= -0.5) & (g_r <= 0.3) & (u_g >= -0.5) & (u_g <= 0.8))
    assert 0 < len(inside) < len(g_r)
    assert sorted(sky.selected_rows().tolist()) == inside.tolist()
    # The other way: a box on the map; the plot draws exactly that selection.
    from dashboard.views.map import MapView

    map_view = MapView(sky)
    x0, y0 = sky.xy.min(axis=0)
    x1, y1 = sky.xy.mean(axis=0)
    map_view.bounds.event(bounds=(x0, y0, x1, y1))
    assert len(sky.selection) > 0
    assert sorted(view.drawn_selection().tolist()) == sorted(sky.selected_rows().tolist())
    marker = view._marker(sky.selection)
    assert f'data-digest="{selection_digest(sky.selection)}"' in marker
    assert marker.count(selection_digest(sky.selection)) == 2  # drawn == selected
    view.tap.event(x=float(g_r[5]), y=float(u_g[5]))
    assert sky.selection == [sky.dataset.ids[5]]


def test_histogram_range_and_line_plot(sky):
    from dashboard.views.plots import DomainPlotView

    truth = sky.dataset.ground_truth
    for name in ("star", "galaxy", "quasar"):
        sky.select(sky.dataset.ids[truth == name][:3].tolist())
        sky.label_selection(name)
    assert sky.retrain()
    hist = DomainPlotView(sky, spec(kind="histogram", x="r", bins=20, colour_by="predicted"), "h")
    r = sky.dataset.columns["r"]
    hist.bounds.event(boundsx=(17.0, 18.0))
    assert sorted(sky.selected_rows().tolist()) == np.flatnonzero((r >= 17) & (r <= 18)).tolist()
    element = hist._element()
    assert len(element) == len(set(sky.session.state.predicted))  # one layer per predicted class
    line = DomainPlotView(sky, spec(kind="line", x="r", y="g_r", colour_by="none"), "l")
    assert len(line._element()) == 2  # one curve (no colouring) and the points


def test_a_plot_of_an_unknown_or_text_column_says_so(sky):
    from dashboard.views.plots import plot_view

    from html import unescape

    pane = plot_view(sky, spec(kind="scatter", x="g_r", y="nope"), "p")
    assert "column 'nope' is not a numeric column" in unescape(pane.object)
    pane = plot_view(sky, spec(kind="histogram", x="name"), "p")
    assert "column 'name' is not a numeric column" in unescape(pane.object)
    assert "ra" in sky.dataset.numeric_columns()  # numeric info columns stay numbers


@pytest.fixture
def cmd_plugin(tmp_path, monkeypatch):
    """Install the docs' example plugin the way pip would: its module plus a dist-info with the
    ``tailwise.views`` entry point, on sys.path (real entry-point discovery, no mock)."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE / "tailwise_cmd.py", site / "tailwise_cmd.py")
    info = site / "tailwise_cmd-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tailwise-cmd\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(
        "[tailwise.views]\ncolour-magnitude = tailwise_cmd:ColourMagnitude\n"
        "clashing = tailwise_cmd_bad:Clashing\n")
    (site / "tailwise_cmd_bad.py").write_text(textwrap.dedent("""
        class Clashing:
            columns = {"label": "oops"}
            def plot(self, data, classes):
                return None
    """))
    monkeypatch.syspath_prepend(str(site))
    return site


def test_the_example_plugin_is_found_asks_for_its_columns_and_links_selection(sky, cmd_plugin):
    from dashboard.plugins import available_view_plugins
    from dashboard.views.plots import PluginPlotView, plot_view

    assert "colour-magnitude" in available_view_plugins()
    view = PluginPlotView(sky, spec(kind="plugin", plugin="colour-magnitude"), "cmd")
    assert view.missing_roles() == ["colour", "magnitude"]  # this data names them g_r and r
    form = view.body.objects[0]
    assert any("tw-role-select" in getattr(o, "css_classes", []) for o in form.objects)
    view.map_columns({"colour": "g_r", "magnitude": "r"})
    linked = view.linked
    element = linked._element()
    assert element.kdims[0].name == "colour" and element.opts.get().kwargs["invert_yaxis"]
    np.testing.assert_allclose(element.dframe()["colour"], sky.dataset.columns["g_r"])
    linked.bounds.event(bounds=(0.5, 15.0, 2.5, 19.0))
    g_r, r = sky.dataset.columns["g_r"], sky.dataset.columns["r"]
    expected = np.flatnonzero((g_r >= 0.5) & (g_r <= 2.5) & (r >= 15) & (r <= 19))
    assert sorted(sky.selected_rows().tolist()) == expected.tolist()
    # With the mapping in the layout file, no form.
    mapped = PluginPlotView(sky, spec(kind="plugin", plugin="colour-magnitude",
                                      columns={"colour": "g_r", "magnitude": "r"}), "cmd")
    assert mapped.missing_roles() == []
    # Broken or unknown plugins become a message, not a crash.
    from html import unescape

    assert "clash with the columns" in unescape(
        plot_view(sky, spec(kind="plugin", plugin="clashing"), "x").object)
    assert "no view plugin named 'nope'" in unescape(
        plot_view(sky, spec(kind="plugin", plugin="nope"), "x").object)


def test_test_set_view_builds_criteria_refuses_hostile_ones_and_labels_into_the_test_split(sky):
    from core.search import find_items, item_columns
    from dashboard.views.testset import TestSetView

    view = TestSetView(sky)
    assert "g_r" in view.column.options and view.column.value in view.column.options
    # The choices are every searchable column, named without building the columns.
    assert view.column.options == list(item_columns(sky.session))
    view.column.value, view.operator.value, view.value.value = "g_r", "<", "-0.1"
    view.add_condition()
    view.column.value, view.operator.value, view.value.value = "name", "!=", "J1000"
    view.join.value = "OR"
    view.add_condition()
    assert view.criteria.value == "g_r < -0.1 OR name != 'J1000'"
    for hostile, reason in (("__import__('os').system('x')", "names starting with '__'"),
                            ("g_r.real > 1", "attribute access"), ("nope > 1", "unknown column"),
                            ("g_r ** 400 > 1", "exponent 400 is too large")):
        assert view.search(hostile) == [] and reason in view.problem
        assert escape(reason) in view._status("", view.problem, [], 0)  # shown, HTML-escaped
    view.search("__import__('os').system('x')")
    assert "names starting with '__'" in view.problem
    ids = view.search("g_r < -0.1 AND u_g < 0.7")
    assert ids == find_items(sky.session, "g_r < -0.1 AND u_g < 0.7").ids and len(ids) >= 3
    assert sky.selection == ids[:1] and view.problem == ""
    view.label_current("white dwarf")
    view.label_current("white dwarf")
    assert sky.session.store.current(split="test") == {ids[0]: "white dwarf", ids[1]: "white dwarf"}
    assert sky.selection == [ids[2]] and view.cursor == 2
    assert list(view.table.value["split"][:2]) == ["test", "test"]
    assert "Test split: <b>2</b> items" in view._status(view.message, "", view.matches, view.cursor)


def test_inspector_shows_images_as_tabs_and_info_and_refuses_what_it_must(sky, tmp_path):
    from core.item_images import image_ref
    from dashboard.views.inspector import InspectorView

    inspector = InspectorView(sky)
    html = inspector.render([sky.dataset.ids[0]])
    assert html.count('class="tw-image-tab"') == 2 and html.count("data:image/png;base64,") == 2
    assert sky.dataset.columns["name"][0] in html and "<table class=\"tw-info\">" in html
    assert "u_g_over_g_r" in html  # derived columns are features, shown with the others
    project = sky.session.project
    assert image_ref(project, "c", "../../etc/passwd").kind == "refused"
    assert "outside the project folder" in image_ref(project, "c", "../../etc/passwd").reason
    remote = image_ref(project, "c", "https://sky.example.org/cut.png")
    assert remote.kind == "refused" and "data.image_hosts" in remote.reason
    assert image_ref(project, "c", "javascript:alert(1)").kind == "refused"
    allowed = project.model_copy(deep=True)
    allowed._base_dir = project.base_dir
    allowed.data.image_hosts = ["sky.example.org"]
    assert image_ref(allowed, "c", "https://sky.example.org/cut.png").kind == "remote"
    (project.base_dir / "cutouts" / "not-an-image.png").write_text("<script>")
    bad = image_ref(project, "c", "cutouts/not-an-image.png")
    from core.errors import ConfigError
    from core.item_images import read_image

    with pytest.raises(ConfigError, match="not an image"):
        read_image(bad.path)


def test_the_sky_layout_and_the_default_layout_build(sky, sky_project):
    from page_support import show_every_tab
    from core.layout import load_layout
    from dashboard.app import App

    app = App(sky_project)
    app.ready(sky.session)
    show_every_tab(app)  # views behind tabs are built when shown
    assert {"colour-colour", "r-band", "testset", "inspector"} <= set(app.views)
    assert app._title("colour-colour") == "colour–colour: u−g against g−r"
    app.layout = load_layout("default")
    show_every_tab(app)
    assert {"metrics", "testset", "queue", "inspector"} <= set(app.views)


def test_labels_download_matches_the_store(sky):
    from dashboard.views.label_export import labelled_bytes

    sky.select(sky.dataset.ids[:3].tolist())
    sky.label_selection("star")
    sky.select(sky.dataset.ids[3:4].tolist())
    sky.label_selection("quasar", split="test")
    frame = pd.read_csv(io.BytesIO(labelled_bytes(sky, "csv")), keep_default_na=False)
    assert frame.set_index("id")["split"].to_dict() == {
        **{i: "train" for i in sky.dataset.ids[:3]}, sky.dataset.ids[3]: "test"}


def test_model_caption_never_shows_a_question_mark():
    from dashboard.views.retrain import model_caption

    assert model_caption(1, None) == "model v1"
    assert model_caption(2, 1_700_000_000.0).startswith("model v2 · trained ")
    assert model_caption(2, 1.0, job="retrain") == "training a new model… (v2 in use)"
    assert "?" not in model_caption(None, None)
