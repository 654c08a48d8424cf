"""The foundation every other package stands on: typed settings, structured logs, secrets and TLS clients, patient pseudonyms. Imports nothing else of hfrisk."""
