"""Room screen: cost of one composed in-call frame, against simpler ways to do it.

Every participant delivers a new frame before every composition (the worst case: nothing
can be reused), 720p sources onto a 1080p screen unless stated. Rows:

- ``compose``: the compositor alone (libswscale straight to the screen's pixel layout,
  numpy copies into the locked surface);
- ``in-call frame``: the whole page as the render thread draws it (video, names, active
  speaker frame, self-view, status bar);
- baselines, same job: ``rgb24 + frombuffer + blit`` (swscale to RGB, pygame converts while
  blitting) and ``smoothscale`` (full-size RGB, pygame scales).

Usage: ``.venv/bin/python bench/screen.py [--runs N]``; prints a table of medians.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame  # noqa: E402

from hal.display import open_display  # noqa: E402
from hal.profile import DisplayProfile  # noqa: E402
from terminal.screen.compositor import Compositor  # noqa: E402
from terminal.screen.fonts import Fonts  # noqa: E402
from terminal.screen.layout import arrange  # noqa: E402
from terminal.screen.model import build  # noqa: E402
from terminal.screen.renderer import render  # noqa: E402
from terminal.screen.samples import NOW, PARTICIPANTS, SAMPLES, participant_frames  # noqa: E402

GOAL_MS = 15.0


def timed(job, runs: int) -> float:
    job()                                       # warm caches, allocate buffers
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        job()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def feed(compositor: Compositor, frames: list, step: list[int]) -> None:
    """Hand every participant a 'new' frame (a fresh sequence number defeats the cache)."""
    step[0] += 1
    for index, (pid, name) in enumerate(PARTICIPANTS):
        compositor.update_participant(pid, name, frames[(index + step[0]) % len(frames)])


def bench(size: tuple[int, int], source: tuple[int, int], runs: int, fonts: Fonts) -> list[tuple[str, float]]:
    display = open_display(DisplayProfile(backend="offscreen", width=size[0], height=size[1]))
    canvas = display.canvas()
    frames = participant_frames(6, *source)
    compositor = Compositor()
    step = [0]
    feed(compositor, frames, step)
    compositor.update_self_view(frames[-1])
    compositor.set_active_speaker("p2")
    tiles = arrange("grid", [pid for pid, _ in PARTICIPANTS], "p2", size, has_self_view=False)
    model = build(SAMPLES["in-call-grid"][0], NOW, layout="grid")

    def compose():
        feed(compositor, frames, step)
        compositor.compose(canvas, tiles)

    def whole_frame():
        feed(compositor, frames, step)
        render(canvas, fonts, model, compositor)

    def baseline_blit():
        step[0] += 1
        for tile, frame in zip(tiles, frames[step[0] % 2:]):
            x, y, w, h = tile.rect
            rgb = frame.reformat(width=w, height=h, format="rgb24")
            canvas.blit(pygame.image.frombuffer(rgb.to_ndarray().tobytes(), (w, h), "RGB"), (x, y))

    def baseline_smoothscale():
        step[0] += 1
        for tile, frame in zip(tiles, frames[step[0] % 2:]):
            x, y, w, h = tile.rect
            full = pygame.image.frombuffer(frame.to_ndarray(format="rgb24").tobytes(),
                                           (frame.width, frame.height), "RGB")
            canvas.blit(pygame.transform.smoothscale(full, (w, h)), (x, y))

    label = f"{size[1]}p screen, 4 x {source[1]}p"
    rows = [(f"{label}: compose", timed(compose, runs)),
            (f"{label}: in-call frame", timed(whole_frame, runs)),
            (f"{label}: baseline rgb24 + frombuffer + blit", timed(baseline_blit, runs)),
            (f"{label}: baseline smoothscale", timed(baseline_smoothscale, max(5, runs // 4)))]
    display.close()
    return rows


def pages(runs: int, fonts: Fonts) -> list[tuple[str, float]]:
    display = open_display(DisplayProfile(backend="offscreen", width=1920, height=1080))
    rows = []
    for name in ("idle", "unprovisioned"):
        model = build(SAMPLES[name][0], NOW)
        rows.append((f"1080p page: {name}", timed(lambda model=model: render(display.canvas(), fonts, model), runs)))
    display.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    fonts = Fonts()
    rows = bench((1920, 1080), (1280, 720), args.runs, fonts)
    rows += bench((1920, 1080), (640, 360), args.runs, fonts)
    rows += bench((1280, 720), (1280, 720), args.runs, fonts)
    rows += pages(max(10, args.runs // 3), fonts)
    width = max(len(name) for name, _ in rows)
    print(f"{'case':<{width}}  median ms")
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:9.2f}")
    whole = rows[1][1]
    print(f"\ngoal: 4-participant 1080p in-call frame <= {GOAL_MS:.0f} ms: "
          f"{'met' if whole <= GOAL_MS else 'NOT met'} ({whole:.2f} ms; "
          f"{rows[2][1] / whole:.1f}x faster than the blit baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
