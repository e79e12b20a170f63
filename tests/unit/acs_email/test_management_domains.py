"""The management config's domains: an Azure-managed domain sends from a GUID domain, not its name."""

from __future__ import annotations

import pytest

from postbus.emulators.acs_email.management import ManagedDomain, ManagementConfig


def test_an_azure_managed_domain_sends_from_a_stable_azurecomm_domain() -> None:
    config = ManagementConfig.from_dict(
        {
            "email_service": "mail",
            "domains": [{"name": "AzureManagedDomain", "domain_management": "AzureManaged"}],
        }
    )
    (domain,) = config.domains
    sender_domain = domain.sender_domain(config.email_service)
    assert sender_domain.endswith(".azurecomm.net")
    assert sender_domain != domain.name
    # Derived from the service and the name, so a restarted emulator answers the same
    assert sender_domain == ManagedDomain("AzureManagedDomain", "AzureManaged").sender_domain("mail")
    assert sender_domain != ManagedDomain("AzureManagedDomain", "AzureManaged").sender_domain("other")


def test_a_custom_domain_sends_from_its_name_unless_told_otherwise() -> None:
    assert ManagedDomain("notify.example.com").sender_domain("mail") == "notify.example.com"
    told = ManagedDomain("AzureManagedDomain", "AzureManaged", mail_from_sender_domain="abc.azurecomm.net")
    assert told.sender_domain("mail") == "abc.azurecomm.net"


def test_the_config_round_trips_through_its_json_document() -> None:
    config = ManagementConfig.from_dict(
        {
            "domains": [
                {
                    "name": "AzureManagedDomain",
                    "domain_management": "AzureManaged",
                    "mail_from_sender_domain": "x.azurecomm.net",
                }
            ]
        }
    )
    assert ManagementConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ({"name": "d", "domain_management": "Managed"}, "domain_management"),
        ({"name": "d", "mail_from_sender_domain": ""}, "mail_from_sender_domain"),
    ],
)
def test_a_bad_domain_is_refused_with_the_field_named(domain: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ManagementConfig.from_dict({"domains": [domain]})
