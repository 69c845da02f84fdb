"""Source readers: one module per source kind, all producing raw string frames."""
