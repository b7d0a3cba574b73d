"""voxframe's runtime: frames, processors, composition, the task, clock and tracing."""

from .clock import Clock, MonotonicClock, VirtualClock, now_ns, use_clock
from .context import LLMContext, Tool
from .frames import *  # noqa: F403  (the frame vocabulary is the public API)
from .frames import __all__ as _frame_names
from .observer import Observer
from .pipeline import ParallelPipeline, Pipeline
from .processor import DOWN, UP, Direction, FrameProcessor, ProcessorContext
from .task import PipelineError, PipelineParams, PipelineRunner, PipelineTask
from .tracing import Tracer
from .turns import Turns, UserTurnGate

__all__ = [
    *_frame_names,
    "Clock",
    "DOWN",
    "Direction",
    "FrameProcessor",
    "LLMContext",
    "MonotonicClock",
    "Observer",
    "ParallelPipeline",
    "Pipeline",
    "PipelineError",
    "PipelineParams",
    "PipelineRunner",
    "PipelineTask",
    "ProcessorContext",
    "Tool",
    "Tracer",
    "Turns",
    "UP",
    "UserTurnGate",
    "VirtualClock",
    "now_ns",
    "use_clock",
]
