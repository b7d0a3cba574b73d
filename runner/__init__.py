"""The runner: serve a bot file's pipeline (or call it once), from `run_bot` or `voxframe run`.

from voxframe.runner import run_bot
...
if __name__ == "__main__":
    run_bot(create_pipeline)
"""

from .bot import READY_EVENT, BotServer, BotSession, CallResult, PipelineFactory, call_once, run_bot
from .options import RunnerOptions, StartupError, parse_options
from .services import Services
from .turn_reporter import TurnRecord, TurnReporter

__all__ = [
    "READY_EVENT",
    "BotServer",
    "BotSession",
    "CallResult",
    "PipelineFactory",
    "RunnerOptions",
    "Services",
    "StartupError",
    "TurnRecord",
    "TurnReporter",
    "call_once",
    "parse_options",
    "run_bot",
]
