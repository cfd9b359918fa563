"""S3 layer against the real moto server: atomic publication, one client per process, Parquet round trips."""

from __future__ import annotations

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from fpgrowth_dagster.config import OutputConfig, SourceConfig
from fpgrowth_dagster.resources import SharedS3Resource, clients_created
from fpgrowth_dagster.s3io import (
    ResultLayout,
    frame_to_parquet,
    is_transient_s3_error,
    list_keys,
    parquet_to_frame,
    publish_atomically,
    source_keys,
    unpublish_on_failure,
)

BUCKET = "fpgrowth-test"


@pytest.fixture
def s3(aws_env: str):
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    return client


def test_publish_writes_every_object_and_leaves_no_staging(s3):
    keys = publish_atomically(s3, BUCKET, {"out/a.parquet": b"A" * 10, "out/b.png": b"B"},
                              staging_prefix="out/_staging/", content_types={"out/b.png": "image/png"})
    assert keys == ["out/a.parquet", "out/b.png"]
    assert list_keys(s3, BUCKET, "out/") == ["out/a.parquet", "out/b.png"]
    assert s3.get_object(Bucket=BUCKET, Key="out/a.parquet")["Body"].read() == b"A" * 10
    assert s3.head_object(Bucket=BUCKET, Key="out/b.png")["ContentType"] == "image/png"


class _FailOnSecondCopy:
    """A real client whose second copy_object raises, as a dropped connection would."""

    def __init__(self, client):
        self._client = client
        self.copies = 0

    def __getattr__(self, name):
        return getattr(self._client, name)

    def copy_object(self, **kwargs):
        self.copies += 1
        if self.copies == 2:
            raise EndpointConnectionError(endpoint_url="http://s3.example")
        return self._client.copy_object(**kwargs)


def test_publish_failure_leaves_nothing_behind(s3):
    flaky = _FailOnSecondCopy(s3)
    with pytest.raises(EndpointConnectionError):
        publish_atomically(flaky, BUCKET, {"out/a.parquet": b"A", "out/b.parquet": b"B"},
                           staging_prefix="out/_staging/")
    assert flaky.copies == 2
    assert list_keys(s3, BUCKET, "") == []


def test_publish_failure_during_upload_leaves_nothing(s3):
    with pytest.raises(TypeError):
        publish_atomically(s3, BUCKET, {"out/a.parquet": b"A", "out/b.parquet": None},  # type: ignore[dict-item]
                           staging_prefix="out/_staging/")
    assert list_keys(s3, BUCKET, "") == []


def test_objects_published_before_a_later_failure_are_removed(s3):
    with pytest.raises(RuntimeError, match="check failed"):
        with unpublish_on_failure(s3, BUCKET) as published:
            published += publish_atomically(s3, BUCKET, {"out/a.parquet": b"A"}, staging_prefix="out/_staging/")
            assert list_keys(s3, BUCKET, "out/") == ["out/a.parquet"]
            raise RuntimeError("check failed")
    assert list_keys(s3, BUCKET, "") == []
    with unpublish_on_failure(s3, BUCKET) as published:  # success keeps them
        published += publish_atomically(s3, BUCKET, {"out/b.parquet": b"B"}, staging_prefix="out/_staging/")
    assert list_keys(s3, BUCKET, "") == ["out/b.parquet"]


def test_parquet_round_trip_keeps_list_columns_also_when_empty():
    frame = pd.DataFrame({"itemset": [["a", "b"], ["c"]], "support": [0.5, 0.25], "count": [2, 1]})
    back = parquet_to_frame(frame_to_parquet(frame, ["itemset"]))
    assert back["itemset"].tolist() == [["a", "b"], ["c"]]
    assert back["support"].tolist() == [0.5, 0.25]
    empty = pd.DataFrame({"itemset": pd.Series([], dtype=object), "support": pd.Series([], dtype="float64")})
    import io

    import pyarrow.parquet as pq

    schema = pq.read_schema(io.BytesIO(frame_to_parquet(empty, ["itemset"])))
    assert str(schema.field("itemset").type) == "list<element: string>"
    assert str(schema.field("support").type) == "double"


def test_source_keys_object_prefix_and_missing(s3):
    s3.put_object(Bucket=BUCKET, Key="raw/2010.csv.gz", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="raw/2011.parquet", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="raw/README.md", Body=b"x")
    src = SourceConfig(uri=f"s3://{BUCKET}/raw/", transaction_column="t", item_column="i")
    assert source_keys(s3, src) == ["raw/2010.csv.gz", "raw/2011.parquet"]
    one = SourceConfig(uri=f"s3://{BUCKET}/raw/2010.csv.gz", transaction_column="t", item_column="i")
    assert source_keys(s3, one) == ["raw/2010.csv.gz"]
    with pytest.raises(FileNotFoundError, match=f"s3://{BUCKET}/raw/nope.csv: no such S3 object"):
        source_keys(s3, SourceConfig(uri=f"s3://{BUCKET}/raw/nope.csv", transaction_column="t", item_column="i"))
    with pytest.raises(FileNotFoundError, match="no CSV, CSV.gz or Parquet objects"):
        source_keys(s3, SourceConfig(uri=f"s3://{BUCKET}/empty/", transaction_column="t", item_column="i"))


def test_transient_errors_are_classified(s3):
    assert is_transient_s3_error(EndpointConnectionError(endpoint_url="http://x"))
    slow_down = ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
    assert is_transient_s3_error(slow_down)
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=BUCKET, Key="nope")
    assert not is_transient_s3_error(missing.value)
    assert not is_transient_s3_error(ValueError("bad data"))


def test_one_client_per_process_from_the_aws_environment(s3):
    resource = SharedS3Resource()
    first = resource.get_client()
    assert resource.get_client() is first
    assert SharedS3Resource().get_client() is first  # same configuration: same client
    assert clients_created() >= 1
    first.put_object(Bucket=BUCKET, Key="k", Body=b"v")  # endpoint and region came from AWS_* variables
    assert s3.get_object(Bucket=BUCKET, Key="k")["Body"].read() == b"v"
    assert first.meta.region_name == "us-east-1"


def test_client_created_before_fork_is_not_shared_with_child(s3):
    """A forked child (as under forkserver) builds its own client; the parent's stays cached."""
    import os

    parent = SharedS3Resource().get_client()
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if it got a new client, then reuses that one
        child = SharedS3Resource().get_client()
        os._exit(0 if child is not parent and SharedS3Resource().get_client() is child else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert SharedS3Resource().get_client() is parent


def test_layout_keys():
    layout = ResultLayout(OutputConfig(bucket="b", prefix="results"))
    assert layout.itemsets_key("uk", "2011-01-01") == "results/groups/uk/2011-01-01/frequent_itemsets.parquet"
    assert layout.rules_key("uk", "2011-01-01") == "results/groups/uk/2011-01-01/association_rules.parquet"
    assert layout.transactions_key("2011-01-01", "uk") == "results/transactions/2011-01-01/uk.parquet"
    assert layout.uri(layout.comparison_plot_key("p")) == "s3://b/results/group_comparison/p/rule_prevalence.png"


def test_sqs_and_s3_resources_share_one_cache_per_service(aws_env: str):
    """Both resources take their client from the same per-process cache, one client per service."""
    from fpgrowth_dagster.sqs import SQSResource

    before = clients_created()
    sqs = SQSResource().get_client()
    s3 = SharedS3Resource().get_client()
    assert SQSResource().get_client() is sqs and SharedS3Resource().get_client() is s3
    assert sqs.meta.service_model.service_name == "sqs" and s3.meta.service_model.service_name == "s3"
    assert clients_created() <= before + 2
    url = sqs.create_queue(QueueName="client-cache-probe")["QueueUrl"]  # it talks to the moto server
    assert url in sqs.list_queues(QueueNamePrefix="client-cache-probe")["QueueUrls"]


def test_preload_warms_a_forkserver_without_opening_anything(tmp_path):
    """Importing the preload module resolves the code location and parses the S3 and SQS models, offline."""
    import json
    import os
    import subprocess
    import sys

    from fpgrowth_dagster.config import DEMO_CONFIG_PATH

    probe = (
        "import json, psutil\n"
        "import fpgrowth_dagster.preload\n"
        "from fpgrowth_dagster import resources\n"
        "from fpgrowth_dagster.definitions import defs\n"
        "cached = {key[1] for key in resources._LOADER._cache if key[0] == 'load_service_model'}\n"
        "me = psutil.Process()\n"
        "print(json.dumps({'resolved': defs.has_resolved_repository_def(), 'models': sorted(cached),\n"
        "                  'sockets': len(me.net_connections()), 'clients': resources.clients_created()}))\n"
    )
    # No credentials and no endpoint: a warm-up that looked for either would need the network.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FPGROWTH_CONFIG=str(DEMO_CONFIG_PATH), AWS_EC2_METADATA_DISABLED="true", HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"resolved": True, "models": ["s3", "sqs"], "sockets": 0, "clients": 0}
