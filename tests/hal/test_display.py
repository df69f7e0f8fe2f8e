"""Displays: the offscreen backend end to end, the window backend on SDL's dummy video
driver, the KMS backend's refusal without a DRM device, and the [display] profile section."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pygame
import pytest

from hal.display import open_display
from hal.errors import DeviceUnavailable, ProfileError
from hal.profile import DisplayProfile, load_profile


def test_offscreen_presents_what_was_drawn_and_saves_it_as_png(tmp_path):
    with open_display(DisplayProfile(backend="offscreen", width=640, height=360)) as display:
        assert display.backend == "offscreen" and display.size == (640, 360)
        with pytest.raises(LookupError, match="no frame"):
            display.snapshot()
        canvas = display.canvas()
        canvas.fill((10, 20, 30))
        canvas.fill((200, 100, 50), (100, 50, 40, 30))
        display.present()
        canvas.fill((0, 0, 0))            # drawing the next frame leaves the shown one alone
        shown = display.snapshot()
        assert shown.shape == (360, 640, 3)
        assert tuple(shown[0, 0]) == (10, 20, 30)
        assert tuple(shown[60, 120]) == (200, 100, 50)
        path = display.save_png(tmp_path / "frame.png")
        loaded = pygame.surfarray.array3d(pygame.image.load(str(path))).transpose(1, 0, 2)
        assert np.array_equal(loaded, shown)
        assert display.status()["frames"] == 1
    display.close()                       # closing twice is harmless
    assert display.is_closed


def test_offscreen_defaults_to_1080p():
    with open_display(DisplayProfile(backend="offscreen")) as display:
        assert display.size == (1920, 1080) and display.canvas().get_bitsize() == 32


def test_environment_override_picks_the_backend(monkeypatch):
    monkeypatch.setenv("ROOMBOX_DISPLAY_BACKEND", "offscreen")
    with open_display(DisplayProfile(backend="kms")) as display:
        assert display.backend == "offscreen"


def test_window_backend_opens_a_32_bit_sdl_surface_on_the_dummy_driver(monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    with open_display(DisplayProfile(backend="window", width=320, height=180)) as display:
        assert display.size == (320, 180)
        assert display.canvas().get_bitsize() == 32
        display.canvas().fill((255, 0, 0))
        display.present()
        display.poll()
        status = display.status()
        assert status["driver"] == "dummy" and status["frames"] == 1
    assert not pygame.display.get_init()


@pytest.mark.skipif(Path("/dev/dri").exists(), reason="this machine has a DRM device; the refusal needs none")
def test_kms_without_a_drm_device_says_why(monkeypatch):
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    with pytest.raises(DeviceUnavailable, match=r"display: kms cannot open \(SDL video driver 'kmsdrm'"):
        open_display(DisplayProfile(backend="kms"))
    assert "SDL_VIDEODRIVER" not in os.environ   # a failed open leaves no driver forced


def test_profiles_name_their_display():
    assert load_profile("sim").display == DisplayProfile(backend="offscreen", width=1920, height=1080)
    for name in ("pi4-respeaker4", "pi5-usb"):
        assert load_profile(name).display.backend == "kms"
        assert load_profile(name).display.width == 0      # the TV's own mode


def test_display_profile_errors_name_the_key(tmp_path):
    base = (Path(__file__).parents[2] / "hal" / "profiles" / "sim.toml").read_text()
    bad = base.replace('backend = "offscreen"', 'backend = "hdmi"')
    (tmp_path / "bad.toml").write_text(bad)
    with pytest.raises(ProfileError, match=r"display\.backend.*'hdmi'"):
        load_profile(str(tmp_path / "bad.toml"))
    half = base.replace("height = 1080\n", "")
    (tmp_path / "half.toml").write_text(half)
    with pytest.raises(ProfileError, match="needs both width and height"):
        load_profile(str(tmp_path / "half.toml"))


XVFB_START_TIMEOUT_S = 10


@pytest.fixture
def xvfb(monkeypatch):
    """A private X server (unix socket only, no TCP) for the window backend."""
    import select
    import subprocess
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x720x24",
                               "-nolisten", "tcp"], pass_fds=(write_fd,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], XVFB_START_TIMEOUT_S)
        assert ready, "Xvfb did not report its display number"
        number = os.read(read_fd, 16).decode().strip()
        monkeypatch.setenv("DISPLAY", f":{number}")
        monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
        yield f":{number}"
    finally:
        os.close(read_fd)
        server.terminate()
        server.wait(XVFB_START_TIMEOUT_S)


def x_screen(display_name: str) -> np.ndarray:
    """The X server's root window as RGB, read with xwd (a ZPixmap of 24 or 32 bits per pixel)."""
    import subprocess
    raw = subprocess.run(["xwd", "-root", "-silent", "-display", display_name], capture_output=True,
                         check=True, timeout=XVFB_START_TIMEOUT_S).stdout
    header = np.frombuffer(raw[:100], ">u4")
    header_size, width, height, bits, line, ncolors = (int(header[i]) for i in (0, 4, 5, 11, 12, 19))
    assert bits in (24, 32), f"expected a 24- or 32-bit X screen, got {bits}"
    size = bits // 8
    start = header_size + 12 * ncolors
    rows = np.frombuffer(raw[start:start + line * height], np.uint8).reshape(height, line)
    pixels = rows[:, :width * size].reshape(height, width, size)
    least_first = int(header[7]) == 0          # byte order: B, G, R (, X) on little-endian servers
    return pixels[..., [2, 1, 0]] if least_first else pixels[..., size - 3:]


def test_window_backend_shows_the_canvas_in_a_real_x_window(xvfb):
    with open_display(DisplayProfile(backend="window", width=320, height=180)) as display:
        canvas = display.canvas()
        canvas.fill((200, 30, 90))
        canvas.fill((10, 220, 40), (100, 60, 50, 40))
        display.present()
        display.poll()
        shown = x_screen(xvfb)
        assert display.status()["driver"] == "x11"
    magenta = np.all(shown == (200, 30, 90), axis=2).sum()
    green = np.all(shown == (10, 220, 40), axis=2).sum()
    assert (magenta, green) == (320 * 180 - 50 * 40, 50 * 40)
