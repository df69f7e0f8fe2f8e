"""Reading the room screen back the way a viewer (or a phone's scanner) would."""
from __future__ import annotations

import shutil
import subprocess

import av
import numpy as np
import pygame
import pytest

from hal.camera import stamp
from terminal.screen.draw import BACKGROUND

OCR_TIMEOUT_S = 30


def crop(image: np.ndarray, rect) -> np.ndarray:
    x, y, w, h = rect
    return image[y:y + h, x:x + w]


def ink_fraction(image: np.ndarray, rect, background=BACKGROUND) -> float:
    """Share of the rectangle's pixels that differ clearly from the background colour."""
    area = crop(image, rect).astype(int)
    return float((np.abs(area - np.array(background)).sum(axis=2) > 60).mean())


OCR_MIN_HEIGHT_PX = 48


def ocr(image: np.ndarray, rect, tmp_path) -> str:
    """Tesseract's reading of one line of text in ``rect``, lower-cased, spaces collapsed."""
    if shutil.which("tesseract") is None:
        pytest.fail("tesseract is not installed (deps/apt.txt lists tesseract-ocr; run `make apt`)")
    x, y, w, h = rect
    pad = max(8, h // 3)
    area = np.ascontiguousarray(image[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad])
    if h < OCR_MIN_HEIGHT_PX:
        # Tesseract reads small type unreliably (a name label over moving video once read
        # "jomas" for "jonas"): enlarge the crop, the pixels themselves are unchanged.
        factor = -(-OCR_MIN_HEIGHT_PX // h)
        area = np.ascontiguousarray(area.repeat(factor, axis=0).repeat(factor, axis=1))
    path = tmp_path / "line.png"
    pygame.image.save(pygame.surfarray.make_surface(area.transpose(1, 0, 2)), str(path))
    done = subprocess.run(["tesseract", str(path), "-", "-l", "eng", "--psm", "7"],
                          capture_output=True, text=True, timeout=OCR_TIMEOUT_S, check=True)
    return " ".join(done.stdout.split()).lower()


def stamp_in(image: np.ndarray, rect) -> stamp.Stamp | None:
    """The frame stamp of the video drawn in ``rect`` of an RGB screen image."""
    area = np.ascontiguousarray(crop(image, rect))
    luma = av.VideoFrame.from_ndarray(area, format="rgb24").reformat(format="gray").to_ndarray()
    return stamp.read(luma)
