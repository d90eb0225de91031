"""Review, agreement and calibration views without a server: suspect labels with their reasons
and the relabel / confirm / retract actions, second opinions in the queue, agreement and the
conflicts an admin (and only an admin) resolves, reliability diagrams, prevalence and stopping."""

from __future__ import annotations

import numpy as np
import pytest
from async_support import run_async

from dashboard.state import AppState


def _truth(session, cls: str, k: int, skip: int = 0) -> list[str]:
    rows = np.flatnonzero(session.dataset.ground_truth == cls)[skip:skip + k]
    return session.dataset.ids[rows].tolist()


class Click:
    def __init__(self, row: int) -> None:
        self.row = row


@pytest.fixture
def reviewed(session):
    """Six right labels per class by alice, and four 3s she labelled 8: a trained model."""
    for cls in sorted(set(session.dataset.ground_truth.tolist())):
        session.label(_truth(session, cls, 6), cls, "alice")
    wrong = _truth(session, "3", 4, skip=6)
    session.label(wrong, "8", "alice")
    session.retrain()
    return session, wrong


def test_review_lists_suspects_with_reasons_and_relabel_confirm_retract_close_them(reviewed):
    from dashboard.views.review import ReviewView

    session, wrong = reviewed
    state = AppState(session, annotator="bob")
    view = ReviewView(state)
    frame = view.table.value
    assert list(frame.columns) == ["item", "label", "suggested", "score", "annotator", "reason"]
    flagged = [i for i in frame["item"] if i in wrong]
    assert len(flagged) >= 2, frame  # the planted mistakes are found
    assert list(frame["score"]) == sorted(frame["score"], reverse=True)  # most suspicious first
    row = frame[frame["item"] == flagged[0]].iloc[0]
    assert row["label"] == "8" and row["annotator"] == "alice"
    assert row["reason"].startswith(f"labelled 8 by alice; model gives {row['suggested']} at ")
    assert "out of fold" in row["reason"]
    header = view.header.object
    assert f"data-count='{len(frame)}'" in header and "the model doubts" in header

    # Click: the item is selected (the inspector shows it), 'Relabel as' offers the suggestion.
    view._on_click(Click(int(np.flatnonzero(frame["item"] == flagged[0])[0])))
    assert state.selection == [flagged[0]] and view.relabel_as.value == row["suggested"]
    assert view.relabel("3") and session.store.current()[flagged[0]] == "3"
    assert flagged[0] not in set(view.table.value["item"])  # it left the list at once

    # The next suspect of the list is inspected at once (its suggestion offered).
    listed = list(frame["item"])
    following = [i for i in listed[listed.index(flagged[0]) + 1:]]
    assert following and state.selection == following[:1]
    expected = frame.set_index("item").loc[following[0], "suggested"]
    assert view.relabel_as.value == expected
    state.select([flagged[1]])
    assert view.confirm()
    assert session.store.history(flagged[1])[-1].origin == "confirm"
    assert session.store.current()[flagged[1]] == "8"  # confirmed as it was
    assert flagged[1] not in set(view.table.value["item"]) and "confirmed 1 label" in state.status

    rest = [i for i in view.table.value["item"]]
    state.select(rest[:1])
    assert view.retract()
    assert rest[0] not in session.store.current() and rest[0] not in set(view.table.value["item"])
    assert [e.annotator for e in session.store.history(flagged[0])][-1] == "bob"


def test_review_actions_are_refused_without_a_name_or_selection_and_for_a_viewer(reviewed):
    from core.project import AccessConfig
    from dashboard.views.review import ReviewView

    session, wrong = reviewed
    events = len(session.store)
    nobody = AppState(session)
    ReviewView(nobody).confirm()
    assert "choose your annotator name" in nobody.error
    bob = AppState(session, annotator="bob")
    assert ReviewView(bob).confirm() == [] and "select a suspect label" in bob.error
    session.project.access = AccessConfig(admins=["ada"], annotators=["ann"], viewers=["vic"])
    try:
        vic = AppState(session, user="vic")
        view = ReviewView(vic)
        assert view.confirm_button.disabled and view.retract_button.disabled
        vic.select(wrong[:1])
        assert view.retract() == [] and "'vic' is a viewer" in vic.error
        assert view.relabel("3") == [] and view.confirm() == []
    finally:
        session.project.access = None
    assert len(session.store) == events


def test_the_review_list_is_read_on_the_work_pool_when_served(reviewed):
    from dashboard.views.review import ReviewView

    session, wrong = reviewed
    state = AppState(session, annotator="bob", offload_reads=True)
    view = ReviewView(state)
    assert len(view.table.value) == 0  # nothing read on the loop: asked of the work pool

    async def read():
        await view.refresh_async()
        return view.table.value

    assert set(wrong) & set(run_async(read())["item"])


def test_second_annotators_queue_gets_the_double_share_and_walks_it(session):
    from core.quality.review import SECOND_OPINION_REASON
    from dashboard.views.queue import queue_frame

    alice_items = _truth(session, "4", 5) + _truth(session, "6", 5)
    session.label(_truth(session, "4", 5), "4", "alice")
    session.label(_truth(session, "6", 5), "6", "alice")
    session.project.agreement.double_share = 0.5
    try:
        bob = AppState(session, annotator="bob", strategy="random", batch_size=6)
        queue = bob.next_batch()
        second = [i for i, r in zip(queue, bob.queue_reasons) if r == SECOND_OPINION_REASON]
        assert len(second) == 3 and set(second) <= set(alice_items)
        frame = queue_frame(bob)
        assert (frame["reason"] == SECOND_OPINION_REASON).sum() == 3
        # Alice's labels are not shown to bob before he answers (an independent opinion).
        assert set(frame.loc[frame["item"].isin(second), "label"]) == {""}
        from dashboard.views.inspector import InspectorView

        page = InspectorView(bob).render([second[0]])
        assert "your second opinion is asked" in page and "alice" not in page
        carl = AppState(session, annotator="carl")
        assert "alice" in InspectorView(carl).render([second[0]])  # others see who labelled it
        alice = AppState(session, annotator="alice", strategy="random", batch_size=6)
        assert not set(alice.next_batch()) & set(alice_items)  # never her own labels back
        # Bob walks his whole queue, second opinions included (they carry alice's labels).
        walked = []
        while bob.selection and len(walked) < 6:
            walked.append(bob.selection[0])
            bob.label_selection("1")
        assert sorted(walked) == sorted(queue)
    finally:
        session.project.agreement.double_share = 0.0


def test_agreement_view_shows_kappa_alpha_and_only_an_admin_resolves(session):
    from core.project import AccessConfig
    from dashboard.views.agreement import AgreementView

    fours, sixes = _truth(session, "4", 6), _truth(session, "6", 6)
    session.label(fours, "4", "ann")
    session.label(sixes, "6", "ann")
    session.label(fours[:5] + sixes[:5], "4", "bob")  # agrees on 5 fours, not on 5 sixes
    session.project.access = AccessConfig(admins=["ada"], annotators=["ann", "bob"])
    try:
        bob = AppState(session, user="bob")
        view = AgreementView(bob)
        text = view.text.object
        assert "data-items='10'" in text and "data-disagreements='5'" in text
        assert "Cohen's kappa" in text and "Krippendorff's alpha" in text and "interval" in text
        summary = session.agreement()
        assert f"<b>{summary['kappa']['value']:.2f}</b>" in text
        per_class = view.per_class.object
        assert set(per_class["class"]) == {"4", "6"} and "kappa interval" in per_class.columns
        conflicts = view.table.value
        assert sorted(conflicts["item"]) == sorted(sixes[:5])
        assert set(conflicts["labels"]) == {"ann: 6 · bob: 4"}
        assert view.resolve_button.disabled  # a courtesy: the server refuses anyway

        view._on_click(Click(0))
        item = view.chosen
        assert bob.selection == [item] and f"data-item='{item}'" in view.chosen_text.object
        events = len(session.store)
        assert view.resolve("6") == []  # bob is an annotator: refused server-side
        assert "'bob' is a annotator and may not resolve conflicts" in bob.error
        bob.error = ""
        view.resolve_button.clicks += 1  # the button's own callback, though the page disables it
        assert "'bob' is a annotator and may not resolve conflicts" in bob.error
        assert len(session.store) == events and len(session.conflicts()) == 5

        ada = AppState(session, user="ada")
        admin_view = AgreementView(ada)
        assert not admin_view.resolve_button.disabled
        admin_view._on_click(Click(0))
        assert admin_view.resolve("6")
        last = session.store.history(item)[-1]
        assert (last.origin, last.annotator, last.label) == ("resolution", "ada", "6")
        assert item not in set(admin_view.table.value["item"]) and len(admin_view.table.value) == 4
    finally:
        session.project.access = None


def test_agreement_text_escapes_annotator_names(session):
    from dashboard.views.agreement import agreement_text

    summary = {"items": 1, "annotators": ["<b>x</b>", "y"], "kappa_method": "cohen",
               "kappa": {"value": 0.5, "low": None, "high": None},
               "alpha": {"value": None, "low": None, "high": None}, "confidence": 0.95,
               "disagreements": 0, "per_class": {}}
    text = agreement_text(summary, 0.1)
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "<b>x</b>" not in text
    assert "0.50" in text and "–" in text and "double_share is 0.1" in text
    assert "No item has labels of two annotators" in agreement_text(None, 0.0)


def test_calibration_view_draws_reliability_ece_prevalence_and_stopping(reviewed):
    from dashboard.views.calibration import CalibrationView, reliability_data
    from dashboard.views.metrics import MetricsView

    session, _ = reviewed
    state = AppState(session, annotator="bob")
    model = session.state
    view = CalibrationView(state)
    view.__panel__()
    report = model.calibration["per_class"]
    assert list(view.choose.options) == list(report)
    assert view.choose.value in state.rare_classes  # a rare class first
    ece = view.ece.object
    first = ece.iloc[0]
    name = first["class"].rstrip(" ★")
    assert first["ECE before"] == f"{report[name]['ece_before']:.3f}"
    assert first["ECE after"] == f"{report[name]['ece_after']:.3f}"
    view.choose.value = name
    drawn = {k: dict(s.data) for k, s in view._sources.items()}
    assert drawn == reliability_data(state, name)
    assert drawn["before"]["p"] == [b[0] for b in report[name]["before"]]
    assert "ECE" in view._figure.title.text and name in view._figure.title.text
    prevalence = view.prevalence.object
    for _, row in prevalence.iterrows():
        cls = row["class"].rstrip(" ★")
        values = model.prevalence[cls]
        assert row["in words"].startswith(f"≈ {values['estimate']:,.0f} more '{cls}' in the pool, "
                                          f"90 % interval {values['low']:,.0f}–")
    assert "data-source" in view.text.object and model.calibration["method"] in view.text.object
    from dashboard.views.calibration import calibration_text

    assert "read as wrong" not in view.text.object  # a logistic model: no label-error calibration
    model.calibration["label_error"] = 0.0625  # what model: auto's calibration records
    assert "labels read as wrong 6 % of the time" in calibration_text(state)
    del model.calibration["label_error"]
    stopping = view.stopping.object
    assert f"data-advice='{model.stopping['advice']}'" in stopping
    assert "first model" in stopping  # one round so far: no change between rounds yet
    metrics = MetricsView(state)
    metrics.__panel__()
    assert metrics.stopping.object == stopping  # beside the learning curve too


def test_prevalence_says_whether_labels_checked_its_intervals():
    from types import SimpleNamespace

    from dashboard.views.calibration import prevalence_note

    def note(details, prevalence=({"a": {"estimate": 9.0, "low": 8.0, "high": 10.0}})):
        model = SimpleNamespace(prevalence=prevalence, prevalence_details=details)
        return prevalence_note(SimpleNamespace(session=SimpleNamespace(state=model)))

    unchecked = note({"method": "labelled", "level": 0.9})
    assert "Not checked by any labels yet" in unchecked and "tw-warning" in unchecked
    assert "Checked by 1,204 labelled items" in note({"checked_by": 1204})
    few = note({"checked_by": 2})  # one class, fewer than 10 labels checking it
    assert "Checked by only 2 labelled items" in few and "tw-warning" in few
    assert note({"checked_by": 3}, prevalence={}) == ""
    assert prevalence_note(SimpleNamespace(session=SimpleNamespace(state=None))) == ""


def test_calibration_view_before_any_model_says_so(session):
    from dashboard.views.calibration import CalibrationView
    from dashboard.views.metrics import stopping_html

    state = AppState(session, annotator="bob")
    view = CalibrationView(state)
    view.__panel__()
    assert "No model yet" in view.text.object and view.choose.options == []
    assert len(view.prevalence.object) == 0 and "after the first retrain" in stopping_html(state)


def test_class_pickers_follow_class_edits(session):
    from dashboard.state import AppState
    from dashboard.views.agreement import AgreementView
    from dashboard.views.review import ReviewView

    state = AppState(session, annotator="bob")
    review, agreement = ReviewView(state), AgreementView(state)
    assert review.relabel_as.options == [c.name for c in state.classes]
    state.add_class("merger", rare=True)
    assert review.relabel_as.options[-1] == "merger" and agreement.settle_as.options[-1] == "merger"


def test_labels_away_from_the_suspects_do_not_reread_them_and_tabs_share_agreement(reviewed):
    from dashboard.views.agreement import AgreementView
    from dashboard.views.review import ReviewView

    session, wrong = reviewed
    reads = {"suspects": 0, "agreement": 0}
    suspects, agreement = session.suspects, session.agreement

    def counted(name, call):
        def wrapper(*args, **kwargs):
            reads[name] += 1
            return call(*args, **kwargs)
        return wrapper

    session.suspects = counted("suspects", suspects)
    session.agreement = counted("agreement", agreement)
    bob = AppState(session, annotator="bob")
    view = ReviewView(bob)
    listed = set(view.table.value["item"])
    assert reads["suspects"] == 1
    elsewhere = next(i for i in session.dataset.ids if i not in listed)
    bob.select([elsewhere])
    bob.label_selection("4")
    assert reads["suspects"] == 1  # not a suspect: nothing to read again
    fixed = sorted(listed & set(wrong))[0]
    bob.select([fixed])
    bob.label_selection("3")
    assert reads["suspects"] == 2 and fixed not in set(view.table.value["item"])
    AgreementView(bob), AgreementView(AppState(session, annotator="carl"))
    assert reads["agreement"] == 1  # two tabs, one computation for the same store state


def test_the_suspects_queue_walks_from_one_suspect_to_the_next(reviewed):
    session, _ = reviewed
    state = AppState(session, annotator="bob", strategy="suspects", batch_size=5)
    queue = state.next_batch()
    assert len(queue) >= 2 and queue == [s["id"] for s in session.suspects()][:5]
    assert all(r.startswith("labelled ") for r in state.queue_reasons)
    assert state.selection == queue[:1]
    state.label_selection("3")  # a relabelled suspect: on to the next one, though it is labelled
    assert state.selection == queue[1:2]
