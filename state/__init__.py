"""The worker's durable state: one RocksDB per input partition, and how it is trusted.

No Faust import here. processor.agent drives it:

- `store.PartitionStore`: a partition's accounts and deposits on disk, written
  once per batch, after the batch's Kafka transaction committed, in one
  RocksDB write batch together with the position record (the next input
  offset the state reflects). So the local copy is never ahead of what the
  changelogs hold, and never half a batch.
- `restore.restore`: bring stores up to the changelogs' committed end by
  reading only what they lack (from the changelog offset each store last
  checkpointed), in bulk, with confluent-kafka, and refuse to trust a store
  that does not agree with its changelog (wiped and read from the start).
- `slots.claim`: which directory of the data directory this process owns.

docs/exactness.md ("Local state") has the argument and the tests behind it.
"""
