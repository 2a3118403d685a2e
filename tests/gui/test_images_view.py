"""Tests of the Images view: filters, sorting, multi-select edits, thumbnails, missing files and relink."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt

from glass_engine.store import Project
from glass_gui.image_model import RecordRole
from glass_gui.images_view import ImagesView
from glass_gui.views import StudioContext


def make_view(qtbot, project: Project) -> ImagesView:  # type: ignore[no-untyped-def]
    context = StudioContext()
    view = ImagesView(context)
    view._test_context = context
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)
    context.set_project(project)
    return view


def select_rows(view: ImagesView, rows: list[int]) -> None:
    selection = view.list_view.selectionModel()
    selection.clearSelection()
    for row in rows:
        selection.select(view.model.index(row), QItemSelectionModel.SelectionFlag.Select)


def set_filter(combo, value) -> None:  # type: ignore[no-untyped-def]
    combo.setCurrentIndex(combo.findData(value))


def shown_ids(view: ImagesView) -> list[int]:
    return [view.model.data(view.model.index(row), RecordRole).id for row in range(view.model.rowCount())]


def test_filters_match_store(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    view = make_view(qtbot, demo_project)
    all_records = demo_project.images()
    assert view.model.rowCount() == len(all_records)

    set_filter(view.label_filter, "defect")
    assert sorted(shown_ids(view)) == sorted(r.id for r in all_records if r.label == "defect")
    set_filter(view.type_filter, "scratch")
    assert sorted(shown_ids(view)) == sorted(r.id for r in all_records if r.defect_type == "scratch")
    set_filter(view.type_filter, "__any__")
    set_filter(view.label_filter, "__any__")
    set_filter(view.split_filter, "train")
    assert sorted(shown_ids(view)) == sorted(r.id for r in all_records if r.split == "train")
    set_filter(view.split_filter, "__any__")
    set_filter(view.annotated_filter, False)
    assert sorted(shown_ids(view)) == sorted(r.id for r in all_records if r.mask_path is None)
    assert "of {}".format(len(all_records)) in view.count_label.text()


def test_sort_by_score(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    records = demo_project.images(split="test")
    run_id = demo_project.add_run("r", "surface", demo_project.runs_dir / "r")
    scores = {record.id: (index * 7 % 11) / 10 for index, record in enumerate(records)}
    demo_project.set_scores(run_id, scores)
    view = make_view(qtbot, demo_project)
    set_filter(view.split_filter, "test")

    set_filter(view.sort_order, "score")

    assert shown_ids(view) == sorted(scores, key=lambda image_id: (-scores[image_id], image_id))


def test_multi_select_relabel_and_move(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    view = make_view(qtbot, demo_project)
    set_filter(view.split_filter, "test")
    set_filter(view.label_filter, "good")
    select_rows(view, [0, 1])
    chosen = view.selected_ids()
    assert len(chosen) == 2

    assert view.relabel_selected("defect", "dent") == 2
    for image_id in chosen:
        assert demo_project.image(image_id).label == "defect"
        assert demo_project.image(image_id).defect_type == "dent"
    assert not set(chosen) & set(shown_ids(view)), "relabelled images leave the good filter"

    set_filter(view.label_filter, "defect")
    select_rows(view, [view.model.row_of(image_id) for image_id in chosen])
    assert view.move_selected("validation") == 2
    assert {demo_project.image(image_id).split for image_id in chosen} == {"validation"}


def test_move_defect_to_train_shows_error(qtbot, demo_project: Project, message_boxes) -> None:  # type: ignore[no-untyped-def]
    view = make_view(qtbot, demo_project)
    set_filter(view.label_filter, "defect")
    select_rows(view, [0])
    image_id = view.selected_ids()[0]

    assert view.move_selected("train") == 0
    assert demo_project.image(image_id).split == "test"
    assert len(message_boxes) == 1
    assert "labelled defect" in message_boxes[0][1]


def test_thumbnails_load_and_cache(qtbot, demo_project: Project) -> None:  # type: ignore[no-untyped-def]
    view = make_view(qtbot, demo_project)
    qtbot.waitUntil(lambda: view.model.cached_thumbnails() >= min(view.model.rowCount(), 6), timeout=10_000)
    qtbot.waitUntil(view._loader.is_idle, timeout=10_000)
    cached = list(demo_project.thumbnails_dir.rglob("*.jpg"))
    assert len(cached) >= 6
    pixmap = view.model.data(view.model.index(0), Qt.ItemDataRole.DecorationRole)
    assert pixmap is not None
    assert max(pixmap.width(), pixmap.height()) == 64, "a 64 px demo image is not enlarged"


def test_missing_image_and_relink(qtbot, demo_project: Project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    view = make_view(qtbot, demo_project)
    record = demo_project.images(split="train")[0]
    moved = tmp_path / "moved here" / record.path.name
    moved.parent.mkdir()
    record.path.rename(moved)

    with qtbot.waitSignal(view.context.images_changed, timeout=10_000):
        view.check_missing()

    row = view.model.row_of(record.id)
    shown = view.model.data(view.model.index(row), RecordRole)
    assert shown.missing
    assert "missing" in view.model.data(view.model.index(row), Qt.ItemDataRole.ToolTipRole)
    select_rows(view, [row])
    assert view.relink_action.isEnabled()

    assert view.relink(record.id, moved) == 1
    fixed = view.model.data(view.model.index(view.model.row_of(record.id)), RecordRole)
    assert not fixed.missing
    assert fixed.path == moved
    assert not view.relink_action.isEnabled()


def test_read_only_disables_edits(qtbot, demo_project: Project, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from glass_engine import store

    folder = demo_project.folder
    demo_project.close()
    monkeypatch.setattr(store, "_folder_writable", lambda path: False)
    with Project.open(folder) as read_only:
        view = make_view(qtbot, read_only)
        select_rows(view, [0])
        assert not view.mark_good_action.isEnabled()
        assert not view.move_button.isEnabled()
        assert view.annotate_action.isEnabled()
        view.context.set_project(None)
        view.shutdown()
