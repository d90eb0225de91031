"""Roles on a shared server: the policy, and the engine refusing what a role does not allow."""

from __future__ import annotations

import pytest

from core.access import ACTIONS, AccessPolicy
from core.errors import AccessError, ConfigError
from core.project import AccessConfig, load_project


def policy(**sections) -> AccessPolicy:
    return AccessPolicy(AccessConfig(**sections))


def test_without_an_access_section_everyone_may_do_everything():
    open_policy = AccessPolicy(None)
    assert open_policy.open
    for action in ACTIONS:
        assert open_policy.allows("anyone", action) and open_policy.allows(None, action)


def test_roles_include_the_ones_below_them():
    p = policy(admins=["ada"], annotators=["ann"], viewers=["vic"])
    assert [p.role(u) for u in ("ada", "ann", "vic", "eve", None)] == [
        "admin", "annotator", "viewer", None, None]
    assert p.allows("ada", "export") and p.allows("ada", "label") and p.allows("ada", "view")
    assert p.allows("ann", "label") and p.allows("ann", "query") and p.allows("ann", "retrain")
    assert not p.allows("ann", "import") and not p.allows("ann", "edit_classes")
    assert p.allows("vic", "view") and not p.allows("vic", "label")
    assert not p.allows("eve", "view")


def test_a_star_lets_every_logged_in_user_annotate_or_view():
    assert policy(annotators="*").role("whoever") == "annotator"
    assert policy(viewers="*").role("whoever") == "viewer"
    assert policy(annotators="*").role(None) is None  # anonymous is nobody


def test_refusals_name_user_role_and_action():
    p = policy(admins=["ada"], annotators=["ann"])
    with pytest.raises(AccessError, match=r"'ann' is a annotator and may not export the project "
                                          r"\(needs the admin role\)"):
        p.require("ann", "export")
    with pytest.raises(AccessError, match="'eve' has no role"):
        p.require("eve", "view")
    with pytest.raises(KeyError):
        p.allows("ada", "fly")


def test_the_project_file_access_section_is_validated(write_project):
    path = write_project({"kind": "demo", "demo": "digits-lt"},
                         access={"admins": ["ada"], "annotators": "*"})
    assert load_project(path).access == AccessConfig(admins=["ada"], annotators="*")
    bad = write_project({"kind": "demo", "demo": "digits-lt"}, name="bad.yaml",
                        access={"admins": ["ada"], "editors": ["x"]})
    with pytest.raises(ConfigError, match="editors"):
        load_project(bad)
    worse = write_project({"kind": "demo", "demo": "digits-lt"}, name="worse.yaml",
                          access={"annotators": "everyone"})
    with pytest.raises(ConfigError, match="annotators"):
        load_project(worse)


# ------------------------------------------------------------------ the engine refuses


@pytest.fixture
def guarded(demo_project):
    """A Session over the demo with an access section: ada admin, ann annotator, vic viewer."""
    from core.project import dump_project
    from core.session import Session

    project = load_project(demo_project)
    project.access = AccessConfig(admins=["ada"], annotators=["ann"], viewers=["vic"])
    project.map.method = "pca"
    dump_project(project, demo_project)
    session = Session.open(demo_project)
    yield session
    session.store.close()


def test_the_session_refuses_labels_undo_and_class_edits_by_the_wrong_role(guarded):
    item = guarded.dataset.ids[0]
    with pytest.raises(AccessError, match="'vic' is a viewer"):
        guarded.label([item], "0", "vic")
    with pytest.raises(AccessError):
        guarded.undo("vic")
    with pytest.raises(AccessError, match="'eve' has no role"):
        guarded.label([item], "0", "eve")
    assert len(guarded.store) == 0
    assert guarded.label([item], "0", "ann")
    with pytest.raises(AccessError, match="edit the classes"):
        guarded.add_class("smudge", by="ann")
    with pytest.raises(AccessError):
        guarded.update_class("0", rare=False, by="ann")
    with pytest.raises(AccessError, match="change settings"):
        guarded.apply_settings(query=guarded.project.query, by="ann")
    assert "smudge" not in guarded.class_names
    assert guarded.add_class("smudge", by="ada").name == "smudge"



def test_only_an_admin_resolves_a_conflict_and_a_viewer_cannot_confirm(guarded):
    item = guarded.dataset.ids[0]
    guarded.label([item], "0", "ann")
    guarded.label([item], "1", "ada")  # two annotators disagree
    assert [c["item"] for c in guarded.conflicts()] == [item]
    before = len(guarded.store)
    with pytest.raises(AccessError, match="'ann' is a annotator and may not resolve conflicts"):
        guarded.resolve(item, "0", "ann")
    with pytest.raises(AccessError, match="'vic' is a viewer"):
        guarded.confirm([item], "vic")
    assert len(guarded.store) == before and guarded.conflicts()
    guarded.resolve(item, "0", "ada")
    assert guarded.conflicts() == [] and guarded.store.current()[item] == "0"
    assert guarded.store.history(item)[-1].origin == "resolution"

# ------------------------------------------------------------------ classes persist


def test_class_edits_survive_a_restart_and_the_file_only_seeds(demo_project):
    from core.session import Session

    first = Session.open(demo_project)
    assert not {c.name: c for c in first.classes}["3"].rare
    first.update_class("3", rare=True, colour="#010203", description="curly")
    first.add_class("smudge", colour="#445566")
    first.store.close()

    again = Session.open(demo_project)  # the project file still says 3 is not rare
    by_name = {c.name: c for c in again.classes}
    assert by_name["3"].rare and by_name["3"].colour == "#010203"
    assert by_name["3"].description == "curly" and "smudge" in by_name
    # Every strategy and metric reads the store's flags.
    assert "3" in again.training_project().rare_classes
    assert "3" in again.query_context().rare_classes
    again.update_class("0", rare=False)
    assert "0" not in again.query_context().rare_classes
    assert "0" not in again.training_project().rare_classes
    again.store.close()
    # So does the headless path (retrain --scheduler, score), which reads the store directly.
    from core.cluster_jobs import project_labels

    project = again.project
    seen = project_labels(project).apply_classes(project)
    assert "3" in seen.rare_classes and "0" not in seen.rare_classes and "smudge" in seen.class_names


def test_a_class_is_renamed_only_while_no_label_uses_it(demo_project):
    from core.errors import LabelStoreError
    from core.session import Session

    session = Session.open(demo_project)
    session.add_class("smuge")
    assert session.rename_class("smuge", "smudge").name == "smudge"
    session.label([session.dataset.ids[0]], "smudge", "ann")
    with pytest.raises(LabelStoreError, match="1 label event"):
        session.rename_class("smudge", "smear")
    with pytest.raises(LabelStoreError, match="exists"):
        session.rename_class("3", "4")
    assert "smudge" in session.class_names and "smear" not in session.class_names
    session.store.close()


def test_settings_are_swapped_whole_and_a_running_retrain_keeps_its_own(demo_project):
    from core.project import LogisticConfig
    from core.session import Session

    session = Session.open(demo_project)
    before = session.training_project()
    old_kind = before.model.kind
    assert old_kind != "logistic"
    new = session.apply_settings(model=LogisticConfig(kind="logistic"))
    assert session.project is new and new.model.kind == "logistic"
    assert before.model.kind == old_kind  # a snapshot taken earlier is untouched
    with pytest.raises(Exception, match="target_class"):
        session.apply_settings(query=new.query.model_copy(update={"target_class": "unicorn"}))
    assert session.project is new
    session.store.close()
