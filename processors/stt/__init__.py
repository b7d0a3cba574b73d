"""Speech to text. Every STT extends `STTService` (`base.py`), the contract they share.

Provider modules are imported by their full path (they need optional dependencies), e.g.
`from voxframe.processors.stt.deepgram import DeepgramSTT`.
"""
