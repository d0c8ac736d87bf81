"""Resolve the servers' and the job's jars from Maven Central with `mvn`, into the repo's cache.

Why Maven and not a download URL: Maven Central is the one artifact registry these machines (and
CI) reach, and `dependency:copy-dependencies` gives each component its exact transitive closure.

The job's own Java code (the Cassandra sink, pipeline/jvm/) is built here too, with the same local
Maven repository, into ``.cache/jars/liverec/``; it is rebuilt when its pom or sources change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from pipeline.errors import InfraError

POMS = Path(__file__).resolve().parent / "poms"
SINK_MODULE = Path(__file__).resolve().parents[1] / "jvm"
SINK_JAR = "liverec-cassandra-sink.jar"
COMPONENTS = ("kafka", "cassandra", "flink")
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def jar_dir(cache_dir: Path, component: str) -> Path:
    """Folder holding the resolved jars of one component."""
    return cache_dir / "jars" / component


def _stamp(cache_dir: Path, component: str) -> Path:
    return jar_dir(cache_dir, component) / ".resolved-from"


def is_resolved(cache_dir: Path, component: str) -> bool:
    """True when the jars exist and were resolved from the current POM (a changed pin re-resolves)."""
    stamp = _stamp(cache_dir, component)
    pom = (POMS / f"{component}.xml").read_text()
    return stamp.exists() and stamp.read_text() == pom


def resolve(cache_dir: Path, component: str, *, log=print) -> Path:
    """Resolve one component's jars unless already resolved from the same POM; return their folder."""
    if component not in COMPONENTS:
        msg = f"unknown jar component {component!r}: expected one of {', '.join(COMPONENTS)}"
        raise InfraError(msg)
    out = jar_dir(cache_dir, component)
    if is_resolved(cache_dir, component):
        return out
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven ('mvn') is not on PATH: install Maven 3.8+ (it resolves the Kafka/Cassandra/Flink jars)"
        raise InfraError(msg)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pom = POMS / f"{component}.xml"
    log(f"resolving {component} jars from Maven Central into {out} …")
    cmd = [
        mvn, "-B", "-q", "-f", str(pom),
        f"-Dmaven.repo.local={cache_dir / 'm2'}",
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={out}",
        "-DincludeScope=runtime",
    ]
    if component == "flink":
        cmd.append("-DexcludeTransitive=true")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        msg = (
            f"mvn could not resolve the {component} jars from {pom} (exit {proc.returncode}).\n"
            + "\n".join(tail)
            + "\nCheck the registry is reachable; if a version is refused, try a neighbouring one in the POM."
        )
        raise InfraError(msg)
    _stamp(cache_dir, component).write_text(pom.read_text())
    return out


def resolve_all(cache_dir: Path, *, log=print) -> dict[str, Path]:
    """Resolve every component and build the job's own jar (idempotent)."""
    out = {c: resolve(cache_dir, c, log=log) for c in COMPONENTS}
    out["liverec"] = build_sink(cache_dir, log=log).parent
    return out


def sink_sources_hash(module: Path = SINK_MODULE) -> str:
    """sha256 over the sink module's pom and sources (paths and bytes): what its stamp records."""
    digest = hashlib.sha256()
    files = [module / "pom.xml", *sorted(p for p in (module / "src").rglob("*") if p.is_file())]
    for f in files:
        digest.update(f.relative_to(module).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def sink_jar(cache_dir: Path) -> Path:
    """Where the built Cassandra sink jar lives."""
    return jar_dir(cache_dir, "liverec") / SINK_JAR


def is_sink_built(cache_dir: Path, module: Path = SINK_MODULE) -> bool:
    """True when the sink jar exists and was built from the current pom and sources."""
    stamp = jar_dir(cache_dir, "liverec") / ".built-from"
    return sink_jar(cache_dir).is_file() and stamp.is_file() and stamp.read_text() == sink_sources_hash(module)


def build_sink(cache_dir: Path, *, log=print, module: Path = SINK_MODULE) -> Path:
    """Build the Cassandra sink jar (pipeline/jvm) unless built from the same sources; return its path."""
    jar = sink_jar(cache_dir)
    if is_sink_built(cache_dir, module):
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven ('mvn') is not on PATH: install Maven 3.8+ (it builds the job's Cassandra sink jar)"
        raise InfraError(msg)
    want = sink_sources_hash(module)
    build_dir = cache_dir / "build" / "cassandra-sink"
    log_file = cache_dir / "logs" / "cassandra-sink-build.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the Cassandra sink jar from {module} (Maven log: {log_file}) …")
    started = time.monotonic()
    cmd = [
        mvn, "-B", "-f", str(module / "pom.xml"),
        f"-Dmaven.repo.local={cache_dir / 'm2'}",
        f"-Dliverec.build.dir={build_dir}",
        "clean", "package",
    ]
    with log_file.open("w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    built = sorted(build_dir.glob("liverec-cassandra-sink-*.jar"))
    if proc.returncode != 0 or not built:
        tail = log_file.read_text(errors="replace").strip().splitlines()[-15:]
        msg = (
            f"mvn could not build the Cassandra sink jar from {module} (exit {proc.returncode}); "
            f"the whole Maven log is {log_file}. Its last lines:\n" + "\n".join(tail)
        )
        raise InfraError(msg)
    jar.parent.mkdir(parents=True, exist_ok=True)
    tmp = jar.with_suffix(".jar.tmp")
    shutil.copyfile(built[0], tmp)
    os.replace(tmp, jar)  # a reader never sees half a jar
    (jar.parent / ".built-from").write_text(want)
    log(f"built {jar} in {time.monotonic() - started:.0f}s")
    return jar


def flink_job_jars(cache_dir: Path) -> list[Path]:
    """Jars the PyFlink job must load through `pipeline.jars` (resolving or building them on first use)."""
    return [*sorted(resolve(cache_dir, "flink").glob("*.jar")), build_sink(cache_dir)]
