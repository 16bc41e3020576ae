"""One client factory: every field of the dagster-aws resources reaches the boto3 client, and every
client retries in botocore's standard mode (one retry policy per call)."""

from __future__ import annotations

from dagster_aws.s3 import S3Resource

from fraud_assets.defs.resources import AwsClients
from fraud_assets.lib.aws.clients import USER_AGENT_EXTRA, ClientSettings, make_client, s3_client


def test_explicit_fields_reach_the_client():
    aws = AwsClients(
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret-example",
        aws_session_token="token-example",
        max_attempts=3,
        retry_mode="adaptive",
        use_ssl=False,
    )
    client = aws.client("dynamodb")
    assert (client.meta.region_name, client.meta.endpoint_url) == ("eu-west-1", "http://127.0.0.1:1")
    credentials = client._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key, credentials.token) == ("AKIDEXAMPLE", "secret-example", "token-example")
    assert client.meta.config.retries == {"mode": "adaptive", "total_max_attempts": 3}
    assert USER_AGENT_EXTRA in client.meta.config.user_agent_extra
    assert aws.client("dynamodb") is client  # cached: building a client costs ~50 ms

    s3 = s3_client(
        S3Resource(
            region_name="eu-central-1",
            endpoint_url="http://127.0.0.1:2",
            max_attempts=2,
            verify=False,
            aws_access_key_id="AKIDS3",
            aws_secret_access_key="s3-secret",
        )
    )
    assert (s3.meta.region_name, s3.meta.endpoint_url) == ("eu-central-1", "http://127.0.0.1:2")
    assert s3._request_signer._credentials.access_key == "AKIDS3"
    assert s3.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert s3._endpoint.http_session._verify is False


def test_a_profile_names_region_and_credentials(tmp_path, monkeypatch):
    config, credentials = tmp_path / "config", tmp_path / "credentials"
    config.write_text("[profile fraud-test]\nregion = ap-southeast-2\n")
    credentials.write_text("[fraud-test]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION"):  # they would win over the profile's region, as boto3 resolves it
        monkeypatch.delenv(var, raising=False)
    for client in (AwsClients(profile_name="fraud-test").client("sns"), s3_client(S3Resource(profile_name="fraud-test"))):
        assert client.meta.region_name == "ap-southeast-2"
        assert client._request_signer._credentials.access_key == "AKIDPROFILE"


def test_unset_fields_fall_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:3")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:4")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert make_client("ssm").meta.endpoint_url == "http://127.0.0.1:3"
    runtime = make_client("sagemaker-runtime", ClientSettings())
    assert (runtime.meta.endpoint_url, runtime.meta.region_name) == ("http://127.0.0.1:4", "us-west-2")
    # The resource's own endpoint wins over the environment's.
    assert AwsClients(endpoint_url="http://127.0.0.1:5").client("ssm").meta.endpoint_url == "http://127.0.0.1:5"
