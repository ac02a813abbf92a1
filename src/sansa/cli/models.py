"""``sansa models``: list, download and locate the released models."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Released SANSA models by name. SAM2 base weights come from the Hugging Face hub (its cache:
$HF_HUB_CACHE, default ~/.cache/huggingface/hub; HF_TOKEN and HF_ENDPOINT are honoured);
adapter files from the authors' Google Drive into $SANSA_CACHE (default $HF_HOME/sansa, i.e.
~/.cache/huggingface/sansa). With SANSA_OFFLINE=1 or HF_HUB_OFFLINE=1 only cached files are used.
A file that cannot be downloaded can be saved by hand at the path the error names."""

EPILOG = """\
examples:
  sansa models list
  sansa models download sansa-universal          # once, with progress; later runs use the cache
  sansa models path sansa-universal              # the cached files (no network)
  sansa models info sansa-generalist             # sources and published numbers
  sansa segment ref.jpg --mask ref.png --targets imgs/ --model sansa-generalist"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sansa models`` and its sub-commands."""
    parser = subparsers.add_parser(
        "models",
        help="list, download and locate released models",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=_list)
    commands = parser.add_subparsers(dest="models_command", metavar="<subcommand>")
    for name, handler, text in (
        ("list", _list, "the models, their backbone, whether they are cached, and what they are"),
        ("download", _download, "download (and check) a model's files into the cache"),
        ("path", _path, "print the cached files of a model (never downloads)"),
        ("info", _info, "where a model's files come from and the authors' published numbers"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        if name == "download":
            sub.add_argument("names", nargs="+", metavar="NAME", help="model name(s), see `sansa models list`")
        elif name != "list":
            sub.add_argument("name", metavar="NAME", help="model name, see `sansa models list`")
        sub.add_argument("--cache-dir", metavar="DIR", help="adapter cache (default: $SANSA_CACHE or $HF_HOME/sansa)")
        sub.set_defaults(handler=handler)


def _settings(args: argparse.Namespace, offline: bool | None = None):
    from sansa.hub import HubSettings

    return HubSettings.from_env(getattr(args, "cache_dir", None), offline)


def _list(args: argparse.Namespace) -> int:
    from sansa.hub import MODELS, cache_status

    settings = _settings(args)
    rows = [("NAME", "BACKBONE", "CACHED", "DESCRIPTION")]
    rows += [(m.name, m.backbone, str(cache_status(m, settings)), m.description) for m in MODELS.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
    hub = settings.hf_cache_dir or "the Hugging Face hub cache"
    print(f"\nadapters: {settings.cache_dir}\nSAM2: {hub}{'  (offline)' if settings.offline else ''}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from sansa.errors import DownloadError
    from sansa.hub import Availability, get_model, resolve_pretrained
    from sansa.hub.fetch import fetch_sam2
    from sansa.hub.resolve import manual_instructions

    settings = _settings(args)
    for name in args.names:
        model = get_model(name)
        if model.availability is Availability.MANUAL:
            fetch_sam2(model.sam2, settings, name)
            raise DownloadError(manual_instructions(model))
        files = resolve_pretrained(name, settings=settings)
        print(f"{name}: ready", file=sys.stderr)
        _print_files(files)
    return 0


def _path(args: argparse.Namespace) -> int:
    from sansa.hub import resolve_pretrained

    _print_files(resolve_pretrained(args.name, settings=_settings(args, offline=True)))
    return 0


def _print_files(files) -> None:
    print(f"sam2_checkpoint  {files.sam2_checkpoint}")
    if files.adapter_checkpoint is not None:
        print(f"adapter          {files.adapter_checkpoint}")
    print(f"backbone         {files.backbone}")


def _info(args: argparse.Namespace) -> int:
    from sansa.hub import cache_status, get_model

    model = get_model(args.name)
    settings = _settings(args)
    status = cache_status(model, settings)
    print(f"{model.name}: {model.description}")
    print(f"  backbone   {model.backbone}")
    print(f"  sam2       {model.sam2.url(settings.hf_endpoint or 'https://huggingface.co')}")
    print(f"             cached: {status.sam2 or 'no'}")
    if model.adapter is not None:
        print(f"  adapter    {model.adapter.page}")
        if not status.manual:
            print(f"             cached: {status.adapter or 'no'} (expected at {settings.adapter_path(model.adapter)})")
    if model.scores:
        print("  published  " + ", ".join(str(s) for s in model.scores) + " (mIoU %)")
    if model.note:
        print(f"  note       {model.note}")
    return 0
