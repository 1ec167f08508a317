"""Frame sources behind one small Protocol, and the camera health monitor.

``open_source(spec)`` understands a webcam index (``0``), a device path
(``/dev/video0``), an ``rtsp://``/``http(s)://`` URL, a video file (optionally
looping, paced at its own frame rate) and a folder of images (paced at
``fps``).  :class:`CameraMonitor` wraps any source: it checks the camera at
start and on every read, marks it down (log line + metric) when frames stop
for ``timeout_s`` or reads fail, and reconnects with exponential backoff.

Frames are RGB ``uint8`` arrays in memory; nothing is written anywhere.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from facegrid.errors import FacegridError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mjpeg", ".mjpg"}


class SourceError(FacegridError, RuntimeError):
    """The camera cannot be opened or stopped giving frames."""


class EndOfStream(FacegridError):
    """A finite source (file, folder, not looping) has no more frames."""


class FrameSource(Protocol):
    description: str

    def open(self) -> None: ...

    def read(self) -> np.ndarray:
        """Next RGB frame; raises SourceError (camera gone) or EndOfStream."""
        ...

    def close(self) -> None: ...


def redact(spec: str) -> str:
    """A camera spec safe for logs and metrics: no credentials in URLs."""
    return re.sub(r"//[^/@]*@", "//***@", spec)


class _Pacer:
    """Sleeps so frames come at ``fps`` (no sleeping when fps is 0)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._next = 0.0

    def wait(self) -> None:
        if not self.period:
            return
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
            self._next += self.period
        else:
            self._next = now + self.period


class OpenCVSource:
    """Webcams, devices, network streams and video files through cv2.VideoCapture."""

    def __init__(self, spec: str, *, loop: bool = False, realtime: bool = True,
                 timeout_s: float = 5.0) -> None:
        self.spec = spec
        self.timeout_s = timeout_s
        self.description = redact(spec)
        self.loop = loop
        self.realtime = realtime
        self.is_file = Path(spec).suffix.lower() in VIDEO_SUFFIXES and "://" not in spec
        self._cap = None
        self._pacer = _Pacer(0)
        self.fps = 0.0

    def open(self) -> None:
        import cv2

        self.close()
        target: int | str = int(self.spec) if self.spec.isdigit() else self.spec
        if self.is_file and not Path(self.spec).is_file():
            raise SourceError(f"video file {self.spec} does not exist")
        if isinstance(target, str) and "://" in target:
            # A stalled network stream must fail a read, not block the node forever.
            ms = int(self.timeout_s * 1000)
            cap = cv2.VideoCapture(target, cv2.CAP_ANY, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open camera {self.description}")
        if not self.is_file:
            # Live cameras: keep one frame queued, so a slow (idle) reader sees now, not then.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not 0 < self.fps < 1000:
            self.fps = 25.0
        self._pacer = _Pacer(self.fps if (self.is_file and self.realtime) else 0)

    def read(self) -> np.ndarray:
        import cv2

        if self._cap is None:
            raise SourceError(f"camera {self.description} is not open")
        self._pacer.wait()
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self.is_file and Path(self.spec).is_file():
                if not self.loop:
                    raise EndOfStream(self.description)
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._cap.read()
            if not ok or bgr is None:
                raise SourceError(f"camera {self.description} gave no frame")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource:
    """A folder of images, in name order, paced at ``fps``; re-listed on every pass."""

    def __init__(self, folder: Path, *, fps: float = 25.0, loop: bool = False,
                 realtime: bool = True) -> None:
        self.folder = Path(folder)
        self.description = str(folder)
        self.loop = loop
        self.fps = fps
        self._pacer = _Pacer(fps if realtime else 0)
        self._files: list[Path] = []
        self._i = 0

    def _list(self) -> list[Path]:
        try:
            return sorted(p for p in self.folder.iterdir()
                          if p.suffix.lower() in IMAGE_SUFFIXES)
        except OSError as e:
            raise SourceError(f"cannot list {self.folder}: {e}") from e

    def open(self) -> None:
        self._files = self._list()
        if not self._files:
            raise SourceError(f"{self.folder} holds no images")
        self._i = 0

    def read(self) -> np.ndarray:
        import cv2

        if self._i >= len(self._files):
            if not self.loop:
                raise EndOfStream(self.description)
            self.open()
        path = self._files[self._i]
        self._i += 1
        self._pacer.wait()
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceError(f"cannot read {path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._files = []


class SizedSource:
    """Delivers frames of ``width``×``height``: live cameras are asked for that mode
    when they open; frames that still differ (files, folders, streams, cameras
    without the mode) are resized."""

    def __init__(self, inner: FrameSource, width: int, height: int) -> None:
        self.inner = inner
        self.size = (width, height)
        self.description = inner.description

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def open(self) -> None:
        self.inner.open()
        cap = getattr(self.inner, "_cap", None)
        if cap is not None and not getattr(self.inner, "is_file", True):
            import cv2

            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])

    def read(self) -> np.ndarray:
        frame = self.inner.read()
        if (frame.shape[1], frame.shape[0]) != self.size:
            import cv2

            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        return frame

    def close(self) -> None:
        self.inner.close()


def open_source(spec: str, *, loop: bool = False, realtime: bool = True,
                fps: float = 25.0, timeout_s: float = 5.0,
                size: tuple[int, int] | None = None) -> FrameSource:
    """The right :class:`FrameSource` for a camera spec (not opened yet).

    ``size`` (width, height) asks a camera for that capture mode and resizes
    any frame that still differs.
    """
    source: FrameSource
    if "://" not in spec and Path(spec).is_dir():
        source = FolderSource(Path(spec), fps=fps, loop=loop, realtime=realtime)
    else:
        source = OpenCVSource(spec, loop=loop, realtime=realtime, timeout_s=timeout_s)
    return SizedSource(source, *size) if size else source


class CameraMonitor:
    """Health of a source: checked at start and on every read, reconnect with backoff."""

    def __init__(self, source: FrameSource, *, timeout_s: float = 5.0,
                 backoff_start_s: float = 0.5, backoff_max_s: float = 30.0,
                 on_state: Callable[[bool], None] | None = None,
                 on_reconnect: Callable[[], None] | None = None,
                 sleep: Callable[[float], bool] | None = None) -> None:
        self.source = source
        self.timeout_s = timeout_s
        self.backoff_start_s = backoff_start_s
        self.backoff_max_s = backoff_max_s
        self._on_state = on_state or (lambda up: None)
        self._on_reconnect = on_reconnect or (lambda: None)
        # sleep(seconds) returns True when the node is stopping.
        self._sleep = sleep or (lambda s: time.sleep(s) or False)
        self.up = False
        self._delay = backoff_start_s
        self._next_try = 0.0
        self.last_frame_at: float | None = None

    def start(self) -> bool:
        """Open the camera and read one frame; False (camera down) if that fails."""
        return self._connect()

    def _connect(self) -> bool:
        try:
            self.source.open()
        except SourceError as e:
            self._down(str(e))
            return False
        self._up()
        return True

    def _up(self) -> None:
        if not self.up:
            log.info("camera %s is up", self.source.description)
        self.up = True
        self._delay = self.backoff_start_s
        self._on_state(True)

    def _down(self, why: str) -> None:
        if self.up or (self.last_frame_at is None and self._delay == self.backoff_start_s):
            log.error("camera %s is DOWN: %s; reconnecting with backoff",
                      self.source.description, why)
        self.up = False
        self._on_state(False)
        self.source.close()

    def read(self) -> np.ndarray | None:
        """A frame, or None while the camera is down (after one backoff wait)."""
        if not self.up:
            if self._sleep(self._delay):
                return None
            self._delay = min(self._delay * 2, self.backoff_max_s)
            self._on_reconnect()
            if not self._connect():
                return None
        t0 = time.monotonic()
        try:
            frame = self.source.read()
        except SourceError as e:
            self._down(str(e))
            return None
        if time.monotonic() - t0 > self.timeout_s:
            log.warning("camera %s took %.1fs for one frame", self.source.description,
                        time.monotonic() - t0)
        self.last_frame_at = time.monotonic()
        return frame

    def close(self) -> None:
        self.source.close()
