"""Salesforce: client (`client.SalesforceClient`), mappings (`mapping`), Outbound Messages
(`webhooks`) and the sync engine's adapter (`adapter.SalesforceAdapter`) for Contact, Account,
Opportunity, Task and Event through the REST API."""
from .adapter import SalesforceAdapter
from .client import SalesforceClient

adapter_class = SalesforceAdapter

__all__ = ["SalesforceAdapter", "SalesforceClient", "adapter_class"]
