"""The edges of a pipeline: WebRTC and in-memory transports."""
