"""The compositor: stamped frames from the simulated camera land in their tiles, the newest
frame always wins, and participants come and go."""
from __future__ import annotations

import numpy as np
import pygame

from hal.camera import stamp
from terminal.screen.compositor import Compositor
from terminal.screen.layout import arrange
from terminal.screen.samples import participant_frames
from tests.terminal.screen.helpers import crop, stamp_in

HD = (1920, 1080)


def compose(compositor, canvas, active=None, layout="grid", self_view=False):
    roster, _, _ = compositor.roster()
    tiles = arrange(layout, [pid for pid, _ in roster], active, HD, self_view)
    placed = compositor.compose(canvas, tiles)
    return placed, pygame.surfarray.array3d(canvas).transpose(1, 0, 2)


def test_each_participants_frame_appears_in_its_grid_tile():
    frames = participant_frames(4)
    compositor = Compositor()
    for index, frame in enumerate(frames):
        compositor.update_participant(f"p{index}", f"Person {index}", frame)
    canvas = pygame.Surface(HD, 0, 32)
    placed, image = compose(compositor, canvas)
    expected_rects = [(0, 0, 960, 540), (960, 0, 960, 540), (0, 540, 960, 540), (960, 540, 960, 540)]
    assert [p.video_rect for p in placed] == expected_rects
    for tile, frame in zip(placed, frames, strict=True):
        assert stamp_in(image, tile.video_rect) == stamp.read_frame(frame), tile.participant_id


def test_the_newest_frame_wins_and_superseded_frames_are_counted():
    first, second, third = participant_frames(3)
    compositor = Compositor()
    compositor.update_participant("p", "P", first)
    compositor.update_participant("p", "P", second)      # decoded before the screen drew
    canvas = pygame.Surface(HD, 0, 32)
    placed, image = compose(compositor, canvas, layout="speaker")
    assert stamp_in(image, placed[0].video_rect) == stamp.read_frame(second)
    assert compositor.frames_replaced == 1
    compositor.update_participant("p", "P", third)
    placed, image = compose(compositor, canvas, layout="speaker")
    assert stamp_in(image, placed[0].video_rect) == stamp.read_frame(third)
    assert compositor.status()["frames_replaced"] == 1   # the second frame was shown, not skipped


def test_self_view_shows_the_local_camera_scaled_down_and_mirrored():
    remote, local = participant_frames(2, width=640, height=360)
    compositor = Compositor()
    compositor.update_participant("p", "P", remote)
    compositor.update_self_view(local)
    canvas = pygame.Surface(HD, 0, 32)
    placed, image = compose(compositor, canvas, layout="speaker", self_view=True)
    self_tile = next(p for p in placed if p.participant_id == "")
    x, y, w, h = self_tile.video_rect
    expected = local.reformat(width=w, height=h, format="rgb24").to_ndarray()[:, ::-1].astype(int)
    assert np.abs(crop(image, self_tile.video_rect).astype(int) - expected).mean() < 3


def test_a_participant_who_left_disappears_and_a_portrait_frame_is_pillarboxed():
    portrait, landscape = participant_frames(2, width=360, height=640)[0], participant_frames(1)[0]
    compositor = Compositor()
    compositor.update_participant("tall", "Tall", portrait)
    compositor.update_participant("gone", "Gone", landscape)
    compositor.set_active_speaker("gone")
    compositor.remove_participant("gone")
    roster, active, _ = compositor.roster()
    assert roster == [("tall", "Tall")] and active is None
    canvas = pygame.Surface(HD, 0, 32)
    canvas.fill((255, 255, 255))
    placed, image = compose(compositor, canvas, layout="speaker")
    x, y, w, h = placed[0].video_rect
    assert h == 1080 and w < 1080 and x == (1920 - w) // 2
    assert (image[:, : x - 1] == 0).all()                 # black bars, not stretched video
