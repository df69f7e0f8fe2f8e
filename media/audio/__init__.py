"""Room audio processing: echo cancellation, noise suppression, gain control, beamforming.

Everything here works on 10 ms frames of int16 samples and is meant to be called from the
audio worker threads, never from the event loop. ``build_processor()`` chains the stages
(``beam``, ``aec``, ``ns``, ``agc``) behind one capture/render interface.
"""
from media.audio.aec import EchoCanceller
from media.audio.agc import AutomaticGainControl
from media.audio.beamformer import Beamformer
from media.audio.noise import NoiseSuppressor
from media.audio.stages import STAGE_NAMES, AudioProcessor, AudioStage, build_processor

__all__ = ["EchoCanceller", "NoiseSuppressor", "AutomaticGainControl", "Beamformer",
           "AudioStage", "AudioProcessor", "build_processor", "STAGE_NAMES"]
