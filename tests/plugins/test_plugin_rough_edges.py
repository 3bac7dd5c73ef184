"""GUI rough edges of issue 10, item 9: bad File → Open, keys with no project, the z slider."""

from __future__ import annotations

import pytest
from napari_connectome_plugins import _reader

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"


def canvas(viewer):
    return viewer.window._qt_viewer.canvas.native


def test_file_open_of_a_non_volume_is_our_one_line_not_a_traceback(make_napari_viewer, tmp_path, messages):
    viewer = make_napari_viewer()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a volume\n")
    # What File → Open does with the chosen path; it used to raise napari's ReaderPluginError,
    # which napari shows as a generic toast and a stack trace in the terminal.
    viewer.window._qt_viewer._qt_open([str(notes)], stack=False)
    errors = [text for severity, text in messages if severity == "error"]
    assert len(errors) == 1 and "notes.txt" in errors[0] and "format" in errors[0]
    assert len(viewer.layers) == 0


def test_files_another_reader_claims_are_left_to_it(tmp_path):
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG not really")
    assert _reader.get_reader(str(picture)) is None  # napari's own image reader is asked instead
    odd = tmp_path / "odd.qqq"
    odd.write_text("?")
    assert _reader.get_reader(str(odd)) is not None  # nobody else: we say why, in one line


def test_the_dims_slider_is_labelled_z(make_napari_viewer, gala_project):
    viewer = make_napari_viewer()
    viewer.open(str(gala_project.root), plugin=PLUGIN)
    assert tuple(viewer.dims.axis_labels)[-3:] == ("z", "y", "x")


@pytest.mark.parametrize(("panel", "key", "needle"), [
    ("Micro-tasks", "y", "open a project first"),
    ("Proofread", "m", "open a project first"),
])
def test_keys_with_no_project_say_what_is_missing(make_napari_viewer, qtbot, messages, panel, key, needle):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, panel)
    qtbot.keyClick(canvas(viewer), key)
    said = [text for _severity, text in messages]
    assert any(needle in text.lower() for text in said), said
    # Closing the panel gives the keys back.
    widget.close()
    prefix = widget.KEY_PREFIX + "_"
    assert not any(getattr(f, "__name__", "").startswith(prefix) for f in viewer.keymap.values())


def test_the_pyqt5_notice_goes_to_the_terminal_not_over_the_canvas(capsys, monkeypatch):
    import qtpy
    from napari._qt import qt_main_window
    from napari_connectome_plugins import launch

    monkeypatch.setattr(qt_main_window, "SHOW_QT_WARNING", True)
    launch._binding_notice_to_terminal()
    if qtpy.API_NAME == "PyQt5":
        assert qt_main_window.SHOW_QT_WARNING is False
        assert "deprecated" in capsys.readouterr().err
    else:  # PyQt6: napari has nothing to say; nothing is changed
        assert qt_main_window.SHOW_QT_WARNING is True


@pytest.mark.parametrize("size", [(1600, 1000), (1280, 800)])
def test_docked_panels_scroll_rather_than_cut_their_labels(make_napari_viewer, qtbot, size):
    from qtpy.QtWidgets import QApplication, QPushButton

    viewer = make_napari_viewer(show=True)
    panels = [viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]
              for name in ("Connectome", "Proofread", "Micro-tasks", "Effort")]
    viewer.window._qt_window.resize(*size)
    QApplication.processEvents()
    for panel in panels:
        assert panel.scroll_area.widget().minimumSizeHint().height() > 0
        for button in panel.findChildren(QPushButton):
            if button.isVisibleTo(panel):
                # The button has at least the width its label needs; the panel scrolls instead.
                assert button.width() >= button.minimumSizeHint().width(), (type(panel).__name__, button.text())
    effort = panels[-1]
    assert effort.canvas.height() >= effort.canvas.minimumHeight()
