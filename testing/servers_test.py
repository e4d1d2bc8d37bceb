"""The test servers start, answer real clients and go away on exit."""

import os
import urllib.error
import urllib.request

import boto3
import psycopg
import pytest

from roundhouse.testing import postgres_server, process, s3_server


def test_postgres_server_accepts_queries_and_cleans_up():
    with postgres_server.postgres_server() as dsn:
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select 40 + 2").fetchone() == (42,)
            data_dir = conn.execute("show data_directory").fetchone()[0]
        assert os.path.isdir(data_dir)
    assert not os.path.exists(data_dir)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)


def test_s3_server_round_trip_and_reset():
    with s3_server.s3_server() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, **s3_server.S3_CLIENT_ARGS)
        s3.create_bucket(Bucket="bucket-one")
        s3.put_object(Bucket="bucket-one", Key="k", Body=b"hello")
        assert s3.get_object(Bucket="bucket-one", Key="k")["Body"].read() == b"hello"
        s3_server.reset(endpoint)
        assert s3.list_buckets()["Buckets"] == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2)


def test_a_server_that_dies_at_start_fails_with_its_log_and_none_outlives_the_block(tmp_path):
    log = str(tmp_path / "server.log")
    with pytest.raises(RuntimeError, match=r"(?s)exited with 3: .*boom"):
        with process.running(["sh", "-c", "echo boom; exit 3"], lambda: False, name="sh", log_path=log):
            pass
    with process.running(["sleep", "60"], lambda: True, name="sleep", log_path=log) as proc:
        assert proc.poll() is None
    assert proc.poll() is not None
