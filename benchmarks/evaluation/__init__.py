"""Detection evaluation: train real small models with and without induced failures, record
per-step signals once, then run every detector offline over the same records."""
