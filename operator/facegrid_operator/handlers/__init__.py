"""kopf handlers: thin functions that take the :class:`~facegrid_operator.context.OperatorContext`
from kopf's ``memo``, call the logic in :mod:`facegrid_operator.reconcile`, and translate
what it raises into kopf's errors (only here).  :mod:`facegrid_operator.operator` registers
them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import kopf

from ..kube import KubeError


def plain(obj: Any) -> Any:
    """kopf's read-only body views as plain dicts and lists (JSON-ready)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def kopf_error(e: KubeError, what: str) -> kopf.TemporaryError | kopf.PermanentError:
    """A Kubernetes API error as the kopf error that says whether to retry, and when."""
    if e.status == 409:  # changed meanwhile: read again at once
        return kopf.TemporaryError(f"{what}: {e}", delay=1)
    if e.status in (0, 429) or e.status >= 500:
        return kopf.TemporaryError(f"{what}: {e}", delay=2)
    if e.status in (401, 403):
        return kopf.TemporaryError(f"{what}: {e} (check the operator's RBAC)", delay=30)
    return kopf.PermanentError(f"{what}: {e}")


class NodeLabels(Mapping[str, Mapping[str, str]]):
    """The ``node_labels`` index (Node name -> its labels) as a plain mapping."""

    def __init__(self, index: kopf.Index) -> None:
        self._index = index

    def __getitem__(self, name: str) -> Mapping[str, str]:
        for labels in self._index[name]:
            return labels
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def pods_of(index: kopf.Index, namespace: str, name: str) -> list[dict]:
    """The camera's pods from the ``camera_pods`` index (no API call)."""
    return list(index.get((namespace, name), ()))
