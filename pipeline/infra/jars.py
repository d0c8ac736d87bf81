"""Resolve the servers' and the job's jars from Maven Central with `mvn`, into the repo's cache.

Why Maven and not a download URL: Maven Central is the one artifact registry these machines (and
CI) reach, and `dependency:copy-dependencies` gives each component its exact transitive closure.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from pipeline.errors import InfraError

POMS = Path(__file__).resolve().parent / "poms"
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
    """Resolve every component (idempotent)."""
    return {c: resolve(cache_dir, c, log=log) for c in COMPONENTS}


def flink_job_jars(cache_dir: Path) -> list[Path]:
    """Jars the PyFlink job must load through `pipeline.jars` (resolving them on first use)."""
    return sorted(resolve(cache_dir, "flink").glob("*.jar"))
