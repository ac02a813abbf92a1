"""``sansa serve FOLDER``: label a folder in the browser."""

from __future__ import annotations

import argparse
import ipaddress

from sansa.cli import given
from sansa.cli.common import MODEL_HELP, add_model_options
from sansa.errors import SansaError

EXAMPLES = (
    """examples:
  sansa serve photos/                  then open the address it prints: http://127.0.0.1:8000/?token=...
  sansa serve photos/ --open-browser --port 8080
  sansa serve photos/ --backbone test_tiny --random-weights    try the page with a tiny random model

On the page: pick reference images from the gallery, mark an object (click, box, scribble, brush or
lasso), watch the other images segment, "Propagate to all", then export COCO / PNG / YOLO as a zip.
Press ? on the page for the keyboard shortcuts. Images are read only from FOLDER (uploads go there).
Only that page can use the server: every call needs the token in the printed address (kept in
FOLDER/.sansa/web/token, so open tabs survive a restart; --token sets it); requests from other
sites (Origin) and to other host names (Host, see --allow-host) are refused.

"""
    + MODEL_HELP
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    parser.add_argument(
        "--allow-host",
        dest="allow_hosts",  # create_app's parameter: its errors name it, printed as --allow-host
        action="append",
        metavar="NAME[:PORT]",
        help="also answer requests addressed to this host name (repeatable; default: only the "
        "bound address and localhost, against DNS rebinding)",
    )
    parser.add_argument(
        "--token",
        help="the access token of the page's address (16-128 letters, digits, - or _; default: the folder's, "
        "kept in FOLDER/.sansa/web/token across restarts)",
    )
    add_model_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    folder, security = _web("folder"), _web("security")
    folder.ImageFolder(args.folder)  # a missing folder (or a file), a bad --allow-host or port: before the model
    security.parse_allow_hosts(args.allow_hosts or ())
    if args.token is not None:
        security.check_token(args.token)
    address = given(args, "host", "port")
    sock = security.listen(**address)
    app_module = _web("app")
    from sansa.cli.common import load_predictor

    host = address.get("host")
    if host is not None and not _is_loopback(host):
        print(
            f"sansa serve: warning: listening on {host}: anyone who can reach it and has the address printed "
            f"below can read and add images in {args.folder}",
            flush=True,
        )
    predictor = load_predictor(args)
    app = app_module.create_app(
        predictor, args.folder, model_name=_model_name(args), allow_hosts=args.allow_hosts or (), **given(args, "token")
    )
    app_module.run(app, sock=sock, **given(args, "open_browser"))
    return 0


def _web(name: str):
    """``sansa.web.<name>``, or a one-line error when the web extra is not installed."""
    import importlib

    try:
        return importlib.import_module(f"sansa.web.{name}")
    except ImportError as err:
        raise SansaError(
            f"the web app needs the web extra ({err.name} is missing): pip install 'sansa-segment[web]'"
        ) from None


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
