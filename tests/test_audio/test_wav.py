"""PCM16 conversion, the streaming WAV header and WAV files."""

import io
import wave

import numpy as np
import pytest
import soundfile

from ttsstack.audio import float_to_pcm16, wav_header, write_wav


def test_pcm16_clips_scales_and_is_little_endian():
    audio = np.array([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0, np.nan], np.float32)
    data = float_to_pcm16(audio)
    assert len(data) == 2 * audio.size
    samples = np.frombuffer(data, "<i2")
    np.testing.assert_array_equal(samples, [-32767, -32767, -16384, 0, 8192, 32767, 32767, 0])
    assert data[-6:-4] == (32767).to_bytes(2, "little", signed=True)


def test_header_with_known_length_parses():
    audio = np.sin(np.linspace(0, 20, 1000)).astype(np.float32) * 0.5
    header = wav_header(16000, audio.size)
    assert len(header) == 44
    data = header + float_to_pcm16(audio)
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        assert reader.getnframes() == 1000
        assert reader.readframes(1000) == float_to_pcm16(audio)
    decoded, sample_rate = soundfile.read(io.BytesIO(data), dtype="int16")
    assert sample_rate == 16000
    np.testing.assert_array_equal(decoded, np.frombuffer(float_to_pcm16(audio), "<i2"))


def test_header_for_a_stream_of_unknown_length():
    header = wav_header(22050, None)
    assert len(header) == 44
    assert header[4:8] == b"\xff\xff\xff\xff" and header[40:44] == b"\xff\xff\xff\xff"
    pcm = float_to_pcm16(np.linspace(-1, 1, 500, dtype=np.float32))
    with wave.open(io.BytesIO(header + pcm)) as reader:
        assert reader.getframerate() == 22050
        assert reader.readframes(10**6) == pcm  # reads to the end of the stream
    decoded, sample_rate = soundfile.read(io.BytesIO(header + pcm), dtype="int16")
    assert sample_rate == 22050 and decoded.size == 500


def test_header_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="num_samples"):
        wav_header(22050, -1)
    with pytest.raises(ValueError, match="num_samples"):
        wav_header(22050, 2**31)
    with pytest.raises(ValueError, match="sample_rate"):
        wav_header(0, 10)


def test_write_wav_is_pcm16_and_clipped(tmp_path):
    audio = np.array([0.0, 0.5, -0.5, 1.5, -1.5], np.float32)
    path = tmp_path / "out.wav"
    write_wav(path, audio, 22050)
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (22050, 1, "PCM_16", 5)
    decoded, _ = soundfile.read(str(path), dtype="int16")
    expected = np.frombuffer(float_to_pcm16(audio), "<i2")
    assert np.abs(decoded.astype(int) - expected).max() <= 1
    with pytest.raises(ValueError, match="mono"):
        write_wav(path, np.zeros((2, 5), np.float32), 22050)
