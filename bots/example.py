"""A minimal bot until the full example lands: a pipeline that reports the audio it is fed.

Run with `python3 dev.py example`.
"""

from __future__ import annotations

import anyio

from voxframe.pipeline import FrameProcessor, InputAudioFrame, Pipeline, PipelineRunner, PipelineTask


class AudioMeter(FrameProcessor):
    """Counts the seconds of user audio that pass through."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0

    async def process(self, frame, direction):  # type: ignore[no-untyped-def]
        if isinstance(frame, InputAudioFrame):
            self.seconds += frame.duration_s
        await self.push(frame, direction)


async def main() -> None:
    meter = AudioMeter()
    task = PipelineTask(Pipeline([FrameProcessor(name="input"), meter, FrameProcessor(name="output")]))
    silence = bytes(640)
    await task.queue_frames(InputAudioFrame(audio=silence, sample_rate=16_000) for _ in range(50))
    await task.stop_when_done()
    await PipelineRunner().run(task)
    print(f"voxframe pipeline ran: {meter.seconds:.2f} s of audio went through")


if __name__ == "__main__":
    anyio.run(main)
