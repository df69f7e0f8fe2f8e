"""Audio stages behind one interface, and the processor that chains them.

A stage has a capture side (microphone frames in, processed frames out) and a render side
(the frames the loudspeaker plays), because echo cancellation needs both. Stages run in
configured order and each can be switched off by name. The live pipeline calls
``AudioProcessor.render()`` from the playback thread with exactly what is played and
``capture()`` from the capture thread, one 10 ms frame at a time; the render queue between
the two is a lock-free deque.

Stage names: ``beam`` (multi-channel array to one channel, DOA in status), ``aec``,
``ns``, ``agc``. Order defaults to ``beam, aec, ns, agc``: the canceller after a
beamformer sees one echo path instead of one per mic, at the price of re-learning when
the beam turns (the beam only turns on confident talker DOA).
"""
from __future__ import annotations

import collections
from typing import Iterable

import numpy as np

from media.audio.aec import EchoCanceller
from media.audio.agc import AutomaticGainControl
from media.audio.beamformer import METHODS as BEAM_METHODS, Beamformer
from media.audio.errors import AudioConfigError, AudioInputError
from media.audio.noise import NoiseSuppressor

STAGE_NAMES = ("beam", "aec", "ns", "agc")
RENDER_QUEUE_FRAMES = 50         # 500 ms of reference may wait for the capture side


class AudioStage:
    """One processing step. Subclasses implement ``capture``; ``render`` and ``status``
    have defaults (ignore the played audio; empty status)."""

    name = ""

    def capture(self, frame: np.ndarray) -> np.ndarray:
        """Process one captured int16 frame and return the result."""
        raise NotImplementedError

    def render(self, frame: np.ndarray) -> None:
        """See one frame of what the loudspeaker plays (called from the playback side)."""

    def status(self) -> dict:
        return {}


class EchoCancellerStage(AudioStage):
    """Echo cancellation: the render side queues the reference, the capture side uses it."""

    name = "aec"

    def __init__(self, sample_rate: int, frame_size: int, *, denoise: bool = True):
        self.canceller = EchoCanceller(sample_rate, frame_size, denoise=denoise)
        self.frame_size = frame_size
        self._reference = collections.deque(maxlen=RENDER_QUEUE_FRAMES)
        self.reference_missing = 0      # capture frames with no played frame to match

    def render(self, frame: np.ndarray) -> None:
        self._reference.append(np.asarray(frame, dtype=np.int16).reshape(-1))

    def capture(self, frame: np.ndarray) -> np.ndarray:
        try:
            ref = self._reference.popleft()
        except IndexError:
            ref = np.zeros(self.frame_size, dtype=np.int16)
            self.reference_missing += 1
        return self.canceller.process(frame, ref)

    def status(self) -> dict:
        return {**self.canceller.status(), "reference_missing": self.reference_missing,
                "reference_queued": len(self._reference)}


class NoiseSuppressorStage(AudioStage):
    name = "ns"

    def __init__(self, frame_size: int):
        self.suppressor = NoiseSuppressor(frame_size)

    def capture(self, frame: np.ndarray) -> np.ndarray:
        return self.suppressor.process(frame)

    def status(self) -> dict:
        return {"noise_dbfs": round(self.suppressor.noise_dbfs, 1)}


class GainControlStage(AudioStage):
    name = "agc"

    def __init__(self):
        self.agc = AutomaticGainControl()

    def capture(self, frame: np.ndarray) -> np.ndarray:
        return self.agc.process(frame)

    def status(self) -> dict:
        level = self.agc.speech_dbfs
        return {"gain_db": round(self.agc.gain_db, 1),
                "speech_dbfs": None if level is None else round(level, 1)}


class BeamformerStage(AudioStage):
    """Array to one channel; ``status()`` carries the talker's azimuth for camera framing."""

    name = "beam"

    def __init__(self, geometry, sample_rate: int, frame_size: int, *,
                 method: str = "delay-and-sum", loading: float | None = None):
        self.beamformer = Beamformer(geometry, sample_rate, frame_size, method=method,
                                     loading=loading)

    def capture(self, frame: np.ndarray) -> np.ndarray:
        return self.beamformer.process(frame)

    def status(self) -> dict:
        b = self.beamformer
        return {"method": b.method, "azimuth_deg": b.azimuth_deg, "confidence": round(b.confidence, 3),
                "talker_azimuth_deg": b.talker_azimuth_deg, "steering_deg": b.steering_deg}


class AudioProcessor:
    """Runs the enabled stages in order on the capture side; feeds every stage the render side.

    Capture frames are int16, (frame_size,) for one mic or (frame_size, channels) for an
    array. Without an enabled ``beam`` stage an array frame is reduced to its first channel.
    """

    def __init__(self, stages: list[AudioStage], frame_size: int, disabled: Iterable[str] = ()):
        self.stages = stages
        self.frame_size = frame_size
        self.enabled = {s.name for s in stages}
        for name in disabled:
            self.set_enabled(name, False)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Switch a stage on or off by name; AudioConfigError for an unknown name."""
        names = [s.name for s in self.stages]
        if name not in names:
            raise AudioConfigError(f"audio.stages: no stage '{name}' in this processor; "
                                   f"expected one of {', '.join(names)}")
        (self.enabled.add if enabled else self.enabled.discard)(name)

    def render(self, frame: np.ndarray) -> None:
        for stage in self.stages:
            if stage.name in self.enabled:
                stage.render(frame)

    def capture(self, frame: np.ndarray) -> np.ndarray:
        x = np.asarray(frame, dtype=np.int16)
        if x.shape[0] != self.frame_size:
            raise AudioInputError(f"audio: capture frames must be {self.frame_size} samples, "
                                  f"got {x.shape[0]}")
        for stage in self.stages:
            if stage.name not in self.enabled:
                continue
            if x.ndim == 2 and stage.name != "beam":
                x = x[:, 0]
            x = stage.capture(x)
        return x[:, 0].copy() if x.ndim == 2 else x

    def status(self) -> dict:
        return {"enabled": [s.name for s in self.stages if s.name in self.enabled],
                **{s.name: s.status() for s in self.stages}}


def build_processor(sample_rate: int, frame_size: int, *, stages: Iterable[str] = STAGE_NAMES,
                    geometry=(), disabled: Iterable[str] = (),
                    beam_method: str = "delay-and-sum", beam_loading: float | None = None) -> AudioProcessor:
    """Make the stages named in ``stages`` (in that order) and chain them.

    ``beam`` needs a geometry with two or more mics and is left out for a single mic;
    ``beam_method``/``beam_loading`` choose the beam (see media.audio.beamformer.Beamformer).
    ``aec`` also lowers stationary noise unless an ``ns`` stage is in the list.
    Raises AudioConfigError naming an unknown or repeated stage.
    """
    order = list(stages)
    for name in order:
        if name not in STAGE_NAMES:
            raise AudioConfigError(f"audio.stages: unknown stage '{name}'; expected some of "
                                   f"{', '.join(STAGE_NAMES)}")
    if len(set(order)) != len(order):
        raise AudioConfigError(f"audio.stages: each stage at most once, got {', '.join(order)}")
    if beam_method not in BEAM_METHODS:
        raise AudioConfigError(f"audio.beam_method: unknown beam '{beam_method}'; expected one of "
                               f"{', '.join(BEAM_METHODS)}")
    made: list[AudioStage] = []
    for name in order:
        if name == "beam":
            if len(geometry) >= 2:
                made.append(BeamformerStage(geometry, sample_rate, frame_size, method=beam_method,
                                            loading=beam_loading))
        elif name == "aec":
            # The canceller reduces noise in its own suppressor, jointly with the echo; with
            # an ns stage configured it leaves that job to the stage.
            made.append(EchoCancellerStage(sample_rate, frame_size, denoise="ns" not in order))
        elif name == "ns":
            made.append(NoiseSuppressorStage(frame_size))
        else:
            made.append(GainControlStage())
    return AudioProcessor(made, frame_size, disabled=[d for d in disabled
                                                      if d in {s.name for s in made}])
