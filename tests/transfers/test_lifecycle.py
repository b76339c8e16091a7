"""ln.check warns when a bucket has no lifecycle rule that ends incomplete multipart uploads
(their parts are billed until someone aborts them)."""

from __future__ import annotations

import lamin_nb as ln
from tests.support.servers import MotoServer


def test_check_warns_without_a_lifecycle_rule_for_incomplete_uploads(
    s3_server: MotoServer,
) -> None:
    bucket = s3_server.new_bucket()
    ln.init(storage=f"s3://{bucket}/team")
    report = ln.check()
    assert report.is_consistent  # a warning, not damage
    [warning] = [w for w in report.warnings if "lifecycle" in w]
    assert f"bucket {bucket} has no lifecycle rule" in warning
    assert "AbortIncompleteMultipartUpload" in warning
    assert "warning: " in repr(report)

    s3_server.client().put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "abort-incomplete",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                }
            ]
        },
    )
    assert not [w for w in ln.check().warnings if "lifecycle" in w]


def test_local_storage_has_no_such_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ln.init(storage=str(tmp_path / "storage"))
    assert ln.check().warnings == []
