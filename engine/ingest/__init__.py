"""Data where it lives: database sources read by Spark's JDBC reader or ADBC, ingested
incrementally into the workspace's raw store with a hash-chained run ledger, checked at
landing (bad rows quarantined), kept on a schedule, traced by lineage."""
