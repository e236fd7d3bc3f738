"""Settings: the model (the only reader of the environment), the file, live reloads, URLs."""
