"""Speech to text. Provider modules are imported by their full path (optional dependencies), e.g.
`from voxframe.processors.stt.whisper import WhisperSTTService`.
"""
