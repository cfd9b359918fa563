"""Who sent a signal: the sender's pid, user and command line, as the kernel reports it (siginfo).

Python's signal handlers receive only the signal number. The native recorder
(:mod:`fpgrowth_dagster.monitoring._native`) is put in front of the handler Python installed and
stores ``si_pid``/``si_uid``/``si_code`` plus the sender's ``/proc/PID/cmdline``, read inside the
handler so that a short-lived ``kill`` is still named. Without the compiled module (no C compiler
at install time) everything still works, but the sender is reported as unknown.
"""

from __future__ import annotations

import os
import signal
from dataclasses import asdict, dataclass, field
from typing import Any

# Set FPGROWTH_MONITORING_NATIVE=0 to run without the compiled helpers (pure-Python fallbacks).
NATIVE_ENV = "FPGROWTH_MONITORING_NATIVE"

if os.environ.get(NATIVE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
    _native = None
else:
    try:  # built from _native.c at install time; optional
        from fpgrowth_dagster.monitoring import _native
    except ImportError:  # no C compiler at install time
        _native = None

# Linux si_code values for signals sent by a process or the kernel (asm-generic/siginfo.h).
SI_CODES = {
    0: "SI_USER",  # kill(), sigsend(), raise()
    0x80: "SI_KERNEL",
    -1: "SI_QUEUE",  # sigqueue()
    -2: "SI_TIMER",
    -3: "SI_MESGQ",
    -4: "SI_ASYNCIO",
    -5: "SI_SIGIO",
    -6: "SI_TKILL",  # tkill(), tgkill(): sent to one thread, e.g. by the process itself
}


def native_available() -> bool:
    """True when the compiled recorder and watchdog are importable."""
    return _native is not None


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def install_sender_recorder(signum: int) -> bool:
    """Record the sender of ``signum`` in front of its current handler; False if already there or unavailable.

    Call it after the Python handler is set: ``signal.signal()`` replaces the recorder.
    """
    if _native is None:
        return False
    return bool(_native.install_recorder(int(signum)))


def uninstall_sender_recorder(signum: int) -> bool:
    """Put back the handler the recorder wrapped (only if the recorder is still the current one)."""
    if _native is None:
        return False
    return bool(_native.uninstall_recorder(int(signum)))


def sender_recorder_installed(signum: int) -> bool:
    return bool(_native is not None and _native.recorder_installed(int(signum)))


@dataclass
class SignalSender:
    """What the kernel and /proc tell about the process that sent a signal."""

    signal: str
    signal_number: int
    source: str  # "siginfo" when the kernel named the sender, else "unavailable"
    deliveries: int = 0
    code: str | None = None
    pid: int | None = None
    uid: int | None = None
    user: str | None = None
    cmdline: list[str] = field(default_factory=list)
    name: str | None = None
    ppid: int | None = None
    parent_cmdline: list[str] = field(default_factory=list)
    relation: str | None = None  # self, parent, ancestor, child, other
    role: str | None = None  # Dagster role of the sender when it is a Dagster process
    received_by_thread: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for logs: ``SIGTERM from pid 123 (/bin/kill -TERM 456), user root``."""
        if self.pid is None:
            return f"{self.signal} from an unknown sender ({self.source})"
        command = " ".join(self.cmdline) or (f"{self.name}, exited" if self.name else "command line unavailable")
        if self.parent_cmdline:
            command += f"; parent {self.ppid}: {' '.join(self.parent_cmdline)[:100]}"
        who = f" [{self.role}]" if self.role else ""
        return (
            f"{self.signal} from pid {self.pid}{who} ({command[:200]}), user {self.user or self.uid}, {self.relation}"
        )


def _decode_cmdline(raw: bytes) -> list[str]:
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _relation(pid: int) -> str:
    import psutil

    me = os.getpid()
    if pid == me:
        return "self"
    if pid == os.getppid():
        return "parent"
    try:
        if pid in {p.pid for p in psutil.Process(me).parents()}:
            return "ancestor"
        if pid in {p.pid for p in psutil.Process(me).children(recursive=True)}:
            return "child"
    except psutil.Error:
        pass
    return "other"


def last_sender(signum: int) -> SignalSender:
    """The sender of the last delivery of ``signum`` seen by the recorder, enriched from /proc."""
    import psutil

    from fpgrowth_dagster.monitoring.processes import classify_cmdline

    name = signal_name(signum)
    raw = _native.last_delivery(int(signum)) if _native is not None else None
    if raw is None:
        source = "unavailable: native recorder not built" if _native is None else "unavailable: not recorded"
        return SignalSender(signal=name, signal_number=int(signum), source=source)
    pid = int(raw["pid"])
    sender = SignalSender(
        signal=name,
        signal_number=int(signum),
        source="siginfo",
        deliveries=int(raw["count"]),
        code=SI_CODES.get(int(raw["code"]), str(raw["code"])),
        pid=pid if int(raw["code"]) <= 0 else None,
        uid=int(raw["uid"]) if int(raw["code"]) <= 0 else None,
        cmdline=_decode_cmdline(raw["cmdline"]),
        name=raw.get("comm", b"").decode("utf-8", "replace") or None,
        ppid=int(raw.get("ppid") or 0) or None,
        received_by_thread=int(raw["tid"]),
    )
    if sender.pid is None:
        sender.relation = "kernel"
        return sender
    sender.relation = _relation(pid)
    try:
        import pwd

        sender.user = pwd.getpwuid(sender.uid).pw_name if sender.uid is not None else None
    except (KeyError, ImportError):
        pass
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            sender.name = sender.name or proc.name()
            sender.ppid = sender.ppid or proc.ppid()
            if not sender.cmdline:
                sender.cmdline = proc.cmdline()
    except psutil.Error:
        pass  # the sender has exited; what the handler read from /proc is what remains
    if sender.ppid:
        try:
            sender.parent_cmdline = psutil.Process(sender.ppid).cmdline()
        except psutil.Error:
            pass
    sender.role = classify_cmdline(sender.cmdline)
    return sender
