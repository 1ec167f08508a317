"""Enrollment: embed a folder of people's photos locally and upload only the embeddings.

``DIR/<person>/<photo>``: one folder per person (the folder name, with ``_``
read as a space, is the person's name).  Each photo is hashed (SHA-256 of the
file), its faces detected and the largest, most central one embedded with the
node's own embedder; only ``(model, image_hash, embedding)`` goes to the
server, which deduplicates on ``(person, model, image_hash)``.  Photos already
enrolled for that person and model are skipped before any embedding work, so a
re-run is fast and changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import numpy as np

from facegrid.contract import API_PREFIX
from facegrid.errors import FacegridError

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


class EnrollError(FacegridError, RuntimeError):
    """Enrollment cannot go on (server unreachable, token refused, bad folder)."""


class Analyzer(Protocol):
    model_id: str

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def embed(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray: ...


@dataclass
class Summary:
    people: int = 0
    photos: int = 0
    enrolled: int = 0
    already_enrolled: int = 0
    no_face: list[Path] = field(default_factory=list)
    several_faces: list[tuple[Path, int]] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.people} people, {self.photos} photos: {self.enrolled} enrolled, "
               f"{self.already_enrolled} already enrolled, {len(self.no_face)} without a face, "
               f"{len(self.unreadable)} unreadable"]
        if self.several_faces:
            out.append(f"{len(self.several_faces)} photos with several faces "
                       "(the largest, most central one was used):")
            out += [f"  {p} ({n} faces)" for p, n in self.several_faces]
        if self.no_face:
            out.append("photos with no face found (not enrolled):")
            out += [f"  {p}" for p in self.no_face]
        if self.unreadable:
            out.append("unreadable photos (not enrolled):")
            out += [f"  {p}: {why}" for p, why in self.unreadable]
        return out


def person_name(folder: Path) -> str:
    return " ".join(folder.name.replace("_", " ").split())


def scan(directory: Path) -> dict[str, list[Path]]:
    """``{person name: sorted photo paths}`` for every sub-folder holding photos."""
    if not directory.is_dir():
        raise EnrollError(f"{directory} is not a folder")
    people: dict[str, list[Path]] = {}
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        photos = sorted(p for p in sub.iterdir()
                        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if photos:
            people.setdefault(person_name(sub), []).extend(photos)
    if not people:
        raise EnrollError(f"{directory} holds no person folders with photos "
                          f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return people


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def main_face(boxes: np.ndarray, width: int, height: int) -> int:
    """Index of the largest, most central face: area discounted by distance from centre."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0,
                                                                   None)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half_diag = max(1.0, float(np.hypot(width, height)) / 2)
    off = np.hypot(cx - width / 2, cy - height / 2) / half_diag  # 0 centre … 1 corner
    return int(np.argmax(area * (1.0 - 0.5 * np.clip(off, 0, 1))))


_PEOPLE = f"{API_PREFIX}/people"


class EnrollClient:
    """The few REST calls enrollment needs (admin token)."""

    def __init__(self, server: str, admin_token: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {admin_token}"},
                                 transport=transport)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, url: str, **kw) -> httpx.Response:
        try:
            r = self.http.request(method, url, **kw)
        except httpx.HTTPError as e:
            raise EnrollError(f"cannot reach the server at {self.http.base_url}: {e}") from e
        if r.status_code == 401:
            raise EnrollError("the server refused the admin token")
        return r

    @staticmethod
    def _fail(r: httpx.Response, what: str):
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text[:200]
        raise EnrollError(f"{what}: HTTP {r.status_code}: {detail}")

    def person_id(self, name: str) -> int:
        """The id of the person called ``name``, created if there is none."""
        r = self._call("POST", _PEOPLE, json={"name": name})
        if r.status_code == 201:
            return int(r.json()["id"])
        if r.status_code == 409:
            found = self._call("GET", _PEOPLE, params={"name": name})
            items = found.json().get("items", []) if found.status_code == 200 else []
            if items:
                return int(items[0]["id"])
        self._fail(r, f"cannot create person {name!r}")
        raise AssertionError  # unreachable

    def known_hashes(self, person_id: int, model: str) -> set[str]:
        hashes: set[str] = set()
        while True:  # every page
            r = self._call("GET", f"{_PEOPLE}/{person_id}/embeddings",
                           params={"model": model, "limit": 1000, "offset": len(hashes)})
            if r.status_code != 200:
                self._fail(r, f"cannot list embeddings of person {person_id}")
            page = r.json()
            hashes |= {e["image_hash"] for e in page["items"]}
            if not page["items"] or len(hashes) >= page["total"]:
                return hashes

    def upload(self, person_id: int, model: str, image_hash: str, embedding: np.ndarray) -> bool:
        raw = np.ascontiguousarray(embedding, dtype="<f4").tobytes()
        r = self._call("POST", f"{_PEOPLE}/{person_id}/embeddings", json={
            "model": model, "image_hash": image_hash,
            "embedding": base64.b64encode(raw).decode()})
        if r.status_code not in (200, 201):
            self._fail(r, f"cannot upload an embedding for person {person_id}")
        return r.status_code == 201


def enroll(people: dict[str, list[Path]], client: EnrollClient,
           analyzer_factory: Callable[[], Analyzer], model: str, *,
           progress: Callable[[Iterable], Iterable] = lambda it: it) -> Summary:
    """Enroll every photo; the analyzer is only built if some photo is new."""
    summary = Summary(people=len(people), photos=sum(len(v) for v in people.values()))
    analyzer: Analyzer | None = None
    work: list[tuple[int, Path]] = []
    for name, photos in people.items():
        pid = client.person_id(name)
        known = client.known_hashes(pid, model)
        for p in photos:
            # Hash first: a photo already enrolled costs no detection or embedding.
            try:
                if known and sha256_file(p) in known:
                    summary.already_enrolled += 1
                    continue
            except OSError:
                pass  # reported as unreadable below
            work.append((pid, p))
    for pid, path in progress(work):
        try:
            digest = sha256_file(path)
            rgb = load_rgb(path)
        except Exception as e:  # PIL raises many types for broken files
            summary.unreadable.append((path, str(e)[:200]))
            continue
        if analyzer is None:
            analyzer = analyzer_factory()
            if analyzer.model_id != model:
                raise EnrollError(f"the embedder is {analyzer.model_id!r}, not {model!r}")
        boxes, _probs = analyzer.detect(rgb)
        if len(boxes) == 0:
            summary.no_face.append(path)
            continue
        best = main_face(boxes, rgb.shape[1], rgb.shape[0]) if len(boxes) > 1 else 0
        if len(boxes) > 1:
            summary.several_faces.append((path, len(boxes)))
        embedding = analyzer.embed(rgb, np.asarray(boxes)[best:best + 1])[0]
        if client.upload(pid, model, digest, embedding):
            summary.enrolled += 1
        else:
            summary.already_enrolled += 1
    return summary
