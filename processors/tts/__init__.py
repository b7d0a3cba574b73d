"""Text to speech: the shared `TTSService` base and sentence streaming.

Provider modules are imported by their full path (they need optional dependencies), e.g.
`from voxframe.processors.tts.cartesia import CartesiaTTS`.
"""

from .base import TTSChunk, TTSOptions, TTSService, estimate_word_timings
from .sentences import SentenceOptions, SentenceSplitter

__all__ = ["SentenceOptions", "SentenceSplitter", "TTSChunk", "TTSOptions", "TTSService", "estimate_word_timings"]
