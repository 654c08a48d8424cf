"""What travels on the Kafka topics: the ECG chunk record and its Avro codec, and dead-letter records."""
