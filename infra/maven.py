"""Jars from Maven Central, resolved once per machine into a cache outside the repository.

``resolve_jars(pom, home)`` runs ``mvn dependency:copy-dependencies`` for
``pom`` into ``home/libs`` the first time (bounded, with progress lines) and
marks the folder complete; later calls return it at once. A lock lets two
processes resolve at once without clashing. Used for the Kafka broker
(:mod:`llmrouter.infra.kafka`) and the Avro interop tests (``tests/interop``).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from llmrouter.infra.process import Echo, InfraError, tail

PROGRESS_EVERY_S = 15.0


def cache_root() -> Path:
    """Return ``$LLMROUTER_CACHE`` or ``~/.cache/llmrouter``."""
    return Path(os.environ.get("LLMROUTER_CACHE", "~/.cache/llmrouter")).expanduser()


def resolve_jars(pom: Path, home: Path, *, what: str, timeout_s: float, echo: Echo = print) -> Path:
    """The libs folder of ``pom``'s runtime jars under ``home``, copied from Maven on first use."""
    libs, marker = home / "libs", home / ".complete"
    if marker.is_file():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            _copy_jars(pom, home, what=what, timeout_s=timeout_s, echo=echo)
    return libs


def _copy_jars(pom: Path, home: Path, *, what: str, timeout_s: float, echo: Echo) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError(f"Maven (`mvn`) is needed once to fetch the {what}: run `sudo apt-get install -y maven`.")
    shutil.copyfile(pom, home / "pom.xml")
    partial, libs, log_path = home / "libs.partial", home / "libs", home / "mvn.log"
    shutil.rmtree(partial, ignore_errors=True)
    echo(f"resolving the {what} from Maven Central into {libs} (first run only, at most {timeout_s:.0f} s) …")
    started = time.monotonic()
    cmd = [mvn, "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
           f"-DoutputDirectory={partial}", "-DincludeScope=runtime"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=home, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own group: a timeout stops Maven's JVM too
        while proc.poll() is None:
            if time.monotonic() - started > timeout_s:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise InfraError(f"mvn did not resolve the {what} within {timeout_s:.0f} s; "
                                 f"last lines of {log_path}:\n{tail(log_path)}")
            try:
                proc.wait(timeout=PROGRESS_EVERY_S)
            except subprocess.TimeoutExpired:
                echo(f"  … still resolving ({time.monotonic() - started:.0f} s)")
    if proc.returncode != 0:
        raise InfraError(f"mvn failed (exit {proc.returncode}) resolving the {what}; "
                         f"last lines of {log_path}:\n{tail(log_path)}")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    jars = sorted(libs.glob("*.jar"))
    (home / ".complete").write_text("".join(f"{jar.name}\n" for jar in jars))
    echo(f"resolved {len(jars)} jars in {time.monotonic() - started:.1f} s")
