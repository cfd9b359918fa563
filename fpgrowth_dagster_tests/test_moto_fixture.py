"""The moto fixture is a real HTTP endpoint that boto3 reaches through the standard AWS environment."""

import boto3


def test_s3_round_trip_through_aws_endpoint_url(aws_env):
    s3 = boto3.client("s3")  # endpoint and region come from AWS_ENDPOINT_URL / AWS_REGION
    assert s3.meta.endpoint_url == aws_env
    s3.create_bucket(Bucket="fixture-check")
    s3.put_object(Bucket="fixture-check", Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket="fixture-check", Key="a/b.txt")["Body"].read() == b"hello"


def test_each_test_starts_with_an_empty_endpoint(aws_env):
    s3 = boto3.client("s3")
    assert s3.list_buckets()["Buckets"] == []
