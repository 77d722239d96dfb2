"""The Kafka edge: topic names and record schemas, the Faust worker, and the producer helper."""
