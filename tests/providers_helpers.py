"""Shared pieces for the provider and fake tests: a scripted user's audio, and small waits."""

from __future__ import annotations

import numpy as np

from voxframe.pipeline import (
    UP,
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Direction,
    Frame,
    FrameProcessor,
    InputAudioFrame,
    UserPausedSpeakingFrame,
    UserResumedSpeakingFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)

RATE = 16_000
FRAME_S = 0.02
FRAME_BYTES = int(RATE * FRAME_S) * 2


def speech(seconds: float, rate: int = RATE) -> bytes:
    """Loud enough to be speech for an energy detector: a 200 Hz tone at about -12 dBFS."""
    t = np.arange(round(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 200 * t)).astype("<i2").tobytes()


def pink_noise(seconds: float, rate: int = RATE, *, seed: int = 3) -> bytes:
    """Pink (1/f) noise at about -15 dBFS: as loud as `speech`, but no voice in it."""
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n)
    return np.clip(noise * (5600 / noise.std()), -32768, 32767).astype("<i2").tobytes()


def noise_burst(seconds: float, rate: int = RATE, *, seed: int = 5) -> bytes:
    """A bang: white noise at about -10 dBFS."""
    noise = np.random.default_rng(seed).normal(0.0, 10000.0, round(seconds * rate))
    return np.clip(noise, -32768, 32767).astype("<i2").tobytes()


def silence(seconds: float, rate: int = RATE) -> bytes:
    return bytes(2 * round(seconds * rate))


def frames(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Cut PCM into 20 ms frames, as a transport delivers it."""
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]


class ScriptedUser(FrameProcessor):
    """A user at the head of a pipeline: speaks PCM in 20 ms frames, with the VAD's events.

    It stands in for the input transport and the VAD (another area's): `UserStarted`/`Stopped`
    both ways around the speech. Whether that interrupts the bot is the turn controller's call.
    """

    def __init__(self) -> None:
        super().__init__(name="user")
        self.bot_speaking = False
        self.up: list[Frame] = []

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is UP:
            self.up.append(frame)
            if isinstance(frame, BotStartedSpeakingFrame):
                self.bot_speaking = True
            elif isinstance(frame, BotStoppedSpeakingFrame):
                self.bot_speaking = False
        await self.push(frame, direction)

    async def say(self, pcm: bytes, *, trailing_silence_s: float = 0.4) -> None:
        await self.start()
        await self.audio(pcm)
        await self.push(UserStoppedSpeakingFrame(speech_end_ns=self.clock.now_ns()))
        await self.audio(silence(trailing_silence_s))

    async def start(self) -> None:
        await self.push(UserStartedSpeakingFrame(speech_start_ns=self.clock.now_ns()))

    async def audio(self, pcm: bytes) -> None:
        for chunk in frames(pcm):
            await self.push(InputAudioFrame(audio=chunk, sample_rate=RATE))

    async def pause(self, pcm_before: bytes) -> None:
        """Say `pcm_before`, then pause as the VAD would announce it (the turn goes on)."""
        await self.audio(pcm_before)
        await self.push(UserPausedSpeakingFrame(speech_end_ns=self.clock.now_ns()))

    async def resume(self, pcm: bytes, *, trailing_silence_s: float = 0.4) -> None:
        """Go on after a pause, and end the turn."""
        await self.push(UserResumedSpeakingFrame())
        await self.audio(pcm)
        await self.push(UserStoppedSpeakingFrame(speech_end_ns=self.clock.now_ns()))
        await self.audio(silence(trailing_silence_s))


__all__ = ["FRAME_BYTES", "FRAME_S", "RATE", "ScriptedUser", "frames", "noise_burst", "pink_noise", "silence", "speech"]
