"""``sansa label-studio``: an ML backend that labels a Label Studio project from its own annotations."""

from __future__ import annotations

import argparse
import os
import sys

from sansa.cli import given
from sansa.cli.common import MODEL_HELP, add_model_options

SECRET_ENV = "SANSA_LABEL_STUDIO_SECRET"
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"

EXAMPLES = (
    f"""examples:
  {SECRET_ENV}=s3cret sansa label-studio --label-studio-url http://127.0.0.1:8080
  sansa label-studio --backbone test_tiny --random-weights --port 9090     try it with a tiny random model

then in Label Studio: project > Settings > Model > Connect model: URL http://127.0.0.1:9090, Basic
Authentication with any user name and the secret as password. Annotated tasks become references;
"Retrieve predictions" (or opening a task) gives the others a prediction in the project's control
type (BrushLabels, PolygonLabels, RectangleLabels or KeyPointLabels). Annotating more tasks changes
the model version, so predictions are refreshed.

Label Studio's address and API token: from --label-studio-url / ${URL_ENV} and ${TOKEN_ENV},
otherwise those Label Studio sends when it connects (needs LABEL_STUDIO_HOST set on Label Studio and
legacy API tokens enabled). Images are read from Label Studio (uploads, local files, cloud URLs) or,
with --local-files-root, straight from disk.

"""
    + MODEL_HELP
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``label-studio`` command."""
    parser = subparsers.add_parser(
        "label-studio",
        help="ML backend for Label Studio: few-shot pre-annotations from a project's annotations",
        description="Serve Label Studio's ML backend protocol: a project's annotated tasks are the references, "
        "the other tasks get predictions.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to listen on (default: 127.0.0.1, this computer only)")
    parser.add_argument("--port", type=int, help="port (default: 9090)")
    parser.add_argument(
        "--secret",
        help=f"shared secret Label Studio must send as Basic auth password "
        f"(default: ${SECRET_ENV}; none: anyone who reaches the port may call it)",
    )
    parser.add_argument("--label-studio-url", metavar="URL", help=f"Label Studio's address (default: ${URL_ENV})")
    parser.add_argument("--label-studio-token", metavar="TOKEN", help=f"Label Studio API token (default: ${TOKEN_ENV})")
    parser.add_argument(
        "--local-files-root",
        metavar="DIR",
        help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, to read local files directly",
    )
    add_model_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sansa.errors import SansaError

    try:
        from sansa.labelstudio.server import DEFAULT_HOST, DEFAULT_PORT, create_app
        from sansa.labelstudio.server import run as run_server
    except ImportError as err:
        raise SansaError(
            f"the ML backend needs the web extra ({err.name} is missing): pip install 'sansa-segment[web]'"
        ) from None
    from sansa.cli.common import load_predictor
    from sansa.cli.serve import _is_loopback, _model_name
    from sansa.labelstudio import LabelStudio, SansaBackend

    options = given(args, "host", "port")
    host, port = options.get("host", DEFAULT_HOST), options.get("port", DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise SansaError(f"--port: {port} is not a port number (0..65535)")
    if args.local_files_root is not None and not os.path.isdir(args.local_files_root):
        raise SansaError(f"--local-files-root: {args.local_files_root} is not a folder")
    secret = args.secret if args.secret is not None else os.environ.get(SECRET_ENV) or None
    if not _is_loopback(host) and not secret:
        raise SansaError(
            f"--host {host}: listening beyond this computer needs a shared secret (--secret or ${SECRET_ENV})"
        )
    if not secret:
        print(
            "sansa label-studio: warning: no shared secret; any program on this computer may call the backend",
            file=sys.stderr,
        )
    remote = LabelStudio(
        args.label_studio_url or os.environ.get(URL_ENV),
        args.label_studio_token or os.environ.get(TOKEN_ENV),
        args.local_files_root,
    )
    predictor = load_predictor(args)
    backend = SansaBackend(predictor, remote, model_name=_model_name(args) or "sansa")
    run_server(create_app(backend, secret), host=host, port=port)
    return 0
