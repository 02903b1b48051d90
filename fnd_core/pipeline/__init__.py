"""The retraining and scoring steps: snapshot, train, evaluate, gate, register, promote, score."""
