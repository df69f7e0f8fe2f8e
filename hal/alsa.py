"""What the ALSA capture and playback backends share: opening a PCM with the profile's
format and checking that the device really runs at it."""
from __future__ import annotations

from typing import Any

from hal.errors import DeviceUnavailable

EPIPE = 32               # pyalsaaudio returns -EPIPE for an overrun/underrun
PERIODS_IN_BUFFER = 8    # 80 ms at 10 ms periods: rides out scheduler hiccups on a busy Pi


def open_pcm(direction: str, device: str, rate: int, channels: int, period_frames: int) -> Any:
    """Open an interleaved S16_LE PCM (``direction`` is "capture" or "playback").

    Raises DeviceUnavailable naming the device, the format and alsa-lib's reason.
    """
    import alsaaudio  # imported here: only boxes that use ALSA need alsa-lib

    what = f"{direction} '{device}' at {rate} Hz, {channels} ch"
    kind = alsaaudio.PCM_CAPTURE if direction == "capture" else alsaaudio.PCM_PLAYBACK
    try:
        pcm = alsaaudio.PCM(type=kind, mode=alsaaudio.PCM_NORMAL, device=device, rate=rate,
                            channels=channels, format=alsaaudio.PCM_FORMAT_S16_LE,
                            periodsize=period_frames, periods=PERIODS_IN_BUFFER)
    except alsaaudio.ALSAAudioError as exc:
        raise DeviceUnavailable(f"alsa: cannot open {what} ({reason(exc)})") from None
    info = pcm.info()
    if info["rate"] != rate or info["channels"] != channels:
        pcm.close()
        raise DeviceUnavailable(f"alsa: cannot open {what} (the device offers {info['rate']} Hz, "
                                f"{info['channels']} ch; use a plughw: device or fix the profile)")
    return pcm


def reason(exc: Exception) -> str:
    """pyalsaaudio messages end with the device name in brackets; keep the reason only."""
    text = str(exc.args[0] if exc.args else exc)
    return text.split(" [", 1)[0]
