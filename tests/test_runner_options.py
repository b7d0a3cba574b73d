"""The installed runner: options from flags, `VOXFRAME_*` and `.env`; start-up errors in one line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from voxframe.runner import parse_options
from voxframe.runner.turn_credentials import TurnMinter, turn_rest_credentials
from voxframe.transports.webrtc import PortRange

ROOT = Path(__file__).resolve().parent.parent
VOXFRAME = Path(sys.executable).parent / "voxframe"


def test_options_come_from_flags_environment_and_dotenv(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("VOXFRAME_PORT=9000\nVOXFRAME_TOKEN=from-dotenv\nVOXFRAME_HOST=0.0.0.0\n")
    options = parse_options([], env={"VOXFRAME_TOKEN": "from-env"}, dotenv_path=dotenv)
    assert (options.host, options.port, options.token) == ("0.0.0.0", 9000, "from-env")
    options = parse_options(["--port", "9100", "--ice-server", "turn:t.example:3478,u,p"], env={}, dotenv_path=dotenv)
    assert options.port == 9100
    assert [(s.urls, s.username, s.credential) for s in options.ice_servers] == [(["turn:t.example:3478"], "u", "p")]


def test_public_ip_and_udp_ports_come_from_flags_and_environment(tmp_path: Path) -> None:
    none = tmp_path / "none"
    options = parse_options(["--public-ip", "203.0.113.7", "--udp-ports", "40000-40999"], env={}, dotenv_path=none)
    assert (options.public_ip, options.udp_ports) == ("203.0.113.7", PortRange(40000, 40999))
    env = {"VOXFRAME_PUBLIC_IP": "2001:db8::7", "VOXFRAME_UDP_PORTS": "41000-41009"}
    options = parse_options([], env=env, dotenv_path=none)
    assert (options.public_ip, options.udp_ports) == ("2001:db8::7", PortRange(41000, 41009))
    options = parse_options(["--udp-ports", "42000-42000"], env=env, dotenv_path=none)  # the flag wins
    assert options.udp_ports == PortRange(42000, 42000)
    assert parse_options([], env={}, dotenv_path=none).udp_ports is None


def test_the_public_url_and_the_twilio_account_token_come_from_flags_and_environment(tmp_path: Path) -> None:
    none = tmp_path / "none"
    options = parse_options(["--public-url", "https://bot.example.com/"], env={}, dotenv_path=none)
    assert (options.public_url, options.twilio_auth_token) == ("https://bot.example.com", None)
    env = {"VOXFRAME_PUBLIC_URL": "https://calls.example.com:8443", "VOXFRAME_TWILIO_AUTH_TOKEN": "tw"}
    options = parse_options([], env=env, dotenv_path=none)
    assert (options.public_url, options.twilio_auth_token) == ("https://calls.example.com:8443", "tw")


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--udp-ports", "40999-40000"], {}, "--udp-ports"),
        (["--udp-ports", "40000-70000"], {}, "--udp-ports"),
        (["--udp-ports", "forty"], {}, "--udp-ports"),
        ([], {"VOXFRAME_UDP_PORTS": "40000-"}, "--udp-ports"),
        (["--public-ip", "bot.example.com"], {}, "--public-ip"),
        ([], {"VOXFRAME_PUBLIC_IP": "1.2.3"}, "--public-ip"),
        (["--public-url", "bot.example.com"], {}, "--public-url"),
        ([], {"VOXFRAME_PUBLIC_URL": "https://bot.example.com/voice"}, "--public-url"),
    ],
)
def test_a_bad_port_range_or_public_ip_is_one_line(
    argv: list[str], env: dict[str, str], named: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options(argv, env=env, dotenv_path=tmp_path / "none")
    assert exited.value.code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(error) == 1 and f"argument {named}:" in error[0], error


def test_a_public_host_needs_a_token(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_options(["--host", "0.0.0.0"], env={}, dotenv_path=tmp_path / "none")
    assert "--token" in capsys.readouterr().err
    assert parse_options(["--host", "0.0.0.0", "--insecure-no-token"], env={}, dotenv_path=tmp_path / "x").token is None


def test_turn_credentials_follow_coturns_rest_scheme() -> None:
    username, credential = turn_rest_credentials("s3cret", "alice", 1700000000)
    assert username == "1700000000:alice"
    expected = base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()).decode()
    assert credential == expected
    first, second = TurnMinter("s3cret", ("turn:127.0.0.1:3478",))(), TurnMinter("s3cret", ("turn:127.0.0.1:3478",))()
    assert first[0]["urls"] == ["turn:127.0.0.1:3478"] and first[0]["username"] != second[0]["username"]


def test_a_busy_port_is_one_line_before_any_model_loads() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [str(VOXFRAME), "run", "bots/example.py", "--port", str(port)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"voxframe: cannot serve on 127.0.0.1:{port}: "
        f"error while attempting to bind on address ('127.0.0.1', {port}): address already in use"
    ]
    assert "loading embedded models" not in result.stdout


def test_a_call_the_bot_never_answers_says_so_in_one_line(tmp_path: Path) -> None:
    """--call against a bot that never replies: the timeout is reported as such, not as a port error."""
    bot = tmp_path / "silent_bot.py"
    bot.write_text(
        "from voxframe.pipeline import Pipeline\n"
        "from voxframe.runner import run_bot\n"
        "run_bot(lambda bot: Pipeline([bot.input, bot.output]))\n"
    )
    question = ROOT / "bots" / "assets" / "what_time_is_it.wav"
    command = [sys.executable, str(bot), "--no-warm-up", "--call", str(question), "--reply-timeout", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "no reply from the bot within 2 s"
    assert "cannot serve" not in result.stderr
