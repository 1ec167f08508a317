"""``facegrid enroll DIR``: embed people's photos locally, upload only the embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("enroll")(enroll)


def enroll(
    directory: Annotated[Path, typer.Argument(help="One folder per person, holding photos.")],
    server: Annotated[str, typer.Option("--server", envvar="FACEGRID_SERVER_URL",
                                        help="API server URL.")] = "http://127.0.0.1:8000",
    admin_token: Annotated[str | None, typer.Option(
        "--admin-token", envvar="FACEGRID_ADMIN_TOKEN", help="The admin token.")] = None,
    admin_token_file: Annotated[Path | None, typer.Option(
        "--admin-token-file", envvar="FACEGRID_ADMIN_TOKEN_FILE")] = None,
    weights: Annotated[str, typer.Option(
        "--weights", envvar="FACEGRID_WEIGHTS",
        help="casia-webface, vggface2, a state_dict file or an exported ONNX folder "
             "(as the nodes use).")
    ] = "casia-webface",
    backend: Annotated[str, typer.Option(
        "--backend", envvar="FACEGRID_BACKEND",
        help="onnx (default, as the nodes) or torch (the reference; needs the torch extra). "
             "Both give the same model id and embeddings within 1e-4.")] = "onnx",
    onnx_dir: Annotated[Path | None, typer.Option(
        "--onnx-dir", envvar="FACEGRID_ONNX_DIR", help="Folder of exported ONNX files.")
    ] = None,
    int8: Annotated[bool, typer.Option(
        "--int8/--no-int8", envvar="FACEGRID_INT8",
        help="int8 embedder, for nodes that run --int8 (model id '<id>.int8').")] = False,
    min_face_size: Annotated[int, typer.Option(help="Smallest face in pixels.")] = 20,
    margin: Annotated[int, typer.Option(help="Crop margin in pixels (as the nodes).")] = 44,
    flip: Annotated[bool, typer.Option(
        "--flip/--no-flip", help="Mirror-image averaging (as the nodes).")] = True,
    threads: Annotated[int, typer.Option(
        help="Inference threads (0: one per core but one). 1 is the default: on a busy "
             "machine more threads than free cores made embedding 20x slower here.")] = 1,
) -> None:
    """Enroll DIR/<person>/<photos>: faces are embedded here, only embeddings are uploaded.

    Re-running is safe: photos already enrolled (same SHA-256) are skipped.
    """
    import sys

    from tqdm import tqdm

    from facegrid_services import enroll as logic

    if admin_token_file is not None:
        admin_token = admin_token_file.read_text().strip()
    if not admin_token:
        typer.echo("error: give --admin-token or --admin-token-file", err=True)
        raise typer.Exit(2)
    try:
        from facegrid_vision.faces import BACKENDS, load_analyzer
        from facegrid_vision.models import WeightsError, resolve_weights
    except ModuleNotFoundError as e:
        typer.echo(f"error: enrollment needs the node extra (pip install 'facegrid[node]'): {e}",
                   err=True)
        raise typer.Exit(2) from None

    if backend not in BACKENDS:
        typer.echo(f"error: --backend must be one of {', '.join(BACKENDS)}", err=True)
        raise typer.Exit(2)
    try:
        people = logic.scan(directory)
        model, _ = resolve_weights(weights)
        if int8:
            model += ".int8"
    except Exception as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    client = logic.EnrollClient(server, admin_token)
    try:
        summary = logic.enroll(
            people, client,
            lambda: load_analyzer(weights, backend=backend, onnx_dir=onnx_dir, int8=int8,
                                  min_face_size=min_face_size, margin=margin,
                                  threads=threads, flip=flip),
            model,
            progress=lambda it: tqdm(list(it), desc="embedding", unit="photo", file=sys.stderr))
    except logic.EnrollError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    except WeightsError as e:  # the models cannot be loaded (message says what to do)
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    finally:
        client.close()
    for line in summary.lines():
        typer.echo(line)
