"""Credentials that expire during a long upload (DESIGN §9): refreshed between parts.

A real ``credential_process`` (``rotating_credentials.py``) hands out short-lived keys of a
SeaweedFS user through SeaweedFS's IAM API and deletes old ones, so a key stops working at
the server during the upload; botocore asks the process again as each nears its expiry.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lamin_nb as ln
from tests.support.seaweed import SeaweedServer
from tests.transfers.conftest import PART, MiB

SCRIPT = Path(__file__).with_name("rotating_credentials.py")
SIZE = 64 * MiB
PART_PAUSE = 0.15  # a slow consumer of progress: the upload lasts a few seconds
POLICY = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["*"]}]}'
)


@pytest.fixture(scope="module")
def iam_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = SeaweedServer(tmp_path_factory.mktemp("seaweed-iam"), iam_writes=True)
    server.start()
    yield server
    server.stop()


class SlowProgress(ln.SaveCallback):
    def advance(self, index: int, nbytes: int) -> None:
        time.sleep(PART_PAUSE)


def test_expiring_credentials_are_refreshed_between_parts(
    iam_seaweed: SeaweedServer,
    big_file: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import s3fs
    from botocore.exceptions import ClientError

    iam = iam_seaweed.iam()
    user = f"rotor-{secrets.token_hex(3)}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=POLICY)
    bucket = iam_seaweed.new_bucket()
    log = tmp_path / "keys.log"
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {SCRIPT}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_ENDPOINT_URL": iam_seaweed.endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "LAMIN_NB_TEST_ROTOR": user,
        "LAMIN_NB_TEST_ROTOR_LOG": str(log),
        "LAMIN_NB_TEST_IAM_ENDPOINT": iam_seaweed.endpoint,
        "LAMIN_NB_TEST_ROTATE_SECONDS": "0.5",
        "LAMIN_NB_PART_SIZE": str(PART),
    }.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    ln.init(storage=f"s3://{bucket}/team")
    path = big_file(SIZE)

    start = time.time()
    artifact = ln.Artifact(path, key="big.bin").save(callback=SlowProgress())
    end = time.time()

    lines = log.read_text().splitlines()
    handed = [(float(t), key) for t, key in (line.split() for line in lines if line[0].isdigit())]
    deleted = {line.split()[1]: float(line.split()[2]) for line in lines if line[0] == "d"}
    during = [key for t, key in handed if start <= t <= end]
    assert len(during) >= 3, lines  # asked again and again as each key neared its expiry
    gone = [key for key in during if deleted.get(key, end + 1) <= end]
    assert gone, lines  # keys handed out during the upload stopped working before its end
    stored = iam_seaweed.client().get_object(Bucket=bucket, Key=f"team/.lamindb/{artifact.uid}.bin")
    assert stored["Body"].read() == path.read_bytes()
    assert ln.check(deep=True).is_consistent
    ln.disconnect()
    with pytest.raises(ClientError, match="InvalidAccessKeyId"):  # really dead at the server
        import boto3

        boto3.client(
            "s3",
            endpoint_url=iam_seaweed.endpoint,
            region_name="us-east-1",
            aws_access_key_id=gone[0],
            aws_secret_access_key="unused",
        ).list_objects_v2(Bucket=bucket)
