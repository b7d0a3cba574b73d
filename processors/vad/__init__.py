"""Voice activity detection and turn-taking: Silero (onnxruntime) or webrtcvad, barge-in."""

from .analyzer import VADAnalyzer, score_windows
from .processor import VADOptions, VADProcessor
from .recovery import ReplyRecovery
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
    "ReplyRecovery",
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
