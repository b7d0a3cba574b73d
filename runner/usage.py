"""What one session used of each paid service: LLM tokens, TTS characters, seconds of audio.

An observer: providers report usage as `MetricsFrame`s (`prompt_tokens`, `completion_tokens`
from the LLM, `tts_characters` from every TTS), and the caller's audio is counted where the input
transport first pushes it (a streaming STT is sent, and billed for, all of it). The session's end
line prints the totals, and the metrics add them up per worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from voxframe.pipeline import Direction, Frame, FrameProcessor, InputAudioFrame, MetricsFrame, Observer

_BYTES_PER_SAMPLE = 2  # 16-bit PCM


@dataclass(slots=True)
class Usage:
    llm_prompt_tokens: int = 0
    llm_completion_tokens: int = 0
    tts_characters: int = 0
    #: Seconds of the caller's audio the pipeline received (what a streaming STT is sent).
    stt_audio_s: float = 0.0

    def __str__(self) -> str:
        return (
            f"llm_tokens={self.llm_prompt_tokens}+{self.llm_completion_tokens} "
            f"tts_chars={self.tts_characters} stt_audio_s={self.stt_audio_s:.1f}"
        )


class UsageObserver(Observer):
    def __init__(self, usage: Usage | None = None) -> None:
        self.usage = usage or Usage()

    def on_frame(self, src: FrameProcessor, frame: Frame, direction: Direction, t_ns: int) -> None:
        match frame:
            case InputAudioFrame():
                channels = max(1, frame.num_channels)
                self.usage.stt_audio_s += len(frame.audio) / (_BYTES_PER_SAMPLE * channels * frame.sample_rate)
            case MetricsFrame(metric="prompt_tokens"):
                self.usage.llm_prompt_tokens += int(frame.value)
            case MetricsFrame(metric="completion_tokens"):
                self.usage.llm_completion_tokens += int(frame.value)
            case MetricsFrame(metric="tts_characters"):
                self.usage.tts_characters += int(frame.value)


__all__ = ["Usage", "UsageObserver"]
