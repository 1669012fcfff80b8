"""Growth telemetry: one row per frame-metadata write and per artifact put, delete or expiry, in Parquet."""
