"""Checks on what a caller sends, made before anything is built for it.

aiortc trusts its input: an offer without a DTLS fingerprint is accepted and fails later inside
a background task, and a BUNDLE group naming a missing section leaves a peer connection that
cannot even be closed. So the signalling server rejects such input here, with a clear 4xx,
before it creates a session, a peer connection or a socket.
"""

from __future__ import annotations

import json
from typing import Any

from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS

#: Media sections one offer may carry (a browser sends an audio and a data section).
MAX_MEDIA_SECTIONS = 8
_DIRECTIONS = frozenset(("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"))
_HEX = frozenset("0123456789abcdefABCDEF")


class InvalidInput(Exception):
    """A request the server refuses; `status` and `code` become the JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; 400 for anything else, however hostile (deep nesting, huge numbers)."""
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise InvalidInput(400, "bad_json", "the body is nested too deeply") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        # ValueError covers JSONDecodeError and integers beyond Python's digit limit.
        raise InvalidInput(400, "bad_json", f"the body is not valid JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, dict):
        raise InvalidInput(400, "bad_json", "the body must be a JSON object")
    return body


def check_offer(sdp: str, max_candidates: int) -> int:
    """Reject an offer aiortc would mishandle; returns how many candidates it carries.

    Needs: the SDP shape, at most `MAX_MEDIA_SECTIONS` sections, an audio section, a direction
    in each media section (aiortc has no default), a DTLS fingerprint of a supported algorithm
    for every section, one `a=mid` per section, a BUNDLE group naming only sections that exist,
    and at most `max_candidates` candidates.
    """
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0" or not all(len(x) > 1 and x[1] == "=" and x[0].isalpha() for x in lines):
        raise InvalidInput(400, "bad_sdp", "the offer is not an SDP description (lines of the form 'x=...')")
    session_part, sections = _split_sections(lines)
    if not sections:
        raise InvalidInput(400, "no_audio", "the offer has no media sections")
    if len(sections) > MAX_MEDIA_SECTIONS:
        raise InvalidInput(400, "bad_sdp", f"the offer has more than {MAX_MEDIA_SECTIONS} media sections")
    if not any(section[0].startswith("m=audio ") for section in sections):
        raise InvalidInput(400, "no_audio", "the offer has no audio section")
    for section in sections:
        if section[0].startswith(("m=audio ", "m=video ")) and not any(line in _DIRECTIONS for line in section):
            raise InvalidInput(400, "bad_sdp", "every audio or video section needs a direction ('a=sendrecv' ...)")
    session_fingerprint = any(line.startswith("a=fingerprint:") for line in session_part)
    for section in sections:
        fingerprints = [line for line in section if line.startswith("a=fingerprint:")]
        if not fingerprints and not session_fingerprint:
            raise InvalidInput(400, "no_fingerprint", "every media section of the offer needs an 'a=fingerprint'")
        for line in fingerprints:
            _check_fingerprint(line)
    for line in session_part:
        if line.startswith("a=fingerprint:"):
            _check_fingerprint(line)
    _check_bundle(session_part, sections)
    candidates = sum(1 for line in lines if line.startswith("a=candidate:"))
    if candidates > max_candidates:
        raise InvalidInput(
            400, "too_many_candidates", f"the offer carries {candidates} candidates; at most {max_candidates}"
        )
    return candidates


def _split_sections(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    session_part: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session_part.append(line)
    return session_part, sections


def _check_fingerprint(line: str) -> None:
    bits = line.removeprefix("a=fingerprint:").split()
    if len(bits) != 2 or bits[0].lower() not in X509_DIGEST_ALGORITHMS:
        supported = ", ".join(X509_DIGEST_ALGORITHMS)
        raise InvalidInput(400, "bad_fingerprint", f"a fingerprint must be '<{supported}> <hex:hex:...>'")
    octets = bits[1].split(":")
    if not all(len(octet) == 2 and set(octet) <= _HEX for octet in octets):
        raise InvalidInput(400, "bad_fingerprint", "a fingerprint value must be hex octets joined by ':'")


def _check_bundle(session_part: list[str], sections: list[list[str]]) -> None:
    mids = []
    for section in sections:
        own = [line[len("a=mid:") :].strip() for line in section if line.startswith("a=mid:")]
        if len(own) > 1:
            raise InvalidInput(400, "bad_sdp", "a media section of the offer has more than one 'a=mid'")
        mids += own
    if len(set(mids)) != len(mids):
        raise InvalidInput(400, "bad_sdp", "two media sections of the offer share an 'a=mid'")
    for line in session_part:
        bits = line.removeprefix("a=group:").split()
        if line.startswith("a=group:") and bits and bits[0] == "BUNDLE":
            unknown = [item for item in bits[1:] if item not in mids]
            if unknown:
                raise InvalidInput(400, "bad_sdp", f"the BUNDLE group names no such media section: {unknown[0][:40]!r}")
