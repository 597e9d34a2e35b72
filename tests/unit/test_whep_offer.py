"""The checks of a WHEP offer made before any viewer slot is taken: each reason is short, names
what the box supports, and carries no parser exception text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from edged.media.audio import AudioSpec
from edged.media.pipeline import StreamPipeline
from edged.media.webrtc import offer_problem, offer_wants_audio
from edged.metrics import StreamMetrics
from edged.web.adapters import has_sound

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def section(kind: str, *codecs: str) -> str:
    payloads = " ".join(str(96 + n) for n in range(len(codecs)))
    rtpmaps = "".join(f"a=rtpmap:{96 + n} {codec}\r\n" for n, codec in enumerate(codecs))
    return f"m={kind} 9 UDP/TLS/RTP/SAVPF {payloads}\r\nc=IN IP4 0.0.0.0\r\n{rtpmaps}"


def test_an_offer_with_h264_passes() -> None:
    assert offer_problem(HEAD + section("video", "VP8/90000", "H264/90000")) is None
    assert (
        offer_problem(HEAD + section("audio", "opus/48000/2") + section("video", "h264/90000"))
        is None
    )


@pytest.mark.parametrize(
    ("offer", "reason"),
    [
        ("hello", "not an SDP offer"),
        ("", "not an SDP offer"),
        ("v=0\r\nm=video garbage\r\n", "malformed SDP offer"),
        (HEAD + section("audio", "opus/48000/2"), "no video media section"),
        (HEAD + section("video", "VP8/90000", "rtx/90000"), "no H.264 video (it offers VP8)"),
        (HEAD + section("video", "VP9/90000", "AV1/90000"), "(it offers AV1, VP9)"),
        (HEAD + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "no H.264 video; the box sends H.264 only"),
    ],
)
def test_a_bad_offer_has_a_short_reason(offer: str, reason: str) -> None:
    problem = offer_problem(offer)
    assert problem is not None and reason in problem


def test_codec_names_that_are_not_names_stay_out_of_the_reason() -> None:
    problem = offer_problem(
        HEAD + section("video", "<script>x/90000", "A" * 40 + "/90000", "x'y/90000")
    )
    assert problem == "the offer has no H.264 video; the box sends H.264 only"


@given(st.text(max_size=300))
def test_any_body_gets_none_or_a_short_reason_without_exception_text(body: str) -> None:
    problem = offer_problem("v=0\r\n" + body)
    assert problem is None or (len(problem) < 120 and "Error" not in problem)


VIDEO = section("video", "H264/90000")


def test_an_offer_with_audio_passes_and_asks_for_sound() -> None:
    offer = HEAD + section("audio", "opus/48000/2", "PCMU/8000") + VIDEO
    assert offer_problem(offer) is None
    assert offer_wants_audio(offer)
    assert offer_wants_audio(HEAD + VIDEO + section("audio", "OPUS/48000/2") + "a=sendrecv\r\n")


@pytest.mark.parametrize(
    "audio",
    [
        "",  # video only
        section("audio", "PCMU/8000", "PCMA/8000"),  # no Opus
        section("audio", "opus/48000/2") + "a=sendonly\r\n",  # it only sends
        section("audio", "opus/48000/2") + "a=inactive\r\n",
        section("audio", "opus/48000/2").replace("m=audio 9", "m=audio 0"),  # rejected
    ],
)
def test_an_offer_that_does_not_ask_for_opus_sound(audio: str) -> None:
    offer = HEAD + VIDEO + audio
    assert offer_problem(offer) is None
    assert not offer_wants_audio(offer)


def test_a_malformed_offer_asks_for_nothing() -> None:
    assert not offer_wants_audio("v=0\r\nm=audio garbage\r\n")


@dataclass
class Running:
    """A running stream as the live view sees it (a StreamEntry has more)."""

    pipeline: StreamPipeline


def no_parts() -> NoReturn:
    raise AssertionError("the pipeline is never started here")


@pytest.mark.parametrize(
    ("audio", "failure", "expected"),
    [
        (AudioSpec("lavfi", "sine", 48_000, 128_000), "", True),
        (AudioSpec("alsa", "hw:CARD=X,DEV=0", 48_000, 128_000), "audio source ended", False),
        (None, "", False),
    ],
)
def test_the_answer_carries_sound_only_from_a_stream_that_has_some(
    audio: AudioSpec | None, failure: str, expected: bool
) -> None:
    metrics = StreamMetrics(CollectorRegistry())
    pipeline = StreamPipeline("cam", no_parts, no_parts, metrics, audio=audio)
    pipeline.audio_failure = failure
    assert pipeline.has_sound is expected
    assert has_sound(Running(pipeline)) is expected
    assert has_sound(None) is False  # no such stream
