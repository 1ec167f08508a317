"""The node's JWT, read from a file and re-read when the file changes.

Kubernetes rotates Secret volumes by swapping a symlink, so the file is
identified by the stat of what the path points at (inode, size, mtime); the
check is rate-limited to once per ``check_interval_s``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from facegrid.errors import FacegridError

log = logging.getLogger(__name__)


class TokenFileError(FacegridError, RuntimeError):
    pass


class TokenFile:
    def __init__(self, path: Path, check_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.check_interval_s = check_interval_s
        self._sig: tuple | None = None
        self._token = ""
        self._checked = 0.0
        self._lock = threading.Lock()
        self.reloads = 0
        self.load()

    def _read(self) -> str:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise TokenFileError(f"cannot read token file {self.path}: {e}") from e
        if not text or any(c.isspace() for c in text) or text.count(".") != 2:
            raise TokenFileError(f"{self.path} does not hold a JWT")
        return text

    def load(self) -> str:
        """Read the file now (raises :class:`TokenFileError` if it is unusable)."""
        with self._lock:
            st = os.stat(self.path)
            token = self._read()
            self._sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            changed = token != self._token
            self._token = token
            self._checked = time.monotonic()
            if changed:
                self.reloads += 1
            return token

    @property
    def token(self) -> str:
        """The current token; re-read if the file changed (a bad new file keeps the old)."""
        now = time.monotonic()
        if now - self._checked >= self.check_interval_s:
            self._checked = now
            try:
                st = os.stat(self.path)
                sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError as e:
                log.warning("token file %s unreadable (%s): keeping the current token",
                            self.path, e)
                return self._token
            if sig != self._sig:
                try:
                    old = self._token
                    new = self.load()
                    if new != old:
                        log.info("token file %s changed: using the new token", self.path)
                except (TokenFileError, OSError) as e:
                    log.warning("%s; keeping the current token", e)
        return self._token
