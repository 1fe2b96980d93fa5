"""Speech-driven mode: live speech -> speech units -> motion tokens, coarse to fine.

    samples (16 kHz) --units.py--> speech units [T] (25 Hz, Whisper-base layer 4 + k-means)
                     --generator.py--> motion tokens [T, 4, 12], layer by layer
                     --stream.py--> the same, live, in 120 ms blocks with 120 ms look-ahead,
                                    the lower face put at rest where vad.py hears no voice

Public API: :func:`speech_to_tokens` (a whole recording),
:class:`SpeechMotionStream` (``push(samples) -> list of [4, 12] frames``), and
for calls :class:`SpeechMotion` (live.py: 48 kHz blocks in on the event loop,
frames out, the generator on its own thread) made by :func:`new_stream`;
``talk-send --audio-only`` and ``talk-recv --animate-from-audio`` use these.
Weights: ``codec/data/speech_units.npz`` and ``codec/data/speech_generator.pt``,
made by ``talk-train speech``; the Whisper weights and the voice-activity
detector (Silero VAD) come from ``requirements/speech.txt``.
"""

from codec.speech.live import FRAME_MS, PCM_RATE, Downsampler, SpeechMotion, frame_media_ms, new_stream
from codec.speech.stream import SpeechMotionStream, speech_to_tokens
from codec.speech.units import SpeechModelMissing

__all__ = ["FRAME_MS", "PCM_RATE", "Downsampler", "SpeechModelMissing", "SpeechMotion", "SpeechMotionStream",
           "frame_media_ms", "new_stream", "speech_to_tokens"]
