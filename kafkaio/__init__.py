"""Kafka plumbing shared by the producer, the exporter and the workers (no Faust here)."""
