"""`python -m voxframe.runner run bots/example.py`: the `voxframe` command."""

from .cli import main

main()
