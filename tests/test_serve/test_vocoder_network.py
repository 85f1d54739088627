"""The server streams a vocoder network's waveform (not Griffin-Lim's) as it is made."""

from __future__ import annotations

import httpx
import numpy as np

import ttsstack
from ttsstack.serve import create_app
from ttsstack.tolerances import PCM16

from .conftest import OPTIONS, running_server

TEXT = "Hello there. A vocoder network speaks."


def test_pcm_is_the_vocoder_networks_waveform(tiny_vocoder_compiled):
    voice = ttsstack.load(tiny_vocoder_compiled, backend="onnx-static", options=OPTIONS, compile_if_needed=False)
    with running_server(create_app([voice])) as url:
        body = {"model": "tiny-vocoder", "input": TEXT, "response_format": "pcm"}
        with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=60) as r:
            assert r.status_code == 200
            pieces = list(r.iter_raw())
    received = np.frombuffer(b"".join(pieces), dtype="<i2").astype(np.float32) / 32767.0
    want = voice.synthesize_audio(TEXT)
    assert len(pieces) > 2 and received.shape == want.shape
    assert np.abs(received - np.clip(want, -1, 1)).max() <= PCM16.atol + 1e-7
