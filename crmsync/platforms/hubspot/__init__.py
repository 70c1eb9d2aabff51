"""HubSpot: client (`client.HubSpotClient`), mappings (`mapping`), webhooks (`webhooks`) and the
sync engine's adapter (`adapter.HubSpotAdapter`)."""
from crmsync.platforms.hubspot.adapter import HubSpotAdapter
from crmsync.platforms.hubspot.client import HubSpotClient

adapter_class = HubSpotAdapter

__all__ = ["HubSpotAdapter", "HubSpotClient", "adapter_class"]
