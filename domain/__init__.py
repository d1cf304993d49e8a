"""Rules shared by the API and the assets: CRM record normalization, validation and URL scrubbing.

Nothing here imports Flask or Dagster, so each side imports only what it uses.
"""
