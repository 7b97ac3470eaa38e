"""The streams of a source file other than its video, carried into :class:`fastwarp.media.video.VideoWriter`'s
output: each audio stream copied packet for packet where the container takes its codec, else
decoded and re-encoded (e.g. AAC into WebM becomes Opus); each subtitle stream copied where the
container takes it, else named as dropped. The packets are written in time order up to each
video frame's time, so they interleave with the video and keep their own timestamps."""

from __future__ import annotations

import fractions
from pathlib import Path

__all__ = ["Carrier"]


class Carrier:
    """The streams of the source file other than its video, carried into the output: each
    audio stream copied or re-encoded, each subtitle stream copied where the container
    takes it. :meth:`until` writes their packets up to a time, so they interleave with the
    video; :meth:`finish` writes the rest.

    Args:
        source: the file whose streams are carried.
        output: the open output container (``av.open(..., "w")``).
        box: the output's container description (``fastwarp.media.video.CONTAINERS``): which
            audio and subtitle codecs it takes as they are, and its audio encoder otherwise.
    """

    def __init__(self, source: Path, output, box) -> None:
        import av  # (fastwarp.media.video imports this module; av loads with it, on first use)

        self.input = av.open(str(source), "r")
        self.output = output
        self.map: dict[int, tuple[object, bool]] = {}  # input stream index -> (output stream, copied)
        self.dropped: list[str] = []
        self.reencoded: list[str] = []
        self.counts = {"audio": 0, "subtitle": 0}
        for stream in self.input.streams:
            name = stream.codec_context.name if stream.codec_context is not None else "?"
            if stream.type == "audio":
                if name in box.audio_copy:
                    out = output.add_stream_from_template(stream)
                    self.map[stream.index] = (out, True)
                else:
                    rate = stream.codec_context.sample_rate or 48000
                    if box.audio_encoder == "libopus":
                        rate = 48000  # Opus encodes at 48 kHz only
                    out = output.add_stream(box.audio_encoder, rate=rate)
                    layout = stream.codec_context.layout
                    if layout is not None:
                        out.codec_context.layout = layout.name if len(layout.channels) <= 2 else "stereo"
                    out.codec_context.time_base = fractions.Fraction(1, rate)
                    self.map[stream.index] = (out, False)
                    self.reencoded.append(f"{name} -> {box.audio_encoder}")
                for key, value in stream.metadata.items():
                    if key in ("language", "title", "handler_name"):
                        out.metadata[key] = value
                self.counts["audio"] += 1
            elif stream.type == "subtitle":
                if name in box.subtitle_copy:
                    self.map[stream.index] = (output.add_stream_from_template(stream), True)
                    self.counts["subtitle"] += 1
                else:
                    self.dropped.append(f"subtitle {name}")
        self._packets = self.input.demux([s for s in self.input.streams if s.index in self.map]) if self.map else iter(())
        self._pending = None
        self.done = not self.map

    def _mux(self, packet) -> None:
        out, copied = self.map[packet.stream.index]
        if copied:
            packet.stream = out
            self.output.mux(packet)
            return
        for frame in packet.decode():
            frame.pts = None  # the encoder counts samples from the first frame on
            for encoded in out.encode(frame):
                self.output.mux(encoded)

    def until(self, t: float | None) -> None:
        """Write the carried packets whose time is at most ``t`` seconds (all where None)."""
        if self.done:
            return
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                self.done = True
                return
            if packet.dts is None and packet.size == 0:  # the demuxer's flush packet
                continue
            stamp = packet.dts if packet.dts is not None else packet.pts
            if t is not None and stamp is not None and float(stamp * packet.time_base) > t:
                self._pending = packet
                return
            self._mux(packet)

    def finish(self, end: float | None = None) -> None:
        """Write the rest (up to ``end`` seconds where given), then flush the encoders."""
        self.until(end)
        for out, copied in self.map.values():
            if not copied:
                for encoded in out.encode(None):
                    self.output.mux(encoded)

    def close(self) -> None:
        self.input.close()
