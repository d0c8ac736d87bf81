"""Event ingress: validation of raw records against the event contract, dead-letter records."""
