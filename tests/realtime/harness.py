"""Helpers for the call tests: free ports, a corpus clip, CLI processes, and an in-process fake sender."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from realtime import signaling
from realtime.peer import PeerLink, gathered_description, new_peer_connection
from realtime.protocol import Accept, Hello, Message, Refuse, Start

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CLIP = REPO / "samples" / "clip.mp4"
SAMPLE_PORTRAIT = REPO / "samples" / "portrait.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clip_10s() -> tuple[Path, list[str]]:
    """A talking-head clip of at least 10 s and the sender flags it needs."""
    from codec.train.corpus import corpus_dir

    corpus = corpus_dir() / "clips" / "edtalk_klobuchar.mp4"
    if corpus.exists():
        return corpus, []
    return SAMPLE_CLIP, ["--loop"]


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"talk-recv exited early:\n{proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("talk-recv did not start listening")


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONUNBUFFERED"] = "1"
    return e


def start_receiver(port: int, token: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "receiver.cli", "--listen", f"127.0.0.1:{port}", "--token", token,
                             "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), cwd=REPO)
    wait_listening(port, proc)
    return proc


def run_sender(port: int, token: str, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sender.cli", "--connect", f"ws://127.0.0.1:{port}",
                           "--token", token, "--quiet", *args], capture_output=True, text=True, env=env(),
                          cwd=REPO, timeout=timeout)


def start_sender(port: int, token: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "sender.cli", "--connect", f"ws://127.0.0.1:{port}",
                             "--token", token, "--quiet", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env(), cwd=REPO)


def wait_for_line(proc: subprocess.Popen[str], words: str, timeout: float = 60.0) -> list[str]:
    """Reads ``proc``'s stderr until a line holds ``words``; the lines read."""
    import selectors

    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not sel.select(timeout=0.5):
            continue
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if words in line:
            return lines
    raise AssertionError(f"never saw {words!r}:\n{''.join(lines)}")


def stop(proc: subprocess.Popen[str], timeout: float = 120.0) -> tuple[int, str]:
    """Ctrl-C to a process; its exit code and stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


class FakeRenderer:
    """Stands in for the renderer where pixels do not matter (cheap on a CI box)."""

    def __init__(self) -> None:
        self.calls = 0

    def render(self, landmarks: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.zeros((len(landmarks), 64, 64, 3), np.uint8)


def real_header() -> Any:
    """A stream header this build's receiver accepts."""
    from codec.api import EncoderConfig, make_header
    from codec.bitstream import ReferenceInfo

    ref = ReferenceInfo(frame_index=0, rotation=(0.0, 0.0, 0.0), gaze=(0.0, 0.0, 0.0, 0.0), blink=(0.3, 0.3),
                        mouth_opening=0.0, image_size=(512, 512))
    return make_header(EncoderConfig(), ref)


class FakeSender:
    """Speaks the call protocol from inside a test, sending whatever bytes the test wants."""

    def __init__(self) -> None:
        self.pc = new_peer_connection()
        self.link = PeerLink(self.pc)

    async def connect(self, url: str, token: str) -> None:
        from aiortc import RTCSessionDescription

        answer = await signaling.call(url, token, lambda: gathered_description(self.pc, offer=True))
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await self.link.wait_open()
        self.link.start()
        self.link.send(Start(time.time_ns() // 1000))

    async def hello(self, header_bytes: bytes) -> Message:
        """Sends the stream header; the receiver's Accept or Refuse."""
        self.link.send(Hello(header_bytes))
        while True:
            msg = await asyncio.wait_for(self.link.messages.get(), 30)
            if isinstance(msg, (Accept, Refuse)):
                return msg

    def send_motion(self, data: bytes | str) -> None:
        self.link.motion.send(data)

    async def vanish(self) -> None:
        """Goes silent without a bye, as a crashed or unplugged sender does."""
        if self.link._task is not None:
            self.link._task.cancel()
        self.link.control.remove_all_listeners("message")
        self.link.send = lambda msg: False  # type: ignore[method-assign]

    async def close(self) -> None:
        await self.link.close("test done")


def speech_wav(directory: Path, seconds: float = 8.0) -> Path:
    """Speech to send: a corpus recording when the corpus is here, else a synthetic voiced signal.

    The synthetic one is a 120 Hz glottal-like pulse train through two moving
    formants, in syllables of 200 ms with short pauses: not words, but voiced
    and varying like speech.
    """
    import wave

    from codec.train.corpus import corpus_dir

    corpus = corpus_dir() / "audio" / "musetalk_eng.wav"
    if corpus.exists():
        return corpus
    rate = 16_000
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 15 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    source = sum(np.sin(h * phase) / h for h in range(1, 30))
    formant = np.sin(2 * np.pi * (600 + 300 * np.sin(2 * np.pi * 2.5 * t)) * t) * 0.3
    syllables = (np.sin(2 * np.pi * 2.5 * t) > -0.3).astype(np.float64)
    x = (source * (1 + formant) * syllables * 0.08).clip(-1, 1)
    path = directory / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32767).astype(np.int16).tobytes())
    return path


TURN_USER, TURN_PASSWORD = "talk", "loopback-secret"


def stun_answers(port: int, timeout: float = 0.5) -> bool:
    """Whether a STUN server answers a binding request on 127.0.0.1:``port``."""
    from aioice import stun

    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
    return stun.parse_message(data).transaction_id == request.transaction_id


class TurnServer:
    """Debian's coturn on loopback, for the NAT-traversal tests (``turnserver`` must be installed).

    A context manager: starts the server on a free UDP port, waits until it
    answers STUN, and stops it at exit. :attr:`url` is its ``turn:`` URL.
    """

    def __init__(self, directory: Path) -> None:
        import shutil

        exe = shutil.which("turnserver")
        if exe is None:
            raise FileNotFoundError("turnserver (Debian's coturn) is not installed: apt-get install coturn")
        self.port = free_port()
        self.directory = directory
        self.cmd = [exe, "-n", "--no-cli", "--no-tls", "--no-dtls", "--listening-ip=127.0.0.1",
                    "--relay-ip=127.0.0.1", f"--listening-port={self.port}", "--min-port=49152",
                    "--max-port=65535", "--lt-cred-mech", f"--user={TURN_USER}:{TURN_PASSWORD}",
                    "--realm=talkcodec", "--allow-loopback-peers", f"--pidfile={directory / 'turnserver.pid'}",
                    f"--userdb={directory / 'turndb'}", f"--log-file={directory / 'turnserver.log'}",
                    "--no-stdout-log"]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}"

    def __enter__(self) -> "TurnServer":
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not stun_answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                log = self.directory / "turnserver.log"
                raise AssertionError("turnserver did not start:\n" + (log.read_text()[-2000:] if log.exists() else ""))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
