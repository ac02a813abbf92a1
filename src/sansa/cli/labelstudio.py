"""``sansa label-studio``: an ML backend that labels a Label Studio project from its own annotations."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from sansa.cli import given
from sansa.cli.common import MODEL_HELP, OBJECT_FLAGS, add_model_options, add_object_options

if TYPE_CHECKING:
    from sansa.labelstudio.backend import BackendOptions

SECRET_ENV = "SANSA_LABEL_STUDIO_SECRET"
TOKEN_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"
#: the object flags' environment variables: SANSA_MIN_AREA, SANSA_MAX_OBJECTS, SANSA_OBJECT_POINTS, ...
OBJECT_ENV_PREFIX = "SANSA_"

EXAMPLES = (
    f"""examples:
  {SECRET_ENV}=s3cret sansa label-studio --label-studio-url http://127.0.0.1:8080 --label-studio-token TOKEN
  sansa label-studio --label-studio-url http://127.0.0.1:8080 --backbone test_tiny --random-weights

then in Label Studio: project > Settings > Model > Connect model: URL http://127.0.0.1:9090, Basic
Authentication with any user name and the secret as password. Annotated tasks become references;
"Retrieve predictions" (or opening a task) gives the others a prediction in the project's control
type (BrushLabels, PolygonLabels, RectangleLabels or KeyPointLabels), one region per object.
Annotating more tasks changes the model version, so predictions are refreshed.

Label Studio 1.22 and newer refuse a model on this computer or the local network unless started
with ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false (see the README).

Objects: the same options as sansa segment (--min-area, --max-objects, --object-points,
--object-overlap), or the environment's SANSA_MIN_AREA, SANSA_MAX_OBJECTS, SANSA_OBJECT_POINTS,
SANSA_OBJECT_OVERLAP where a flag is not given; one region per object, none under --min-area, at
most --max-objects per class and task.

Label Studio's address (--label-studio-url / ${URL_ENV}) is fixed here: the API token
(--label-studio-token / ${TOKEN_ENV}, else the one Label Studio sends when it connects) is only
ever sent there. Images are read from Label Studio (uploads, local files, cloud storage through
its presign endpoint) or, with --local-files-root, straight from disk.

"""
    + MODEL_HELP
)

#: printed under the address at start-up
SETUP_NOTES = (
    "Label Studio 1.22 and newer refuse a model on this computer or the local network (403 'URL resolves to "
    "a reserved network address'): start Label Studio with ML_BLOCK_LOCAL_IP=false (lets it call this backend) "
    "and SSRF_PROTECTION_ENABLED=false (lets it create the backend's webhook).",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    parser.add_argument(
        "--allow-host",
        dest="allow_hosts",  # create_app's parameter: its errors name it, printed as --allow-host
        action="append",
        metavar="NAME[:PORT]",
        help="also answer requests addressed to this host name, e.g. host.docker.internal (repeatable)",
    )
    parser.add_argument(
        "--answer-within",
        type=float,
        metavar="SECONDS",
        help="answer /predict with the tasks done by then, post the rest when done (default: 60; keep it "
        "below Label Studio's ML_TIMEOUT_PREDICT, 100 by default)",
    )
    parser.add_argument(
        "--skip-annotated", action="store_true", default=None, help="no predictions for tasks that have an annotation"
    )
    parser.add_argument(
        "--delete-old-predictions",
        dest="delete_old",
        action="store_true",
        default=None,
        help="delete a task's predictions of older sansa model versions when it gets a new one",
    )
    add_object_options(parser)
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
    from sansa.web.security import listen, parse_allow_hosts

    options = given(args, "host", "port")
    host, port = options.get("host", DEFAULT_HOST), options.get("port", DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise SansaError(f"--port: {port} is not a port number (0..65535)")
    if args.local_files_root is not None and not os.path.isdir(args.local_files_root):
        raise SansaError(f"--local-files-root: {args.local_files_root} is not a folder")
    options_for_backend = backend_options(args)
    allow_hosts = args.allow_hosts or ()
    parse_allow_hosts(allow_hosts)
    secret = args.secret if args.secret is not None else os.environ.get(SECRET_ENV) or None
    if not _is_loopback(host) and not secret:
        raise SansaError(
            f"--host {host}: listening beyond this computer needs a shared secret (--secret or ${SECRET_ENV})"
        )
    url = args.label_studio_url or os.environ.get(URL_ENV)
    if not url:
        raise SansaError(
            f"--label-studio-url: Label Studio's address is needed (or ${URL_ENV}); the API token is sent there only"
        )
    if not url.startswith(("http://", "https://")):
        raise SansaError(f"--label-studio-url {url}: expected http://HOST:PORT or https://...")
    if not secret:
        print(
            "sansa label-studio: warning: no shared secret; any program on this computer may call the backend",
            file=sys.stderr,
        )
    sock = listen(host, port)  # a busy port: one line, before the model loads
    remote = LabelStudio(url, args.label_studio_token or os.environ.get(TOKEN_ENV), args.local_files_root)
    predictor = load_predictor(args)
    backend = SansaBackend(predictor, remote, model_name=_model_name(args) or "sansa", options=options_for_backend)
    _log_to_stderr()
    run_server(create_app(backend, secret, allow_hosts), sock=sock, notes=SETUP_NOTES)
    return 0


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The backend's options from what the user set: flags, else the object flags' ``SANSA_*``
    variables; the library's defaults for the rest (:class:`~sansa.records.ObjectOptions`)."""
    from sansa.cli.common import object_options
    from sansa.labelstudio.backend import BackendOptions

    _object_flags_from_env(args)
    return BackendOptions(objects=object_options(args), **given(args, "answer_within", "skip_annotated", "delete_old"))


def _object_flags_from_env(args: argparse.Namespace) -> None:
    """Object flags not given on the command line, from ``SANSA_<FLAG>`` (e.g. ``SANSA_MIN_AREA``,
    as a container's environment sets them); a bad value is one line naming the variable."""
    from sansa.errors import SansaError

    kinds = {"min_area": int, "max_objects": int, "object_points": int, "object_overlap": float}
    for flag in OBJECT_FLAGS:
        name = OBJECT_ENV_PREFIX + flag.upper()
        if getattr(args, flag, None) is not None or not os.environ.get(name):
            continue
        try:
            setattr(args, flag, kinds[flag](os.environ[name]))
        except ValueError:
            raise SansaError(f"${name}: expected {kinds[flag].__name__}, got {os.environ[name]!r}") from None


def _log_to_stderr() -> None:
    """The backend's progress and failures (logger ``sansa.labelstudio``) on stderr, one line each."""
    import logging

    logger = logging.getLogger("sansa.labelstudio")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("sansa label-studio: %(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
