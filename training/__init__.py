"""Learning from the store: rounds, the trainer, the gate, adapters, evaluation."""
