"""Pipecat side of the Smart Turn row of `embedded_models.py`; runs in Pipecat's own virtual environment.

Pipecat's `LocalSmartTurnAnalyzerV3` as shipped (its bundled model, one CPU), given each clip the
way its turn buffer hands a segment over (int16 / 32768). Prints one JSON object:
{"probabilities": [...], "predict_ms": [...]} (the timing on the first clip, after 3 warm-ups).
Usage: python pipecat_smart_turn.py RUNS CLIP.npy [CLIP.npy ...]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from loguru import logger
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3


def main() -> None:
    logger.remove()
    runs, paths = int(sys.argv[1]), sys.argv[2:]
    analyzer = LocalSmartTurnAnalyzerV3(sample_rate=16_000)
    clips = [np.load(path).astype(np.float32) / 32768.0 for path in paths]
    probabilities = [analyzer._predict_endpoint(clip)["probability"] for clip in clips]
    for _ in range(3):
        analyzer._predict_endpoint(clips[0])
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        analyzer._predict_endpoint(clips[0])
        times.append(1000 * (time.perf_counter() - t0))
    print(json.dumps({"probabilities": probabilities, "predict_ms": times}))


if __name__ == "__main__":
    main()
