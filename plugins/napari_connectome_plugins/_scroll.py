"""Dock panels that scroll instead of squashing.

Three panels docked on a 1280 × 800 screen have less height than their
content; Qt then shrinks them below their minimum and draws widgets over one
another (the Effort panel's plots over its summary, button labels cut). A
panel's content lives in a scroll area instead: it keeps its minimum size and
the panel scrolls.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QFrame, QLayout, QPushButton, QScrollArea, QVBoxLayout, QWidget


def scrolling_layout(panel: QWidget) -> QVBoxLayout:
    """Give ``panel`` a vertical scroll area and return the layout to fill inside it.

    Parameters
    ----------
    panel
        The dock panel (it must not have a layout yet).

    Returns
    -------
    QVBoxLayout
        The layout of the scrolled content; the panel's own layout holds only
        the scroll area.
    """
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea(panel)
    area.setWidgetResizable(True)  # the content takes the panel's width, scrolls in height
    area.setFrameShape(QFrame.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
    content = QWidget(area)
    content.setObjectName("scrolled content")
    area.setWidget(content)
    outer.addWidget(area)
    panel.scroll_area = area  # type: ignore[attr-defined]
    inner = QVBoxLayout(content)
    # A resizable scroll area honours the content's minimumSize, not its hint: make the
    # layout's minimum the content's minimum, so buttons keep their labels and the area scrolls.
    inner.setSizeConstraint(QLayout.SetMinimumSize)
    return inner


def keep_button_labels(panel: QWidget) -> None:
    """Make every push button of ``panel`` at least as wide as its label needs, now and once styled.

    Layouts nested in group boxes let a row of buttons shrink below their
    size hints ("Split (Enter" on a narrow dock); a minimum width per button
    makes the row, and so the scrolled content, keep room for every label.
    napari's style sheet arrives when the panel is docked and shown, which
    changes the hints, so the widths are set again then.
    """
    _fit_buttons(panel)
    keeper = _LabelKeeper(panel)
    panel.installEventFilter(keeper)
    panel._label_keeper = keeper  # type: ignore[attr-defined]  # lives as long as the panel


def _fit_buttons(panel: QWidget) -> None:
    for button in panel.findChildren(QPushButton):
        button.setMinimumWidth(0)  # the hint of the label alone, not of a minimum set before
        button.setMinimumWidth(button.sizeHint().width())


class _LabelKeeper(QObject):
    """Fits the panel's buttons again when it is shown or restyled."""

    EVENTS = frozenset(int(t) for t in (QEvent.Show, QEvent.StyleChange, QEvent.FontChange, QEvent.Polish))

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if int(event.type()) in self.EVENTS and isinstance(obj, QWidget):
            _fit_buttons(obj)
        return False
