"""Sources and gates on real inputs: a stalled network camera, dark frames of a real face."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest


@pytest.mark.integration
def test_stalled_network_camera_times_out_and_is_reported(caplog):
    from facegrid_node.sources import CameraMonitor, OpenCVSource

    with socket.socket() as srv:  # accepts connections, never sends a byte
        srv.bind(("127.0.0.1", 0))
        srv.listen(5)
        url = f"http://user:secret@127.0.0.1:{srv.getsockname()[1]}/video.mjpg"
        states = []
        mon = CameraMonitor(OpenCVSource(url, timeout_s=1.0), on_state=states.append,
                            backoff_start_s=0.05, backoff_max_s=0.1)
        t = time.monotonic()
        assert mon.start() is False
        assert mon.read() is None  # one backoff, one more failed attempt, no hang
        assert time.monotonic() - t < 15
    assert states and not any(states) and mon.up is False
    text = caplog.text
    assert "DOWN" in text and "secret" not in text and "***@" in text


@pytest.mark.models
def test_dark_frames_are_skipped_and_bright_ones_analysed(face_analyzer, lfw_embeddings):
    import cv2
    from facegrid_node.motion import IdleController, MotionDetector
    from facegrid_node.pipeline import FramePipeline
    from facegrid_node.quality import DarknessGate
    from facegrid_node.tracker import IoUTracker, SendRule

    photo = lfw_embeddings["Ariel_Sharon"][0][0]
    rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[100:350, 200:450] = rgb
    dark = (frame * 0.06).astype(np.uint8)  # lights off: the same scene at 6 %
    pipe = FramePipeline(face_analyzer, face_analyzer, tracker=IoUTracker(),
                         rule=SendRule(0.3, 60), gate=DarknessGate(25, 3),
                         motion=MotionDetector(0.004), idle=IdleController(60, 0.0))
    first = pipe.process(frame, 0.0)
    assert first.detected and len(first.outgoing) == 1
    out = first.outgoing[0]
    assert out.quality.brightness > 60 and out.quality.blur > 10
    results = [pipe.process(dark, 0.1 * i) for i in range(1, 8)]
    assert [r.dark for r in results] == [False, False, True, True, True, True, True]
    assert not any(r.detected for r in results[2:])
    assert pipe.gate.episodes == 1


@pytest.mark.models
def test_background_embedding_sends_the_same_faces_later_and_loses_none(face_analyzer,
                                                                       lfw_embeddings):
    """Embedding on a second thread: frames go on being detected while a batch is in
    flight, its faces are sent on the first frame after it finished (or by flush), with
    the embedding the inline pipeline computes for the same frame."""
    import threading

    import cv2
    from facegrid_node.motion import IdleController, MotionDetector
    from facegrid_node.pipeline import FramePipeline
    from facegrid_node.quality import DarknessGate
    from facegrid_node.tracker import IoUTracker, SendRule

    frame = np.full((480, 640, 3), 120, np.uint8)
    for k, name in enumerate(("Ariel_Sharon", "Colin_Powell")):
        photo = lfw_embeddings[name][0][0]
        frame[110:360, 40 + 320 * k:290 + 320 * k] = cv2.cvtColor(cv2.imread(str(photo)),
                                                                  cv2.COLOR_BGR2RGB)
    release = threading.Event()

    class HeldEmbedder:  # the real analyzer, held until the test lets the batch finish
        def embed(self, rgb, boxes):
            assert threading.current_thread() is not threading.main_thread()
            release.wait(30)
            return face_analyzer.embed(rgb, boxes)

    def pipeline(embedder, background):
        return FramePipeline(face_analyzer, embedder, tracker=IoUTracker(),
                             rule=SendRule(0.3, 60), gate=DarknessGate(25, 3),
                             motion=MotionDetector(0.004), idle=IdleController(60, 0.0),
                             background_embed=background)

    inline = pipeline(face_analyzer, False).process(frame, 0.0)
    assert len(inline.outgoing) == 2 and inline.embedded == 2

    pipe = pipeline(HeldEmbedder(), True)
    first = pipe.process(frame, 0.0)
    assert first.detected and len(first.tracks) == 2 and not first.outgoing
    # The batch is held: detection goes on, nothing is embedded twice meanwhile.
    held = [pipe.process(frame, 0.04 * i) for i in range(1, 4)]
    assert all(r.detected and not r.outgoing and r.embedded == 0 for r in held)
    release.set()
    late = pipe.close()  # waits for the batch in flight: its faces are not lost
    assert late.embedded == 2 and len(late.outgoing) == 2
    for got, want in zip(sorted(late.outgoing, key=lambda o: o.box),
                         sorted(inline.outgoing, key=lambda o: o.box), strict=True):
        assert got.box == want.box
        assert float(np.dot(got.embedding, want.embedding)) > 0.9999

    # Without holding: the faces come out on a later frame's result, not only by flush.
    pipe = pipeline(face_analyzer, True)
    results = [pipe.process(frame, 0.0)]
    deadline = time.monotonic() + 30
    while not results[-1].outgoing and time.monotonic() < deadline:
        time.sleep(0.01)
        results.append(pipe.process(frame, 0.04 * len(results)))
    assert len(results) > 1 and len(results[-1].outgoing) == 2
    assert sum(len(r.outgoing) for r in results) == 2
    assert not pipe.close().outgoing
