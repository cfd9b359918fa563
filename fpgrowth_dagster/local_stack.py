"""The local stack of ``make demo`` / ``make dev`` from Python: an embedded S3/SQS endpoint with the demo data,
a Dagster instance directory, and optionally ``dagster dev``, for notebooks and scripts.

:class:`LocalStack` sets the standard environment in this process (``AWS_ENDPOINT_URL`` and friends,
``DAGSTER_HOME``, ``FPGROWTH_CONFIG``) so that :mod:`fpgrowth_dagster.api` and
:mod:`fpgrowth_dagster.explorer` find everything, and restores it in :meth:`LocalStack.stop`. Every
process it starts runs in its own session and is stopped (with its children) by ``stop()``, by the
``with`` block's end, or at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path
from typing import Any

from fpgrowth_dagster.stack import (
    REPO_ROOT,
    aws_env,
    prepare_dagster_home,
    start_dagster_dev,
    start_moto,
    stop_process,
)


class LocalStack:
    """moto's S3/SQS server with the demo data uploaded, a DAGSTER_HOME, and with ``dev=True`` ``dagster dev``."""

    def __init__(self, config_path: str | Path | None = None, dagster_home: str | Path | None = None,
                 dev: bool = False, workdir: str | Path | None = None) -> None:
        from fpgrowth_dagster.config import config_path as default_config_path

        self.config_path = Path(config_path) if config_path else default_config_path()
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="fpgrowth-stack-"))
        self.dagster_home = Path(dagster_home) if dagster_home else self.workdir / "dagster_home"
        self.dev = dev
        self.endpoint_url: str | None = None
        self.webserver_url: str | None = None
        self.uploaded: list[str] = []
        self._processes: list[Any] = []
        self._saved_env: dict[str, str | None] = {}

    def start(self) -> LocalStack:
        """Start the endpoint, upload the data, write the instance's dagster.yaml, set the environment."""
        from fpgrowth_dagster.demo import upload_demo_data

        try:
            moto, self.endpoint_url = start_moto(self.workdir / "moto.log")
            self._processes.append(moto)
            atexit.register(self.stop)
            self.uploaded = upload_demo_data(self.endpoint_url, self.config_path)
            prepare_dagster_home(self.dagster_home, coordinator="queued")
            self._set_env({**aws_env(self.endpoint_url), "DAGSTER_HOME": str(self.dagster_home),
                           "FPGROWTH_CONFIG": str(self.config_path)})
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_SECURITY_TOKEN"):
                self._save(name)
                os.environ.pop(name, None)
            if self.dev:
                dev, self.webserver_url = start_dagster_dev(env=dict(os.environ), log_path=self.workdir / "dev.log",
                                                            cwd=REPO_ROOT)
                self._processes.append(dev)
        except BaseException:
            self.stop()
            raise
        return self

    def _save(self, name: str) -> None:
        if name not in self._saved_env:
            self._saved_env[name] = os.environ.get(name)

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._save(name)
            os.environ[name] = value

    def stop(self) -> None:
        """Stop every process started here (newest first) and restore the environment; safe to call twice."""
        while self._processes:
            stop_process(self._processes.pop())
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()
        atexit.unregister(self.stop)

    @property
    def running(self) -> bool:
        return bool(self._processes) and all(p.poll() is None for p in self._processes)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        dev = f", dagster dev at {self.webserver_url}" if self.webserver_url else ""
        return (f"LocalStack({state}: S3/SQS endpoint {self.endpoint_url}, DAGSTER_HOME={self.dagster_home}, "
                f"config {self.config_path}{dev})")
