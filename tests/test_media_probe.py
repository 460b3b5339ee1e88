"""Preflight: what ffprobe-based probing accepts, normalises and refuses, with plain reasons."""

from __future__ import annotations

import http.server
import os
import threading
from dataclasses import replace
from pathlib import Path

import mediagen as g
import pytest

from daemon.core import messages
from daemon.core.config import MediaConfig
from daemon.core.errors import JobRejected
from daemon.worker.media import process
from daemon.worker.media.preflight import check_audio, check_video, preflight
from daemon.worker.media.probe import describe, probe, probe_argv

CFG = MediaConfig()


def rejected(fn, *args) -> JobRejected:  # type: ignore[no-untyped-def]
    with pytest.raises(JobRejected) as info:
        fn(*args)
    exc = info.value
    for lang in messages.LANGUAGES:  # every code we raise reads as a sentence in both languages
        text = messages.render(exc.code, lang, exc.params)
        assert "{" not in text.what + text.todo, text
    return exc


def test_plain_clip_probes_streams_rate_and_duration(tmp_path: Path) -> None:
    info = probe(g.clip(tmp_path / "a.mp4", seconds=2, fps="25"), CFG)
    assert info.video is not None and info.audio is not None
    assert (info.video.width, info.video.height, info.video.fps) == (160, 120, 25.0)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.frame_estimate == 50 and not info.is_still and not info.video.vfr


def test_rotated_phone_video_reports_upright_size(tmp_path: Path) -> None:
    src = g.clip(tmp_path / "a.mp4", size="160x96")
    g.ff("-i", src, "-c", "copy", "-metadata:s:v", "rotate=90", tmp_path / "rot.mp4")
    info = probe(tmp_path / "rot.mp4", CFG)
    assert info.video is not None and info.video.rotation in (90, 270)
    assert (info.video.width, info.video.height) == (96, 160)


def test_cover_art_in_audio_file_is_ignored_not_taken_as_video(tmp_path: Path) -> None:
    wav = g.tone(tmp_path / "t.wav", 1.0)
    png = g.astronaut_png(tmp_path / "cover.png")
    g.ff("-i", wav, "-i", png, "-map", "0", "-map", "1", "-c:a", "aac", "-c:v", "png",
         "-disposition:v", "attached_pic", tmp_path / "song.m4a")
    info = check_audio(probe(tmp_path / "song.m4a", CFG), CFG)
    assert info.cover_art and info.video is None and info.audio is not None
    assert rejected(check_video, info, CFG).code == "media_audio_as_video"


def test_still_image_is_a_static_presenter(tmp_path: Path) -> None:
    info = check_video(probe(g.astronaut_png(tmp_path / "face.png"), CFG), CFG)
    assert info.is_still and info.frame_estimate == 1 and info.video is not None
    assert (info.video.width, info.video.height) == (512, 512)


def test_zero_byte_file_is_rejected_as_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert rejected(probe, tmp_path / "empty.mp4", CFG).code == "file_empty"


def test_truncated_mp4_without_index_is_rejected_as_incomplete(tmp_path: Path) -> None:
    src = g.clip(tmp_path / "a.mp4", seconds=2)  # no faststart: moov sits at the end
    data = src.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    exc = rejected(probe, tmp_path / "cut.mp4", CFG)
    assert exc.code == "media_unreadable" and "incomplete" in str(exc)


def test_text_file_named_mp4_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("meeting notes, not a video\n" * 20)
    assert rejected(probe, tmp_path / "notes.mp4", CFG).code == "media_unreadable"


def test_audio_only_file_given_as_video_is_rejected(tmp_path: Path) -> None:
    g.tone(tmp_path / "speech.m4a", 1.0, codec=("-c:a", "aac"))
    exc = rejected(preflight, tmp_path / "speech.m4a", tmp_path / "speech.m4a", CFG)
    assert exc.code == "media_audio_as_video" and "only sound" in str(exc)


def test_video_without_sound_given_as_audio_is_rejected(tmp_path: Path) -> None:
    silent = g.clip(tmp_path / "silent.mp4", audio=False)
    assert rejected(check_audio, probe(silent, CFG), CFG).code == "media_no_audio"


def test_audio_shorter_than_one_window_is_rejected(tmp_path: Path) -> None:
    short = g.tone(tmp_path / "blip.wav", 0.12)
    exc = rejected(check_audio, probe(short, CFG), CFG)
    assert exc.code == "media_too_short" and "0.12" in str(exc)


def test_audio_longer_than_limit_is_rejected(tmp_path: Path) -> None:
    cfg = replace(CFG, max_duration_min=0.01)  # 0.6 s
    exc = rejected(check_audio, probe(g.tone(tmp_path / "long.wav", 2.0), cfg), cfg)
    assert exc.code == "media_too_long"


def test_picture_larger_than_limit_is_rejected(tmp_path: Path) -> None:
    cfg = replace(CFG, max_dimension=128)
    exc = rejected(check_video, probe(g.clip(tmp_path / "a.mp4"), cfg), cfg)
    assert exc.code == "media_limits" and "160x120" in str(exc)


def test_file_larger_than_limit_is_rejected_before_probing(tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    with open(big, "wb") as fh:
        fh.truncate(2 * 1024 * 1024)
    assert rejected(probe, big, replace(CFG, max_file_mb=1)).code == "file_too_large"


def test_describe_lists_what_will_be_normalised(tmp_path: Path) -> None:
    src = g.clip(tmp_path / "odd.mkv", vf="scale=161:121", vcodec=("-c:v", "libx264", "-pix_fmt", "yuv444p"),
                 ar=96000, channels=6)
    text = describe(src, CFG)
    assert "161x121" in text and "odd size → even" in text and "yuv444p → yuv420p" in text
    assert "96000 Hz 6 ch" in text and "16 kHz mono" in text


# --- playlists disguised as video: refused, and the file they point to is never opened ---------------


class Tripwire:
    """A FIFO standing in for another user's file: opening it for reading trips the wire."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened_during_probe = False
        self._probe_over = False
        self._thread = threading.Thread(target=self._wait, daemon=True)
        self._thread.start()

    def _wait(self) -> None:
        fd = os.open(self.path, os.O_WRONLY)  # blocks until someone opens the FIFO for reading
        self.opened_during_probe = not self._probe_over
        os.close(fd)

    def disarm(self) -> bool:
        self._probe_over = True
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)  # release the waiting writer
        self._thread.join(5)
        os.close(fd)
        return self.opened_during_probe


class Listener:
    """A loopback HTTP server that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.requests.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def hls(target: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{target}\n#EXT-X-ENDLIST\n"


def dash(target: str) -> str:
    return ('<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" '
            'mediaPresentationDuration="PT2S" minBufferTime="PT1S" '
            'profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">'
            '<Period><AdaptationSet mimeType="video/mp4">'
            '<Representation id="1" bandwidth="1000" codecs="avc1.42c01e" width="160" height="120">'
            f'<BaseURL>{target}</BaseURL><SegmentBase/></Representation></AdaptationSet></Period></MPD>\n')


@pytest.mark.parametrize("kind,text,victim", [("HLS", hls, "victim.ts"), ("DASH", dash, "victim.mp4")])
def test_playlist_named_mp4_is_rejected_and_never_reads_its_target(tmp_path: Path, kind: str, text,  # type: ignore[no-untyped-def]
                                                                   victim: str) -> None:
    wire = Tripwire(tmp_path / victim)
    web = Listener()
    target = str(wire.path) if kind == "HLS" else "file://" + str(wire.path)
    decoy = tmp_path / "lesson.mp4"
    decoy.write_text(text(target))
    web_decoy = tmp_path / "web.mp4"
    web_decoy.write_text(text(f"{web.url}/stolen.{victim.split('.')[1]}"))
    try:
        for path in (decoy, web_decoy):
            exc = rejected(probe, path, CFG)
            assert exc.code == "media_playlist" and kind in str(exc)
            # the ffprobe layer on its own (no sniffing in front) refuses the playlist too
            done = process.run(probe_argv(CFG, path, still=False), 30, capture_stdout=True)
            assert done.returncode != 0 and "not on whitelist" in done.stderr_tail
    finally:
        web.close()
        opened = wire.disarm()
    assert not opened, f"{kind} decoy made ffprobe open the file it points to"
    assert web.requests == []


def test_tripwire_detects_an_unhardened_probe_opening_the_target(tmp_path: Path) -> None:
    """Control: without the allowlists Debian's ffprobe follows the playlist, and the wire trips."""
    wire = Tripwire(tmp_path / "victim.mp4")
    decoy = tmp_path / "lesson.mp4"
    decoy.write_text(dash("file://" + str(wire.path)))
    try:
        process.run(["ffprobe", "-v", "error", str(decoy)], 30)
    finally:
        opened = wire.disarm()
    assert opened


def test_decoding_stops_past_the_limit_even_if_the_header_understates_length(tmp_path: Path) -> None:
    from daemon.worker.media.decoder import read_model_audio
    from daemon.worker.media.preflight import check_decoded_audio

    cfg = replace(CFG, max_duration_min=0.01)  # 0.6 s; decoding may run to 1.6 s, never to the full 5 s
    speech = g.tone(tmp_path / "long.wav", 5.0)
    samples, _ = read_model_audio(cfg, probe(speech, CFG), tmp_path / "a.wav", 30)
    assert samples <= 1.6 * 16000 + 1
    assert rejected(check_decoded_audio, "long.wav", samples / 16000, cfg).code == "media_too_long"
