"""Getting ECG chunks onto Kafka: topic creation and the replay producer that plays recordings as bedside monitors."""
