"""Local fake servers speaking the Deepgram, OpenAI and Cartesia wire protocols."""
