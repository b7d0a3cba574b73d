"""Frame processors: VAD, STT, LLM, TTS, aggregators and filters, one provider per module."""
