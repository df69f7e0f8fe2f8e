"""Shared test set-up.

ALSA: alsa-lib reads its configuration once per process, so the test PCMs are defined
here, before anything opens ALSA: ``rbcap:INFILE=<raw file>`` captures the file's samples
through the real ``file`` plugin over the ``null`` PCM; ``rbplay:OUTFILE=<raw file>``
plays into a file. Child processes (the CLI) inherit the same definitions.

Hardware-in-the-loop skips: tests/hil.py.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

ASOUNDRC = """
pcm.rbcap {
    @args [ INFILE ]
    @args.INFILE { type string }
    type file
    slave.pcm "null"
    file "/dev/null"
    infile $INFILE
    format "raw"
}
pcm.rbplay {
    @args [ OUTFILE ]
    @args.OUTFILE { type string }
    type file
    slave.pcm "null"
    file $OUTFILE
    format "raw"
}
"""

_alsa_dir = Path(tempfile.mkdtemp(prefix="roombox-alsa-"))
(_alsa_dir / "asoundrc").write_text(ASOUNDRC)
os.environ["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{_alsa_dir / 'asoundrc'}"
# Tests choose their backends through profiles; an override left in a developer's shell
# would silently change what is tested.
for kind in ("CAMERA", "MICROPHONE", "SPEAKER", "BOARD", "GPIO"):
    os.environ.pop(f"ROOMBOX_{kind}_BACKEND", None)
