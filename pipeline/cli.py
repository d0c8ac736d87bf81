"""`liverec` command line: local infrastructure, the job, evaluation.

Heavy imports (pyflink, cassandra, numpy) happen inside the commands so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pipeline import recovery
    from pipeline.settings import Settings

app = typer.Typer(
    help="liverec: real-time personalization in one PyFlink job.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold settings and big batches
)
infra_app = typer.Typer(help="Local Kafka (KRaft) + Cassandra on loopback, from Maven Central jars.")
app.add_typer(infra_app, name="infra")
cluster_app = typer.Typer(help="A local Flink standalone cluster (from the apache-flink wheel) and job operations.")
app.add_typer(cluster_app, name="cluster")
state_app = typer.Typer(help="Savepoints and retained checkpoints against this build.")
app.add_typer(state_app, name="state")


def _settings():  # noqa: ANN202 - lazy import keeps --help fast
    """The settings, or exit 2 with what is wrong (never a value: a secret may be among them)."""
    from pydantic import ValidationError

    from pipeline.errors import ConfigError, LiverecError
    from pipeline.settings import load_settings

    try:
        return load_settings()
    except LiverecError as exc:
        _fail(exc)
    except ValidationError as exc:
        wrong = "; ".join(f"LIVEREC_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors())
        _fail(ConfigError(f"invalid settings: {wrong}"))


def _preflight(settings: Settings) -> None:
    """Before a job starts: the Kafka and Cassandra logins work, or exit 2 naming the settings to fix.

    Why: a job whose login is refused fails inside Flink, restarts over the same error, and says so only in
    the Flink log.
    """
    from pipeline import cassandra_io, kafka_io
    from pipeline.errors import LiverecError

    try:
        kafka_io.check_login(settings)
        cassandra_io.check_login(settings)
    except LiverecError as exc:
        _fail(exc)


def _fail(exc: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2) from exc


@infra_app.command("fetch")
def infra_fetch() -> None:
    """Resolve the Kafka, Cassandra and Flink-connector jars into the cache; build the Cassandra sink jar."""
    from pipeline.errors import LiverecError
    from pipeline.infra import jars

    s = _settings()
    try:
        for comp, path in jars.resolve_all(s.cache_dir).items():
            typer.echo(f"{comp}: {len(list(path.glob('*.jar')))} jars in {path}")
    except LiverecError as exc:
        _fail(exc)


@infra_app.command("up")
def infra_up(timeout: float = typer.Option(180.0, help="Seconds to wait for each server to answer.")) -> None:
    """Start Kafka and Cassandra if not running, wait until they answer, create topics and tables."""
    from pipeline.errors import LiverecError
    from pipeline.infra import stack

    try:
        stack.up(_settings(), timeout_s=timeout)
    except LiverecError as exc:
        _fail(exc)
    _print_status()


@infra_app.command("init")
def infra_init() -> None:
    """Create topics and Cassandra tables on the servers the settings point at (no local servers started)."""
    from pipeline.errors import LiverecError
    from pipeline.infra import stack

    try:
        stack.init(_settings())
    except LiverecError as exc:
        _fail(exc)


@infra_app.command("down")
def infra_down() -> None:
    """Stop exactly the server pids that `up` recorded."""
    from pipeline.infra import stack

    stack.down(_settings())


@infra_app.command("status")
def infra_status() -> None:
    """Report each server: pid, answering or not, address, logs. Exit 1 unless all are up."""
    if not _print_status():
        raise typer.Exit(1)


def _print_status() -> bool:
    from rich.console import Console
    from rich.table import Table

    from pipeline.infra import stack

    s = _settings()
    rows = stack.status(s)
    table = Table(title=f"liverec local stack (cache: {s.cache_dir})")
    for col in ("server", "state", "pid", "address", "logs"):
        table.add_column(col)
    for r in rows:
        state = "[green]up[/]" if r.up else ("[yellow]not answering[/]" if r.pid else "[red]down[/]")
        table.add_row(r.name, state, str(r.pid or "-"), r.address, str(r.logs[0]))
    Console().print(table)
    stray = [p for p in stack.stray_jvms(s) if p not in {r.pid for r in rows}]
    if stray:
        Console().print(f"[yellow]liverec JVMs not recorded in pid files:[/] {stray}")
    return all(r.up for r in rows)


@infra_app.command("logs")
def infra_logs(
    server: str = typer.Argument("all", help="kafka, cassandra or all"),
    lines: int = typer.Option(40, "-n", help="Lines from the end of each log."),
) -> None:
    """Print where each server's logs are, and their last lines."""
    from pipeline.infra import stack

    for srv in stack.servers(_settings()):
        if server not in ("all", srv.name):
            continue
        for path in srv.logs:
            typer.echo(f"==> {path}")
            if path.exists():
                typer.echo("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))


@app.command("run")
def run(
    events: int = typer.Option(30_000, help="Records the built-in generator sends."),
    users: int = typer.Option(3_000, help="Distinct users in the generated stream."),
    rate: float = typer.Option(2_500.0, help="Generator pace, records per second."),
    session_gap_ms: int = typer.Option(
        300_000, help="Session gap for the demo (generated event time runs ~1000x faster than wall time)."
    ),
    smallest: bool = typer.Option(False, "--smallest", help="Run the smallest job (count per user) instead."),
    timeout: float = typer.Option(600.0, help="Give up after this many seconds."),
) -> None:
    """Run the job end to end on the local stack: generate events, show progress, profiles, live recommendations."""
    from rich.console import Console

    from pipeline.demo import run_count_demo, run_job_demo
    from pipeline.errors import LiverecError

    try:
        if smallest:
            run_count_demo(_settings(), events=events, users=users, timeout_s=timeout, console=Console())
        else:
            settings = _settings().model_copy(update={"session_gap_ms": session_gap_ms})
            run_job_demo(settings, events=events, users=users, rate=rate, timeout_s=timeout, console=Console())
    except LiverecError as exc:
        _fail(exc)


@app.command("send")
def send(
    events: int = typer.Option(2_000, help="Well-formed events to send."),
    users: int = typer.Option(50, help="Distinct users, with ids <user-prefix>0 .. <user-prefix>{users-1}."),
    user_prefix: str = typer.Option("u", help="Prefix of the generated user ids."),
    seed: int | None = typer.Option(None, help="Generator seed; event ids are e<seed>-<n> (default: a random one)."),
) -> None:
    """Send generated events to the events topic, e.g. to check a restore with `liverec profiles`."""
    import secrets
    import time

    from pipeline import generator
    from pipeline.errors import InfraError, LiverecError
    from pipeline.kafka_io import produce

    settings = _settings()
    seed = secrets.randbelow(2**31) if seed is None else seed  # new event ids: never dropped as duplicates
    now = int(time.time() * 1000)
    batch = generator.events(events, users=users, seed=seed, user_prefix=user_prefix, start_ms=now - 2_000 * events)
    try:
        sent = produce(settings, settings.topic("events"), batch.records)
    except LiverecError as exc:  # a refused login: the message names the settings
        _fail(exc)
    except Exception as exc:  # noqa: BLE001 - any client error here means the broker is not reachable
        _fail(InfraError(f"could not send to Kafka at {settings.kafka_bootstrap} ({exc}); start it: liverec infra up"))
    typer.echo(f"sent {sent} events of {len(batch.per_user)} users (seed {seed}) to {settings.topic('events')}")


@app.command("replay")
def replay(
    data: Path = typer.Option(..., "--data", help="Interaction file: CSV, TSV or JSON lines; gzip, bz2 or xz too."),
    mapping: str | None = typer.Option(
        None, "--map", help="Columns of the fields, field=column,...: fields user, item, ts, type, session, category, "
        "event_id, date, ordinal, dwell, price; a column is a header name, a JSON key or a 1-based number. "
        "Unmapped fields use a column named user_id, item_id, ts, type, ... if there is one."),
    types: str | None = typer.Option(
        None, "--types", help="Event-type values, type=value[|value],..., e.g. view=pageview,purchase=transaction; "
        "'*=view' catches the rest. Without a type column every row is a view."),
    fmt: str = typer.Option("auto", "--format", help="auto, csv, tsv or jsonl."),
    delimiter: str | None = typer.Option(
        None, help="CSV delimiter: one character, or tab, comma, semicolon, pipe, space (default: detected)."),
    header: bool | None = typer.Option(
        None, "--header/--no-header", help="Whether the first CSV row holds column names (default: detected)."),
    ts_format: str = typer.Option(
        "auto", help="auto (epoch s/ms/us/ns by magnitude, else ISO 8601), s, ms, us, ns, iso, or a strptime "
        "pattern such as '%d/%m/%Y %H:%M'. Times without an offset are UTC."),
    ordinal_unit: str = typer.Option("ms", help="Unit of the ordinal column added to the date: ms or s."),
    id_prefix: str | None = typer.Option(
        None, help="Event ids are <prefix><line> (default prefix: f<SHA-1 of the file, 12 hex>: ) unless "
        "event_id is mapped."),
    encoding: str = typer.Option("utf-8", help="Text encoding of the file."),
    rate: float | None = typer.Option(
        None, help="Send at most N rows per second on average (default 1000 when no other pacing is given)."),
    speedup: float | None = typer.Option(
        None, help="Keep the file's gaps between event times, divided by X (1 = real time); with --rate, capped."),
    as_fast_as_possible: bool = typer.Option(False, "--as-fast-as-possible", help="No pacing."),
    limit: int = typer.Option(0, help="Send only the N earliest events (0 = all)."),
    shift_to_now: bool = typer.Option(
        False, "--shift-to-now", help="Add one constant to every timestamp so the last event is now (old logs: "
        "the job refuses events before LIVEREC_MIN_EVENT_TS_MS, 2000-01-01)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and validate only; send nothing."),
    examples: int = typer.Option(5, help="Rejected rows shown per reason, with their line numbers."),
) -> None:
    """Send a file's events to the events topic in timestamp order, through the job's validation, with progress.

    Exit 0 when events were sent (rows rejected on the way are listed), 1 when nothing could be sent or
    the broker refused records, 2 for a wrong option or an unreachable broker.
    """
    from rich.console import Console

    from pipeline.errors import LiverecError
    from pipeline.interactions import ReadOptions
    from pipeline.replay import Pacing
    from pipeline.replay import replay as run

    try:
        options = ReadOptions.parse(mapping=mapping, types=types, format=fmt, delimiter=delimiter, header=header,
                                    ts_format=ts_format, ordinal_unit=ordinal_unit, id_prefix=id_prefix,
                                    encoding=encoding, max_examples=examples)
        pacing = Pacing.from_cli(rate, speedup, as_fast_as_possible)
        result = run(_settings(), data, options, pacing=pacing, console=Console(), limit=limit,
                     shift_to_now=shift_to_now, dry_run=dry_run)
    except LiverecError as exc:
        _fail(exc)
    done = result.to_send if dry_run else result.acked
    if result.failed or (not dry_run and result.acked < result.handed):
        typer.echo(f"error: {result.handed - result.acked} records were not confirmed by the broker", err=True)
        raise typer.Exit(1)
    if done == 0:
        typer.echo("error: no event to send: every row was rejected (reasons above); check --map, --types and "
                   "--ts-format (--dry-run shows the reasons without sending); for a log older than "
                   "LIVEREC_MIN_EVENT_TS_MS (2000-01-01) pass --shift-to-now", err=True)
        raise typer.Exit(1)


@app.command("profiles")
def profiles(user_prefix: str = typer.Option("u", help="Count the users whose id starts with this.")) -> None:
    """Users and summed event counts in Cassandra's user_profiles: what the job has stored so far."""
    from pipeline.cassandra_io import profile_totals
    from pipeline.errors import InfraError, LiverecError

    settings = _settings()
    try:
        n_users, n_events = profile_totals(settings, user_prefix)
    except LiverecError as exc:  # a refused login: the message names the settings
        _fail(exc)
    except Exception as exc:  # noqa: BLE001 - any driver error here means Cassandra is not reachable
        _fail(InfraError(f"could not read Cassandra at {settings.cassandra_hosts}:{settings.cassandra_port} ({exc}); "
                         "start it: liverec infra up"))
    typer.echo(f"{n_users} users with ids starting {user_prefix!r}, {n_events} events counted "
               f"(keyspace {settings.cassandra_keyspace})")


def _skip_answered(settings: Settings, plan: recovery.StartPlan, root_uri: str, *, err: bool = False) -> Settings:
    """For a fresh start: the requests already answered after the committed offsets, for the router to skip."""
    from pipeline import recovery
    from pipeline.errors import ConfigError

    if plan.start is not recovery.Start.FRESH:
        return settings
    ids = recovery.already_answered(settings)
    if not ids:
        return settings
    root = recovery.local_root(root_uri)
    if root is None:
        msg = (f"{len(ids)} requests after the committed offsets were already answered, and the list of them "
               f"cannot be written under {root_uri} (not a local directory); give a file:// checkpoint dir")
        _fail(ConfigError(msg))
    path = recovery.write_answered(root, ids)
    typer.echo(f"{len(ids)} requests after the committed offsets were already answered: the job skips them "
               f"(ids in {path})", err=err)
    return settings.model_copy(update={"answered_requests_file": str(path)})


@app.command("job")
def job(
    restore: str | None = typer.Option(None, help="Start from this retained checkpoint or savepoint."),
    fresh: bool = typer.Option(
        False, "--fresh", help="Start with empty keyed state even though committed offsets or profiles exist: "
        "the sources go on from the consumer group's committed offsets (earliest where none), users and items "
        "come back from their Cassandra rows as they show up, and requests already answered after those offsets "
        "are skipped (docs/operations.md, Restart choices)."),
) -> None:
    """Run the job in a local MiniCluster until cancelled (settings from LIVEREC_* variables).

    Without --restore or --fresh it resumes from the latest retained checkpoint of this job (same job
    name, topic prefix, broker), and refuses to start empty over committed offsets or existing profiles.
    """
    from pipeline import recovery
    from pipeline.errors import LiverecError
    from pipeline.flink_env import rest_configuration, stream_env
    from pipeline.jobs import liverec_job

    settings = _settings()
    _preflight(settings)
    try:
        plan = recovery.decide(settings, settings.checkpoint_uri, restore=restore, fresh=fresh)
    except LiverecError as exc:  # StartRefused among them
        _fail(exc)
    typer.echo(plan.message)
    if plan.path:
        settings = settings.model_copy(update={"restore_path": plan.path})
    settings = _skip_answered(settings, plan, settings.checkpoint_uri)
    env = stream_env(settings, extra=rest_configuration(settings))
    liverec_job.build(env, settings)
    client = env.execute_async(settings.job_name)
    root = recovery.local_root(settings.checkpoint_uri)
    if root is not None:
        recovery.write_marker(root, str(client.get_job_id()), settings)
    typer.echo(f"job {client.get_job_id()} running; checkpoints under {settings.checkpoint_uri}; "
               f"REST http://127.0.0.1:{settings.rest_port} (`liverec status`)")
    client.get_job_execution_result().result()


@app.command("status")
def status(
    rest: str | None = typer.Option(None, help="Flink REST API of the job (default: http://127.0.0.1:"
                                    "LIVEREC_REST_PORT, where `liverec job` serves it; the standalone cluster: "
                                    "http://127.0.0.1:8081)."),
    job: str | None = typer.Option(None, help="Job id (default: the only running job, else the one named "
                                   "LIVEREC_JOB_NAME)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
) -> None:
    """How the running job is doing (a table, or --json for scripts).

    Events/s, consumer lag per Kafka partition, the last completed checkpoint (age, size, duration), dead
    letters by reason, drift alerts of the last hour, index size, online hit-rate beside most-popular.
    Exit 0 when every part was read, 1 when some part could not be (named in the output), 2 when no job
    answers.
    """
    from rich.console import Console

    from pipeline.errors import LiverecError
    from pipeline.status import collect, render

    try:
        found = collect(_settings(), rest=rest, job_id=job)
    except LiverecError as exc:
        _fail(exc)
    if as_json:
        typer.echo(found.to_json())
    else:
        render(found, Console())
    raise typer.Exit(1 if found.problems else 0)


@cluster_app.command("up")
def cluster_up(task_managers: int = typer.Option(2, help="TaskManagers to start (2 slots each).")) -> None:
    """Start a JobManager and TaskManagers on loopback (REST http://127.0.0.1:8081)."""
    from pipeline import cluster

    cluster.up(_settings(), task_managers=task_managers)


@cluster_app.command("down")
def cluster_down() -> None:
    """Stop the local cluster's TaskManagers and JobManager (by the pid files of Flink's scripts)."""
    from pipeline import cluster

    cluster.down(_settings())


@cluster_app.command("submit")
def cluster_submit(
    from_path: str | None = typer.Option(None, "--from", help="Savepoint or retained checkpoint to start from."),
    parallelism: int | None = typer.Option(None, help="Job parallelism (default: LIVEREC_PARALLELISM)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start with empty state over existing offsets/profiles "
                               "(see `liverec job --help`)."),
) -> None:
    """`flink run -d -py` the job with its jars, Python executable and settings; print the job id.

    Without --from it resumes from the latest retained checkpoint of this job on the cluster, and
    refuses to start empty over committed offsets or existing profiles unless --fresh is given.
    """
    from pipeline import cluster, recovery
    from pipeline.errors import LiverecError

    settings = _settings()
    _preflight(settings)
    root_uri = cluster.checkpoint_uri(settings)
    try:
        plan = recovery.decide(settings, root_uri, restore=from_path, fresh=fresh)
    except LiverecError as exc:  # StartRefused among them
        _fail(exc)
    typer.echo(plan.message, err=True)
    settings = _skip_answered(settings, plan, root_uri, err=True)
    job_id = cluster.submit(settings, from_path=plan.path, parallelism=parallelism)
    root = recovery.local_root(root_uri)
    if root is not None:
        recovery.write_marker(root, job_id, settings)
    typer.echo(job_id)


@cluster_app.command("resume")
def cluster_resume(
    from_path: str = typer.Option(..., "--from", help="Savepoint or retained checkpoint to resume from."),
    parallelism: int | None = typer.Option(None, help="New parallelism (a rescale)."),
) -> None:
    """Submit the job from a savepoint or retained checkpoint; print the job id."""
    from pipeline import cluster

    typer.echo(cluster.submit(_settings(), from_path=from_path, parallelism=parallelism))


@cluster_app.command("savepoint")
def cluster_savepoint(job_id: str) -> None:
    """Take a savepoint of a running job; print its path."""
    from pipeline import cluster

    typer.echo(cluster.savepoint(_settings(), job_id))


@cluster_app.command("stop")
def cluster_stop(job_id: str) -> None:
    """Stop a job with a savepoint (`flink stop --savepointPath`); print the savepoint path."""
    from pipeline import cluster

    typer.echo(cluster.stop_with_savepoint(_settings(), job_id))


@cluster_app.command("list")
def cluster_list() -> None:
    """Ids of the running jobs."""
    from pipeline import cluster

    for job_id in cluster.running_jobs(_settings()):
        typer.echo(job_id)


@state_app.command("check")
def state_check(
    savepoint: Path = typer.Option(..., "--savepoint", help="Savepoint directory, or a retained chk-N directory."),
) -> None:
    """Will this savepoint restore into this build? Exit 0 if yes, 1 if not (with what to do)."""
    from pipeline.errors import LiverecError
    from pipeline.state_check import check

    try:
        report = check(_settings(), savepoint)
    except LiverecError as exc:
        _fail(exc)
    typer.echo(f"savepoint {report.savepoint} (checkpoint {report.checkpoint_id}): {len(report.operators)} operators, "
               f"{sum(o.state_bytes for o in report.operators)} bytes of state")
    for note in report.notes:
        typer.echo(f"  note: {note}")
    for problem in report.problems:
        typer.echo(f"  INCOMPATIBLE: {problem}")
    typer.echo("compatible with this build" if report.compatible else "NOT compatible with this build")
    raise typer.Exit(0 if report.compatible else 1)


def _read_options(mapping: str | None, types: str | None, fmt: str, delimiter: str | None, header: bool | None,
                  ts_format: str):  # noqa: ANN202 - lazy import keeps --help fast
    """ReadOptions when any file-layout option is given (then `--data` is read by `pipeline.interactions`)."""
    if mapping is None and types is None and fmt == "auto" and delimiter is None and header is None \
            and ts_format == "auto":
        return None
    from pipeline.errors import ConfigError
    from pipeline.interactions import ReadOptions

    try:
        return ReadOptions.parse(mapping=mapping, types=types, format=fmt, delimiter=delimiter, header=header,
                                 ts_format=ts_format)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from exc


_MAP_HELP = "With a file of your own: columns of the fields, e.g. user=visitorid,item=itemid,ts=timestamp (see replay)."
_TS_HELP = "With a file of your own: auto, s, ms, us, ns, iso or a strptime pattern."
_TYPES_HELP = "With a file of your own: event-type values, e.g. view=pageview,purchase=transaction (see replay)."


@app.command("eval-offline")
def eval_offline(
    data: Path = typer.Option(..., "--data", help="MovieLens u.data file (or its folder), or a file of your own."),
    dim: int = typer.Option(64, help="Embedding dimension."),
    negatives: int = typer.Option(8, help="Sampled negatives per positive."),
    seed: int = typer.Option(7, help="Random seed (same seed, same figures)."),
    k: int = typer.Option(10, help="Cut-off of recall@k."),
    limit: int = typer.Option(0, help="Replay only the first N events (0 = all)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result as JSON here."),
    served: bool = typer.Option(False, "--served", help="Also replay the model as the job serves it (slower)."),
    batched: bool = typer.Option(
        False, "--batched", help="Replay through the job's own batch steps instead (router, user, item and index "
        "stages in this process; model settings from LIVEREC_*, like eval-pipeline)."),
    batch_size: int = typer.Option(1_000, help="With --batched: records per batch (the job: batch_ms of input)."),
    mapping: str | None = typer.Option(None, "--map", help=_MAP_HELP),
    types: str | None = typer.Option(None, "--types", help=_TYPES_HELP),
    fmt: str = typer.Option("auto", "--format", help="With a file of your own: auto, csv, tsv or jsonl."),
    delimiter: str | None = typer.Option(None, help="With a file of your own: CSV delimiter (default: detected)."),
    header: bool | None = typer.Option(None, "--header/--no-header", help="First CSV row holds column names?"),
    ts_format: str = typer.Option("auto", help=_TS_HELP),
) -> None:
    """Replay a dataset in timestamp order, test-then-learn, and print recall@k beside popularity.

    `--data` is MovieLens u.data unless a file-layout option (--map, --types, --format, ...) is given:
    then any CSV/TSV/JSON-lines interaction file is read as `liverec replay` reads it, every row a
    positive interaction.
    """
    options = _read_options(mapping, types, fmt, delimiter, header, ts_format)
    if batched:
        from rich.console import Console

        from pipeline.eval_offline import resolve_data_path
        from pipeline.eval_pipeline import run_batched

        settings = _settings().model_copy(update={"item_flush_ms": 200})  # as eval-pipeline runs the job
        run_batched(settings, data if options else resolve_data_path(data), limit=limit, console=Console(),
                    batch_size=batch_size, json_out=json_out, options=options)
        return
    from pipeline.eval_offline import main as run

    run(data=data, dim=dim, negatives=negatives, seed=seed, k=k, limit=limit, json_out=json_out, served=served,
        options=options)


@app.command("eval-pipeline")
def eval_pipeline(
    data: Path = typer.Option(..., "--data", help="MovieLens u.data file (or its folder), or a file of your own."),
    limit: int = typer.Option(0, help="Replay only the first N events (0 = all)."),
    timeout: float = typer.Option(3600.0, help="Give up after this many seconds without all evaluations."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result as JSON here."),
    mapping: str | None = typer.Option(None, "--map", help=_MAP_HELP),
    types: str | None = typer.Option(None, "--types", help=_TYPES_HELP),
    fmt: str = typer.Option("auto", "--format", help="With a file of your own: auto, csv, tsv or jsonl."),
    delimiter: str | None = typer.Option(None, help="With a file of your own: CSV delimiter (default: detected)."),
    header: bool | None = typer.Option(None, "--header/--no-header", help="First CSV row holds column names?"),
    ts_format: str = typer.Option("auto", help=_TS_HELP),
) -> None:
    """Replay a dataset through Kafka → job → index; print the job's online recall@k beside popularity.

    Starts the local stack if needed, runs the job in a local MiniCluster on topics of its own and reads
    the job's `evaluations` topic. Model settings come from LIVEREC_* (same as the job). `--data` is
    MovieLens u.data unless a file-layout option (--map, --types, --format, ...) is given, as in eval-offline.
    """
    options = _read_options(mapping, types, fmt, delimiter, header, ts_format)
    from rich.console import Console

    from pipeline.errors import ConfigError, LiverecError
    from pipeline.eval_offline import resolve_data_path
    from pipeline.eval_pipeline import run as replay

    try:
        path = data if options else resolve_data_path(data)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc
    # Overrides for the replay: 1 s checkpoints and 0.2 s item flushes (fresher feedback than the job's
    # 2 s / 0.5 s defaults) and few profile writes; the model settings are the job's.
    settings = _settings().model_copy(update={"checkpoint_interval_ms": 1000, "item_flush_ms": 200,
                                              "profile_flush_ms": 60_000, "online_eval_percent": 100})
    try:
        replay(settings, path, limit=limit, timeout_s=timeout, console=Console(), json_out=json_out, options=options)
    except LiverecError as exc:
        _fail(exc)


if __name__ == "__main__":
    app()
