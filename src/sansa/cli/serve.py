"""``sansa serve FOLDER``: label a folder in the browser."""

from __future__ import annotations

import argparse
import ipaddress

from sansa.cli import given
from sansa.cli.common import MODEL_HELP, add_model_options

EXAMPLES = """examples:
  sansa serve photos/                                  then open http://127.0.0.1:8000/
  sansa serve photos/ --open-browser --port 8080
  sansa serve photos/ --backbone test_tiny --random-weights    try the page with a tiny random model

On the page: pick reference images from the gallery, mark an object (click, box, scribble, brush or
lasso), watch the other images segment, "Propagate to all", then export COCO / PNG / YOLO as a zip.
Press ? on the page for the keyboard shortcuts. Images are read only from FOLDER (uploads go there).

""" + MODEL_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="label a folder in the browser (web app)",
        description="Serve a local web page to mark references, see targets segmented, propagate and export.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", metavar="FOLDER", help="the folder of images to label (the only one served)")
    parser.add_argument("--host", help="address to listen on (default: 127.0.0.1, this computer only)")
    parser.add_argument("--port", type=int, help="port (default: 8000)")
    parser.add_argument("--open-browser", action="store_true", default=None, help="open the page when ready")
    add_model_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        from sansa.web.app import create_app
        from sansa.web.app import run as run_server
    except ImportError as err:
        from sansa.errors import SansaError

        raise SansaError(f"the web app needs the web extra ({err.name} is missing): "
                         "pip install 'sansa-segment[web]'") from None
    from sansa.cli.common import load_predictor
    from sansa.web.folder import ImageFolder

    ImageFolder(args.folder)  # a missing folder fails before the model loads
    options = given(args, "host", "port", "open_browser")
    host = options.get("host")
    if host is not None and not _is_loopback(host):
        print(f"sansa serve: warning: listening on {host}: anyone who can reach it can read and add images in "
              f"{args.folder}")
    predictor = load_predictor(args)
    app = create_app(predictor, args.folder, model_name=_model_name(args))
    run_server(app, **options)
    return 0


def _model_name(args: argparse.Namespace) -> str | None:
    chosen = given(args, "model", "backbone")
    name = chosen.get("model") or chosen.get("backbone")
    if name and getattr(args, "random_weights", None):
        return f"{name} (random weights)"
    return name


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
