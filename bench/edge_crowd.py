"""A crowd through the cache in front: N HLS players through nginx (configs/nginx/edged-edge.conf)
against one edged; how many requests reached the box per segment, and whether every player got
every segment on time, beside the same crowd against nginx alone.

One edged daemon on loopback runs the test pattern (1280x720 30 fps, GOP 1 s, so 1 s segments),
as bench/hls_crowd.py's does. The players are bench/hls_client.py's: raw HTTP/1.1 keep-alive on
asyncio.BufferedProtocol (headers parsed, segment bodies counted, not copied), one connection
each, spread over --processes client processes (4), started within 1 s, each following the live
playlist for --seconds (60 s) as hls.js does (RFC 8216; bench/hls_crowd.py's definitions of a
stall and a margin). Each client process measures its own event loop's lateness and CPU.

Two phases, the same crowd (seed, players, processes) in each, edged encoding throughout:
  1. the reference, nginx alone: Debian's nginx serving static files, a replay of one window of
     the box's stream (bench/hls_replay.py: the same segments, one published per EXTINF, the
     playlist written after it, no cache, no edged in the path);
  2. nginx in front of edged: the shipped edge config (only the box's address, the port and the
     cache directory replaced) on loopback in front of the box.
If the players stall in both, the machine (the clients, the cores) is the cause; only behind the
edge, the box or the config.

Printed per phase: what the players saw (segments served, skipped, stalls (target 0), the margin
before each segment was needed, request times, HTTP errors), each client process's CPU and loop
lateness, and the CPU of nginx, edged, the clients, the whole machine and the rest of it (other
work on the machine); for the edge phase first, from nginx's access log, the requests that went on
to the box per segment (and per rendition: the box has one per stream), for the init segment and
for the playlist, and edged's own count of the playlists it answered and the HLS bytes it sent.
Then the two side by side, and whether the clients were late (a loop woke over 100 ms late).

Usage: python bench/edge_crowd.py [--players 1000] [--seconds 60] [--processes 4] [--seed N]
                                  [--edge-conf configs/nginx/edged-edge.conf]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import asyncio  # noqa: E402

import psutil  # noqa: E402
from hls_crowd import (  # noqa: E402
    STREAM,
    Tally,
    cpu_seconds,
    percentile,
    raise_fd_limit,
    start_daemon,
    wait_for_window,
)
from hls_replay import Recording, Replay, record  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.edge_cache import (  # noqa: E402
    EDGE_CONF,
    EdgeCache,
    Logged,
    main_conf,
    rendered_edge_conf,
)
from tests.rtmp_server import free_port, start_nginx, stop_nginx  # noqa: E402

SEGMENT = re.compile(r"^/live/(?P<stream>[^/]+)/segment-[0-9a-f]{8}-(?P<sequence>\d+)\.m4s$")
CLIENT = REPO / "bench" / "hls_client.py"
LATE = 0.1  # a client loop waking later than this is a client too busy to measure the server
READY = 3.0  # seconds the client processes get to start before the crowd does


@dataclass
class ClientProcess:
    """One client process's own figures."""

    players: int
    cpu: float  # share of one core over its run
    lateness: list[float]  # its loop's wake-ups, seconds late
    involuntary_switches: int
    start_slack: float  # seconds it was ready before the crowd's start (negative: late)


@dataclass
class Phase:
    tally: Tally
    clients: list[ClientProcess]
    playlist_ages: list[float]  # seconds, each playlist a player got
    target_durations: Counter[str]  # EXT-X-TARGETDURATION -> playlists the players got with it
    cpu: dict[str, float]  # name -> share of one core
    elapsed: float
    notes: list[str] = field(default_factory=list)


def client_command(url: str, args: argparse.Namespace, index: int, start_at: float) -> list[str]:
    return [
        sys.executable,
        str(CLIENT),
        *("--url", url, "--players", str(args.players), "--seconds", str(args.seconds)),
        *("--seed", str(args.seed), "--index", str(index), "--processes", str(args.processes)),
        *("--start-at", repr(start_at)),
    ]


def pooled(
    outputs: list[dict[str, Any]],
) -> tuple[Tally, list[ClientProcess], list[float], Counter[str]]:
    """The crowd's tally over the client processes, each process's own figures, and the ages of
    the playlists the players got."""
    tally, clients, ages, targets = Tally(), [], [], Counter[str]()
    for figures in outputs:
        part = Tally(**{name: figures[name] for name in Tally.__dataclass_fields__})
        tally.served += part.served
        tally.skipped += part.skipped
        tally.stalls += part.stalls
        tally.margins += part.margins
        tally.playlist_times += part.playlist_times
        tally.segment_times += part.segment_times
        tally.errors.update(part.errors)
        ages += figures["playlist_ages"]
        targets.update(figures["target_durations"])
        clients.append(
            ClientProcess(**{name: figures[name] for name in ClientProcess.__dataclass_fields__})
        )
    tally.loop_lag = max((max(c.lateness, default=0.0) for c in clients), default=0.0)
    return tally, clients, ages, targets


def start_clients(
    url: str, args: argparse.Namespace
) -> tuple[list[subprocess.Popen[bytes]], float]:
    """The client processes for a crowd against `url` (http://host:port/live/<stream>), and the
    moment (monotonic) their players start."""
    start_at = time.monotonic() + READY
    processes = [
        subprocess.Popen(client_command(url, args, index, start_at), stdout=subprocess.PIPE)
        for index in range(args.processes)
    ]
    return processes, start_at


def collect(
    processes: list[subprocess.Popen[bytes]],
) -> tuple[Tally, list[ClientProcess], list[float], Counter[str]]:
    outputs = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"a client process exited with {process.returncode}")
        outputs.append(json.loads(out))
    return pooled(outputs)


def machine_times() -> dict[str, float]:
    """Seconds the machine's cores (all of them) have been busy, in interrupts (softirq: the
    loopback's TCP mostly, not counted to any process) and stolen by the host (a VM's cores
    taken away: neither busy nor idle here)."""
    times = psutil.cpu_times()
    return {
        "machine": times.user + times.nice + times.system + times.irq + times.softirq,
        "softirq": times.irq + times.softirq,
        "steal": times.steal,
    }


def crowd_phase(url: str, args: argparse.Namespace, servers: dict[str, int]) -> Phase:
    """The crowd against `url`; its tally, the clients' figures and everyone's CPU from the
    crowd's start to its end."""
    clients, start_at = start_clients(url, args)
    time.sleep(max(0.0, start_at - time.monotonic()))  # the clients' start-up is not measured
    processes = {name: psutil.Process(pid) for name, pid in servers.items()}
    before = {name: cpu_seconds(process, True) for name, process in processes.items()}
    machine, mine, started = machine_times(), time.process_time(), time.monotonic()
    tally, figures, ages, targets = collect(clients)
    elapsed = time.monotonic() - started
    cpu = {
        name: (cpu_seconds(process, True) - before[name]) / elapsed
        for name, process in processes.items()
    }
    cpu["clients"] = sum(client.cpu for client in figures)
    cpu["bench"] = (time.process_time() - mine) / elapsed  # this process (the replay's writer)
    cpu.update({name: (now - machine[name]) / elapsed for name, now in machine_times().items()})
    ours = sum(v for k, v in cpu.items() if k not in ("machine", "steal"))
    cpu["others"] = cpu["machine"] - ours  # other work on the machine than this bench's
    return Phase(tally, figures, ages, targets, cpu, elapsed)


def static_conf(port: int, directory: Path) -> str:
    return (
        "server {\n"
        f"    listen 127.0.0.1:{port};\n"
        f"    location {STREAM}/ {{\n"
        f"        alias {directory}/;\n"
        "        types { application/vnd.apple.mpegurl m3u8; video/mp4 mp4; "
        "video/iso.segment m4s; }\n"
        "    }\n"
        "}\n"
    )


def nginx_alone(args: argparse.Namespace, recording: Recording, work: Path, box_pid: int) -> Phase:
    """The reference: the crowd against nginx serving the replay as static files (the same
    nginx main config as the edge's: one worker, the same connections)."""
    prefix = work / "static"
    for directory in ("logs", "tmp"):
        (prefix / directory).mkdir(parents=True, exist_ok=True)
    port = free_port()
    (prefix / "static.conf").write_text(static_conf(port, prefix / "live"))
    conf = main_conf(prefix, connections=2 * args.players + 256)
    included = f"include {prefix / 'edged-edge.conf'};"
    assert included in conf
    (prefix / "nginx.conf").write_text(conf.replace(included, f"include {prefix / 'static.conf'};"))
    replay = Replay(recording, prefix / "live")
    replay.start()
    process = start_nginx(prefix, prefix / "nginx.conf", port)
    try:
        phase = crowd_phase(
            f"http://127.0.0.1:{port}{STREAM}", args, {"nginx": process.pid, "edged": box_pid}
        )
    finally:
        stop_nginx(process)
        replay.stop()
    phase.notes.append(
        f"the replay's writer published {len(replay.lateness)} segments, at worst "
        f"{1000 * max(replay.lateness, default=0):.0f} ms late"
    )
    return phase


def box_figures(base: str) -> dict[str, float]:
    """edged's own counts: live playlists answered, HLS bytes sent."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    found = {"playlists": 0.0, "hls_bytes": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "edged_first_byte_seconds_count" and sample.labels["kind"] == "live":
                found["playlists"] = sample.value
            elif sample.name == "edged_live_bytes_total" and sample.labels["protocol"] == "hls":
                found["hls_bytes"] += sample.value
    return found


def per_segment(log: list[Logged]) -> tuple[dict[str, Counter[int]], dict[str, set[int]]]:
    """stream -> sequence -> requests that reached the box; stream -> sequences players got."""
    to_box: dict[str, Counter[int]] = defaultdict(Counter)
    asked: dict[str, set[int]] = defaultdict(set)
    for entry in log:
        match = SEGMENT.match(entry.uri)
        if match is None:
            continue
        stream, sequence = match["stream"], int(match["sequence"])
        if entry.status == 200:
            asked[stream].add(sequence)
        if entry.upstream:
            to_box[stream][sequence] += 1
    return to_box, asked


def report_box(
    log: list[Logged],
    seconds: float,
    before: dict[str, float],
    after: dict[str, float],
    segment_bytes: float,
) -> None:
    to_box, asked = per_segment(log)
    for stream in sorted(asked):
        counts = [to_box[stream][sequence] for sequence in sorted(asked[stream])]
        spread = Counter(counts)
        print(
            f"rendition {stream}: {len(counts)} segments fetched by players; requests that reached "
            f"edged per segment: mean {statistics.mean(counts):.3f}, max {max(counts)}; "
            + ", ".join(f"{n} request(s): {k} segments" for n, k in sorted(spread.items()))
        )
    kinds: Counter[tuple[str, bool]] = Counter()
    for entry in log:
        kind = entry.uri.rsplit("/", 1)[-1]
        kind = "segment" if kind.startswith("segment-") else kind
        kind = "init" if kind.startswith("init-") else kind
        kinds[(kind, entry.upstream)] += 1
    for kind in ("index.m3u8", "init", "segment"):
        total = kinds[(kind, True)] + kinds[(kind, False)]
        print(f"{kind}: {total} requests to nginx, {kinds[(kind, True)]} reached edged")
    playlists = after["playlists"] - before["playlists"]
    print(
        f"edged's own count: {playlists:.0f} playlist requests answered "
        f"({playlists / seconds:.2f}/s over {seconds:.0f} s); HLS bytes sent "
        f"{(after['hls_bytes'] - before['hls_bytes']) / 1e6:.1f} MB for "
        f"{segment_bytes / 1e6:.1f} MB of distinct segments fetched"
    )


def segment_sizes(log: list[Logged], edge: EdgeCache) -> float:
    """Bytes of the distinct segments the players fetched (each fetched again from the cache)."""
    total = 0.0
    for uri in {entry.uri for entry in log if SEGMENT.match(entry.uri) and entry.status == 200}:
        try:
            with urllib.request.urlopen(edge.url + uri, timeout=10) as response:  # noqa: S310
                total += len(response.read())
        except OSError:
            continue  # gone from the cache and the box's window: not counted
    return total


def late_ticks(lateness: list[float]) -> str:
    return (
        f"worst {1000 * max(lateness, default=0):.0f} ms, p99 "
        f"{1000 * percentile(lateness, 0.99):.0f} ms, {sum(late > LATE for late in lateness)} of "
        f"{len(lateness)} wake-ups over {1000 * LATE:.0f} ms"
    )


def report_players(phase: Phase) -> None:
    tally = phase.tally
    print(
        f"players: segments served {tally.served}, skipped {tally.skipped}; "
        f"stalls {tally.stalls} (target 0)"
    )
    margins = tally.margins
    print(
        f"margin (arrival before the predecessor's end), s: min {min(margins, default=0):.3f} "
        f"p5 {percentile(margins, 0.05):.3f} p50 {percentile(margins, 0.5):.3f} "
        f"p95 {percentile(margins, 0.95):.3f}"
    )
    for kind, times in (("playlist", tally.playlist_times), ("segment", tally.segment_times)):
        print(
            f"{kind} requests {len(times)}: p50 {1000 * percentile(times, 0.5):.1f} ms "
            f"p95 {1000 * percentile(times, 0.95):.1f} ms max {1000 * max(times, default=0):.1f} ms"
        )
    ages = phase.playlist_ages
    print(
        f"playlist age at the player (the newest segment's end by its PROGRAM-DATE-TIME to the "
        f"answer), s: p50 {percentile(ages, 0.5):.3f} p95 {percentile(ages, 0.95):.3f} "
        f"max {max(ages, default=0):.3f}; EXT-X-TARGETDURATION in them: "
        + ", ".join(f"{t} s x {n}" for t, n in sorted(phase.target_durations.items()))
        + " (players join 3 target durations back and reload every target duration)"
    )
    errors = ", ".join(f"{kind} x{count}" for kind, count in sorted(tally.errors.items()))
    print(
        f"HTTP errors: {errors or 'none'}; the clients' loop woke at worst "
        f"{1000 * tally.loop_lag:.0f} ms late"
    )
    for index, client in enumerate(phase.clients, 1):
        print(
            f"  client process {index}/{len(phase.clients)}: {client.players} players, CPU "
            f"{100 * client.cpu:.1f} % of one core, {client.involuntary_switches} involuntary "
            f"context switches; its loop woke late: {late_ticks(client.lateness)}"
            + (f"; started {-client.start_slack:.2f} s late" if client.start_slack < 0 else "")
        )


def report_cpu(phase: Phase, servers: str) -> None:
    cpu = {name: 100 * share for name, share in phase.cpu.items()}
    print(
        f"CPU, % of one core over {phase.elapsed:.0f} s: {servers.format(**cpu)}, clients "
        f"{cpu['clients']:.1f} ({len(phase.clients)} processes), this bench {cpu['bench']:.1f}; "
        f"the machine {cpu['machine']:.1f} of {100 * (psutil.cpu_count() or 0)}, of which "
        f"interrupts (the loopback's TCP) {cpu['softirq']:.1f} and others' {cpu['others']:.1f}; "
        f"stolen by the host {cpu['steal']:.1f}"
    )
    for note in phase.notes:
        print(note)


def side_by_side(phases: dict[str, Phase]) -> None:
    """The two phases' figures in columns."""

    def triple(values: list[float], scale: float, digits: int, shares: tuple[float, ...]) -> str:
        return " / ".join(f"{scale * percentile(values, share):.{digits}f}" for share in shares)

    rows: dict[str, list[str]] = defaultdict(list)
    for phase in phases.values():
        tally, cpu = phase.tally, {name: 100 * share for name, share in phase.cpu.items()}
        lateness = [late for client in phase.clients for late in client.lateness]
        rows["stalls (target 0)"].append(str(tally.stalls))
        rows["segments served / skipped"].append(f"{tally.served} / {tally.skipped}")
        rows["margin min / p5 / p50, s"].append(triple(tally.margins, 1, 3, (0, 0.05, 0.5)))
        rows["playlist p50 / p95 / max, ms"].append(
            triple(tally.playlist_times, 1000, 1, (0.5, 0.95, 1))
        )
        rows["segment p50 / p95 / max, ms"].append(
            triple(tally.segment_times, 1000, 1, (0.5, 0.95, 1))
        )
        rows["playlist age p50 / p95 / max, s"].append(
            triple(phase.playlist_ages, 1, 3, (0.5, 0.95, 1))
        )
        rows["EXT-X-TARGETDURATION seen, s"].append(" / ".join(sorted(phase.target_durations)))
        rows["HTTP errors"].append(str(sum(tally.errors.values())))
        rows["client loop worst late, ms"].append(f"{1000 * max(lateness, default=0):.0f}")
        rows[f"client wake-ups > {1000 * LATE:.0f} ms late"].append(
            str(sum(late > LATE for late in lateness))
        )
        rows["CPU clients / nginx / edged, %"].append(
            f"{cpu['clients']:.0f} / {cpu['nginx']:.0f} / {cpu['edged']:.0f}"
        )
        rows["CPU machine / irq / others' / stolen, %"].append(
            " / ".join(f"{cpu[name]:.0f}" for name in ("machine", "softirq", "others", "steal"))
        )
    width = max(len(name) for name in rows)
    print(f"{'':{width}}  " + "  ".join(f"{name:>24}" for name in phases))
    for name, values in rows.items():
        print(f"{name:{width}}  " + "  ".join(f"{value:>24}" for value in values))


def client_verdict(phase: Phase) -> str:
    """Whether the clients kept time in a phase, and what that means for its stalls."""
    worst = max((max(client.lateness, default=0.0) for client in phase.clients), default=0.0)
    slow = [
        str(index)
        for index, client in enumerate(phase.clients, 1)
        if max(client.lateness, default=0.0) > LATE
    ]
    limit = f"limit {1000 * LATE:.0f} ms"
    if not slow:
        return f"the clients were on time (their loops at most {1000 * worst:.0f} ms late, {limit})"
    said = (
        f"the clients were LATE (process {', '.join(slow)} woke up to {1000 * worst:.0f} ms "
        f"late, {limit})"
    )
    if phase.tally.stalls:
        return said + "; stalls here may be the clients'"
    smallest = min(phase.tally.margins, default=0.0)
    return said + f", yet no stall: the smallest margin was {smallest:.3f} s"


def verdict(phases: dict[str, Phase]) -> None:
    for name, phase in phases.items():
        tally = phase.tally
        on_time = tally.stalls == 0 and tally.skipped == 0 and not tally.errors
        print(
            f"{name}: every player got every segment on time: {'yes' if on_time else 'NO'} "
            f"({tally.stalls} stalls, {tally.skipped} skipped, {sum(tally.errors.values())} "
            f"errors); {client_verdict(phase)}"
        )


TIMING = "log_format timing '$request_time $upstream_cache_status $uri';"


def with_timing(config: Path, log: Path) -> None:
    """A second access log for the edge: each request's time in nginx and the cache's verdict."""
    text = config.read_text()
    marker = "    log_subrequest on;"
    assert marker in text
    config.write_text(text.replace(marker, f"    {TIMING}\n    access_log {log} timing;\n{marker}"))


def report_timing(log: Path) -> None:
    """Per kind and cache verdict: requests, and their time in nginx (a request waiting on
    proxy_cache_lock is woken every 500 ms, so its time shows it)."""
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in log.read_text().splitlines():
        seconds, verdict, uri = line.split(" ", 2)
        name = uri.rsplit("/", 1)[-1]
        kind = (
            "segment"
            if name.startswith("segment-")
            else "init"
            if name.startswith("init-")
            else name
        )
        times[(kind, verdict)].append(float(seconds))
    for (kind, verdict), values in sorted(times.items()):
        print(
            f"  at nginx, {kind} {verdict}: {len(values)}, time in nginx p50 "
            f"{1000 * percentile(values, 0.5):.0f} ms p95 {1000 * percentile(values, 0.95):.0f} "
            f"ms max {1000 * max(values):.0f} ms; {sum(v >= 0.5 for v in values)} took >= 500 ms"
        )


def through_the_edge(args: argparse.Namespace, box: str, pid: int, work: Path) -> Phase:
    """nginx in front of the box; the crowd through it; the box's figures."""
    edge = EdgeCache(
        work / "nginx", box.removeprefix("http://"), connections=2 * args.players + 256
    )
    if args.edge_conf is not None:  # another edge config than the shipped one, rendered alike
        rendered = rendered_edge_conf(
            args.edge_conf.read_text(),
            box=box.removeprefix("http://"),
            port=edge.port,
            cache=work / "nginx" / "cache",
        )
        (work / "nginx" / "edged-edge.conf").write_text(rendered)
    with_timing(edge.config, work / "nginx" / "logs" / "timing.log")
    edge.start()
    try:
        assert edge.process is not None
        before = box_figures(box)
        phase = crowd_phase(edge.url + STREAM, args, {"nginx": edge.process.pid, "edged": pid})
        after, log = box_figures(box), edge.log()
        print(f"nginx in front of edged ({args.edge_conf or EDGE_CONF.relative_to(REPO)}):")
        report_box(log, phase.elapsed, before, after, segment_sizes(log, edge))
        report_timing(work / "nginx" / "logs" / "timing.log")
        report_players(phase)
        report_cpu(phase, "edged {edged:.1f}, nginx {nginx:.1f}")
    finally:
        edge.stop()
    return phase


def run(args: argparse.Namespace) -> None:
    print(
        f"edge crowd: {args.players} players x {args.seconds:g} s, started within 1 s, "
        f"1280x720 30 fps, 1 s segments, loopback, {psutil.cpu_count()} cores shared by all, "
        f"seed {args.seed}; clients: bench/hls_client.py (raw HTTP/1.1 keep-alive, one connection "
        f"a player) in {args.processes} processes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        process, box = start_daemon(Path(tmp))
        try:
            asyncio.run(wait_for_window(box + STREAM))
            recording = record(box + STREAM)
            alone = nginx_alone(args, recording, Path(tmp), process.pid)
            print(
                "nginx alone (the reference: static files, a replay of the box's stream, "
                "no cache, edged encoding but not asked):"
            )
            report_players(alone)
            report_cpu(alone, "nginx {nginx:.1f}, edged (unasked) {edged:.1f}")
            edge = through_the_edge(args, box, process.pid, Path(tmp))
        finally:
            process.terminate()
            process.wait(timeout=20)
    phases = {"nginx alone": alone, "nginx -> edged": edge}
    side_by_side(phases)
    verdict(phases)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0, help="each player's viewing")
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--seed", type=int, default=random.randrange(1_000_000))
    parser.add_argument(
        "--edge-conf", type=Path, help="an edge config to try instead of the shipped one"
    )
    args = parser.parse_args()
    raise_fd_limit(args.players)
    run(args)


if __name__ == "__main__":
    main()
