"""Pipedrive: API v2 client, mappers to the unified model, webhook verification and parsing."""
from crmsync.platforms.pipedrive.adapter import PipedriveAdapter

adapter_class = PipedriveAdapter

__all__ = ["PipedriveAdapter", "adapter_class"]
