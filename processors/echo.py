"""`AudioEcho`: the caller's audio straight back as bot audio.

The smallest bot there is; transport tests and the round-trip and capacity benchmarks use it
to measure the transport alone.
"""

from __future__ import annotations

from voxframe.pipeline import DOWN, Direction, Frame, FrameProcessor, InputAudioFrame, OutputAudioFrame


class AudioEcho(FrameProcessor):
    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, InputAudioFrame) and direction is DOWN:
            await self.push(OutputAudioFrame(audio=frame.audio, sample_rate=frame.sample_rate))
            return
        await self.push(frame, direction)
