"""``examples/quickstart.ipynb`` executes end to end, headless, in a real IPython kernel (nbclient + ipykernel).

The notebook starts its own local stack (moto's S3 endpoint with the demo data, a DAGSTER_HOME),
launches real runs, reads and plots the results and stops the stack; here it runs two months of
three groups to stay short. The executed notebook must have no error, show its progress line and
inline PNG plots, write the PNG files, and leave none of the processes it started behind.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from fpgrowth_dagster.stack import REPO_ROOT
from fpgrowth_dagster_tests.notebook_support import PARTITIONS, processes_mentioning, write_small_config

NOTEBOOK = REPO_ROOT / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    from fpgrowth_dagster.plots import PNG_SIGNATURE, png_size

    config = write_small_config(tmp_path / "fpgrowth.yaml")
    workdir = tmp_path / "run"
    workdir.mkdir()
    shutil.copy(NOTEBOOK, workdir / NOTEBOOK.name)
    # The kernel inherits this environment: a small tour, and nothing pointing at other endpoints.
    monkeypatch.setenv("QUICKSTART_CONFIG", str(config))
    monkeypatch.setenv("QUICKSTART_PARTITIONS", ",".join(PARTITIONS))
    for name in ("AWS_ENDPOINT_URL", "DAGSTER_HOME", "FPGROWTH_CONFIG", "FPGROWTH_WEBSERVER_URL", "QUICKSTART_GROUPS"):
        monkeypatch.delenv(name, raising=False)

    notebook = nbformat.read(workdir / NOTEBOOK.name, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()  # raises CellExecutionError with the cell and traceback on any error

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    texts = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    # The progress line (a display updated in place) ended on the finished run.
    assert "SUCCESS" in texts and "steps done" in texts
    assert "groups: 2 mined, 1 skipped, 0 failed" in texts
    # Both plots are shown inline as PNG and written as files.
    images = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2 and all(image.startswith(PNG_SIGNATURE) for image in images)
    for name in ("quickstart_rules.png", "quickstart_heatmap.png"):
        data = (workdir / name).read_bytes()
        width, height = png_size(data)
        assert width >= 600 and height >= 300 and len(data) > 10_000
    # The stack stopped what it started: the last cell shows it stopped, and no moto server of it is left.
    last = notebook.cells[-1].outputs[-1]["data"]["text/plain"]
    assert last.startswith("LocalStack(stopped")
    endpoint = last.split("S3/SQS endpoint ", 1)[1].split(",", 1)[0]
    port = endpoint.rsplit(":", 1)[1]
    assert [p for p in processes_mentioning(f"-p {port}") if "moto" in p] == []
    assert os.environ.get("AWS_ENDPOINT_URL") is None
