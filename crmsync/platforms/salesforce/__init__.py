"""Salesforce: Contact, Account, Opportunity, Task and Event through the REST API (see adapter.py)."""
from .adapter import SalesforceAdapter

adapter_class = SalesforceAdapter

__all__ = ["SalesforceAdapter", "adapter_class"]
