"""Voice activity detection: Silero (onnxruntime) or webrtcvad. Turn-taking is `processors/turns`."""

from .analyzer import VADAnalyzer, score_windows
from .processor import VADOptions, VADProcessor
from .silero import SileroVADAnalyzer
from .state import (
    ScoredWindow,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechStateMachine,
    SpeechStopped,
    VADParams,
    VADState,
)
from .webrtc import WebRTCVADAnalyzer

__all__ = [
    "ScoredWindow",
    "SileroVADAnalyzer",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "SpeechStateMachine",
    "SpeechStopped",
    "VADAnalyzer",
    "VADOptions",
    "VADParams",
    "VADProcessor",
    "VADState",
    "WebRTCVADAnalyzer",
    "score_windows",
]
