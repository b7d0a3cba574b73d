"""The `voxframe` command: `voxframe run BOT.py [options]` serves a bot file's `create_pipeline`;
`voxframe nginx-config` writes the load balancer's configuration for `--workers N`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

USAGE = (
    "usage: voxframe run BOT.py [options]   (voxframe run --help lists the options)\n"
    "       voxframe nginx-config [options]  (the load balancer for run --workers N)"
)


def load_factory(path: Path):  # -> PipelineFactory
    """The `create_pipeline` of a bot file, imported by path (the file's `__main__` block does not run)."""
    if not path.is_file():
        sys.exit(f"voxframe: no such bot file: {path}")
    spec = importlib.util.spec_from_file_location(f"voxframe_bot_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory = getattr(module, "create_pipeline", None)
    if not callable(factory):
        sys.exit(f"voxframe: {path} defines no create_pipeline(bot) function")
    return factory


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return
    if args[0] == "nginx-config":
        from .nginx import main as nginx_config

        nginx_config(args[1:])
        return
    if args[0] != "run":
        sys.exit(f"voxframe: unknown command {args[0]!r}\n{USAGE}")
    from .bot import run_bot
    from .options import parse_options

    rest = args[1:]
    if not rest or rest[0].startswith("-"):
        parse_options(rest)  # --help (or an option error) needs no bot file
        sys.exit(f"voxframe: which bot file?\n{USAGE}")
    run_bot(load_factory(Path(rest[0])), rest[1:])
