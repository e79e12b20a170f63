"""The claim-check part of the templates: a private container, a lifecycle rule that ages blobs out
under the content-addressed prefix, and the worker told where the container is."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import Resource, module_body


def _one(resources: list[Resource], arm_type: str) -> Resource:
    [found] = [r for r in resources if r.type.lower() == arm_type.lower()]
    return found


def test_the_claim_check_container_is_private(resources: list[Resource]) -> None:
    [container] = [
        r
        for r in resources
        if r.type.lower() == "microsoft.storage/storageaccounts/blobservices/containers"
        and r.file == "modules/claimcheck.bicep"
    ]
    assert container.config["properties"]["publicAccess"] == "None"


def test_the_lifecycle_rule_deletes_claim_checks_after_the_retention(
    parsed: dict[str, dict[str, Any]], resources: list[Resource]
) -> None:
    policy = _one(resources, "Microsoft.Storage/storageAccounts/managementPolicies")
    [rule] = policy.config["properties"]["policy"]["rules"]
    assert rule["enabled"] is True
    definition = rule["definition"]
    assert definition["filters"]["blobTypes"] == ["blockBlob"]
    # '${containerName}/sha256/': only content-addressed blobs of this container, never anything else.
    [prefix] = definition["filters"]["prefixMatch"]
    assert "containerName" in str(prefix)
    assert str(prefix).endswith("/sha256/")
    delete = definition["actions"]["baseBlob"]["delete"]
    # Age counts from the last write or refresh (a re-publish refreshes), not from creation.
    assert set(delete) == {"daysAfterModificationGreaterThan"}
    assert delete["daysAfterModificationGreaterThan"] == "retentionDays"
    retention = parsed["modules/claimcheck.bicep"]["parameters"]["retentionDays"]
    assert retention["default"] == 30
    # Longer than the worker's retry max age (1 day), so no retry outlives its blob.
    [minimum] = [d["argument"] for d in retention["decorators"] if d["type"] == "min_value"]
    assert minimum >= 2


def test_the_claim_check_lives_in_the_record_account_and_the_worker_learns_its_url(
    parsed: dict[str, dict[str, Any]],
) -> None:
    main = parsed["main.bicep"]
    call = module_body(main["modules"]["claimCheck"])
    # The delivery record's account (shared keys and public blob access off) holds the container.
    assert "records" in str(call["params"]["storageAccountName"])
    assert "accountName" in str(call["params"]["storageAccountName"])
    params = module_body(main["modules"]["worker"])["params"]
    assert "claimCheck" in str(params["attachmentStoreUrl"])
    assert parsed["modules/claimcheck.bicep"]["outputs"]["url"]
