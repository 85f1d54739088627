"""Griffin-Lim: reconstruction quality, and streamed output identical to whole output."""

import numpy as np
import pytest

from ttsstack.audio import GriffinLim, MelSettings, log_mel_spectrogram

SETTINGS = MelSettings(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80, fmin=0, fmax=8000)


def sine(hz: float, seconds: float) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * 22050)) / 22050)).astype(np.float32)


@pytest.fixture(scope="module")
def speech_like_mel() -> np.ndarray:
    """75 frames of a gliding, fading harmonic tone."""
    t = np.arange(75 * 256) / 22050
    f0 = 150 + 60 * t
    phase = 2 * np.pi * np.cumsum(f0) / 22050
    audio = sum(np.sin(h * phase) / h for h in range(1, 12)) * np.sin(np.pi * t / t[-1]) * 0.2
    return log_mel_spectrogram(audio.astype(np.float32), SETTINGS)[:75]


def test_reconstruction_of_a_sine_has_a_close_log_mel():
    mel = log_mel_spectrogram(sine(440, 0.5), SETTINGS)
    audio = GriffinLim(SETTINGS).vocode(mel)
    assert audio.shape == (mel.shape[0] * 256,) and audio.dtype == np.float32
    again = log_mel_spectrogram(audio, SETTINGS)[: mel.shape[0]]
    # Interior frames (the last ones see different edge padding in the two
    # analyses): same peak bin everywhere, and a mean error under 0.25 nats
    # (about 0.16 in practice; random phases without iterating give about 0.44).
    inside, inside_again = mel[2:-4], again[2:-4]
    assert (inside.argmax(axis=1) == inside_again.argmax(axis=1)).all()
    assert np.abs(inside - inside_again).mean() < 0.25


@pytest.mark.parametrize("chunk_frames", [1, 7, 1000])
@pytest.mark.parametrize("first_block, block, sizes", [(32, 64, [32, 43]), (20, 16, [20, 16, 16, 16, 7])])
def test_streamed_output_equals_whole_output(speech_like_mel, chunk_frames, first_block, block, sizes):
    vocoder = GriffinLim(SETTINGS, block_frames=block, first_block_frames=first_block)
    whole = vocoder.vocode(speech_like_mel)
    chunks = [speech_like_mel[i : i + chunk_frames] for i in range(0, 75, chunk_frames)]
    streamed = list(vocoder.stream(chunks))
    assert [len(c) for c in streamed] == [n * 256 for n in sizes]
    np.testing.assert_allclose(np.concatenate(streamed), whole, rtol=0, atol=1e-6)


def test_block_joins_cost_no_quality(speech_like_mel):
    # Blocked reconstruction (blocks of 32, 32 and 11 frames) is as close to the
    # mel as a single Griffin-Lim pass over the whole utterance, around the
    # joins at frames 32 and 64 too.
    def log_mel_error(vocoder: GriffinLim) -> np.ndarray:
        again = log_mel_spectrogram(vocoder.vocode(speech_like_mel), SETTINGS)[:75]
        error = np.abs(again - speech_like_mel).mean(axis=1)
        return np.array([error[2:-4].mean(), error[28:37].mean(), error[60:68].mean()])

    blocked = log_mel_error(GriffinLim(SETTINGS, block_frames=32))
    single_pass = log_mel_error(GriffinLim(SETTINGS, block_frames=75, overlap_frames=0, crossfade_frames=0))
    assert (blocked <= 1.1 * single_pass).all(), (blocked, single_pass)


def test_audio_is_yielded_as_soon_as_a_block_has_its_right_context(speech_like_mel):
    consumed = []

    def frames():
        for i in range(75):
            consumed.append(i)
            yield speech_like_mel[i : i + 1]

    arrived_at = [len(consumed) for _ in GriffinLim(SETTINGS, n_iter=1, block_frames=16).stream(frames())]
    # Blocks (8 frames, then 16) end at frames 8, 24, 40, 56 and 72 and need the STFT's reach (2 frames
    # at n_fft = 4 * hop) more; the last one (72..75) waits for the end.
    assert arrived_at == [10, 26, 42, 58, 74, 75]


def test_blocks_grow_from_the_first_to_block_frames(speech_like_mel):
    vocoder = GriffinLim(SETTINGS, n_iter=1, first_block_frames=8, block_frames=32, lookahead_frames=8)
    sizes = [len(chunk) // 256 for chunk in vocoder.stream([speech_like_mel])]
    assert sizes == [8, 16, 32, 19]


def test_output_is_deterministic_and_seeded(speech_like_mel):
    mel = speech_like_mel[:20]
    first = GriffinLim(SETTINGS, n_iter=2).vocode(mel)
    np.testing.assert_array_equal(first, GriffinLim(SETTINGS, n_iter=2).vocode(mel))
    assert not np.array_equal(first, GriffinLim(SETTINGS, n_iter=2, seed=1).vocode(mel))


def test_edge_lengths():
    vocoder = GriffinLim(SETTINGS, n_iter=2)
    assert vocoder.vocode(np.zeros((0, 80), np.float32)).shape == (0,)
    assert list(vocoder.stream([])) == []
    assert vocoder.vocode(np.full((1, 80), -5.0, np.float32)).shape == (256,)


def test_rejects_bad_chunks_and_settings():
    vocoder = GriffinLim(SETTINGS)
    with pytest.raises(ValueError, match=r"mel chunk 1 must have shape \[frames, 80\]"):
        list(vocoder.stream([np.zeros((3, 80)), np.zeros((3, 40))]))
    with pytest.raises(ValueError, match="crossfade_frames"):
        GriffinLim(SETTINGS, overlap_frames=2, crossfade_frames=4)
    with pytest.raises(ValueError, match="momentum"):
        GriffinLim(SETTINGS, momentum=1.0)
    with pytest.raises(ValueError, match="first_block_frames must be >= 1"):
        GriffinLim(SETTINGS, first_block_frames=0)
