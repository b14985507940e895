"""Producers: turn CSV files into messages on the `transactions` topic."""
