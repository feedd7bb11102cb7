"""keepwise features: pure polars transforms from validated CRM tables to one row per customer."""
