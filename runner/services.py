"""Which speech-to-text, LLM and text-to-speech a bot uses, chosen from the environment.

A key picks the cloud service, its absence the embedded model, so the same bot file runs with
no key and no network, or against the real providers, or against the local fakes:

| role | cloud, when set | base URL override | otherwise |
|---|---|---|---|
| STT | Deepgram: `DEEPGRAM_API_KEY` | `DEEPGRAM_URL` (or `DEEPGRAM_BASE_URL`) | Whisper tiny.en |
| LLM | OpenAI or compatible: `OPENAI_API_KEY` or `OPENAI_BASE_URL` | `OPENAI_BASE_URL` | offline responder |
| TTS | Cartesia: `CARTESIA_API_KEY` | `CARTESIA_URL` (or `CARTESIA_BASE_URL`) | Piper (joe voice) |

`python -m voxframe.fakes` prints exactly these variables for its fake servers.
`DEEPGRAM_ENDPOINTING_MS` tunes Deepgram's own end-of-speech pause (`false`: off, so the final
comes only when the VAD's stop sends Finalize); `OPENAI_MODEL` picks the model (gpt-4o).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from voxframe.pipeline import FrameProcessor
from voxframe.processors.llm import LLMService
from voxframe.processors.tts import TTSService

STTChoice = Literal["deepgram", "whisper"]
LLMChoice = Literal["openai", "offline"]
TTSChoice = Literal["cartesia", "piper"]


def _first(env: Mapping[str, str], *names: str) -> str | None:
    return next((env[name] for name in names if env.get(name)), None)


@dataclass(frozen=True, slots=True)
class Services:
    """The providers picked for a bot; `stt()`, `llm()`, `tts()` make a fresh processor per call."""

    stt_choice: STTChoice
    llm_choice: LLMChoice
    tts_choice: TTSChoice
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Services:
        env = dict(os.environ if env is None else env)
        return cls(
            stt_choice="deepgram" if env.get("DEEPGRAM_API_KEY") else "whisper",
            llm_choice="openai" if _first(env, "OPENAI_API_KEY", "OPENAI_BASE_URL") else "offline",
            tts_choice="cartesia" if env.get("CARTESIA_API_KEY") else "piper",
            env=env,
        )

    @property
    def embedded(self) -> bool:
        return (self.stt_choice, self.llm_choice, self.tts_choice) == ("whisper", "offline", "piper")

    def describe(self) -> str:
        """One line per role: what was chosen and why (printed by the runner at start)."""
        env = self.env
        stt = (
            f"Deepgram at {_first(env, 'DEEPGRAM_URL', 'DEEPGRAM_BASE_URL') or 'api.deepgram.com'} (DEEPGRAM_API_KEY)"
            if self.stt_choice == "deepgram"
            else "Whisper tiny.en, embedded (set DEEPGRAM_API_KEY for Deepgram)"
        )
        llm = (
            f"OpenAI-compatible at {env.get('OPENAI_BASE_URL') or 'api.openai.com'}"
            if self.llm_choice == "openai"
            else "offline responder, not a language model (set OPENAI_API_KEY or OPENAI_BASE_URL)"
        )
        tts = (
            f"Cartesia at {_first(env, 'CARTESIA_URL', 'CARTESIA_BASE_URL') or 'api.cartesia.ai'} (CARTESIA_API_KEY)"
            if self.tts_choice == "cartesia"
            else "Piper, embedded (set CARTESIA_API_KEY for Cartesia)"
        )
        return f"STT: {stt}\nLLM: {llm}\nTTS: {tts}"

    # --- processors ------------------------------------------------------------------------------

    def stt(self) -> FrameProcessor:
        if self.stt_choice == "deepgram":
            from voxframe.processors.stt.deepgram import DeepgramOptions, DeepgramSTT

            options = DeepgramOptions(
                api_key=self.env.get("DEEPGRAM_API_KEY"), url=_first(self.env, "DEEPGRAM_URL", "DEEPGRAM_BASE_URL")
            )
            endpointing = self.env.get("DEEPGRAM_ENDPOINTING_MS", "").strip().lower()
            if endpointing:
                options.endpointing_ms = None if endpointing == "false" else int(endpointing)
            return DeepgramSTT(options)
        from voxframe.processors.stt.whisper import WhisperSTT

        return WhisperSTT()

    def llm(self) -> LLMService:
        if self.llm_choice == "openai":
            from voxframe.processors.llm.openai import OpenAILLM, OpenAIOptions

            return OpenAILLM(
                OpenAIOptions(
                    model=self.env.get("OPENAI_MODEL", "gpt-4o"),
                    api_key=self.env.get("OPENAI_API_KEY"),
                    base_url=self.env.get("OPENAI_BASE_URL"),
                )
            )
        from voxframe.processors.llm.offline import OfflineLLM

        return OfflineLLM()

    def tts(self) -> TTSService:
        if self.tts_choice == "cartesia":
            from voxframe.processors.tts.cartesia import CartesiaOptions, CartesiaTTS

            return CartesiaTTS(
                CartesiaOptions(
                    api_key=self.env.get("CARTESIA_API_KEY"),
                    url=_first(self.env, "CARTESIA_URL", "CARTESIA_BASE_URL"),
                )
            )
        from voxframe.processors.tts.piper import PiperTTS

        return PiperTTS()

    def warm_up(self) -> None:
        """Load the embedded models this choice uses, once per process (blocking: seconds).

        Every session then starts at once instead of loading them on its first call.
        """
        if self.stt_choice == "whisper":
            from voxframe.processors.stt.whisper import WhisperOptions, load_whisper

            o = WhisperOptions()
            load_whisper(o.model, o.compute_type, o.cpu_threads, o.language)
        if self.tts_choice == "piper":
            from voxframe.processors.tts.piper import load_piper_voice

            load_piper_voice()


__all__ = ["Services"]
