"""The room screen: what the TV on the wall shows, drawn from the status aggregate.

``RoomScreen`` runs it (render thread, display, compositor); ``build`` and ``render``
draw one page from a known status, for tests and screenshots.
"""
from terminal.screen.model import ScreenModel, build
from terminal.screen.renderer import RoomScreen, render

__all__ = ["RoomScreen", "ScreenModel", "build", "render"]
