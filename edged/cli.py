"""The one entry point: `edged run`, `edged config`, `edged peers`.

Exit codes: 0 ok, 2 usage or config error, 3 start-up failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import select
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import tomli_w

from edged import __version__
from edged import config as config_module
from edged.config import Config
from edged.datalock import DataDirBusy, holding
from edged.errors import ConfigError, EdgedError, StartupError
from edged.paths import prepare_data_dir, resolve_data_dir
from edged.upload.policy import KINDS

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STARTUP = 3
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a tool killed by SIGPIPE

# Everything edged creates (journal, spool, cache, token) is its own: files 0600, folders 0700.
PRIVATE_UMASK = 0o077

logger = logging.getLogger("edged.cli")


def _port(text: str) -> int:
    try:
        return int(config_module.check_value("http.port", int(text)))
    except (ValueError, ConfigError) as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)") from error


def _state_options(default: object) -> argparse.ArgumentParser:
    """`--config` and `--data-dir`, for a command and again for each of its verbs.

    So `edged cache add FILE --data-dir X` works as well as `edged cache --data-dir X add FILE`.
    The verbs' copies default to SUPPRESS: argparse writes a verb's defaults over what the command
    level parsed, which would drop the X of the second spelling.
    """
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--config", type=Path, default=default, help="TOML config file (default: embedded)"
    )
    options.add_argument(
        "--data-dir", default=default, help="state directory, overrides [storage] data_dir"
    )
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edged", description="Edge video daemon.")
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command_options = _state_options(None)
    verb_options = _state_options(argparse.SUPPRESS)

    run = commands.add_parser(
        "run",
        parents=[command_options],
        help="run the daemon (embedded defaults without --config)",
    )
    run.add_argument("--port", type=_port, help="HTTP port, overrides [http] port (0: any)")

    config = commands.add_parser("config", help="check or show configuration")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    check = config_commands.add_parser("check", help="validate a config file")
    check.add_argument("file", type=Path)
    show = config_commands.add_parser("show", help="print the effective config as TOML")
    show.add_argument("--config", type=Path, help="TOML config file (default: embedded)")

    uploads = commands.add_parser(
        "uploads",
        parents=[command_options],
        help="the upload queue; `uploads push FILE` ships one",
    )
    uploads.add_argument("--json", action="store_true", help="machine-readable output")
    upload_commands = uploads.add_subparsers(dest="uploads_command")
    push = upload_commands.add_parser(
        "push",
        parents=[verb_options],
        help="queue files and upload them now; exits when they are verified or failed",
    )
    push.add_argument("files", type=Path, nargs="+")
    push.add_argument("--stream", default="manual", help="stream part of the object key")
    push.add_argument("--kind", default="file", choices=KINDS)

    devices = commands.add_parser("devices", help="cameras, capture cards and the board")
    devices.add_argument("--json", action="store_true", help="machine-readable output")
    devices.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)

    cache = commands.add_parser(
        "cache", parents=[command_options], help="the clip cache: add, list, remove"
    )
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    cache_add = cache_commands.add_parser(
        "add", parents=[verb_options], help="validate, prepare and add a clip"
    )
    cache_add.add_argument("file", type=Path)
    cache_add.add_argument("--name", help="asset name (default: the file name)")
    cache_add.add_argument("--pin", action="store_true", help="never evict; first bytes in RAM")
    cache_list = cache_commands.add_parser(
        "list", parents=[verb_options], help="the clips on this box"
    )
    cache_list.add_argument("--json", action="store_true")
    cache_remove = cache_commands.add_parser("remove", parents=[verb_options], help="remove a clip")
    cache_remove.add_argument("name")

    guests = commands.add_parser(
        "guests", parents=[command_options], help="the guests who signed up on this box"
    )
    guest_commands = guests.add_subparsers(dest="guests_command", required=True)
    export = guest_commands.add_parser(
        "export", parents=[verb_options], help="print every sign-up (JSON Lines, or --csv)"
    )
    export.add_argument("--csv", action="store_true", help="CSV with a header row")

    clips = commands.add_parser(
        "clips",
        parents=[command_options],
        help="clips cut from the recordings by the running daemon: make, list, show",
    )
    clip_commands = clips.add_subparsers(dest="clips_command", required=True)
    clip_url = argparse.ArgumentParser(add_help=False)
    clip_url.add_argument(
        "--url", help="the daemon's base URL (default: this box's, from the config and data dir)"
    )
    make = clip_commands.add_parser(
        "make", parents=[verb_options, clip_url], help="queue a clip job (token from the data dir)"
    )
    make.add_argument("--stream", required=True, help="the stream (edged's /api/v1/streams)")
    make.add_argument("--from", dest="start", metavar="TIME", help="start, RFC 3339 UTC")
    make.add_argument("--to", dest="end", metavar="TIME", help="end, RFC 3339 UTC")
    make.add_argument("--last", type=float, metavar="SECONDS", help="the last SECONDS instead")
    make.add_argument("--vertical", action="store_true", help="also a vertical 9:16 variant")
    make.add_argument("--no-original", action="store_true", help="only the vertical variant")
    make.add_argument("--mode", choices=("fill", "crop"), help="vertical: fill or crop")
    make.add_argument("--x-offset", type=int, metavar="PIXELS", help="crop: from the left")
    make.add_argument("--title", default="")
    make.add_argument("--publish-at", metavar="TIME", help="shown to guests from TIME")
    make.add_argument("--wait", action="store_true", help="follow the job to its end")
    clip_list = clip_commands.add_parser(
        "list", parents=[verb_options, clip_url], help="the newest jobs"
    )
    clip_list.add_argument("--json", action="store_true")
    clip_show = clip_commands.add_parser(
        "show", parents=[verb_options, clip_url], help="one job, with a progress bar"
    )
    clip_show.add_argument("job", type=int)
    clip_show.add_argument("--json", action="store_true")
    clip_show.add_argument("--no-wait", action="store_true", help="do not follow it to its end")

    restream = commands.add_parser(
        "restream",
        parents=[command_options],
        help="the running daemon's restream destinations: list, on, off",
    )
    restream_commands = restream.add_subparsers(dest="restream_command", required=True)
    for verb, text in (
        ("list", "each destination: stream, on or off, state and its last error"),
        ("on", "switch a destination on (until the next start; the token from the data dir)"),
        ("off", "switch a destination off (until the next start)"),
    ):
        verb_parser = restream_commands.add_parser(
            verb, parents=[verb_options, clip_url], help=text
        )
        if verb != "list":
            verb_parser.add_argument("name", help="the destination's name (edged restream list)")
        verb_parser.add_argument("--json", action="store_true")

    doctor = commands.add_parser(
        "doctor",
        parents=[command_options],
        help="check the box: OK, WARN or FAIL, and what to do",
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")

    encoders = commands.add_parser("encoders", help="probe the board's H.264 encoders")
    encoders.add_argument("--json", action="store_true", help="machine-readable output")
    encoders.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)

    peers = commands.add_parser("peers", help="list the edged boxes on the LAN (mDNS)")
    peers.add_argument("--json", action="store_true", help="machine-readable output")
    peers.add_argument("--timeout", type=float, default=3.0, help="seconds to listen")
    peers.add_argument(
        "--interface", action="append", default=[], help="IPv4 address to browse on (repeat)"
    )
    peers.add_argument(
        "--prometheus-sd",
        type=Path,
        metavar="FILE",
        help="keep FILE current as a Prometheus file_sd target list until stopped",
    )
    verify = commands.add_parser(
        "verify",
        parents=[command_options],
        help="check a clip's C2PA manifest or a recording against its signed sidecar",
    )
    verify.add_argument("file", type=Path, help="a clip, a recording, or a recording's sidecar")
    verify.add_argument(
        "--trust-anchors",
        type=Path,
        metavar="PEM",
        help="CA certificates to trust (PEM); without it the signer must be this box's key",
    )
    verify.add_argument(
        "--any-signer",
        action="store_true",
        help="accept any signer: check the content only, report the signer as unchecked",
    )
    return parser


def _configure_logging(level: str) -> None:
    under_journal = "JOURNAL_STREAM" in os.environ
    fmt = "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=fmt if under_journal else "%(asctime)s " + fmt,
    )
    logging.getLogger("edged").setLevel(level.upper())


def _load(path: Path | None) -> Config:
    return Config() if path is None else config_module.load(path)


def _run(args: argparse.Namespace) -> int:
    from edged.daemon import Launch, run  # the heavy imports only for the daemon
    from edged.loop import run_on

    config = _load(args.config)
    overrides = {"http.port": args.port} if args.port is not None else {}
    config = config_module.with_overrides(config, overrides)
    _configure_logging(config.daemon.log_level)
    launch = Launch(
        config=config, config_file=args.config, overrides=overrides, data_dir=args.data_dir
    )
    logging.getLogger("edged").info("event loop: %s", config.daemon.event_loop)
    clean = run_on(config.daemon.event_loop, run(launch))
    return EXIT_OK if clean else EXIT_FAILURE


def _config(args: argparse.Namespace) -> int:
    if args.config_command == "check":
        config_module.load(args.file)
        print(f"{args.file}: ok")
        return EXIT_OK
    print(tomli_w.dumps(config_module.to_mapping(_load(args.config))), end="")
    return EXIT_OK


def file_problem(path: Path) -> str | None:
    """Why a file named on the command line cannot be read as one, or None (blocking)."""
    try:
        facts = path.stat()
        if not stat.S_ISREG(facts.st_mode):
            return f"{path} is not a regular file; name a file"
        os.close(os.open(path, os.O_RDONLY))
    except OSError as error:
        return f"cannot read {path}: {error.strerror}"
    return None


def busy_message(data_dir: Path, holder: int | None, api: str) -> str:
    """One line for a writing command refused because the daemon owns the data dir."""
    who = f"the edged daemon (PID {holder})" if holder else "another edged process"
    return f"data dir {data_dir} is in use by {who}; stop the daemon or use its API: {api}"


def _as_sole_writer(data_dir: Path, api: str, work: Callable[[], int]) -> int:
    """`work()` holding the data dir's lock, so it never writes beside a running daemon."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(holding(data_dir))
        except DataDirBusy as busy:
            print(f"edged: {busy_message(data_dir, busy.holder, api)}", file=sys.stderr)
            return EXIT_STARTUP
        return work()


def _uploads(args: argparse.Namespace) -> int:
    from edged.upload import commands

    config = _load(args.config)
    data_dir = resolve_data_dir(args.data_dir, config.storage.data_dir, os.environ)
    if args.uploads_command != "push":
        return commands.show(
            data_dir,
            as_json=args.json,
            terminal=sys.stdout.isatty(),
            sync_on=bool(config.upstream.endpoint),
            newest_first=config.upload.newest_first,
        )
    try:
        for path in args.files:
            if problem := file_problem(path):
                raise commands.Unpushable(problem)
        plan = commands.plan(config, args.files, stream=args.stream)
    except commands.Unpushable as error:
        print(f"edged: uploads push: {error}", file=sys.stderr)
        return EXIT_USAGE
    _configure_logging(config.daemon.log_level)
    data_dir = prepare_data_dir(data_dir)
    return _as_sole_writer(
        data_dir,
        "POST /api/v1/uploads",
        lambda: asyncio.run(commands.push(config, data_dir, plan, kind=args.kind)),
    )


def _guests(args: argparse.Namespace) -> int:
    from edged.guest.desk import GUESTS_DIR
    from edged.guest.signups import GuestBook, export_csv

    config = _load(args.config)
    data_dir = resolve_data_dir(args.data_dir, config.storage.data_dir, os.environ)
    # Read-only beside a running daemon (SQLite's WAL lets a reader in while it writes).
    guests = GuestBook.read(data_dir / GUESTS_DIR)
    if args.csv:
        print(export_csv(guests), end="")
    else:
        for guest in guests:
            print(json.dumps(guest.as_json()))
    return EXIT_OK


def _devices(args: argparse.Namespace) -> int:
    from edged.devices.report import devices_report, print_devices

    report = devices_report(args.root)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_devices(report)
    return EXIT_OK


# What to use instead of each cache verb while the daemon owns the store.
CACHE_API = {
    "add": "PUT /api/v1/assets/NAME",
    "list": "GET /api/v1/assets",
    "remove": "DELETE /api/v1/assets/NAME",
}


def _cache(args: argparse.Namespace) -> int:
    if args.cache_command == "add" and (problem := file_problem(args.file)):
        print(f"edged: cache add: {problem}", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config)
    data_dir = prepare_data_dir(
        resolve_data_dir(args.data_dir, config.storage.data_dir, os.environ)
    )
    # Even `list` opens the store, which clears what a crashed ingest left: a writer too.
    return _as_sole_writer(
        data_dir, CACHE_API[args.cache_command], lambda: _cache_locked(args, config, data_dir)
    )


def _cache_locked(args: argparse.Namespace, config: Config, data_dir: Path) -> int:
    from edged.cache.store import AssetStore

    store = AssetStore(data_dir / "cache", config.cache.max_bytes)
    if args.cache_command == "add":
        from edged.devices import detect_board

        store.encoders = detect_board(Path("/"), set()).profile.encoders  # for a transcode
        asset = store.add(args.file, args.name or args.file.name, pin=args.pin, origin="cli")
        print(
            f"added {asset.name}: {asset.size} bytes, {asset.duration:.1f} s"
            + (", pinned" if asset.pinned else "")
            + (", transcoded" if asset.transcoded else "")
        )
    elif args.cache_command == "remove":
        if not store.remove(args.name):
            print(f"edged: no clip {args.name!r}", file=sys.stderr)
            return EXIT_FAILURE
    elif args.json:
        print(json.dumps(store.summary(), indent=2))
    else:
        for asset in store.assets():
            print(
                f"{asset.name:40} {asset.size:>12} {asset.duration:7.1f} s "
                f"{'pinned' if asset.pinned else '':6} {asset.source}"
            )
    return EXIT_OK


def clip_body(args: argparse.Namespace) -> dict[str, object]:
    """The POST /api/v1/clips body `edged clips make` sends (the daemon checks every field)."""
    body: dict[str, object] = {"stream": args.stream, "title": args.title}
    if args.last is not None:
        body["last_seconds"] = args.last
    else:
        body["start"], body["end"] = args.start, args.end
    variants = [] if args.no_original else ["original"]
    body["variants"] = [*variants, "vertical"] if args.vertical or args.no_original else variants
    for key, value in (
        ("mode", args.mode),
        ("x_offset", args.x_offset),
        ("publish_at", args.publish_at),
    ):
        if value is not None:
            body[key] = value
    return body


def _clips(args: argparse.Namespace) -> int:
    from edged.clips import client

    if args.clips_command == "make" and args.last is None and not (args.start and args.end):
        print("edged: clips make: give --from and --to, or --last SECONDS", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args.config)
    data_dir = resolve_data_dir(args.data_dir, config.storage.data_dir, os.environ)
    url = getattr(args, "url", None) or client.daemon_url(
        config.http.host, config.http.port, data_dir
    )
    api = client.ClipClient(url, client.admin_token(config.http.admin_token_file, data_dir))
    terminal = sys.stdout.isatty()
    try:
        if args.clips_command == "make":
            return client.make(api, clip_body(args), sys.stdout, wait=args.wait, terminal=terminal)
        if args.clips_command == "list":
            return client.list_jobs(api, sys.stdout, as_json=args.json)
        return client.show(
            api, args.job, sys.stdout, as_json=args.json, wait=not args.no_wait, terminal=terminal
        )
    except client.DaemonUnreachable as error:
        print(f"edged: {error}", file=sys.stderr)
        return EXIT_STARTUP


def _restream(args: argparse.Namespace) -> int:
    from edged.clips import client
    from edged.restream.client import run

    config = _load(args.config)
    data_dir = resolve_data_dir(args.data_dir, config.storage.data_dir, os.environ)
    url = args.url or client.daemon_url(config.http.host, config.http.port, data_dir)
    api = client.ClipClient(url, client.admin_token(config.http.admin_token_file, data_dir))

    def call(method: str, path: str) -> tuple[int, dict[str, object]]:
        answer = api.call(method, path)
        return answer.status, answer.body

    name = getattr(args, "name", None)
    try:
        return run(call, args.restream_command, name, sys.stdout, sys.stderr, as_json=args.json)
    except client.DaemonUnreachable as error:
        print(f"edged: {error}", file=sys.stderr)
        return EXIT_STARTUP


def _doctor(args: argparse.Namespace) -> int:
    from edged import doctor

    config = _load(args.config)
    data_dir = resolve_data_dir(args.data_dir, config.storage.data_dir, os.environ)
    checks = doctor.run_checks(config, data_dir)
    summary = doctor.report(checks)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        doctor.print_report(checks)
    return EXIT_FAILURE if summary["status"] == doctor.FAIL else EXIT_OK


def _encoders(args: argparse.Namespace) -> int:
    from edged.media.report import encoders_report, print_encoders

    report = encoders_report(args.root)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_encoders(report)
    return EXIT_OK if report["winner"] else EXIT_FAILURE


def _file_sd(path: Path, interfaces: tuple[str, ...]) -> int:
    import signal

    from edged.discovery import keep_file_sd

    _configure_logging("info")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await keep_file_sd(path, stop, interfaces)

    try:
        asyncio.run(run())
    except OSError as error:
        print(
            f"edged: cannot write the file_sd list {path}: {error.strerror}; choose a "
            "writable path",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_OK


def _peers(args: argparse.Namespace) -> int:
    from edged.discovery import browse_peers

    if args.prometheus_sd is not None:
        return _file_sd(args.prometheus_sd, tuple(args.interface))

    peers = asyncio.run(browse_peers(args.timeout, tuple(args.interface)))
    if args.json:
        print(json.dumps([dataclasses.asdict(peer) for peer in peers], indent=2))
        return EXIT_OK
    if not peers:
        print("no edged boxes answered on this LAN")
        return EXIT_OK
    print(f"{'NAME':20} {'EVENT':16} {'VERSION':10} ADDRESS")
    for peer in peers:  # the name each box answers to (<name>.local), renamed on a conflict
        address = ", ".join(f"{ip}:{peer.port}" for ip in peer.addresses)
        print(f"{peer.instance:20} {peer.event:16} {peer.version:10} {address}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    """Exit 0 when the file matches what was signed and its signer is accepted (a given trust
    anchor's, or this box's own key), 1 on any mismatch, a missing signature or another signer."""
    from edged.provenance.verify import Trust, verify_file

    anchors = _certificates(args.trust_anchors) if args.trust_anchors is not None else ()
    if anchors is None:
        return EXIT_USAGE
    box: tuple[Certificate, ...] | None = () if anchors else _box_certificates(args)
    if box is None:
        return EXIT_USAGE
    trust = Trust(anchors=anchors, box=box, any_signer=args.any_signer)
    verdict = verify_file(args.file, trust)
    print("\n".join(verdict.lines))
    return EXIT_OK if verdict.ok else EXIT_FAILURE


def _certificates(path: Path) -> tuple[Certificate, ...] | None:
    """The PEM certificates in `path`, or None after a line on stderr saying why not."""
    from cryptography import x509

    try:
        return tuple(x509.load_pem_x509_certificates(path.read_bytes()))
    except OSError as error:
        print(f"edged: verify: {path}: {error.strerror}", file=sys.stderr)
    except ValueError:
        print(f"edged: verify: {path}: holds no PEM certificate", file=sys.stderr)
    return None


def _box_certificates(args: argparse.Namespace) -> tuple[Certificate, ...] | None:
    """This box's signing chain ([provenance] cert_file, else the data dir's own), () when it
    has none, None when it is there but unreadable."""
    from edged.provenance.identity import CERT_FILE, PROVENANCE_DIR

    config = _load(args.config)
    if config.provenance.cert_file:
        path = Path(config.provenance.cert_file).expanduser()
    else:
        data_dir = resolve_data_dir(args.data_dir, config.storage.data_dir, os.environ)
        path = data_dir / PROVENANCE_DIR / CERT_FILE
    if not path.exists():
        return ()
    return _certificates(path)


def _stdout_reader_gone() -> bool:
    """True when stdout is a pipe or socket whose reader has gone (`edged uploads | head`)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # POLLERR and POLLHUP are reported unasked
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "peers":  # peers' file_sd list is written for Prometheus, another user
        os.umask(PRIVATE_UMASK)
    handlers = {
        "run": _run,
        "config": _config,
        "peers": _peers,
        "uploads": _uploads,
        "devices": _devices,
        "encoders": _encoders,
        "doctor": _doctor,
        "cache": _cache,
        "guests": _guests,
        "clips": _clips,
        "restream": _restream,
        "verify": _verify,
    }
    try:
        code = handlers[args.command](args)
        sys.stdout.flush()  # a reader that left shows up here, not as a traceback at exit
        return code
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        # Quiet, like a tool killed by SIGPIPE; what is still buffered goes to /dev/null at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ConfigError as error:
        print(f"edged: config error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as error:
        print(f"edged: cannot start: {error}", file=sys.stderr)
        return EXIT_STARTUP
    except EdgedError as error:
        print(f"edged: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
