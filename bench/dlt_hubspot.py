"""dlt's `rest_api` source pulling HubSpot contacts into PostgreSQL: the comparison
`bench/whole_process.py` runs as a whole process, the way a user would run it.

    python bench/dlt_hubspot.py BASE_URL TOKEN POSTGRES_URL PROPERTIES PIPELINES_DIR

Needs the bench extra: pip install -e ".[bench]" (dlt[postgres], pinned in pyproject.toml).
"""
from __future__ import annotations

import sys


def main() -> None:
    base_url, token, postgres_url, properties, pipelines_dir = sys.argv[1:6]
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source({
        "client": {"base_url": base_url, "auth": {"type": "bearer", "token": token}},
        "resources": [{
            "name": "contacts",
            "write_disposition": "replace",
            "endpoint": {
                "path": "crm/v3/objects/contacts",
                "params": {"limit": 100, "properties": properties, "archived": "false"},
                "data_selector": "results",
                # HubSpot's list paging: paging.next.after goes back as ?after=
                "paginator": {"type": "cursor", "cursor_path": "paging.next.after", "cursor_param": "after"},
            },
        }],
    })
    pipeline = dlt.pipeline(pipeline_name="hubspot_bench", destination=dlt.destinations.postgres(postgres_url),
                            dataset_name="hubspot", pipelines_dir=pipelines_dir, progress=None)
    info = pipeline.run(source)
    info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("contacts", 0)
    print(rows)


if __name__ == "__main__":
    main()
