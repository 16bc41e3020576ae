"""Training group: raw data -> splits -> model -> evaluation -> deployed endpoint, weekly."""
