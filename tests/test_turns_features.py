"""Smart Turn's input, written with numpy, is Whisper's log-mel spectrogram of the turn's last 8 s.

The reference is faster-whisper's own numpy feature extractor (the one its Whisper runs on), given
the same 8 s window normalized the same way: ours agrees within 1e-4 (absolute, on features that
lie in about [-1.5, 1.5]; the reference computes in float32, ours in float64, and they differ by
about 1e-5 at most). Against Pipecat 1.14.0's vendored extractor (transformers' math) the
difference measured 2.4e-7 on the same inputs; that package is not installed here, so that check
is not a test.
"""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor

from tests.embedded_helpers import RATE, silence, speak
from voxframe.processors.turns.features import (
    N_FRAMES,
    N_MELS,
    WINDOW_SAMPLES,
    last_window,
    log_mel,
    normalize,
    smart_turn_features,
)

TOLERANCE = 1e-4


def reference(audio: np.ndarray) -> np.ndarray:
    """faster-whisper's log-mel of the normalized last-8-s window (no extra padding: 800 frames)."""
    return FeatureExtractor(feature_size=N_MELS, chunk_length=8)(normalize(last_window(audio)), padding=0)


def samples() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    question = speak("What is the capital of France?")
    return {
        "speech": np.concatenate([question, silence(0.2)]),
        "speech over 8 s": np.concatenate([speak("Tell me a long story about a dragon in the mountains.")] * 3),
        "noise, float32": (rng.standard_normal(3 * RATE) * 0.05).astype(np.float32),
        "tone": (np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE) * 8000).astype(np.int16),
        "silence": silence(1.0),
    }


@pytest.mark.parametrize("name", list(samples()))
def test_features_match_whisper_log_mel_within_tolerance(name: str) -> None:
    audio = samples()[name]
    ours = smart_turn_features(audio)
    theirs = reference(audio)
    assert ours.shape == theirs.shape == (N_MELS, N_FRAMES)
    assert ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= TOLERANCE


def test_a_short_turn_is_padded_in_front_so_its_end_is_the_last_frame() -> None:
    audio = speak("Tell me a joke.")
    window = last_window(audio)
    assert len(window) == WINDOW_SAMPLES
    assert np.array_equal(window[-len(audio) :], audio.astype(np.float32) / 32768.0)
    assert not window[: WINDOW_SAMPLES - len(audio)].any()
    # The speech shows in the last frames of the spectrogram; the padding's frames are all alike.
    features = smart_turn_features(audio)
    spoken_frames = len(audio) // 160
    assert features[:, -spoken_frames:].std() > 0.1
    assert not np.ptp(features[:, : N_FRAMES - spoken_frames - 2], axis=1).any()


def test_only_the_last_eight_seconds_count() -> None:
    tail = np.concatenate([speak("Tell me a long story about a dragon in the mountains.")] * 3)[-WINDOW_SAMPLES:]
    earlier = (np.random.default_rng(5).standard_normal(4 * RATE) * 9000).astype(np.int16)
    assert np.array_equal(smart_turn_features(np.concatenate([earlier, tail])), smart_turn_features(tail))


def test_int16_and_float32_audio_give_the_same_features_and_loudness_does_not_matter() -> None:
    audio = np.concatenate([speak("Where is the nearest train station?"), silence(0.2)])
    as_float = audio.astype(np.float32) / 32768.0
    assert np.array_equal(smart_turn_features(audio), smart_turn_features(as_float))
    # Normalized before the spectrogram: a quieter microphone gives the same input, but for the
    # variance's eps (1e-7), which moves a 20 dB quieter turn's features by about 3e-4.
    assert np.abs(smart_turn_features(as_float * 0.1) - smart_turn_features(as_float)).max() <= 1e-3


def test_log_mel_gives_one_frame_per_hop() -> None:
    assert log_mel(np.zeros(RATE, np.float32)).shape == (N_MELS, RATE // 160)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (np.zeros((2, RATE), np.int16), "mono audio"),
        (np.zeros(RATE, np.float64), "int16 or float32"),
        (np.full(RATE, np.nan, np.float32), "NaN or infinite"),
    ],
    ids=["stereo", "float64", "nan"],
)
def test_audio_the_model_cannot_take_gets_a_clear_error(audio: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        smart_turn_features(audio)
