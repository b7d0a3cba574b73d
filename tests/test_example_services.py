"""Provider choice from the environment: a key picks the cloud service, its absence the embedded model."""

from __future__ import annotations

from voxframe.runner.services import Services


def test_no_keys_means_the_embedded_models() -> None:
    services = Services.from_env({})
    assert (services.stt_choice, services.llm_choice, services.tts_choice) == ("whisper", "offline", "piper")
    assert services.embedded
    text = services.describe()
    assert "Whisper" in text and "offline responder, not a language model" in text and "Piper" in text
    assert "DEEPGRAM_API_KEY" in text and "OPENAI_API_KEY" in text and "CARTESIA_API_KEY" in text  # how to switch


def test_each_key_switches_its_own_role_only() -> None:
    assert Services.from_env({"DEEPGRAM_API_KEY": "k"}).stt_choice == "deepgram"
    assert Services.from_env({"DEEPGRAM_API_KEY": "k"}).tts_choice == "piper"
    assert Services.from_env({"OPENAI_API_KEY": "k"}).llm_choice == "openai"
    # A compatible server (vLLM, llama.cpp, Ollama) needs no key, only its URL.
    assert Services.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"}).llm_choice == "openai"
    assert Services.from_env({"CARTESIA_API_KEY": "k"}).tts_choice == "cartesia"
    assert Services.from_env({"DEEPGRAM_URL": "ws://127.0.0.1:1"}).stt_choice == "whisper"  # a URL is not a key


def test_the_processors_are_pointed_where_the_environment_says() -> None:
    env = {
        "DEEPGRAM_API_KEY": "dg",
        "DEEPGRAM_BASE_URL": "ws://127.0.0.1:9001",
        "DEEPGRAM_ENDPOINTING_MS": "false",
        "OPENAI_BASE_URL": "http://127.0.0.1:9002/v1",
        "OPENAI_MODEL": "llama-3.1-8b",
        "CARTESIA_API_KEY": "ca",
        "CARTESIA_URL": "ws://127.0.0.1:9003",
    }
    services = Services.from_env(env)
    stt, llm, tts = services.stt(), services.llm(), services.tts()
    assert (stt.options.url, stt.options.api_key, stt.options.endpointing_ms) == ("ws://127.0.0.1:9001", "dg", None)
    assert (llm.options.base_url, llm.options.model) == ("http://127.0.0.1:9002/v1", "llama-3.1-8b")
    assert (tts.options.url, tts.options.api_key) == ("ws://127.0.0.1:9003", "ca")
    assert "ws://127.0.0.1:9001" in services.describe() and "http://127.0.0.1:9002/v1" in services.describe()
