"""Built-in integration blocks."""
