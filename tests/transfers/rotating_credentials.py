"""An AWS ``credential_process`` handing out short-lived keys, as an SSO or STS helper does.

Each run creates a new access key for the SeaweedFS user named in ``LAMIN_NB_TEST_ROTOR``
and deletes the keys it handed out two runs ago: a key works from the run that handed it out
until the one after next, so a client that keeps an old key fails (``InvalidAccessKeyId``),
and one that refreshes when told keeps working. The expiry it reports lies 15 min and
``LAMIN_NB_TEST_ROTATE_SECONDS`` ahead: botocore refreshes 15 min before an expiry, so it asks
again after that many seconds. Every run appends ``<time> <key id>`` to
``LAMIN_NB_TEST_ROTOR_LOG`` (and ``deleted <key id>`` for the keys it deleted).
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import boto3

    from tests.support.seaweed import ACCESS_KEY, SECRET_KEY

    user = os.environ["LAMIN_NB_TEST_ROTOR"]
    log = Path(os.environ["LAMIN_NB_TEST_ROTOR_LOG"])
    ahead = float(os.environ.get("LAMIN_NB_TEST_ROTATE_SECONDS", "1"))
    iam = boto3.client(
        "iam",
        endpoint_url=os.environ["LAMIN_NB_TEST_IAM_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    with open(log, "a+") as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # two clients may ask at once: one run at a time
        out.seek(0)
        lines = out.read().splitlines()
        handed = [line.split()[1] for line in lines if not line.startswith("deleted")]
        deleted = {line.split()[1] for line in lines if line.startswith("deleted")}
        key = iam.create_access_key(UserName=user)["AccessKey"]
        new = [f"{time.time():.3f} {key['AccessKeyId']}"]
        for old in handed[:-1]:  # all but the previous one stop working now
            if old not in deleted:
                iam.delete_access_key(UserName=user, AccessKeyId=old)
                new.append(f"deleted {old} {time.time():.3f}")
        out.write("".join(line + "\n" for line in new))
    expires = datetime.now(timezone.utc) + timedelta(minutes=15, seconds=ahead)
    print(
        json.dumps(
            {
                "Version": 1,
                "AccessKeyId": key["AccessKeyId"],
                "SecretAccessKey": key["SecretAccessKey"],
                "Expiration": expires.isoformat().replace("+00:00", "Z"),
            }
        )
    )


if __name__ == "__main__":
    main()
