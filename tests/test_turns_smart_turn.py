"""Smart Turn v3.2 tells a finished question from one cut off mid-sentence, off the event loop.

Each sample is Piper's voice followed by the 0.2 s pause at which a turn policy asks the model.
The cut samples end on a filler or a word that cannot end a sentence. A plain cut text such as
"What is the capital of" is *not* one: Piper speaks any text it is given with sentence-final
intonation, and the model, which judges the sound, calls it complete (0.98): a test on it would
test Piper's prosody, not the model. On every sample here our features and Pipecat 1.14.0's
pipeline (its vendored feature code and session options, run from the wheel) gave the same
probability to six decimals.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import numpy as np
import pytest

from tests.embedded_helpers import RATE, silence, speak
from voxframe.processors.turns.smart_turn import SmartTurnModel, SmartTurnOptions, TurnPrediction

pytestmark = pytest.mark.anyio

COMPLETE = ["What is the capital of France?", "Where is the nearest train station?", "Tell me a joke."]
CUT = ["What is the capital of, uh", "I was wondering if you could", "I want to go to the"]


def at_a_pause(text: str) -> np.ndarray:
    return np.concatenate([speak(text), silence(0.2)])


@pytest.fixture(scope="module")
def model() -> SmartTurnModel:
    return SmartTurnModel()


@pytest.mark.parametrize("text", COMPLETE)
async def test_a_complete_question_scores_complete(model: SmartTurnModel, text: str) -> None:
    prediction = await model.predict(at_a_pause(text))
    assert prediction.complete and prediction.probability > 0.9


@pytest.mark.parametrize("text", CUT)
async def test_a_question_cut_off_mid_sentence_scores_incomplete(model: SmartTurnModel, text: str) -> None:
    prediction = await model.predict(at_a_pause(text))
    assert not prediction.complete and prediction.probability < 0.3


async def test_float32_audio_and_a_long_turn_are_judged_by_their_last_eight_seconds(model: SmartTurnModel) -> None:
    cut = at_a_pause(CUT[0])
    as_float = await model.predict(cut.astype(np.float32) / 32768.0)
    assert as_float == await model.predict(cut)
    # A long turn that ends cut off is incomplete, however it began.
    long_turn = np.concatenate([at_a_pause(COMPLETE[0])] * 5 + [cut])
    assert len(long_turn) > 8 * RATE
    assert not (await model.predict(long_turn)).complete


async def test_the_threshold_decides_complete_from_the_same_probability(model: SmartTurnModel) -> None:
    audio = at_a_pause(COMPLETE[0])
    usual = await model.predict(audio)
    strict = await SmartTurnModel(SmartTurnOptions(threshold=0.999)).predict(audio)
    assert strict == TurnPrediction(complete=False, probability=usual.probability)


class ThreadRecordingModel(SmartTurnModel):
    """Smart Turn that notes the thread each inference ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def predict_sync(self, audio: np.ndarray) -> TurnPrediction:
        self.threads.append(threading.get_ident())
        return super().predict_sync(audio)


async def test_inference_runs_in_a_worker_thread_and_concurrent_turns_each_get_their_verdict() -> None:
    model = ThreadRecordingModel()
    verdicts: dict[str, bool] = {}

    async def judge(text: str) -> None:
        verdicts[text] = (await model.predict(at_a_pause(text))).complete

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for text in (COMPLETE[0], CUT[0]):
                tg.start_soon(judge, text)
    assert verdicts == {COMPLETE[0]: True, CUT[0]: False}
    assert len(model.threads) == 2 and threading.get_ident() not in model.threads


@pytest.mark.parametrize(
    ("audio", "rate", "error", "message"),
    [
        (np.zeros(RATE, np.int16), 48_000, ValueError, "needs 16000 Hz audio, got 48000 Hz"),
        (np.zeros(0, np.int16), RATE, ValueError, "no audio"),
        (np.zeros(RATE, np.int32), RATE, ValueError, "int16 or float32"),
        (np.zeros((RATE, 2), np.int16), RATE, ValueError, "mono"),
        ([0] * RATE, RATE, TypeError, "numpy array"),
    ],
    ids=["48k", "empty", "int32", "stereo", "list"],
)
async def test_bad_audio_gets_a_clear_error_and_the_model_keeps_working(
    model: SmartTurnModel, audio: np.ndarray, rate: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await model.predict(audio, sample_rate=rate)
    assert (await model.predict(at_a_pause(COMPLETE[0]))).complete


@pytest.mark.parametrize(("options", "message"), [({"threshold": 1.0}, "threshold"), ({"threads": 0}, "threads")])
def test_options_out_of_range_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmartTurnOptions(**options)
