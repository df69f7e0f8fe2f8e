"""Room audio processing: echo cancellation, noise suppression, gain control, beamforming.

Everything here works on 10 ms frames of int16 samples and is meant to be called from one
audio worker thread, never from the event loop.
"""
from media.audio.aec import EchoCanceller

__all__ = ["EchoCanceller"]
