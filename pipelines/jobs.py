"""Jobs."""

from __future__ import annotations

import dagster as dg

from assets.customers import crm_customers, customers

# crm/stream feeds dagster.yaml's one-at-a-time limit; crm/operation names the run's span.
CUSTOMER_SYNC_TAGS = {"crm/stream": "customers", "crm/operation": "sync_customers"}

# Small jobs run in-process: the multiprocess executor spends ~2.8 s starting step processes.
customer_sync_job = dg.define_asset_job(
    name="customer_sync_job",
    selection=dg.AssetSelection.assets(crm_customers, customers),
    executor_def=dg.in_process_executor,
    tags=CUSTOMER_SYNC_TAGS,
    description="Pull the next window of CRM customers into the local customers table.",
)
