"""Room audio: processing of the microphones, and Opus over lossy networks.

Processing (echo cancellation, noise suppression, gain control, beamforming) works on 10 ms
frames of int16 samples and is called from the audio worker threads, never from the event
loop; ``build_processor()`` chains the stages (``beam``, ``aec``, ``ns``, ``agc``) behind
one capture/render interface.

The network side runs on the event loop, where aiortc hands it RTP and asks for frames, and
is light (one Opus packet per 20 ms): ``jitter`` (the playout buffer that plays every packet,
with FEC recovery and concealment), ``opus_sender`` (FEC and packet copies on the send
side) and ``opus`` (libopus through ctypes, for what PyAV does not expose).
"""
from media.audio.aec import EchoCanceller
from media.audio.agc import AutomaticGainControl
from media.audio.beamformer import Beamformer
from media.audio.noise import NoiseSuppressor
from media.audio.stages import STAGE_NAMES, AudioProcessor, AudioStage, build_processor

__all__ = ["EchoCanceller", "NoiseSuppressor", "AutomaticGainControl", "Beamformer",
           "AudioStage", "AudioProcessor", "build_processor", "STAGE_NAMES"]
